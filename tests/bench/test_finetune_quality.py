"""``bench/finetune_quality.py``'s held-out split for ``--select_on_dev``: by query,
disjoint, seeded, and built from train qrels only."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import finetune_quality as F

from gecko_jax.readers import read_beir_split

DATA = F.C.DEFAULT_DATA


def qrels(path: str) -> dict[str, set[str]]:
    with open(path, encoding="utf-8") as f:
        _, *lines = f.read().splitlines()
    by_query: dict[str, set[str]] = {}
    for line in lines:
        query, doc, _ = line.split("\t")
        by_query.setdefault(query, set()).add(doc)
    return by_query


def test_dev_split_holds_out_a_fifth_of_the_train_queries(tmp_path):
    root = F.dev_split(DATA, str(tmp_path / "data"), fraction=0.2, seed=0)
    assert root == str(tmp_path / "data")
    target = tmp_path / "data" / "scifact"
    train = qrels(os.path.join(DATA, "scifact", "qrels", "train.tsv"))
    fit = qrels(str(target / "qrels" / "train.tsv"))
    held_out = qrels(str(target / "qrels" / "test.tsv"))
    assert not set(fit) & set(held_out)
    assert {**fit, **held_out} == train  # every train pair, nothing from the test split
    assert len(held_out) == round(0.2 * len(train))
    # The copy reads as a BEIR directory, its held-out part as the "test" split.
    split = read_beir_split(str(target), "test")
    assert set(split.query_ids) == set(held_out)
    assert len(split.doc_ids) > 5000


def test_dev_split_is_seeded_and_reused(tmp_path):
    first, again, other = (tmp_path / name / "scifact" for name in "abc")
    F.dev_split(DATA, str(tmp_path / "a"), 0.2, seed=0)
    F.dev_split(DATA, str(tmp_path / "b"), 0.2, seed=0)
    F.dev_split(DATA, str(tmp_path / "c"), 0.2, seed=1)
    held_out = (first / "qrels" / "test.tsv").read_text()
    assert (again / "qrels" / "test.tsv").read_text() == held_out
    assert (other / "qrels" / "test.tsv").read_text() != held_out
    # A finished split is not rewritten (a rerun resumes on the same queries).
    (first / "qrels" / "test.tsv").write_text("changed")
    F.dev_split(DATA, str(tmp_path / "a"), 0.2, seed=1)
    assert (first / "qrels" / "test.tsv").read_text() == "changed"
