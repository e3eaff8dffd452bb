"""Local readers: the real evaluation sets, small BEIR fixtures, the in-memory source."""

from __future__ import annotations

import json
import logging
import os

import pytest
import seqio
import tensorflow as tf

from gecko_jax import readers
from gecko_jax.data import examples, local_sets
from gecko_jax.data.examples import UnifiedExample


def _rows(ds: tf.data.Dataset) -> list[dict]:
    out = []
    for row in ds.as_numpy_iterator():
        out.append(
            {
                k: (
                    v.decode()
                    if isinstance(v, bytes)
                    else [x.decode() for x in v]
                    if k in (examples.NEGATIVES, examples.NEGATIVE_TITLES)
                    else bool(v)
                )
                for k, v in row.items()
            }
        )
    return out


# ------------------------------------------------------------------ STS Benchmark


def test_read_sts_train_first_pairs_and_count(eval_data_dir: str) -> None:
    rows = local_sets.read_sts(os.path.join(eval_data_dir, "stsb", "sts-train.csv"))
    # 1406 train pairs score >= 4, each in both directions.
    assert len(rows) == 2 * 1406
    assert rows[0] == UnifiedExample(
        task="sentence similarity",
        query="A plane is taking off.",
        positive="An air plane is taking off.",
        symmetric=True,
        source="sts-train.csv",
    )
    assert (rows[1].query, rows[1].positive) == (
        "An air plane is taking off.",
        "A plane is taking off.",
    )
    assert all(r.symmetric for r in rows)


def test_read_sts_threshold_and_one_direction(eval_data_dir: str) -> None:
    path = os.path.join(eval_data_dir, "stsb", "sts-dev.csv")
    rows = local_sets.read_sts(path, min_score=4.0, both_directions=False, task="sts", source="dev")
    assert len(rows) == 264
    assert {r.task for r in rows} == {"sts"} and {r.source for r in rows} == {"dev"}


def test_read_sts_missing_file_names_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        local_sets.read_sts(str(tmp_path / "nope.csv"))


# ------------------------------------------------------------------ labelled texts


def test_read_banking77_train(eval_data_dir: str) -> None:
    pairs = readers.read_labelled_texts(
        os.path.join(eval_data_dir, "banking77", "train.csv"),
        text_field="text",
        label_field="category",
    )
    assert len(pairs) == 10003
    assert pairs[0] == ("I am still waiting on my card?", "card_arrival")
    assert pairs[1] == (
        "What can I do if my card still hasn't arrived after 2 weeks?",
        "card_arrival",
    )
    assert len({label for _, label in pairs}) == 77
    with open(os.path.join(eval_data_dir, "banking77", "categories.json")) as f:
        assert {label for _, label in pairs} == set(json.load(f))


def test_read_amazon_counterfactual_tsv(eval_data_dir: str) -> None:
    path = os.path.join(eval_data_dir, "amazon_counterfactual", "EN_train.tsv")
    pairs = readers.read_labelled_texts(
        path, text_field="sentence", label_field="is_counterfactual"
    )
    assert len(pairs) == 4018
    assert pairs[0] == ("In person it looks as though it would have cost a lot more.", "1")
    assert pairs[1][1] == "0"
    assert {label for _, label in pairs} == {"0", "1"}
    assert sum(label == "1" for _, label in pairs) == 765
    # Default columns: the first is the text, the second the label.
    assert readers.read_labelled_texts(path) == pairs


def test_labelled_texts_missing_field_and_file(tmp_path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("text,category\nhello,a\n")
    with pytest.raises(ValueError, match=r"x\.csv:1: no label field 'label'"):
        readers.read_labelled_texts(str(path), label_field="label")
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        readers.read_labelled_texts(str(tmp_path / "missing.tsv"))


def test_labelled_texts_bad_rows_counted(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "x.tsv"
    path.write_text('sentence\tlabel\n"quoted, text"\t1\n\t0\nfine\t0\n')
    with caplog.at_level(logging.WARNING):
        pairs = readers.read_labelled_texts(str(path), max_bad_fraction=0.5)
    assert pairs == [("quoted, text", "1"), ("fine", "0")]
    assert f"{path}:3" in caplog.text and "empty text" in caplog.text
    with pytest.raises(readers.BadInputError):
        readers.read_labelled_texts(str(path))


# ------------------------------------------------------------------ BEIR


def test_read_beir_scifact_train(eval_data_dir: str) -> None:
    rows = local_sets.read_beir(
        os.path.join(eval_data_dir, "scifact"), "train", task="fact checking"
    )
    assert len(rows) == 919  # every train qrels row has score 1
    first = rows[0]  # qrels: query 0 -> document 31715818
    assert first.query == "0-dimensional biomaterials lack inductive properties."
    assert first.positive_title == (
        "New opportunities: the use of nanotechnologies to manipulate and track stem cells."
    )
    assert first.positive.startswith("Nanotechnologies are emerging platforms that could be useful")
    assert (first.task, first.source, first.symmetric) == (
        "fact checking",
        "beir/scifact/train",
        False,
    )


def _write_beir(root, qrels: str) -> str:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "T1", "text": "doc one"})
        + "\n"
        + json.dumps({"_id": "d2", "title": "", "text": "doc two"})
        + "\n"
    )
    (root / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "first?"})
        + "\n"
        + json.dumps({"_id": "q2", "text": "second?"})
        + "\n"
    )
    (root / "qrels" / "train.tsv").write_text(qrels)
    return str(root)


