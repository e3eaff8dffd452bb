"""Classification triples: exact rows, sampling invariants, determinism, errors, files."""

from __future__ import annotations

import os
import re

import pytest

from gecko_jax import readers
from gecko_jax.data import classification, examples
from gecko_jax.data.examples import UnifiedExample

ITEMS = [
    ("good film", "pos"),
    ("bad film", "neg"),
    ("great movie", "pos"),
    ("awful plot", "neg"),
    ("loved it", "pos"),
    ("boring", "neg"),
    ("so-so", "mixed"),
    ("fine I guess", "mixed"),
]


def test_forced_choices_give_exact_triples() -> None:
    # Two "a" texts force the positives; the single "b" text is the only negative.
    items = [("x one", "a"), ("y only", "b"), ("x two", "a")]
    rows = classification.build_triples(items, seed=3, singleton_labels="skip", source="toy")
    assert rows == [
        UnifiedExample(
            task="classification",
            query="x one [id 0]",
            positive="x two [id 0]",
            negatives=("y only [id 0]",),
            symmetric=True,
            source="toy",
        ),
        UnifiedExample(
            task="classification",
            query="x two [id 1]",
            positive="x one [id 1]",
            negatives=("y only [id 1]",),
            symmetric=True,
            source="toy",
        ),
    ]


def test_text_scope_and_custom_format() -> None:
    items = [("x one", "a"), ("y only", "b"), ("x two", "a")]
    rows = classification.build_triples(
        items,
        singleton_labels="skip",
        id_scope="text",
        id_format="{text} <{id}>",
        task="sentiment of a review",
    )
    assert [(r.query, r.positive, r.negatives) for r in rows] == [
        ("x one <0>", "x two <2>", ("y only <1>",)),
        ("x two <2>", "x one <0>", ("y only <1>",)),
    ]
    assert {r.task for r in rows} == {"sentiment of a review"}


def _untag(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.*) \[id (\d+)\]", text)
    assert match, text
    return match.group(1), int(match.group(2))


def test_invariants_on_a_labelled_list() -> None:
    label_of = dict(ITEMS)
    rows = classification.build_triples(ITEMS, seed=0, num_negatives=2)
    assert len(rows) == len(ITEMS)
    for triple_id, (row, (text, label)) in enumerate(zip(rows, ITEMS)):
        query, qid = _untag(row.query)
        positive, pid = _untag(row.positive)
        assert (query, qid, pid) == (text, triple_id, triple_id)
        assert positive != query and label_of[positive] == label
        assert len(row.negatives) == 2
        for negative in row.negatives:
            neg_text, nid = _untag(negative)
            assert nid == triple_id and label_of[neg_text] != label
        assert row.symmetric and row.task == "classification"
    # Unique ids: no formatted text repeats across positives, hence no false in-batch match.
    assert len({r.positive for r in rows}) == len(rows)


def test_deterministic_by_seed() -> None:
    a = classification.build_triples(ITEMS * 5, seed=7)
    assert a == classification.build_triples(ITEMS * 5, seed=7)
    assert a != classification.build_triples(ITEMS * 5, seed=8)


def test_negatives_cover_every_other_label() -> None:
    rows = classification.build_triples(ITEMS * 20, seed=1)
    negatives_for_pos = {
        _untag(r.negatives[0])[0] for r, (_, label) in zip(rows, ITEMS * 20) if label == "pos"
    }
    assert negatives_for_pos == {t for t, label in ITEMS if label != "pos"}


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"label 'b' has a single text \(item 1\)"):
        classification.build_triples([("x", "a"), ("y", "b"), ("z", "a")])
    with pytest.raises(ValueError, match="at least two labels"):
        classification.build_triples([("x", "a"), ("z", "a")])
    with pytest.raises(ValueError, match="item 1: text must be a non-empty string"):
        classification.build_triples([("x", "a"), ("  ", "b")])
    with pytest.raises(ValueError, match="id_scope"):
        classification.build_triples(ITEMS, id_scope="row")
    with pytest.raises(ValueError, match="id_format"):
        classification.build_triples(ITEMS, id_format="{text}")


def test_triples_from_a_labelled_file(tmp_path) -> None:
    path = tmp_path / "reviews.tsv"
    path.write_text("sentence\tlabel\nx one\ta\ny only\tb\nx two\ta\n")
    items = readers.read_labelled_texts(str(path))
    rows = classification.build_triples(items, singleton_labels="skip", source="reviews.tsv")
    assert [(r.query, r.positive, r.negatives, r.source) for r in rows] == [
        ("x one [id 0]", "x two [id 0]", ("y only [id 0]",), "reviews.tsv"),
        ("x two [id 1]", "x one [id 1]", ("y only [id 1]",), "reviews.tsv"),
    ]


def test_banking77_train_triples(eval_data_dir: str) -> None:
    path = os.path.join(eval_data_dir, "banking77", "train.csv")
    items = readers.read_labelled_texts(path, text_field="text", label_field="category")
    rows = classification.build_triples(items, seed=0)
    assert len(rows) == 10003
    assert rows[0].query == "I am still waiting on my card? [id 0]"
    assert rows[9999].query.endswith(" [id 9999]")


def test_classification_source_yields_the_triples() -> None:
    items = [("x one", "a"), ("y only", "b"), ("x two", "a")]
    source = classification.classification_source(lambda: items, singleton_labels="skip")
    got = [
        (
            r[examples.QUERY].decode(),
            r[examples.POSITIVE].decode(),
            [n.decode() for n in r[examples.NEGATIVES]],
            bool(r[examples.SYMMETRIC]),
        )
        for r in source.get_dataset("train").as_numpy_iterator()
    ]
    assert got == [
        ("x one [id 0]", "x two [id 0]", ["y only [id 0]"], True),
        ("x two [id 1]", "x one [id 1]", ["y only [id 1]"], True),
    ]
