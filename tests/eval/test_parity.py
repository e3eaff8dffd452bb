"""Parity on the real sets: our evaluators with the Flax encoder vs the reference evaluators.

all-MiniLM-L6-v2 (packaged) through ``gecko_jax.Encoder`` and our local evaluators, against
the same model through sentence-transformers and the reference implementations on the same
files: sentence-transformers' ``EmbeddingSimilarityEvaluator`` (STS-B test) and
``InformationRetrievalEvaluator`` (SciFact test queries, ``title + " " + text``), and mteb's
own ``AbsTaskClassification`` protocol (Banking77, AmazonCounterfactual en: undersampling,
experiments, logistic regression). Every score must agree within 0.2 points. Both
columns are printed (run with ``-s`` to see them). Encodings are shared through module
fixtures.

SciFact is ranked over a sixth of its corpus (every document a test query names, plus
every tenth other one) to keep the suite short: the comparison is the same, each side
ranks the same documents. The whole-corpus figure (README's 64.51) is measured against
sentence-transformers by ``bench/eval_speed.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from datasets import Dataset, DatasetDict
from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
from mteb.tasks.classification.eng.banking77_classification import Banking77Classification
from mteb.tasks.classification.multilingual.amazon_counterfactual_classification import (
    AmazonCounterfactualClassification,
)
from mteb.timing import TimingStack
from sentence_transformers import SentenceTransformer
from sentence_transformers.evaluation import (
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
)

from gecko_jax import Encoder
from gecko_jax.eval import build_evaluator

TOLERANCE = 0.2  # points
README_STSB_TEST = 82.03  # tests/fixtures/eval_data/README.md: sentence-transformers
SCIFACT_DISTRACTOR_STRIDE = 10  # keep every 10th document no test query names


@pytest.fixture(scope="module", autouse=True)
def _module_timer():  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    yield
    print(f"\nparity module: {time.perf_counter() - start:.1f} s")


def _check(what: str, ours: float, theirs: float) -> None:
    print(f"\n{what:<40} ours {ours:8.3f}   reference {theirs:8.3f}   diff {ours - theirs:+.3f}")
    assert abs(ours - theirs) <= TOLERANCE, f"{what}: ours {ours:.3f} vs reference {theirs:.3f}"


def test_stsb_test_spearman(
    encoder: Encoder, st_model: SentenceTransformer, eval_data_dir: str
) -> None:
    evaluator = build_evaluator("stsb", eval_data_dir)
    ours = evaluator.evaluate(encoder)[384]
    reference = EmbeddingSimilarityEvaluator(
        [p.sentence1 for p in evaluator.pairs],
        [p.sentence2 for p in evaluator.pairs],
        [p.score / 5 for p in evaluator.pairs],
        batch_size=32,
        main_similarity="cosine",
        name="stsb",
        write_csv=False,
    )(st_model)
    _check("STS-B test Spearman", ours["spearman"], 100 * reference["stsb_spearman_cosine"])
    _check("STS-B test Pearson", ours["pearson"], 100 * reference["stsb_pearson_cosine"])
    _check("STS-B test Spearman vs README", ours["spearman"], README_STSB_TEST)


@pytest.fixture(scope="module")
def scifact_subset_dir(eval_data_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An evaluation-data folder whose SciFact corpus is the test-relevant documents plus
    every SCIFACT_DISTRACTOR_STRIDE-th other one (queries and test qrels unchanged)."""
    source = os.path.join(eval_data_dir, "scifact")
    root = tmp_path_factory.mktemp("eval_data")
    target = root / "scifact"
    shutil.copytree(os.path.join(source, "qrels"), target / "qrels")
    shutil.copy(os.path.join(source, "queries.jsonl"), target / "queries.jsonl")
    with open(os.path.join(source, "qrels", "test.tsv"), encoding="utf-8") as f:
        relevant = {line.split("\t")[1] for line in list(f)[1:]}
    kept = 0
    with open(os.path.join(source, "corpus.jsonl"), encoding="utf-8") as f:
        with open(target / "corpus.jsonl", "w", encoding="utf-8") as out:
            for i, line in enumerate(f):
                if json.loads(line)["_id"] in relevant or i % SCIFACT_DISTRACTOR_STRIDE == 0:
                    out.write(line)
                    kept += 1
    assert len(relevant) > 250 and kept > 700, (len(relevant), kept)
    return str(root)


