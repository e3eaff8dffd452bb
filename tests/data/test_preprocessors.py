"""format_texts: TF formatting equals formats.InputFormat in Python, string for string."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from gecko_jax.data import examples as ex
from gecko_jax.data import preprocessors as prep
from gecko_jax.data.vocabularies import vocabulary_from_dir
from gecko_jax.formats import InputFormat

EXAMPLES = [
    ex.UnifiedExample(
        "question answering",
        "who wrote Faust?",
        "Goethe did.",
        positive_title="Faust",
        negatives=("Schiller", "Kant {x}"),
        negative_titles=("Friedrich Schiller", ""),
    ),
    ex.UnifiedExample("search result", "q | with pipe {task} {{}}", "no title | here {text}"),
    ex.UnifiedExample(
        "sentence similarity",
        "Ein Mann spielt — ♫",
        "Une personne joue 🎸",
        positive_title="ignored when symmetric",
        negatives=("猫が寝ている", "x"),
        negative_titles=("t1", "t2"),
        symmetric=True,
    ),
    ex.UnifiedExample("", "empty task", "doc", negatives=("only negative",)),
    ex.UnifiedExample("fact checking", "  spaces  ", "\ttabs\nnewline ", positive_title=" "),
]


def unified_dataset(examples: list[ex.UnifiedExample]) -> tf.data.Dataset:
    return tf.data.Dataset.from_generator(
        lambda: (e.as_features() for e in examples), output_signature=ex.OUTPUT_SIGNATURE
    )


def python_format(example: ex.UnifiedExample, fmt: InputFormat) -> tuple[str, str, list[str]]:
    titles = example.negative_titles or ("",) * len(example.negatives)
    if example.symmetric:
        side = [fmt.query(t, example.task) for t in (example.positive, *example.negatives)]
    else:
        side = [
            fmt.document(t, title)
            for t, title in zip(
                (example.positive, *example.negatives), (example.positive_title, *titles)
            )
        ]
    return fmt.query(example.query, example.task), side[0], side[1:]


def tf_format(
    examples: list[ex.UnifiedExample], fmt: InputFormat
) -> list[tuple[str, str, list[str]]]:
    out = []
    for e in prep.format_texts(unified_dataset(examples), fmt).as_numpy_iterator():
        out.append(
            (
                e[prep.QUERY_TEXT].decode(),
                e[prep.POSITIVE_TEXT].decode(),
                [n.decode() for n in e[prep.NEGATIVE_TEXTS]],
            )
        )
    return out


FORMATS = [
    InputFormat(),
    InputFormat("{text}", "{text}", ""),
    InputFormat("{{task}}: {task}; {task} » {text}!", "[{title}] {text} ({title})", "n/a — none"),
    InputFormat("query: {text}", "passage: {text}"),
]


@pytest.mark.parametrize("fmt", FORMATS, ids=range(len(FORMATS)))
def test_formatting_equals_the_python_input_format(fmt: InputFormat) -> None:
    assert tf_format(EXAMPLES, fmt) == [python_format(e, fmt) for e in EXAMPLES]


def test_default_format_strings_and_token_ids(minilm_dir) -> None:
    got = tf_format(EXAMPLES, InputFormat())
    assert got[0] == (
        "task: question answering | query: who wrote Faust?",
        "title: Faust | text: Goethe did.",
        ["title: Friedrich Schiller | text: Schiller", "title: none | text: Kant {x}"],
    )
    assert got[1][1] == "title: none | text: no title | here {text}"
    assert got[2][1] == "task: sentence similarity | query: Une personne joue 🎸"
    assert got[2][2] == [
        "task: sentence similarity | query: 猫が寝ている",
        "task: sentence similarity | query: x",
    ]
    assert got[4][1] == "title:   | text: \ttabs\nnewline "  # A blank title is still a title.
    vocab = vocabulary_from_dir(minilm_dir)
    ids = vocab.tokenize([got[0][0]], 32)[0]
    # [CLS] task : question answering | query : who wrote faust ? [SEP]
    np.testing.assert_array_equal(
        ids, [101, 4708, 1024, 3160, 10739, 1064, 23032, 1024, 2040, 2626, 24021, 1029, 102]
    )


def test_other_features_pass_through_and_shapes() -> None:
    ds = prep.format_texts(unified_dataset(EXAMPLES))
    spec = ds.element_spec
    assert spec[prep.QUERY_TEXT] == tf.TensorSpec([], tf.string)
    # Lists leave as 1-D ragged specs (plain tensors in maps, batched without a map).
    list_spec = tf.RaggedTensorSpec([None], tf.string, ragged_rank=0)
    assert spec[prep.NEGATIVE_TEXTS] == list_spec
    for name, want in ex.OUTPUT_SIGNATURE.items():
        assert spec[name] == (list_spec if want.shape.rank else want)
    first = next(ds.as_numpy_iterator())
    assert first[ex.QUERY] == b"who wrote Faust?" and first[ex.SOURCE] == b""


def test_many_examples_across_micro_batches() -> None:
    examples = [
        ex.UnifiedExample(
            f"t{i}", f"q{i}", f"p{i}", negatives=(f"n{i}",) * (i % 3), symmetric=i % 2 == 0
        )
        for i in range(2 * prep.FORMAT_BATCH + 5)
    ]
    fmt = InputFormat()
    assert tf_format(examples, fmt) == [python_format(e, fmt) for e in examples]


@pytest.mark.parametrize(
    "template", ["{task!r} {text}", "{task:>10} {text}", "{} {text}", "{tsk} {text}", "{text"]
)
def test_unsupported_templates_are_errors(template: str) -> None:
    with pytest.raises(ValueError, match="template"):
        prep.format_texts(unified_dataset(EXAMPLES), InputFormat(query_template=template))


def test_check_unified_names_the_bad_feature() -> None:
    ds = tf.data.Dataset.from_tensors({"query": "q"})
    with pytest.raises(ValueError, match="missing unified feature 'task'"):
        prep.check_unified(ds)
    features = {k: tf.zeros([0] * v.shape.rank, v.dtype) for k, v in ex.OUTPUT_SIGNATURE.items()}
    features[ex.NEGATIVES] = tf.constant("not a list")
    with pytest.raises(ValueError, match="'negatives' is string of rank 0"):
        prep.check_unified(tf.data.Dataset.from_tensors(features), "my task")
