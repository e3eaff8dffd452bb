"""The unified example format in tf.data, and bad-row accounting.

The format itself (field names, :class:`UnifiedExample` in host form, parsing of a
decoded row) is :mod:`gecko_jax.rows`, shared with FRet, which writes such rows; the
bad-row accounting (:class:`BadRowCounter`) is :mod:`gecko_jax.readers`'s. This module
gathers both for the input pipeline and adds the tf.data signature. One example is a
dict of tensors:

=================== ============= ==================================================
feature             tf dtype      meaning
=================== ============= ==================================================
``task``            string []     task description, e.g. "question answering"
``query``           string []     the query text (non-empty)
``positive``        string []     the document that answers the query
``positive_title``  string []     its title, "" when it has none
``negatives``       string [k]    hard negatives, k >= 0 (may differ per example)
``negative_titles`` string [k]    their titles ("" when none)
``symmetric``       bool []       both sides use the query format (STS, NLI)
``source``          string []     where the row came from (dataset or file name)
=================== ============= ==================================================
"""

from __future__ import annotations

import tensorflow as tf

from gecko_jax.readers import BadInputError, BadRowCounter
from gecko_jax.rows import (
    NEGATIVE_TITLES,
    NEGATIVES,
    POSITIVE,
    POSITIVE_TITLE,
    QUERY,
    SOURCE,
    SYMMETRIC,
    TASK,
    BadRowError,
    UnifiedExample,
    from_record,
    string_list,
)

__all__ = [
    "NEGATIVES",
    "NEGATIVE_TITLES",
    "OUTPUT_SIGNATURE",
    "POSITIVE",
    "POSITIVE_TITLE",
    "QUERY",
    "SOURCE",
    "SYMMETRIC",
    "TASK",
    "BadInputError",
    "BadRowCounter",
    "BadRowError",
    "UnifiedExample",
    "from_record",
    "string_list",
]

OUTPUT_SIGNATURE: dict[str, tf.TensorSpec] = {
    TASK: tf.TensorSpec([], tf.string),
    QUERY: tf.TensorSpec([], tf.string),
    POSITIVE: tf.TensorSpec([], tf.string),
    POSITIVE_TITLE: tf.TensorSpec([], tf.string),
    NEGATIVES: tf.TensorSpec([None], tf.string),
    NEGATIVE_TITLES: tf.TensorSpec([None], tf.string),
    SYMMETRIC: tf.TensorSpec([], tf.bool),
    SOURCE: tf.TensorSpec([], tf.string),
}
