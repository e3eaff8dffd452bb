"""Retrieval evaluator: metrics on a toy BEIR set, Gecko formats, search depth, bad input."""

import logging
import math
import os
import re

import pytest

from gecko_jax.eval.retrieval import RetrievalEvaluator
from gecko_jax.readers import read_beir_split
from tests.eval import toy_data
from tests.eval.fakes import TableEncoder

IDEAL_2 = 1 + 1 / math.log2(3)  # ideal DCG of a query with 2 relevant documents


@pytest.fixture()
def beir_dir(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return toy_data.write_beir(str(tmp_path))


def test_reads_whole_corpus_and_skips_unknown_qrels(
    beir_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        data = read_beir_split(beir_dir, "test")
    assert data.doc_ids == ["d1", "d2", "d3", "d4"]
    assert data.query_ids == ["q1", "q2"] and data.query_texts == ["first", "second"]
    assert data.qrels == {"q1": {"d2": 1.0}, "q2": {"d4": 1.0, "d3": 1.0}}
    assert data.skipped_qrels == 2
    message = caplog.text
    assert "skipped 2 of 5 qrels rows naming unknown ids" in message
    assert (
        "line 5: unknown query id 'qX'" in message and "line 6: unknown corpus id 'd9'" in message
    )


def test_metrics_on_toy_set(beir_dir: str) -> None:
    encoder = TableEncoder(toy_data.VECTORS)
    scores = RetrievalEvaluator(read_beir_split(beir_dir), name="toy").evaluate(
        encoder, dims=[3, 1]
    )
    # Full dim: q1 finds d2 at rank 2; q2 finds d4 at rank 1 and d3 at rank 4.
    assert scores[3] == pytest.approx(
        {
            "ndcg_at_10": 100 * (1 / math.log2(3) + (1 + 1 / math.log2(5)) / IDEAL_2) / 2,
            "recall_at_100": 100.0,
            "mrr_at_10": 100 * (0.5 + 1.0) / 2,
            "map_at_10": 100 * (0.5 + (1 + 2 / 4) / 2) / 2,
        },
        abs=1e-9,
    )
    # Dim 1: q2's vector truncates to zero, every document ties at 0: d3 rank 3, d4 rank 4.
    assert scores[1] == pytest.approx(
        {
            "ndcg_at_10": 100
            * (1 / math.log2(3) + (1 / math.log2(4) + 1 / math.log2(5)) / IDEAL_2)
            / 2,
            "recall_at_100": 100.0,
            "mrr_at_10": 100 * (0.5 + 1 / 3) / 2,
            "map_at_10": 100 * (0.5 + (1 / 3 + 2 / 4) / 2) / 2,
        },
        abs=1e-9,
    )
    # One encoding pass for queries, one for documents, whatever the number of dims.
    assert [(c["kind"], len(c["texts"])) for c in encoder.calls] == [("query", 2), ("document", 4)]


def test_gecko_task_uses_encoder_templates(beir_dir: str) -> None:
    task = "fact checking"
    vectors = {}
    for (_, title, text), key in zip(toy_data.CORPUS, ["T1 x1", "T2 x2", "T3 x3", "T4 x4"]):
        vectors[f"title: {title} | text: {text}"] = toy_data.VECTORS[key]
    for _, text in toy_data.QUERIES:
        vectors[f"task: {task} | query: {text}"] = toy_data.VECTORS[text]
    encoder = TableEncoder(vectors)
    scores = RetrievalEvaluator(read_beir_split(beir_dir), task=task).evaluate(encoder)
    assert scores[3]["mrr_at_10"] == pytest.approx(75.0, abs=1e-9)
    assert encoder.calls[1]["texts"][0] == "title: T1 | text: x1"


def test_corpus_larger_than_the_depth_and_smaller_than_k(beir_dir: str) -> None:
    # Depth 100 > 4 documents: every document is ranked, as with a depth that fits.
    data = read_beir_split(beir_dir)
    encoder = TableEncoder(toy_data.VECTORS)
    deep = RetrievalEvaluator(data, cutoffs={"ndcg": [10], "recall": [100]})
    shallow = RetrievalEvaluator(data, cutoffs={"ndcg": [2]})
    assert deep.evaluate(encoder)[3]["recall_at_100"] == pytest.approx(100.0)
    assert shallow.evaluate(encoder)[3]["ndcg_at_2"] < 100.0


def test_missing_paths_are_named(tmp_path, beir_dir: str) -> None:  # type: ignore[no-untyped-def]
    missing = os.path.join(str(tmp_path), "nope")
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"BEIR dataset directory not found: {missing}")
    ):
        read_beir_split(missing)
    with pytest.raises(FileNotFoundError, match="BEIR qrels file not found: .*qrels/dev.tsv"):
        read_beir_split(beir_dir, "dev")
    os.remove(os.path.join(beir_dir, "corpus.jsonl"))
    with pytest.raises(FileNotFoundError, match="BEIR file not found: .*corpus.jsonl"):
        read_beir_split(beir_dir)
