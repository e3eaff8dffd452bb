"""What the service runs: a JAX :class:`~gecko_jax.encoder.Encoder` or an exported SavedModel.

Both backends split a request into the same two steps, so the batcher can pack texts of
many requests into one forward pass: :meth:`Backend.tokenize` (per request, on arrival)
and :meth:`Backend.embed` (per batch, on the model thread). The SavedModel backend
imports TensorFlow only, never JAX, so a serving image needs no JAX to run an export.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from gecko_jax import packing
from gecko_jax.shapes import padded_batches, padded_shapes
from gecko_jax.text_encoder import Tokenized

SAVED_MODEL_FILE = "saved_model.pb"
MODEL_INFO_FILE = os.path.join("assets.extra", "gecko_model_info.json")
QUERY = "query"
DOCUMENT = "document"


class ModelSourceError(ValueError):
    """A ``--model`` that names nothing servable."""


class Backend(Protocol):
    """A loaded model, as the service uses it."""

    embedding_dim: int
    max_length: int

    def tokenize(
        self,
        texts: Sequence[str],
        tasks: Sequence[str | None],
        kinds: Sequence[str],
        titles: Sequence[str | None],
    ) -> Tokenized:
        """Formats each row as Gecko does (task None: text unchanged) and tokenizes it."""

    def embed(self, token_ids: Sequence[np.ndarray]) -> np.ndarray:
        """``[n, embedding_dim]`` float32 L2-normalised embeddings of tokenized texts."""

    def warmup_shapes(self, longest: int) -> list[tuple[int, int]]:
        """``(rows, length)`` of every forward pass :meth:`embed` can run for texts of at
        most ``longest`` tokens; ``rows`` texts of ``length`` tokens run exactly that."""


class JaxBackend:
    """An :class:`~gecko_jax.encoder.Encoder` (model directory or packaged name).

    A batch's texts run packed several to a row (``Encoder.embed_packed``): concurrent
    requests' short texts of mixed lengths pad to nothing but the rows' tails.

    Args:
      encoder: the loaded encoder.
      batch_size: rows of a forward pass at the shortest row length
        (:data:`gecko_jax.packing.MIN_ROW_LENGTH` tokens): a pass holds
        ``batch_size * MIN_ROW_LENGTH`` tokens.
    """

    def __init__(self, encoder: Any, batch_size: int) -> None:
        self.encoder = encoder
        self.pass_tokens = batch_size * packing.MIN_ROW_LENGTH
        self.embedding_dim = int(encoder.embedding_dim)
        self.max_length = int(encoder.max_length)

    @classmethod
    def load(
        cls,
        name_or_dir: str,
        batch_size: int,
        dtype: str = "float32",
        max_length: int | None = None,
    ) -> JaxBackend:
        """Loads a packaged model name or a model directory with ``Encoder.load``."""
        from gecko_jax.encoder import Encoder  # JAX only when this backend is chosen

        return cls(Encoder.load(name_or_dir, dtype=dtype, max_length=max_length), batch_size)

    def tokenize(
        self,
        texts: Sequence[str],
        tasks: Sequence[str | None],
        kinds: Sequence[str],
        titles: Sequence[str | None],
    ) -> Tokenized:
        token_ids: list[np.ndarray] = [np.zeros(0, np.int32)] * len(texts)
        truncated = np.zeros(len(texts), dtype=bool)
        groups: dict[tuple[str | None, str], list[int]] = {}
        for row, key in enumerate(zip(tasks, kinds)):
            groups.setdefault(key, []).append(row)
        for (task, kind), rows in groups.items():
            group_titles = [titles[r] for r in rows] if kind == DOCUMENT else None
            tokenized = self.encoder.tokenize(
                [texts[r] for r in rows], task=task, kind=kind, titles=group_titles
            )
            for row, ids, cut in zip(rows, tokenized.token_ids, tokenized.truncated):
                token_ids[row] = ids
                truncated[row] = cut
        return Tokenized(token_ids, truncated)

    def embed(self, token_ids: Sequence[np.ndarray]) -> np.ndarray:
        return self.encoder.embed_packed(token_ids, self.pass_tokens)

    def warmup_shapes(self, longest: int) -> list[tuple[int, int]]:
        return packing.pass_shapes(self.pass_tokens, self.max_length, longest)


class SavedModelBackend:
    """A SavedModel written by ``gecko-export saved_model``, run by TensorFlow alone.

    It uses the export's ``tokenize`` and ``embed_tokens`` signatures and pads batches to
    the same bucketed shapes as the JAX encoder.

    Args:
      version_dir: the directory holding ``saved_model.pb`` (see :func:`find_saved_model`).
      batch_size: the most rows the batcher puts in one batch.
    """

    def __init__(self, version_dir: str, batch_size: int) -> None:
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)

        self._tf = tf
        info_path = os.path.join(version_dir, MODEL_INFO_FILE)
        try:
            with open(info_path, encoding="utf-8") as f:
                self.info = json.load(f)
            self.embedding_dim = int(self.info["embedding_dim"])
            self.max_length = int(self.info["max_length"])
            self.pad_id = int(self.info["pad_id"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelSourceError(f"{info_path}: not a gecko_jax export's model info ({e})") from e
        loaded = tf.saved_model.load(version_dir)
        missing = {"tokenize", "embed_tokens"} - set(loaded.signatures)
        if missing:
            raise ModelSourceError(
                f"{version_dir}: the SavedModel lacks the signatures {sorted(missing)}"
            )
        self._loaded = loaded  # keeps the signatures' variables alive
        self._tokenize = loaded.signatures["tokenize"]
        self._embed = loaded.signatures["embed_tokens"]
        self.batch_size = batch_size
        self.version_dir = version_dir

    def tokenize(
        self,
        texts: Sequence[str],
        tasks: Sequence[str | None],
        kinds: Sequence[str],
        titles: Sequence[str | None],
    ) -> Tokenized:
        if not texts:
            return Tokenized([], np.zeros(0, dtype=bool))
        tf = self._tf
        out = self._tokenize(
            text=tf.constant(list(texts), tf.string),
            task=tf.constant([t or "" for t in tasks], tf.string),
            title=tf.constant([t or "" for t in titles], tf.string),
            kind=tf.constant(list(kinds), tf.string),
        )
        ids = out["token_ids"].numpy()
        counts = out["token_count"].numpy()
        token_ids = [ids[row, :count].astype(np.int32) for row, count in enumerate(counts)]
        return Tokenized(token_ids, out["truncated"].numpy().astype(bool))

    def embed(self, token_ids: Sequence[np.ndarray]) -> np.ndarray:
        tf = self._tf
        out = np.zeros((len(token_ids), self.embedding_dim), dtype=np.float32)
        for batch in padded_batches(token_ids, self.batch_size, self.max_length, self.pad_id):
            result = self._embed(
                token_ids=tf.constant(batch.token_ids), attention_mask=tf.constant(batch.mask)
            )
            out[batch.indices] = result["embedding"].numpy()[: len(batch.indices)]
        return out

    def warmup_shapes(self, longest: int) -> list[tuple[int, int]]:
        return padded_shapes(longest, self.batch_size, self.max_length)


def find_saved_model(path: str) -> str | None:
    """The SavedModel directory in ``path``, or None when ``path`` holds no SavedModel.

    ``path`` is either the SavedModel itself (it has ``saved_model.pb``) or a TF Serving
    base directory of numeric versions, of which the highest is served.

    Raises:
      ModelSourceError: numeric versions, none of them with ``saved_model.pb``.
    """
    if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        return path
    if not os.path.isdir(path):
        return None
    versions = sorted((int(name) for name in os.listdir(path) if name.isdigit()), reverse=True)
    for version in versions:
        candidate = os.path.join(path, str(version))
        if os.path.isfile(os.path.join(candidate, SAVED_MODEL_FILE)):
            return candidate
    if versions:
        raise ModelSourceError(f"{path}: version directories {versions} hold no {SAVED_MODEL_FILE}")
    return None


def check_model_source(name_or_dir: str) -> str | None:
    """Checks ``--model`` before anything loads; returns the SavedModel directory or None.

    A path that does not exist is refused here; a name is left to ``Encoder.load``.

    Raises:
      ModelSourceError: a path (it has a separator or starts with ``.``/``~``) that is not
        a directory, or a version directory without a SavedModel.
    """
    looks_like_path = os.sep in name_or_dir or name_or_dir.startswith((".", "~"))
    expanded = os.path.expanduser(name_or_dir)
    if looks_like_path and not os.path.isdir(expanded):
        raise ModelSourceError(f"{name_or_dir}: no such model directory")
    return find_saved_model(expanded) if os.path.isdir(expanded) else None


def load_backend(
    name_or_dir: str,
    batch_size: int,
    dtype: str = "float32",
    max_length: int | None = None,
) -> Backend:
    """Loads the backend ``name_or_dir`` calls for: an exported SavedModel (TensorFlow) or a
    model directory / packaged name (JAX).

    ``dtype`` and ``max_length`` apply to the JAX backend; an export has its own.
    """
    saved_model = check_model_source(name_or_dir)
    if saved_model is not None:
        return SavedModelBackend(saved_model, batch_size)
    return JaxBackend.load(
        os.path.expanduser(name_or_dir), batch_size, dtype=dtype, max_length=max_length
    )