def test_scifact_retrieval(
    encoder: Encoder, st_model: SentenceTransformer, scifact_subset_dir: str
) -> None:
    evaluator = build_evaluator("scifact", scifact_subset_dir)
    ours = evaluator.evaluate(encoder)[384]
    data = evaluator.data
    corpus = {
        d: f"{title} {text}".strip()
        for d, title, text in zip(data.doc_ids, data.doc_titles, data.doc_texts)
    }
    reference = InformationRetrievalEvaluator(
        queries=dict(zip(data.query_ids, data.query_texts)),
        corpus=corpus,
        relevant_docs={q: {d for d, r in rel.items() if r > 0} for q, rel in data.qrels.items()},
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[100],
        map_at_k=[10],
        batch_size=32,
        name="scifact",
        write_csv=False,
    )(st_model)
    _check("SciFact nDCG@10", ours["ndcg_at_10"], 100 * reference["scifact_cosine_ndcg@10"])
    _check(
        "SciFact recall@100", ours["recall_at_100"], 100 * reference["scifact_cosine_recall@100"]
    )
    _check("SciFact MRR@10", ours["mrr_at_10"], 100 * reference["scifact_cosine_mrr@10"])
    # A tenth of the distractors: ranking is easier than over the whole corpus (64.51).
    assert ours["ndcg_at_10"] > 64.51, ours["ndcg_at_10"]


def _mteb_classification(task, st_model: SentenceTransformer, train, test) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Runs mteb's own classification protocol on our local rows, with its ST wrapper."""
    labels = {label: i for i, label in enumerate(sorted({label for _, label in train}))}

    def dataset(rows):  # type: ignore[no-untyped-def]
        return Dataset.from_dict(
            {"text": [t for t, _ in rows], "label": [labels[label] for _, label in rows]}
        )

    task.evaluator_model = task.evaluator_model.set_params(random_state=task.seed)
    scores = task._evaluate_subset(
        SentenceTransformerEncoderWrapper(st_model),
        DatasetDict({"train": dataset(train), "test": dataset(test)}),
        encode_kwargs={"batch_size": 32},
        hf_split="test",
        hf_subset="default",
        timer=TimingStack(),
    )
    return {key: 100 * scores[key] for key in ("accuracy", "f1")}


# Banking77 runs 3 of MTEB's 10 experiments on both sides (the first 3 of the same sequence
# of undersamplings): it embeds 1,713 instead of 4,616 train texts per side on 2 CPUs.
@pytest.mark.parametrize(
    "name, mteb_task, n_experiments",
    [
        ("banking77", Banking77Classification, 3),
        ("amazon_counterfactual_en", AmazonCounterfactualClassification, 10),
    ],
)
def test_classification_matches_mteb_protocol(
    name: str,
    mteb_task,
    n_experiments: int,  # type: ignore[no-untyped-def]
    encoder: Encoder,
    st_model: SentenceTransformer,
    eval_data_dir: str,
) -> None:
    task = mteb_task()
    default = build_evaluator(name, eval_data_dir)
    assert (default.samples_per_label, default.n_experiments, default.seed) == (
        task.samples_per_label,
        task.n_experiments,
        task.seed,
    )
    evaluator = build_evaluator(name, eval_data_dir, n_experiments=n_experiments)
    task.n_experiments = n_experiments
    ours = evaluator.evaluate(encoder)[384]
    reference = _mteb_classification(task, st_model, evaluator.train, evaluator.test)
    _check(f"{name} accuracy", ours["accuracy"], reference["accuracy"])
    _check(f"{name} F1 (macro)", ours["f1"], reference["f1"])
