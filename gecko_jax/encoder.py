"""The public embedding API: ``Encoder.load(name_or_path).encode(texts)``.

:class:`Encoder` satisfies :class:`TextEncoder`, the protocol that evaluation and FRet
type their encoders with.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import jax
import numpy as np
from tqdm.auto import tqdm

from gecko_jax import formats, packing
from gecko_jax.data.vocabularies import EncoderVocabulary
from gecko_jax.embedding_math import matryoshka_truncate
from gecko_jax.model_dir import is_model_dir, load_trained, read_spec
from gecko_jax.models import named
from gecko_jax.models.dual_encoder import DualEncoder
from gecko_jax.pretrained import load_pretrained
from gecko_jax.shapes import PaddedBatch, padded_batches
from gecko_jax.text_encoder import TextEncoder, Tokenized

__all__ = ["Encoder", "TextEncoder", "Tokenized", "check_output_dim", "embedding_size"]

# Gecko's templates (the format is immutable, so one instance serves every default).
DEFAULT_INPUT_FORMAT = formats.InputFormat()
# Inputs at least this long get a progress bar when ``show_progress`` is left unset.
PROGRESS_THRESHOLD = 2_000
# Batches dispatched ahead of the one being read back.
MAX_IN_FLIGHT = 4
# Tokens of one forward pass of packed rows (32 rows of 64).
DEFAULT_PASS_TOKENS = 2048

BatchT = TypeVar("BatchT")


class Encoder:
    """A dual encoder with its vocabulary, ready to embed text.

    Attributes:
      model: the Flax dual encoder.
      params: its parameters (``{"backbone": ..., ["projection": ...]}``).
      vocabulary: tokenizer producing the model's token ids.
      max_length: longest token sequence fed to the model (longer inputs truncate).
      input_format: Gecko's query/document templates used when a task is given.
    """

    def __init__(
        self,
        model: DualEncoder,
        params: Any,
        vocabulary: EncoderVocabulary,
        max_length: int,
        input_format: formats.InputFormat = DEFAULT_INPUT_FORMAT,
    ) -> None:
        self.model = model
        self.params = jax.device_put(params)
        self.vocabulary = vocabulary
        self.max_length = max_length
        self.input_format = input_format
        self._embed = jax.jit(
            lambda p, ids, mask: model.apply({"params": p}, ids, mask, deterministic=True)
        )
        self._embed_packed = jax.jit(
            lambda p, ids, segments, positions: model.apply(
                {"params": p},
                ids,
                segments > 0,
                deterministic=True,
                segment_ids=segments,
                positions=positions,
                num_segments=packing.segments_per_row(ids.shape[1]),
            )
        )

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike,
        dtype: str = "float32",
        max_length: int | None = None,
        input_format: formats.InputFormat = DEFAULT_INPUT_FORMAT,
        step: int | None = None,
        checkpoint: str = "latest",
    ) -> Encoder:
        """Loads a named model, a Hugging Face / sentence-transformers directory or a
        gecko-train model directory.

        Args:
          name_or_path: a registered name (e.g. ``"all-MiniLM-L6-v2"``), a directory
            with ``config.json``, ``model.safetensors`` and tokenizer files, or a
            ``gecko-train`` model directory (``encoder.json`` + ``checkpoints/``).
          dtype: activation dtype, ``"float32"`` or ``"bfloat16"``.
          max_length: token limit; defaults to the model's own (sentence-transformers'
            ``max_seq_length``, else 512).
          input_format: query/document templates.
          step: checkpoint step of a gecko-train model directory (default: newest).
          checkpoint: of a gecko-train model directory, ``"latest"`` or ``"best"``
            (the best in-training evaluation).

        Raises:
          gecko_jax.models.hf_checkpoint.CheckpointError: unusable checkpoint.
        """
        if is_model_dir(name_or_path):
            loaded = load_trained(name_or_path, step=step, dtype=dtype, checkpoint=checkpoint)
            if max_length is not None:
                loaded.max_length = max_length
        else:
            loaded = load_pretrained(name_or_path, dtype=dtype, max_length=max_length)
        return cls(loaded.model, loaded.params, loaded.vocabulary, loaded.max_length, input_format)

    @property
    def embedding_dim(self) -> int:
        """Width of full-size embeddings."""
        return self.model.embedding_dim

    def encode(
        self,
        texts: Sequence[str] | str,
        task: str | None = None,
        kind: str = formats.QUERY,
        dim: int | None = None,
        batch_size: int = 32,
        titles: Sequence[str | None] | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embeds texts into L2-normalised float32 vectors.

        Args:
          texts: strings to embed (a single string is treated as a list of one).
          task: Gecko task description; when given, queries are formatted as
            ``task: {task} | query: {text}`` and documents as
            ``title: {title} | text: {text}``.
          kind: ``"query"`` or ``"document"``.
          dim: Matryoshka output size (a prefix of the full embedding, renormalised).
          batch_size: sequences per device batch.
          titles: optional document titles (with ``kind="document"``).
          show_progress: progress bar; by default shown for long inputs.

        Returns:
          ``[len(texts), dim or embedding_dim]`` float32 array, rows in input order.
        """
        texts = _check_texts(texts)
        self._check_dim(dim)
        tokenized = self.tokenize(texts, task=task, kind=kind, titles=titles)
        return self.embed_token_ids(
            tokenized.token_ids, dim=dim, batch_size=batch_size, show_progress=show_progress
        )

    def tokenize(
        self,
        texts: Sequence[str] | str,
        task: str | None = None,
        kind: str = formats.QUERY,
        titles: Sequence[str | None] | None = None,
    ) -> Tokenized:
        """Formats and tokenizes texts as :meth:`encode` does, without running the model.

        Args:
          texts, task, kind, titles: as for :meth:`encode`.

        Returns:
          The model-input ids of each text (at most ``max_length``) and which were cut.
        """
        texts = _check_texts(texts)
        formatted = formats.apply_format(texts, kind, task, titles, self.input_format)
        if not formatted:
            return Tokenized([], np.zeros(0, dtype=bool))
        token_ids, truncated = self.vocabulary.tokenize_with_truncation(formatted, self.max_length)
        return Tokenized(token_ids, truncated)

    def embed_token_ids(
        self,
        token_ids: Sequence[np.ndarray],
        dim: int | None = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embeds already tokenized texts (see :meth:`tokenize`).

        Sequences are sorted by length and padded to a few bucketed shapes, so repeated
        calls reuse compiled programs.

        Args:
          token_ids: one int32 array of at most ``max_length`` ids per text.
          dim: Matryoshka output size (a prefix of the full embedding, renormalised).
          batch_size: sequences per device batch.
          show_progress: progress bar; by default shown for long inputs.

        Returns:
          ``[len(token_ids), dim or embedding_dim]`` float32 array, rows in input order.
        """
        self._check_dim(dim)
        out = np.zeros((len(token_ids), self.embedding_dim), dtype=np.float32)
        if not len(token_ids):
            return out[:, :dim] if dim else out
        batches = list(
            padded_batches(token_ids, batch_size, self.max_length, self.vocabulary.pad_id)
        )
        if show_progress is None:
            show_progress = len(token_ids) >= PROGRESS_THRESHOLD
        with tqdm(
            total=len(batches),
            desc="encode",
            unit="batch",
            disable=not show_progress,
            file=sys.stderr,
        ) as progress:

            def collect(batch: PaddedBatch, embeddings: jax.Array) -> None:
                out[batch.indices] = np.asarray(embeddings)[: len(batch.indices)]
                progress.update()

            _dispatch_ahead(
                batches, lambda b: self._embed(self.params, b.token_ids, b.mask), collect
            )
        return matryoshka_truncate(out, dim) if dim else out

    def embed_packed(
        self, token_ids: Sequence[np.ndarray], pass_tokens: int = DEFAULT_PASS_TOKENS
    ) -> np.ndarray:
        """Embeds tokenized texts packed several to a row (:mod:`gecko_jax.packing`).

        The same embeddings as :meth:`embed_token_ids` (to float rounding) for less work
        when texts are short and of mixed lengths, as a server's concurrent requests are:
        no row is padded to a longer neighbour.

        Args:
          token_ids: one int32 array of at most ``max_length`` ids per text.
          pass_tokens: tokens of one forward pass.

        Returns:
          ``[len(token_ids), embedding_dim]`` float32 array, rows in input order.
        """
        out = np.zeros((len(token_ids), self.embedding_dim), dtype=np.float32)

        def collect(batch: packing.PackedBatch, embeddings: jax.Array) -> None:
            out[batch.indices] = np.asarray(embeddings)[batch.rows, batch.slots]

        _dispatch_ahead(
            packing.packed_batches(token_ids, pass_tokens, self.max_length, self.vocabulary.pad_id),
            lambda b: self._embed_packed(self.params, b.token_ids, b.segment_ids, b.positions),
            collect,
        )
        return out

    def _check_dim(self, dim: int | None) -> None:
        if dim is not None and not 1 <= dim <= self.embedding_dim:
            raise ValueError(
                f"dim={dim} is outside 1..{self.embedding_dim}, the model's embedding size"
            )


def _dispatch_ahead(
    batches: Iterable[BatchT],
    run: Callable[[BatchT], jax.Array],
    collect: Callable[[BatchT, jax.Array], None],
) -> None:
    """Runs ``batches`` in order, reading each result back with ``collect``.

    Dispatch is asynchronous: the host prepares the next batches while the device runs.
    At most :data:`MAX_IN_FLIGHT` wait unread: each holds its activations until read, so
    queueing a whole corpus at once would grow memory with the corpus.
    """
    pending: collections.deque = collections.deque()
    for batch in batches:
        pending.append((batch, run(batch)))
        if len(pending) > MAX_IN_FLIGHT:
            collect(*pending.popleft())
    while pending:
        collect(*pending.popleft())


def _check_texts(texts: Sequence[str] | str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not hasattr(texts, "__len__"):
        raise TypeError(
            f"texts must be a string or a sequence of strings, got {type(texts).__name__}"
        )
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str: {text!r:.80}")
    return texts


def embedding_size(name_or_path: str | os.PathLike) -> int | None:
    """A model's embedding size from its config files, without loading weights.

    Returns:
      The projection size of a gecko-train model directory with a projection head, else
      the backbone's width (``hidden_size`` or ``d_model`` in ``config.json``); None when
      the files do not say.
    """
    if is_model_dir(name_or_path):
        spec = read_spec(name_or_path)
        if spec.head.projection_dim:
            return spec.head.projection_dim
        name_or_path = spec.init_from
    try:
        directory = named.resolve_model_dir(name_or_path)
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None  # Encoder.load reports an unusable model
    size = config.get("hidden_size") or config.get("d_model")
    return int(size) if isinstance(size, int) else None


def check_output_dim(name_or_path: str | os.PathLike, dim: int, flag: str = "dim") -> None:
    """Checks a Matryoshka output size against the model's before its weights load.

    Raises:
      ValueError: ``dim`` is outside 1..the embedding size (names ``flag``).
    """
    size = embedding_size(name_or_path)
    if dim < 1 or (size is not None and dim > size):
        limit = f"1..{size}" if size is not None else ">= 1"
        raise ValueError(f"{flag} {dim} is outside {limit}, the embedding size of {name_or_path}")
