"""From formatted text examples to fixed-shape model features (token ids, masks, ids).

:class:`GeckoFeatureConverter` plays the role of a ``seqio.FeatureConverter``: it
maps a task's examples (``query_text``, ``positive_text``, ``negative_texts``, see
:mod:`gecko_jax.data.preprocessors`) to the dual encoder's features, given task
feature lengths. It is not a subclass, because seqio's contract does not fit: its
lengths are keyed by feature name and bound each feature's length, while Gecko's
name the encoder sides (``query``, ``positive``, ``negative``) plus a count
(``num_negatives``), and the text features are tokenized here rather than in the task
(tasks stay vocabulary-independent, so one mixture serves WordPiece and
SentencePiece models).

Per example it outputs (pad id 0):

================== ======== =====================================================
``query_tokens``   [Lq]     int32 ids of the formatted query
``positive_tokens`` [Lp]    int32 ids of the formatted positive
``negative_tokens`` [k, Ln] int32 ids of the first k negatives (zeros past the end)
``negative_mask``  [k]      bool, False for missing negatives
``positive_ids``   []       int32 stable 31-bit hash of ``positive_text``
``dataset_id``     []       int32 given per task
================== ======== =====================================================

The negative features are absent when ``num_negatives`` is 0. Examples are not
batched (the mixer batches per task); tokenization runs on internal micro-batches.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf

from gecko_jax.data import preprocessors as prep
from gecko_jax.data.vocabularies import EncoderVocabulary

QUERY_TOKENS = "query_tokens"
POSITIVE_TOKENS = "positive_tokens"
NEGATIVE_TOKENS = "negative_tokens"
NEGATIVE_MASK = "negative_mask"
POSITIVE_IDS = "positive_ids"
DATASET_ID = "dataset_id"

TASK_FEATURE_LENGTHS: Mapping[str, int] = {
    "query": 64,
    "positive": 256,
    "negative": 256,
    "num_negatives": 1,
}
_LENGTH_KEYS = ("query", "positive", "negative", "num_negatives")
_HASH_BUCKETS = 2**31 - 1


def text_ids(texts: tf.Tensor) -> tf.Tensor:
    """Stable non-negative int32 ids of string tensors (FarmHash fingerprint buckets)."""
    return tf.cast(tf.strings.to_hash_bucket_fast(texts, _HASH_BUCKETS), tf.int32)


def check_lengths(task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
    """Validates task feature lengths; returns them as a plain dict.

    Raises:
      ValueError: missing or unknown keys, or values out of range.
    """
    lengths = dict(task_feature_lengths)
    missing = [k for k in _LENGTH_KEYS if k not in lengths and k != "negative"]
    unknown = sorted(set(lengths) - set(_LENGTH_KEYS))
    if missing or unknown:
        raise ValueError(
            f"task_feature_lengths {lengths}: missing {missing}, unknown {unknown}; "
            f"expected keys {list(_LENGTH_KEYS)}"
        )
    if lengths["num_negatives"] < 0:
        raise ValueError(f"num_negatives must be >= 0, got {lengths['num_negatives']}")
    if lengths["num_negatives"] and "negative" not in lengths:
        raise ValueError("task_feature_lengths needs 'negative' when num_negatives > 0")
    for key in ("query", "positive", "negative"):
        if key in lengths and (not isinstance(lengths[key], int) or lengths[key] < 1):
            raise ValueError(
                f"task_feature_lengths[{key!r}] must be a positive int, got {lengths[key]}"
            )
    return lengths


class GeckoFeatureConverter:
    """Tokenizes and pads formatted text examples into dual-encoder features.

    Attributes:
      vocabulary: the model's vocabulary (its ``tokenize_tf`` adds special tokens
        and truncates).
      tokenize_batch: examples per tokenization call (a throughput knob only).
    """

    def __init__(self, vocabulary: EncoderVocabulary, tokenize_batch: int = 256) -> None:
        if tokenize_batch < 1:
            raise ValueError(f"tokenize_batch must be positive, got {tokenize_batch}")
        self.vocabulary = vocabulary
        self.tokenize_batch = tokenize_batch

    def get_model_feature_lengths(
        self, task_feature_lengths: Mapping[str, int]
    ) -> dict[str, tuple[int, ...]]:
        """The shape of each output feature (per example)."""
        lengths = check_lengths(task_feature_lengths)
        shapes = {
            QUERY_TOKENS: (lengths["query"],),
            POSITIVE_TOKENS: (lengths["positive"],),
            POSITIVE_IDS: (),
            DATASET_ID: (),
        }
        k = lengths["num_negatives"]
        if k:
            shapes[NEGATIVE_TOKENS] = (k, lengths["negative"])
            shapes[NEGATIVE_MASK] = (k,)
        return shapes

    def _tokens(self, texts: tf.Tensor, length: int) -> tf.Tensor:
        ids = self.vocabulary.tokenize_tf(texts, length)
        return ids.to_tensor(0, shape=[None, length])

    def _convert_batch(
        self,
        batch: Mapping[str, tf.Tensor | tf.RaggedTensor],
        lengths: Mapping[str, int],
        dataset_id: int,
    ) -> dict[str, tf.Tensor]:
        positives = batch[prep.POSITIVE_TEXT]
        size = tf.shape(positives)[0]
        out = {
            QUERY_TOKENS: self._tokens(batch[prep.QUERY_TEXT], lengths["query"]),
            POSITIVE_TOKENS: self._tokens(positives, lengths["positive"]),
            POSITIVE_IDS: text_ids(positives),
            DATASET_ID: tf.fill([size], tf.constant(dataset_id, tf.int32)),
        }
        k = lengths["num_negatives"]
        if k:
            negatives = prep.as_ragged(batch[prep.NEGATIVE_TEXTS])[:, :k]
            tokens = self._tokens(negatives.flat_values, lengths["negative"])
            ragged = negatives.with_flat_values(tokens)  # [B, (k_i), Ln]
            out[NEGATIVE_TOKENS] = ragged.to_tensor(0, shape=[None, k, lengths["negative"]])
            out[NEGATIVE_MASK] = tf.sequence_mask(negatives.row_lengths(), k)
        return out

    def __call__(
        self,
        ds: tf.data.Dataset,
        task_feature_lengths: Mapping[str, int] = TASK_FEATURE_LENGTHS,
        *,
        dataset_id: int = 0,
    ) -> tf.data.Dataset:
        """Converts unbatched formatted examples to unbatched model features.

        Args:
          ds: examples with ``query_text``, ``positive_text`` (string scalars) and
            ``negative_texts`` (string [k_i]); other features are dropped.
          task_feature_lengths: ``query``, ``positive``, ``negative`` token lengths
            and ``num_negatives`` (k); extra negatives are dropped, missing ones masked.
          dataset_id: the ``dataset_id`` of every example (one per task).

        Raises:
          ValueError: bad lengths, or a dataset without the text features.
        """
        lengths = check_lengths(task_feature_lengths)
        spec = ds.element_spec
        expected_ranks = {prep.QUERY_TEXT: 0, prep.POSITIVE_TEXT: 0, prep.NEGATIVE_TEXTS: 1}
        if not lengths["num_negatives"]:
            del expected_ranks[prep.NEGATIVE_TEXTS]
        for name, rank in expected_ranks.items():
            if not isinstance(spec, Mapping) or name not in spec:
                raise ValueError(
                    f"dataset has no feature {name!r} (apply preprocessors.format_texts first)"
                )
            if spec[name].dtype != tf.string or spec[name].shape.rank != rank:
                raise ValueError(
                    f"feature {name!r} must be a string tensor of rank {rank}, got {spec[name]}"
                )
        ds = prep.batch_examples(ds, self.tokenize_batch).map(
            lambda b: self._convert_batch(b, lengths, dataset_id),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return ds.unbatch()
