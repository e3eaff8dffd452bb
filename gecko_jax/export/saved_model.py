"""The encoder as a TF SavedModel that takes raw strings (TF Serving, Vertex AI, gecko-serve).

:func:`export_saved_model` writes ``OUT/<version>/`` as TF Serving expects it:
``saved_model.pb``, ``variables/`` (the model parameters), ``assets/`` (the vocabulary
file), ``assets.extra/tf_serving_warmup_requests`` (PredictionLog records replayed at
load), ``assets.extra/gecko_model_info.json`` and ``model-info.txt`` (what was exported).

The model runs as one ``XlaCallModule`` op holding the StableHLO that
``jax.experimental.jax2tf`` (native serialization, i.e. ``jax.export``) lowered for
every requested platform (cpu, cuda, tpu by default), with batch and sequence length
polymorphic. Formatting (task / title templates) and tokenization run in ordinary
TensorFlow and tensorflow_text ops in front of it, with the vocabulary the model
trained with, so the signatures take strings:

- ``serving_default``: ``text``, ``task``, ``title``, ``kind`` (``string[B]``) ->
  ``embedding float32[B, D]``, ``token_count int32[B]``, ``truncated bool[B]``;
- ``serving_dim``: the same plus ``dim`` (``int32`` scalar) -> the first ``dim`` values
  renormalised (Matryoshka);
- ``tokenize``: the same inputs -> ``token_ids int32[B, L]``, ``token_count``,
  ``truncated``;
- ``embed_tokens``: ``token_ids``, ``attention_mask`` (``int32[B, L]``) -> ``embedding``.

Bad requests (an unknown ``kind``, inputs of different lengths, no text, ``dim`` outside
``1..D``) fail with InvalidArgument. From strings, batches are padded to a few bucketed
shapes (the JAX encoder's length buckets; rows to a power of two up to 64, then to
multiples of 64) so the runtime compiles few XLA programs; the warm-up requests compile
the shapes of 1, 8 and 32 short texts.

Running it:

- **TF Serving on CPU** must enable the XLA:CPU JIT, which is off by default (without it
  the ``XlaCallModule`` op fails on the first request):
  ``tensorflow_model_server --model_name=gecko --model_base_path=/abs/OUT
  --xla_cpu_compilation_enabled=true``. TF Serving's model server links the
  tensorflow_text ops the in-graph tokenizer uses.
- **Python**: ``import tensorflow_text`` (it registers the tokenizer ops), then
  ``tf.saved_model.load(path).signatures["serving_default"](text=..., task=...,
  title=..., kind=...)``. JAX is not needed.
- **Versions**: the module carries a ``jax.export`` calling-convention version
  (``serialization_version`` in ``gecko_model_info.json`` and ``model-info.txt``).
  The default is 9, the oldest JAX 0.10 writes, which ``XlaCallModule`` reads since
  TensorFlow 2.16; version 10 (``serialization_version=10``) is read only from
  TensorFlow / TF Serving 2.21 on. The StableHLO inside is serialized for consumers a
  few weeks older than the exporting JAX, so an old runtime can still refuse a module
  written by a new JAX: tested here with TensorFlow 2.21 only. A runtime reports its
  limit with ``tensorflow.compiler.tf2xla.python.xla.call_module_maximum_supported_version()``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
import tensorflow as tf
from jax import export
from jax.experimental import jax2tf

from gecko_jax.data.vocabularies import SentencePieceVocabulary, WordPieceVocabulary
from gecko_jax.encoder import Encoder
from gecko_jax.export import tf_inputs, warmup
from gecko_jax.export.output import staged_directory
from gecko_jax.export.source import ExportError, ExportSource, check_dims

__all__ = ["SIGNATURES", "export_saved_model", "model_info"]

logger = logging.getLogger(__name__)

SIGNATURES = ("serving_default", "serving_dim", "tokenize", "embed_tokens")
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")
KNOWN_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
INFO_FILE = "gecko_model_info.json"
INFO_TEXT_FILE = "model-info.txt"
INFO_FORMAT_VERSION = 1
# The oldest calling convention JAX 0.10 writes: XlaCallModule has read version 9 since
# TensorFlow 2.16 (version 10 needs TensorFlow / TF Serving 2.21).
DEFAULT_SERIALIZATION_VERSION = 9

# text, task, title, kind: one string per row.
_TEXT_SPECS = [tf.TensorSpec([None], tf.string)] * 4
_TOKENS = tf.TensorSpec([None, None], tf.int32)


def _vocabulary_file(source: ExportSource) -> tuple[str, str]:
    """The vocabulary file the tokenizer was built from and its kind."""
    vocabulary = source.encoder.vocabulary
    if isinstance(vocabulary, SentencePieceVocabulary):
        path, kind = vocabulary.sentencepiece_model_file, "sentencepiece"
    elif isinstance(vocabulary, WordPieceVocabulary):
        path, kind = os.path.join(source.base_dir, "vocab.txt"), "wordpiece"
    else:
        raise ExportError(f"{source.name_or_path}: cannot export a {type(vocabulary).__name__}")
    if not os.path.isfile(path):
        raise ExportError(f"{source.name_or_path}: vocabulary file {path} not found")
    return path, kind


def _jax_model_fn(encoder: Encoder) -> Callable[..., Any]:
    model = encoder.model

    def embed(params: Any, token_ids: jax.Array, mask: jax.Array) -> jax.Array:
        return model.apply({"params": params}, token_ids, mask, deterministic=True)

    return embed


class EmbeddingModule(tf.Module):
    """The exported object: parameters as variables, the vocabulary asset, the signatures."""

    def __init__(
        self, source: ExportSource, platforms: Sequence[str], default_dim: int | None = None
    ) -> None:
        super().__init__(name="gecko_embedding")
        encoder = source.encoder
        self._encoder = encoder
        self.embedding_dim = encoder.embedding_dim
        self.default_dim = default_dim
        self.vocabulary_path, self.vocabulary_kind = _vocabulary_file(source)
        # Tracked so the file is copied into assets/; the tokenizer's tables themselves
        # are graph constants, so the export never reads the source directory.
        self.vocabulary_asset = tf.saved_model.Asset(self.vocabulary_path)
        # Variables, not constants: the graph stays small and the weights live in
        # variables/ where TF Serving and tooling expect them.
        self.params = tf.nest.map_structure(
            lambda x: tf.Variable(np.asarray(x), trainable=False),
            jax.device_get(encoder.params),
        )
        converted = jax2tf.convert(
            _jax_model_fn(encoder),
            polymorphic_shapes=[None, "(b, l)", "(b, l)"],
            # With l bounded, the model's own length checks (position table size) are
            # decidable for a symbolic l; longer inputs fail the module's shape assertion.
            polymorphic_constraints=(f"l <= {encoder.max_length}",),
            native_serialization_platforms=tuple(platforms),
            with_gradient=False,
        )
        self.embed_model = tf.function(
            lambda token_ids, attention_mask: converted(self.params, token_ids, attention_mask),
            input_signature=[_TOKENS, _TOKENS],
            autograph=False,
        )

    def _tokenize(
        self, text: tf.Tensor, task: tf.Tensor, title: tf.Tensor, kind: tf.Tensor
    ) -> tuple[tf.RaggedTensor, tf.Tensor]:
        encoder = self._encoder
        tf_inputs.check_inputs(text, task, title, kind)
        formatted = tf_inputs.format_texts(text, task, title, kind, encoder.input_format)
        return encoder.vocabulary.tokenize_tf_with_truncation(formatted, encoder.max_length)

    def _embed_texts(
        self, text: tf.Tensor, task: tf.Tensor, title: tf.Tensor, kind: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        ids, truncated = self._tokenize(text, task, title, kind)
        token_ids, mask = tf_inputs.bucketed_model_inputs(
            ids, self._encoder.vocabulary.pad_id, self._encoder.max_length
        )
        embedding = self.embed_model(token_ids, mask)[: tf.shape(text)[0]]
        return {
            "embedding": embedding,
            "token_count": tf.cast(ids.row_lengths(), tf.int32),
            "truncated": truncated,
        }

    @tf.function(input_signature=_TEXT_SPECS, autograph=False)
    def serving_default(
        self, text: tf.Tensor, task: tf.Tensor, title: tf.Tensor, kind: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        outputs = self._embed_texts(text, task, title, kind)
        if self.default_dim is not None:
            outputs["embedding"] = _matryoshka(outputs["embedding"], self.default_dim)
        return outputs

    @tf.function(input_signature=[*_TEXT_SPECS, tf.TensorSpec([], tf.int32)], autograph=False)
    def serving_dim(
        self, text: tf.Tensor, task: tf.Tensor, title: tf.Tensor, kind: tf.Tensor, dim: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        tf.debugging.assert_greater_equal(dim, 1, message=f"dim must be in 1..{self.embedding_dim}")
        tf.debugging.assert_less_equal(
            dim, self.embedding_dim, message=f"dim must be in 1..{self.embedding_dim}"
        )
        outputs = self._embed_texts(text, task, title, kind)
        outputs["embedding"] = _matryoshka(outputs["embedding"], dim)
        return outputs

    @tf.function(input_signature=_TEXT_SPECS, autograph=False)
    def tokenize(
        self, text: tf.Tensor, task: tf.Tensor, title: tf.Tensor, kind: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        ids, truncated = self._tokenize(text, task, title, kind)
        return {
            "token_ids": ids.to_tensor(default_value=self._encoder.vocabulary.pad_id),
            "token_count": tf.cast(ids.row_lengths(), tf.int32),
            "truncated": truncated,
        }

    @tf.function(input_signature=[_TOKENS, _TOKENS], autograph=False)
    def embed_tokens(self, token_ids: tf.Tensor, attention_mask: tf.Tensor) -> dict[str, tf.Tensor]:
        tf_inputs.check_token_inputs(token_ids, attention_mask, self._encoder.max_length)
        return {"embedding": self.embed_model(token_ids, attention_mask)}

    def signatures(self) -> dict[str, Any]:
        """The serving signatures by name (:data:`SIGNATURES`)."""
        return {name: getattr(self, name) for name in SIGNATURES}

    def serialization(self) -> tuple[int, list[str]]:
        """The calling-convention version and platforms of the embedded module."""
        graph = self.embed_model.get_concrete_function().graph
        for op in graph.get_operations():
            if op.type == "XlaCallModule":
                platforms = [p.decode().lower() for p in op.get_attr("platforms")]
                return int(op.get_attr("version")), platforms
        raise RuntimeError("the converted model has no XlaCallModule op")


@contextlib.contextmanager
def _quiet_tensorflow_info() -> Iterator[None]:
    """Hides TensorFlow's INFO lines while saving (renamed captured inputs, asset paths);
    warnings and errors still show."""
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def _matryoshka(embedding: tf.Tensor, dim: int | tf.Tensor) -> tf.Tensor:
    """The first ``dim`` values of each row, renormalised."""
    prefix = embedding[:, :dim]
    # As embedding_math.matryoshka_truncate: the squared norm is clamped at 1e-24.
    norm = tf.sqrt(tf.maximum(tf.reduce_sum(prefix * prefix, axis=1, keepdims=True), 1e-24))
    return prefix / norm


@contextlib.contextmanager
def _calling_convention(version: int) -> Iterator[None]:
    """Lowers with ``jax.export`` calling-convention ``version`` inside the block."""
    key = "jax_export_calling_convention_version"
    before = getattr(jax.config, key)
    jax.config.update(key, version)
    try:
        yield
    finally:
        jax.config.update(key, before)


def check_options(
    version: int, platforms: Sequence[str], serialization_version: int
) -> tuple[str, ...]:
    """Checks the export's options before any model is loaded; returns the platforms.

    Raises:
      ExportError: a bad version, platform or serialization version, naming its flag.
    """
    _check_version(version)
    _check_serialization_version(serialization_version)
    return _check_platforms(platforms)


def _check_serialization_version(version: int) -> None:
    low = export.minimum_supported_calling_convention_version
    high = export.maximum_supported_calling_convention_version
    if isinstance(version, bool) or not isinstance(version, int) or not low <= version <= high:
        raise ExportError(
            f"--serialization_version must be in {low}..{high} (what this JAX can write), "
            f"got {version!r}"
        )


def _check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ExportError(f"--version must be a positive integer, got {version!r}")


def _check_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
    chosen = (platforms,) if isinstance(platforms, str) else tuple(platforms)
    unknown = [p for p in chosen if p not in KNOWN_PLATFORMS]
    if not chosen or unknown:
        raise ExportError(
            f"--platforms: {', '.join(map(str, unknown)) or 'none given'}; "
            f"choose from {', '.join(KNOWN_PLATFORMS)}"
        )
    return tuple(dict.fromkeys(chosen))


def model_info(
    source: ExportSource,
    vocabulary_file: str,
    vocabulary_kind: str,
    serialization_version: int,
    platforms: Sequence[str],
    default_dim: int | None = None,
) -> dict[str, Any]:
    """The facts ``gecko_model_info.json`` records about an export."""
    encoder = source.encoder
    return {
        "format_version": INFO_FORMAT_VERSION,
        "source": source.name_or_path,
        "init_from": source.init_from,
        "step": source.step,
        "checkpoint_dir": source.checkpoint_dir,
        "vocabulary": {"file": os.path.basename(vocabulary_file), "kind": vocabulary_kind},
        "max_length": encoder.max_length,
        "embedding_dim": encoder.embedding_dim,
        "default_dim": default_dim,
        "matryoshka_dims": list(source.matryoshka_dims),
        "pad_id": encoder.vocabulary.pad_id,
        "query_template": encoder.input_format.query_template,
        "document_template": encoder.input_format.document_template,
        "missing_title": encoder.input_format.missing_title,
        "jax_version": jax.__version__,
        "tensorflow_version": tf.__version__,
        "serialization_version": serialization_version,
        "platforms": list(platforms),
        "signatures": list(SIGNATURES),
    }


def _info_text(info: dict[str, Any]) -> str:
    vocabulary = info["vocabulary"]
    lines = {
        "source": info["source"],
        "init_from": info["init_from"],
        "checkpoint_dir": info["checkpoint_dir"] or "none (pre-trained weights)",
        "step": "none" if info["step"] is None else info["step"],
        "vocabulary": f"assets/{vocabulary['file']} ({vocabulary['kind']})",
        "max_length": info["max_length"],
        "embedding_dim": info["embedding_dim"],
        "serving_default_dim": info["default_dim"] or info["embedding_dim"],
        "matryoshka_dims": ", ".join(map(str, info["matryoshka_dims"])) or "none recorded",
        "query_template": info["query_template"],
        "document_template": info["document_template"],
        "missing_title": info["missing_title"],
        "signatures": ", ".join(info["signatures"]),
        "platforms": ", ".join(info["platforms"]),
        "serialization_version": info["serialization_version"],
        "exported_with": f"jax {info['jax_version']}, tensorflow {info['tensorflow_version']}",
    }
    return "".join(f"{key}: {value}\n" for key, value in lines.items())


def _write_info(export_dir: str, info: dict[str, Any]) -> None:
    extra = os.path.join(export_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    with open(os.path.join(export_dir, INFO_TEXT_FILE), "w", encoding="utf-8") as f:
        f.write(_info_text(info))


def export_saved_model(
    source: ExportSource,
    out: str | os.PathLike,
    version: int = 1,
    overwrite: bool = False,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    warmup_texts: Sequence[str] | None = None,
    serialization_version: int = DEFAULT_SERIALIZATION_VERSION,
    default_dim: int | None = None,
) -> str:
    """Writes ``source`` as a TF SavedModel in ``out/<version>/``.

    Args:
      source: the model (see :func:`gecko_jax.export.source.load_source`).
      out: the model base path TF Serving watches.
      version: the numeric version subdirectory (>= 1).
      overwrite: replace an existing ``out/<version>``.
      platforms: platforms the embedded module is lowered for (cpu, cuda, rocm, tpu).
      warmup_texts: texts of the warm-up requests (default: a few built-in ones).
      serialization_version: the ``jax.export`` calling-convention version of the
        embedded module; the oldest JAX supports reaches the most serving runtimes.
      default_dim: the Matryoshka size ``serving_default`` returns (renormalised);
        None: the full embedding. ``serving_dim`` still takes any size.

    Returns:
      The version directory written.

    Raises:
      ExportError: a bad version, platform or warm-up text, or an existing output
        without ``overwrite``; nothing is left at the output path then.
    """
    platforms = check_options(version, platforms, serialization_version)
    if default_dim is not None:
        check_dims(source, (default_dim,), flag="--dim")
    texts = warmup.check_warmup_texts(warmup_texts)
    out = os.path.abspath(os.fspath(out))
    version_dir = os.path.join(out, str(int(version)))
    with (
        staged_directory(version_dir, overwrite) as staging,
        _calling_convention(serialization_version),
    ):
        logger.info("Converting the model with jax2tf for %s", ", ".join(platforms))
        module = EmbeddingModule(source, platforms, default_dim)
        serialization_version, lowered_for = module.serialization()
        logger.info("Writing the SavedModel")
        with _quiet_tensorflow_info():
            tf.saved_model.save(module, staging, signatures=module.signatures())
        logger.info("Writing warm-up requests and model info")
        warmup.write_warmup_requests(
            staging, warmup.warmup_requests(texts, model_name=os.path.basename(out))
        )
        info = model_info(
            source,
            module.vocabulary_path,
            module.vocabulary_kind,
            serialization_version,
            lowered_for,
            default_dim,
        )
        _write_info(staging, info)
    logger.info("SavedModel written to %s", version_dir)
    return version_dir
