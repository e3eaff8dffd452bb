"""GeckoFeatureConverter: exact token ids, padding, negatives and masks, ids."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from gecko_jax.data import examples as ex
from gecko_jax.data import feature_converter as fc
from gecko_jax.data import preprocessors as prep
from gecko_jax.data import sources
from gecko_jax.data.vocabularies import vocabulary_from_dir
from gecko_jax.formats import InputFormat
from gecko_jax.rows import write_examples

LENGTHS = {"query": 12, "positive": 10, "negative": 8, "num_negatives": 2}


@pytest.fixture(scope="module")
def vocab(minilm_dir: str):
    return vocabulary_from_dir(minilm_dir)


def text_dataset(rows: list[tuple[str, str, list[str]]]) -> tf.data.Dataset:
    """Formatted examples (plus the pass-through features a task would have)."""

    def gen():
        for query, positive, negatives in rows:
            yield {
                prep.QUERY_TEXT: query,
                prep.POSITIVE_TEXT: positive,
                prep.NEGATIVE_TEXTS: negatives,
                ex.TASK: "t",
                ex.SOURCE: "s",
            }

    signature = {
        prep.QUERY_TEXT: tf.TensorSpec([], tf.string),
        prep.POSITIVE_TEXT: tf.TensorSpec([], tf.string),
        prep.NEGATIVE_TEXTS: tf.TensorSpec([None], tf.string),
        ex.TASK: tf.TensorSpec([], tf.string),
        ex.SOURCE: tf.TensorSpec([], tf.string),
    }
    return tf.data.Dataset.from_generator(gen, output_signature=signature)


def padded(vocab, text: str, length: int) -> np.ndarray:
    ids = vocab.tokenize([text], length)[0]
    return np.pad(ids, (0, length - len(ids)))


ROWS = [
    (
        "task: qa | query: who wrote faust?",
        "title: Faust | text: Goethe wrote Faust in two parts, published in 1808 and 1832.",
        [
            "title: none | text: Schiller",
            "title: x | text: Kant",
            "title: y | text: a third one is dropped",
        ],
    ),
    ("task: qa | query: a", "title: none | text: same positive", ["title: none | text: only one"]),
    ("task: qa | query: b", "title: none | text: same positive", []),
    (
        "task: qa | query: ünïcödé 東京",
        "title: none | text: other positive",
        ["", "title: none | text: two"],
    ),
]


def test_token_ids_padding_negatives_and_masks(vocab) -> None:
    converter = fc.GeckoFeatureConverter(vocab, tokenize_batch=3)  # Crosses a micro-batch.
    out = list(converter(text_dataset(ROWS), LENGTHS, dataset_id=7).as_numpy_iterator())
    assert len(out) == len(ROWS)
    for got, (query, positive, negatives) in zip(out, ROWS):
        assert set(got) == {
            "query_tokens",
            "positive_tokens",
            "negative_tokens",
            "negative_mask",
            "positive_ids",
            "dataset_id",
        }
        np.testing.assert_array_equal(got["query_tokens"], padded(vocab, query, 12))
        np.testing.assert_array_equal(got["positive_tokens"], padded(vocab, positive, 10))
        kept = negatives[:2]
        want = np.zeros((2, 8), np.int32)
        for j, text in enumerate(kept):
            want[j] = padded(vocab, text, 8)
        np.testing.assert_array_equal(got["negative_tokens"], want)
        np.testing.assert_array_equal(got["negative_mask"], [j < len(kept) for j in range(2)])
        assert got["dataset_id"] == 7 and got["query_tokens"].dtype == np.int32
    # Truncation keeps [SEP] last, like Hugging Face:
    # [CLS] title : faust | text : goethe wrote [SEP].
    np.testing.assert_array_equal(
        out[0]["positive_tokens"], [101, 2516, 1024, 24021, 1064, 3793, 1024, 23173, 2626, 102]
    )
    np.testing.assert_array_equal(out[2]["negative_tokens"], np.zeros((2, 8)))
    ids = [int(o["positive_ids"]) for o in out]
    assert ids[1] == ids[2] and len({ids[0], ids[1], ids[3]}) == 3
    assert all(0 <= i < 2**31 for i in ids)
    assert ids[1] == int(fc.text_ids(tf.constant("title: none | text: same positive")))


def test_output_signature_and_no_negatives(vocab) -> None:
    converter = fc.GeckoFeatureConverter(vocab)
    ds = converter(text_dataset(ROWS), LENGTHS)
    dtypes = {"negative_mask": tf.bool}
    assert ds.element_spec == {
        name: tf.TensorSpec(shape, dtypes.get(name, tf.int32))
        for name, shape in converter.get_model_feature_lengths(LENGTHS).items()
    }
    assert ds.element_spec["negative_tokens"] == tf.TensorSpec([2, 8], tf.int32)
    lengths = dict(LENGTHS, num_negatives=0)
    ds = converter(text_dataset(ROWS), lengths)
    assert set(ds.element_spec) == {"query_tokens", "positive_tokens", "positive_ids", "dataset_id"}
    first = next(ds.as_numpy_iterator())
    np.testing.assert_array_equal(first["query_tokens"], padded(vocab, ROWS[0][0], 12))
    assert first["dataset_id"] == 0


@pytest.mark.parametrize(
    "lengths, match",
    [
        ({"query": 8, "positive": 8, "num_negatives": 1}, "needs 'negative'"),
        ({"query": 8, "positive": 8, "negative": 8}, "missing"),
        ({"query": 8, "positive": 8, "negative": 8, "num_negatives": 1, "inputs": 3}, "unknown"),
        ({"query": 0, "positive": 8, "negative": 8, "num_negatives": 1}, "positive int"),
    ],
)
def test_bad_lengths_are_errors(vocab, lengths, match) -> None:
    with pytest.raises(ValueError, match=match):
        fc.GeckoFeatureConverter(vocab)(text_dataset(ROWS), lengths)


def test_unformatted_dataset_is_an_error(vocab) -> None:
    ds = tf.data.Dataset.from_tensors({"query": "q"})
    with pytest.raises(ValueError, match="format_texts"):
        fc.GeckoFeatureConverter(vocab)(ds, LENGTHS)


def test_file_to_features_end_to_end(tmp_path, vocab) -> None:
    rows = [
        ex.UnifiedExample(
            "question answering",
            "who wrote Faust?",
            "Goethe.",
            positive_title="Faust",
            negatives=("Schiller",),
        ),
        ex.UnifiedExample("sentence similarity", "a man plays", "a person plays", symmetric=True),
    ]
    path = str(tmp_path / "rows.tfrecord")
    write_examples(rows, path)
    ds = sources.file_source(path).get_dataset(shuffle=False)
    lengths = {"query": 16, "positive": 16, "negative": 16, "num_negatives": 1}
    out = list(fc.GeckoFeatureConverter(vocab)(prep.format_texts(ds), lengths).as_numpy_iterator())
    fmt = InputFormat()
    np.testing.assert_array_equal(
        out[0]["query_tokens"],
        padded(vocab, fmt.query("who wrote Faust?", "question answering"), 16),
    )
    np.testing.assert_array_equal(
        out[0]["positive_tokens"], padded(vocab, fmt.document("Goethe.", "Faust"), 16)
    )
    np.testing.assert_array_equal(
        out[0]["negative_tokens"][0], padded(vocab, fmt.document("Schiller"), 16)
    )
    np.testing.assert_array_equal(
        out[1]["positive_tokens"],
        padded(vocab, fmt.query("a person plays", "sentence similarity"), 16),
    )
    np.testing.assert_array_equal(out[1]["negative_mask"], [False])
