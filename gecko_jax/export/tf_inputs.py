"""Model inputs built inside a TensorFlow graph: per-row formatting, checks and padding.

These ops run in the exported SavedModel, so a serving runtime turns raw strings into
token ids exactly as :meth:`gecko_jax.encoder.Encoder.tokenize` does, without Python.
"""

from __future__ import annotations

import string

import numpy as np
import tensorflow as tf

from gecko_jax import formats, shapes
from gecko_jax.export.source import ExportError

# Up to this many rows a batch is padded to a power of two, beyond it to a multiple of
# it: a handful of compiled shapes for any request size, at most 2x wasted rows.
ROW_BUCKET_CAP = 64


def template_parts(template: str, fields: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """Splits a ``str.format`` template into ``(literal, field or None)`` pieces.

    Raises:
      ExportError: the template uses a field outside ``fields``, a conversion or a
        format spec (only plain ``{field}`` substitution is reproduced in the graph).
    """
    parts = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if field is not None and (field not in fields or spec or conversion):
            raise ExportError(
                f"input template {template!r}: only {', '.join('{' + f + '}' for f in fields)} "
                "can be exported"
            )
        parts.append((literal, field))
    return parts


def _fill(template: str, values: dict[str, tf.Tensor]) -> tf.Tensor:
    pieces: list[tf.Tensor | str] = []
    for literal, field in template_parts(template, tuple(values)):
        if literal:
            pieces.append(literal)
        if field is not None:
            pieces.append(values[field])
    # StringJoin broadcasts the scalar literals over the [B] fields.
    return tf.strings.join(pieces)


def check_inputs(text: tf.Tensor, task: tf.Tensor, title: tf.Tensor, kind: tf.Tensor) -> None:
    """Asserts one task, title and kind per text, at least one text, known kinds.

    A failed check raises InvalidArgument from the serving call.
    """
    rows = tf.size(text)
    tf.debugging.assert_positive(rows, message="text: at least one text is needed")
    for name, value in (("task", task), ("title", title), ("kind", kind)):
        tf.debugging.assert_equal(tf.size(value), rows, message=f"{name}: needs one entry per text")
    known = tf.reduce_any(
        tf.equal(kind[:, tf.newaxis], tf.constant(formats.KINDS)[tf.newaxis, :]), axis=1
    )
    tf.debugging.Assert(
        tf.reduce_all(known),
        [f"kind must be {' or '.join(formats.KINDS)}; got", tf.boolean_mask(kind, ~known)],
    )


def check_token_inputs(token_ids: tf.Tensor, attention_mask: tf.Tensor, max_length: int) -> None:
    """Asserts matching ``[B, L]`` shapes with ``B >= 1`` and ``L <= max_length``."""
    shape = tf.shape(token_ids)
    tf.debugging.assert_equal(
        tf.shape(attention_mask), shape, message="attention_mask: needs the shape of token_ids"
    )
    tf.debugging.assert_positive(shape[0], message="token_ids: at least one row is needed")
    tf.debugging.assert_less_equal(
        shape[1], max_length, message=f"token_ids: at most {max_length} tokens per row"
    )


def format_texts(
    text: tf.Tensor,
    task: tf.Tensor,
    title: tf.Tensor,
    kind: tf.Tensor,
    input_format: formats.InputFormat,
) -> tf.Tensor:
    """Formats each row as :func:`gecko_jax.formats.apply_format` does for that row.

    An empty task leaves the text unchanged; otherwise a query becomes the query template
    and a document the document template (an empty title becomes ``missing_title``).
    """
    query = _fill(input_format.query_template, {"task": task, "text": text})
    title = tf.where(tf.equal(title, ""), input_format.missing_title, title)
    document = _fill(input_format.document_template, {"title": title, "text": text})
    formatted = tf.where(tf.equal(kind, formats.QUERY), query, document)
    return tf.where(tf.equal(task, ""), text, formatted)


def _length_buckets(max_length: int) -> tf.Tensor:
    """``[max_length + 1]``: the padded length of every sequence length (shapes.py)."""
    lengths = [shapes.length_bucket(n, max_length) for n in range(max_length + 1)]
    return tf.constant(np.asarray(lengths, np.int32))


def _row_bucket(rows: tf.Tensor) -> tf.Tensor:
    powers = [shapes.batch_bucket(max(n, 1), ROW_BUCKET_CAP) for n in range(ROW_BUCKET_CAP + 1)]
    small = tf.gather(tf.constant(powers, tf.int32), tf.minimum(rows, ROW_BUCKET_CAP))
    multiple = (rows + ROW_BUCKET_CAP - 1) // ROW_BUCKET_CAP * ROW_BUCKET_CAP
    return tf.where(rows <= ROW_BUCKET_CAP, small, multiple)


def bucketed_model_inputs(
    ids: tf.RaggedTensor, pad_id: int, max_length: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Pads ``[B, None]`` ids to a bucketed ``[B', L']`` (``B' >= B``) with a mask.

    Lengths use the same buckets as the JAX encoder and rows a power of two (then
    multiples of :data:`ROW_BUCKET_CAP`), so the compiled module sees few shapes.
    Padding rows have an all-zero mask; the caller keeps the first ``B`` outputs.
    """
    rows = tf.cast(ids.nrows(), tf.int32)
    longest = tf.cast(tf.reduce_max(ids.row_lengths()), tf.int32)
    length = tf.gather(_length_buckets(max_length), longest)
    shape = tf.stack([_row_bucket(rows), length])
    token_ids = ids.to_tensor(default_value=pad_id, shape=shape)
    mask = tf.sequence_mask(ids.row_lengths(), maxlen=length, dtype=tf.int32)
    mask = tf.pad(mask, [[0, shape[0] - rows], [0, 0]])
    return token_ids, mask