def test_read_beir_unknown_ids_are_counted(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    root = _write_beir(
        tmp_path / "toy",
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td9\t1\nq2\td2\t2\nq1\td2\t0\nq7\td1\t1\n",
    )
    with caplog.at_level(logging.WARNING):
        rows = local_sets.read_beir(root, max_bad_fraction=0.5)
    assert [(r.query, r.positive, r.positive_title) for r in rows] == [
        ("first?", "doc one", "T1"),
        ("second?", "doc two", ""),
    ]
    assert "unknown corpus id 'd9'" in caplog.text and "train.tsv:3" in caplog.text
    assert "unknown query id 'q7'" in caplog.text and "train.tsv:6" in caplog.text
    with pytest.raises(examples.BadInputError, match="2 of 4 rows are bad"):
        local_sets.read_beir(root)


def test_read_beir_errors_name_the_file(tmp_path) -> None:
    root = _write_beir(tmp_path / "toy", "qid\tcorpus-id\tscore\nq1\td1\t1\n")
    with pytest.raises(ValueError, match=r"train\.tsv:1: header .* lacks column 'query-id'"):
        local_sets.read_beir(root)
    with pytest.raises(FileNotFoundError, match=r"qrels[/\\]test\.tsv"):
        local_sets.read_beir(root, "test")
    os.remove(os.path.join(root, "corpus.jsonl"))
    with pytest.raises(FileNotFoundError, match="corpus.jsonl"):
        local_sets.read_beir(root)


# ------------------------------------------------------------------ in-memory source


ROWS = [
    UnifiedExample(task="t", query="q0", positive="p0", positive_title="T0"),
    UnifiedExample(
        task="t",
        query="q1",
        positive="p1",
        negatives=("n1a", "n1b"),
        negative_titles=("A", "B"),
        symmetric=True,
        source="s",
    ),
    UnifiedExample(task="t", query="q2", positive="p2", negatives=("n2",)),
]


def test_examples_dataset_matches_the_signature() -> None:
    ds = local_sets.examples_dataset(ROWS)
    for name, spec in examples.OUTPUT_SIGNATURE.items():
        assert ds.element_spec[name].dtype == spec.dtype
        assert ds.element_spec[name].shape.as_list() == spec.shape.as_list(), name
    assert set(ds.element_spec) == set(examples.OUTPUT_SIGNATURE)
    got = _rows(ds)
    assert got[0][examples.NEGATIVES] == [] and got[0][examples.POSITIVE_TITLE] == "T0"
    assert got[1][examples.NEGATIVES] == ["n1a", "n1b"] and got[1][examples.NEGATIVE_TITLES] == [
        "A",
        "B",
    ]
    assert got[1][examples.SYMMETRIC] is True and got[1][examples.SOURCE] == "s"
    assert got[2][examples.NEGATIVES] == ["n2"] and got[2][examples.NEGATIVE_TITLES] == [""]
    assert _rows(local_sets.examples_dataset([])) == []


def test_examples_source_is_lazy_sharded_and_checkpointable(tmp_path) -> None:
    calls = []

    def load() -> list[UnifiedExample]:
        calls.append(1)
        return ROWS * 3

    source = local_sets.examples_source({"train": load})
    assert calls == [] and list(source.splits) == ["train"]
    ds = source.get_dataset("train", shard_info=seqio.ShardInfo(1, 2))
    assert [r[examples.QUERY] for r in _rows(ds)] == ["q1", "q0", "q2", "q1"]
    source.get_dataset("train")
    assert calls == [1]  # loaded once
    with pytest.raises(ValueError, match="unknown split 'test'"):
        source.get_dataset("test")

    iterator = iter(source.get_dataset("train"))
    next(iterator)
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    path = checkpoint.write(str(tmp_path / "ckpt"))
    after = [next(iterator)[examples.QUERY].numpy() for _ in range(3)]
    checkpoint.read(path).assert_consumed()
    assert (
        [next(iterator)[examples.QUERY].numpy() for _ in range(3)] == after == [b"q1", b"q2", b"q0"]
    )
