"""seqio preprocessors over unified examples (TensorFlow ops only, no Python per row).

:func:`format_texts` adds the model-input strings of Gecko's input format:
``query_text``, ``positive_text`` and ``negative_texts`` ([k]), string for string
equal to :class:`formats.InputFormat`'s ``query`` / ``document`` in Python.

Speed: a tf.data map costs tens of microseconds per call on a small CPU, so work is
done on micro-batches. Variable-length features (``negatives``) travel between
steps as 1-D ``RaggedTensorSpec(ragged_rank=0)`` components: inside a map they are
plain tensors, and ``batch``/``unbatch`` handle them without the
per-element conversion map that ``ragged_batch`` runs on dense ones.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence

import tensorflow as tf

from gecko_jax import formats
from gecko_jax.data import examples as ex

QUERY_TEXT = "query_text"
POSITIVE_TEXT = "positive_text"
NEGATIVE_TEXTS = "negative_texts"
DEFAULT_FORMAT = formats.InputFormat()

# Examples are formatted in micro-batches; results are identical per example.
FORMAT_BATCH = 256

_QUERY_FIELDS = ("task", "text")
_DOCUMENT_FIELDS = ("title", "text")


def template_parts(template: str, fields: Sequence[str]) -> list[tuple[str, bool]]:
    """A ``str.format`` template as ``(literal, False)`` and ``(field, True)`` parts.

    Raises:
      ValueError: a field outside ``fields``, a positional field, a conversion or a
        format spec (the TF formatter only substitutes plain named fields).
    """
    parts: list[tuple[str, bool]] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"invalid template {template!r}: {e}") from None
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append((literal, False))
        if field is None:
            continue
        if field not in fields or spec or conversion:
            raise ValueError(
                f"template {template!r}: unsupported field {{{field}"
                f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}; "
                f"use plain {{name}} fields among {list(fields)}"
            )
        parts.append((field, True))
    return parts


def fill_template(parts: Sequence[tuple[str, bool]], values: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Substitutes string tensors (of one shape, or scalars) into parsed template parts."""
    pieces = [values[p] if is_field else tf.constant(p) for p, is_field in parts]
    if not any(is_field for _, is_field in parts):
        shape = tf.shape(next(iter(values.values())))
        return tf.fill(shape, "".join(p for p, _ in parts))
    return tf.strings.join(pieces)


def batch_examples(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batches examples whose variable-length features become ragged in the batch.

    Dense features of unknown length need ``ragged_batch`` (a map per element);
    ragged ones (as :mod:`sources` and :func:`format_texts` produce) batch directly.
    """

    def varies(spec: tf.TypeSpec) -> bool:
        return (
            isinstance(spec, tf.TensorSpec)
            and spec.shape.rank is not None
            and spec.shape.rank > 0
            and not spec.shape.is_fully_defined()
        )

    if any(varies(s) for s in tf.nest.flatten(dataset.element_spec)):
        return dataset.ragged_batch(batch_size)
    return dataset.batch(batch_size)


def as_ragged(values: tf.Tensor | tf.RaggedTensor) -> tf.RaggedTensor:
    """A batched feature as a RaggedTensor (dense [B, k] batches have fixed k)."""
    if isinstance(values, tf.RaggedTensor):
        return values
    return tf.RaggedTensor.from_tensor(values)


class _Formatter:
    """Vectorised :class:`formats.InputFormat` over [N] string tensors."""

    def __init__(self, input_format: formats.InputFormat) -> None:
        self._query = template_parts(input_format.query_template, _QUERY_FIELDS)
        self._document = template_parts(input_format.document_template, _DOCUMENT_FIELDS)
        self._missing_title = input_format.missing_title

    def query(self, text: tf.Tensor, task: tf.Tensor) -> tf.Tensor:
        return fill_template(self._query, {"task": task, "text": text})

    def document(self, text: tf.Tensor, title: tf.Tensor) -> tf.Tensor:
        # InputFormat.document writes `title or missing_title`.
        title = tf.where(tf.equal(title, ""), self._missing_title, title)
        return fill_template(self._document, {"title": title, "text": text})

    def side(
        self, text: tf.Tensor, title: tf.Tensor, task: tf.Tensor, symmetric: tf.Tensor
    ) -> tf.Tensor:
        """The document format, or the query format with the task where symmetric."""
        return tf.where(symmetric, self.query(text, task), self.document(text, title))

    def __call__(
        self, batch: dict[str, tf.Tensor | tf.RaggedTensor]
    ) -> dict[str, tf.Tensor | tf.RaggedTensor]:
        task, symmetric = batch[ex.TASK], batch[ex.SYMMETRIC]
        negatives, titles = as_ragged(batch[ex.NEGATIVES]), as_ragged(batch[ex.NEGATIVE_TITLES])
        rows = negatives.value_rowids()
        out = dict(batch)
        out[QUERY_TEXT] = self.query(batch[ex.QUERY], task)
        out[POSITIVE_TEXT] = self.side(
            batch[ex.POSITIVE], batch[ex.POSITIVE_TITLE], task, symmetric
        )
        out[NEGATIVE_TEXTS] = negatives.with_flat_values(
            self.side(
                negatives.flat_values,
                titles.flat_values,
                tf.gather(task, rows),
                tf.gather(symmetric, rows),
            )
        )
        return out


def check_unified(dataset: tf.data.Dataset, name: str = "dataset") -> tf.data.Dataset:
    """Checks (at graph-build time) that a dataset's elements hold the unified features.

    Raises:
      ValueError: a missing feature, or one of the wrong dtype or rank.
    """
    spec = dataset.element_spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"{name}: elements must be dicts of unified features, got {spec}")
    for feature, expected in ex.OUTPUT_SIGNATURE.items():
        actual = spec.get(feature)
        if actual is None:
            raise ValueError(f"{name}: missing unified feature {feature!r}; has {sorted(spec)}")
        if actual.dtype != expected.dtype or actual.shape.rank != expected.shape.rank:
            raise ValueError(
                f"{name}: feature {feature!r} is {actual.dtype.name} of rank {actual.shape.rank}, "
                f"expected {expected.dtype.name} of rank {expected.shape.rank}"
            )
    return dataset


def format_texts(
    dataset: tf.data.Dataset, input_format: formats.InputFormat = DEFAULT_FORMAT
) -> tf.data.Dataset:
    """Adds ``query_text``, ``positive_text`` and ``negative_texts`` to unified examples.

    The query is ``input_format.query(query, task)``; the positive and negatives are
    ``input_format.document(text, title)`` (an empty title becomes
    ``input_format.missing_title``) or, for symmetric examples,
    ``input_format.query(text, task)``. Other features pass through.

    Args:
      dataset: unified examples (:data:`examples.OUTPUT_SIGNATURE`), unbatched.
      input_format: the templates (plain ``{name}`` fields only).

    Returns:
      The examples with the three text features added; ``negatives``,
      ``negative_titles`` and ``negative_texts`` as 1-D ragged (ragged_rank 0) specs.
    """
    check_unified(dataset)
    formatter = _Formatter(input_format)
    batched = batch_examples(dataset, FORMAT_BATCH)
    return batched.map(formatter, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
