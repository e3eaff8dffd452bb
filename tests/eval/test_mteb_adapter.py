"""The mteb adapter, run through mteb's own tasks and evaluators on local data (no hub)."""

from __future__ import annotations

import json
import os
import types

import mteb
import numpy as np
import pytest
from datasets import Dataset, DatasetDict
from safetensors import safe_open
from scipy.stats import spearmanr

from gecko_jax.encoder import Encoder
from gecko_jax.eval import mteb_adapter
from gecko_jax.eval.mteb_adapter import (
    DatasetUnavailableError,
    GeckoMtebModel,
    evaluate_task,
    run_mteb,
    weights_fingerprint,
)
from gecko_jax.eval.mteb_tasks import TaskStrings, UnknownNameError, is_symmetric, resolve_tasks
from gecko_jax.readers import read_sts_benchmark

# README: all-MiniLM-L6-v2 through sentence-transformers on stsb/sts-test.csv.
STSB_TEST_SPEARMAN = 82.03
MINILM = "all-MiniLM-L6-v2"


class RecordingEncoder(Encoder):
    """The real encoder, recording the arguments of every ``encode`` call."""

    def __init__(self, base: Encoder) -> None:
        super().__init__(
            base.model, base.params, base.vocabulary, base.max_length, base.input_format
        )
        self.calls: list[dict] = []

    def encode(
        self,
        texts,
        task=None,
        kind="query",
        dim=None,
        batch_size=32,
        titles=None,
        show_progress=None,
    ):
        self.calls.append(
            {
                "texts": list(texts),
                "task": task,
                "kind": kind,
                "dim": dim,
                "titles": None if titles is None else list(titles),
            }
        )
        return super().encode(
            texts,
            task=task,
            kind=kind,
            dim=dim,
            batch_size=batch_size,
            titles=titles,
            show_progress=show_progress,
        )


@pytest.fixture(scope="module")
def encoder() -> RecordingEncoder:
    return RecordingEncoder(Encoder.load(MINILM))


@pytest.fixture
def recording(encoder: RecordingEncoder) -> RecordingEncoder:
    encoder.calls.clear()
    return encoder


@pytest.fixture(scope="module")
def sts_pairs(eval_data_dir: str) -> list:
    return read_sts_benchmark(os.path.join(eval_data_dir, "stsb", "sts-test.csv"))


def sts_task(pairs: list) -> mteb.AbsTask:
    """mteb's STSBenchmark task holding ``pairs`` as its test split (raw 0-5 scores, as on hub)."""
    task = mteb.get_task("STSBenchmark")
    task.dataset = DatasetDict(
        {
            "test": Dataset.from_dict(
                {
                    "sentence1": [p.sentence1 for p in pairs],
                    "sentence2": [p.sentence2 for p in pairs],
                    "score": [p.score for p in pairs],
                }
            )
        }
    )
    task.data_loaded = True
    return task


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def scifact_slice(eval_data_dir: str) -> dict:
    """6 SciFact test claims, their relevant abstracts and 10 others; one title blanked."""
    root = os.path.join(eval_data_dir, "scifact")
    relevant: dict[str, dict[str, int]] = {}
    with open(os.path.join(root, "qrels", "test.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, score = line.split()
            if qid in relevant or len(relevant) < 6:
                relevant.setdefault(qid, {})[did] = int(score)
    wanted = {d for docs in relevant.values() for d in docs}
    corpus, others = [], []
    for doc in read_jsonl(os.path.join(root, "corpus.jsonl")):
        if doc["_id"] in wanted:
            corpus.append(doc)
        elif len(others) < 10:
            others.append(doc)
    corpus = corpus + others
    corpus[3] = {**corpus[3], "title": ""}
    queries = [q for q in read_jsonl(os.path.join(root, "queries.jsonl")) if q["_id"] in relevant]
    return {"queries": queries, "corpus": corpus, "relevant": relevant}


def scifact_task(data: dict) -> mteb.AbsTask:
    task = mteb.get_task("SciFact")
    task.dataset = {
        "default": {
            "test": {
                "queries": Dataset.from_dict(
                    {
                        "id": [q["_id"] for q in data["queries"]],
                        "text": [q["text"] for q in data["queries"]],
                    }
                ),
                "corpus": Dataset.from_dict(
                    {
                        "id": [d["_id"] for d in data["corpus"]],
                        "title": [d["title"] for d in data["corpus"]],
                        "text": [d["text"] for d in data["corpus"]],
                    }
                ),
                "relevant_docs": data["relevant"],
                "top_ranked": None,
            }
        }
    }
    task.data_loaded = True
    return task


def saved_main_score(cache: mteb.ResultCache, task: mteb.AbsTask, model: GeckoMtebModel) -> float:
    path = cache.get_task_result_path(task.metadata.name, model.mteb_model_meta)
    with open(path, encoding="utf-8") as f:
        return json.load(f)["scores"]["test"][0]["main_score"]


def ndcg_at_10(
    queries: np.ndarray, docs: np.ndarray, query_ids: list, doc_ids: list, relevant: dict
) -> float:
    """Binary-relevance nDCG@10 over exact cosine search, worked out directly."""
    values = []
    for qid, row in zip(query_ids, queries @ docs.T):
        top = [doc_ids[i] for i in np.argsort(-row)[:10]]
        dcg = sum(1 / np.log2(rank + 2) for rank, did in enumerate(top) if did in relevant[qid])
        ideal = sum(1 / np.log2(rank + 2) for rank in range(min(len(relevant[qid]), 10)))
        values.append(dcg / ideal)
    return float(np.mean(values))


def test_stsbenchmark_matches_the_sentence_transformers_reference(recording, sts_pairs, tmp_path):
    task = sts_task(sts_pairs)
    model = GeckoMtebModel(recording, name="gecko_jax/all-MiniLM-L6-v2", task_prompts="none")
    cache = mteb.ResultCache(cache_path=str(tmp_path))

    evaluate_task(model, task, cache, batch_size=64)

    assert 100 * saved_main_score(cache, task, model) == pytest.approx(STSB_TEST_SPEARMAN, abs=0.2)
    assert [(c["task"], c["kind"], c["texts"]) for c in recording.calls] == [
        (None, "query", [p.sentence1 for p in sts_pairs]),
        (None, "query", [p.sentence2 for p in sts_pairs]),
    ]


def test_sts_texts_get_the_semantic_similarity_query_format(recording, sts_pairs, tmp_path):
    pairs = sts_pairs[:48]
    task = sts_task(pairs)
    model = GeckoMtebModel(recording)
    cache = mteb.ResultCache(cache_path=str(tmp_path))

    evaluate_task(model, task, cache)

    assert [(c["task"], c["kind"], c["titles"]) for c in recording.calls] == [
        ("semantic similarity", "query", None)
    ] * 2
    first = recording.calls[0]["texts"]
    direct = [
        Encoder.encode(recording, [p.sentence1 for p in pairs], task="semantic similarity"),
        Encoder.encode(recording, [p.sentence2 for p in pairs], task="semantic similarity"),
    ]
    expected = spearmanr((direct[0] * direct[1]).sum(1), [p.score for p in pairs])[0]
    assert first == [p.sentence1 for p in pairs]
    assert saved_main_score(cache, task, model) == pytest.approx(expected, abs=1e-6)


def test_scifact_queries_and_titled_documents_get_fact_checking_formats(
    recording, scifact_slice, tmp_path
):
    data = scifact_slice
    task = scifact_task(data)
    model = GeckoMtebModel(recording, dim=256)
    cache = mteb.ResultCache(cache_path=str(tmp_path))

    evaluate_task(model, task, cache)

    by_kind = {c["kind"]: c for c in recording.calls}
    assert sorted(by_kind) == ["document", "query"] and len(recording.calls) == 2
    assert {c["task"] for c in recording.calls} == {"fact checking"}
    assert by_kind["query"]["texts"] == [q["text"] for q in data["queries"]]
    assert by_kind["query"]["titles"] is None
    expected_docs = [(d["text"], d["title"] or None) for d in data["corpus"]]
    assert sorted(
        zip(by_kind["document"]["texts"], by_kind["document"]["titles"]), key=str
    ) == sorted(expected_docs, key=str)
    assert (data["corpus"][3]["text"], None) in expected_docs

    queries = Encoder.encode(
        recording, [q["text"] for q in data["queries"]], task="fact checking", dim=256
    )
    docs = Encoder.encode(
        recording,
        [d["text"] for d in data["corpus"]],
        task="fact checking",
        kind="document",
        titles=[d["title"] or None for d in data["corpus"]],
        dim=256,
    )
    expected = ndcg_at_10(
        queries,
        docs,
        [q["_id"] for q in data["queries"]],
        [d["_id"] for d in data["corpus"]],
        data["relevant"],
    )
    assert saved_main_score(cache, task, model) == pytest.approx(expected, abs=1e-4)


def test_documents_without_prompts_are_mtebs_joined_title_and_text(recording):
    metadata = mteb.get_task("SciFact").metadata
    batch = {
        "id": ["a", "b"],
        "text": ["T1 body one", "body two"],
        "body": ["body one", "body two"],
        "title": ["T1", ""],
    }
    model = GeckoMtebModel(recording, task_prompts="none")

    model.encode(
        [batch],
        task_metadata=metadata,
        hf_split="test",
        hf_subset="default",
        prompt_type=mteb.types.PromptType.document,
    )

    assert recording.calls == [
        {
            "texts": ["T1 body one", "body two"],
            "task": None,
            "kind": "document",
            "dim": None,
            "titles": None,
        }
    ]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Banking77Classification", "classification"),
        ("STSBenchmark", "semantic similarity"),
        ("SprintDuplicateQuestions", "semantic similarity"),
        ("TwentyNewsgroupsClustering", "search result"),
        ("SummEval", "search result"),
        ("NQ", "question answering"),
        ("MSMARCO", "question answering"),
        ("FiQA2018", "question answering"),
        ("SCIDOCS", "question answering"),
        ("SciFact", "fact checking"),
        ("NFCorpus", "fact checking"),
        ("ArguAna", "semantic similarity"),
        ("FEVER", "search result"),
        ("ClimateFEVER", "search result"),
        ("HotpotQA", "search result"),
        ("TRECCOVID", "search result"),
        ("SciFact-NL", "fact checking"),
        ("HotpotQAHardNegatives", "search result"),
        ("FiQA2018-Fa.v2", "question answering"),
        ("Touche2020", "search result"),
        ("AskUbuntuDupQuestions", "search result"),
    ],
)
def test_task_strings_follow_the_paper_table(name, expected):
    assert TaskStrings().for_task(mteb.get_task(name).metadata) == expected


def test_task_strings_overrides_by_name_then_type():
    strings = TaskStrings(overrides={"SciFact": "claim", "Clustering": "topic"}, default="other")
    assert strings.lookup("SciFact", "Retrieval") == "claim"
    assert strings.lookup("TwentyNewsgroupsClustering", "Clustering") == "topic"
    assert strings.lookup("NQ", "Retrieval") == "question answering"
    assert strings.lookup("Foo", "NewType") == "other"


@pytest.mark.parametrize(
    "name, symmetric",
    [
        ("STSBenchmark", True),
        ("SprintDuplicateQuestions", True),
        ("Banking77Classification", True),
        ("TwentyNewsgroupsClustering", True),
        ("SciFact", False),
        ("AskUbuntuDupQuestions", False),
    ],
)
def test_symmetric_task_types(name, symmetric):
    assert is_symmetric(mteb.get_task(name).metadata) is symmetric


def test_symmetric_tasks_use_the_query_format_even_for_document_inputs(recording):
    metadata = mteb.get_task("TwentyNewsgroupsClustering").metadata
    model = GeckoMtebModel(recording)
    model.encode(
        [{"text": ["a news post"]}],
        task_metadata=metadata,
        hf_split="test",
        hf_subset="default",
        prompt_type=mteb.types.PromptType.document,
    )
    assert [(c["task"], c["kind"]) for c in recording.calls] == [("search result", "query")]


@pytest.mark.parametrize(
    "prompt_type, kind, titles",
    [
        (mteb.types.PromptType.query, "query", None),
        (mteb.types.PromptType.document, "document", ["Title A", None, "Title C"]),
    ],
)
def test_output_dim_equals_encoder_matryoshka_prefix(recording, prompt_type, kind, titles):
    metadata = mteb.get_task("SciFact").metadata
    texts = [
        "Aspirin lowers the risk of stroke.",
        "Vitamin D has no effect.",
        "Smoking causes cancer.",
    ]
    batches = [
        {"text": texts[:2], "body": texts[:2], "title": ["Title A", ""]},
        {"text": texts[2:], "body": texts[2:], "title": ["Title C"]},
    ]
    model = GeckoMtebModel(recording, dim=96, batch_size=2)

    got = model.encode(
        batches,
        task_metadata=metadata,
        hf_split="test",
        hf_subset="default",
        prompt_type=prompt_type,
    )

    expected = Encoder.encode(
        recording, texts, task="fact checking", kind=kind, titles=titles, dim=96
    )
    assert got.shape == (3, 96) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_dim_larger_than_the_model_is_an_error(encoder):
    with pytest.raises(ValueError, match=r"dim=385 is outside 1\.\.384"):
        GeckoMtebModel(encoder, dim=385)


def test_unknown_prompt_style_is_an_error(encoder):
    with pytest.raises(ValueError, match="task_prompts must be one of"):
        GeckoMtebModel(encoder, task_prompts="instructor")


def test_unknown_task_name_lists_close_matches(tmp_path):
    with pytest.raises(
        UnknownNameError, match=r"unknown MTEB task 'STSBenchmarkk'; close matches: STSBenchmark"
    ):
        run_mteb(MINILM, tasks=["STSBenchmarkk"], output_dir=str(tmp_path))
    with pytest.raises(
        UnknownNameError, match=r"unknown MTEB benchmark 'MTEB\(eng, v3\)'; close matches: "
    ):
        resolve_tasks(benchmark="MTEB(eng, v3)")
    with pytest.raises(ValueError, match="give MTEB task names"):
        resolve_tasks(None, None)


def test_benchmark_and_tasks_resolve_without_duplicates():
    benchmark = mteb.get_benchmark("MTEB(eng, v2)")
    names = [t.metadata.name for t in resolve_tasks(["STSBenchmark", "SciFact"], "MTEB(eng, v2)")]
    assert names[: len(benchmark.tasks)] == [t.metadata.name for t in benchmark.tasks]
    assert len(names) == len(set(names)) and {"STSBenchmark", "SciFact"} <= set(names)


def test_model_meta_describes_the_model(encoder, minilm_dir):
    with safe_open(os.path.join(minilm_dir, "model.safetensors"), framework="numpy") as f:
        # Mean pooling leaves BERT's pooler unused (not loaded); position_ids is a buffer.
        names = f.keys()  # safe_open is not iterable
        backbone = sum(
            int(np.prod(f.get_slice(k).get_shape()))
            for k in names
            if "pooler" not in k and not k.endswith("position_ids")
        )

    meta = GeckoMtebModel(encoder, name="gecko_jax/minilm", dim=128).mteb_model_meta

    assert meta.name == "gecko_jax/minilm" and meta.embed_dim == 128 and meta.max_tokens == 256
    assert meta.n_parameters == backbone
    assert meta.memory_usage_mb == pytest.approx(backbone * 4 / 2**20, abs=0.01)
    assert meta.revision == weights_fingerprint(encoder.params) and len(meta.revision) == 12
    assert meta.framework == ["JAX"] and meta.similarity_fn_name == "cosine"
    assert (
        meta.languages == ["eng-Latn"]
        and meta.open_weights is True
        and meta.use_instructions is True
    )
    assert meta.modalities == ["text"] and meta.model_type == ["dense"]
    assert GeckoMtebModel(encoder, task_prompts="none").mteb_model_meta.use_instructions is False
    override = GeckoMtebModel(encoder, meta_overrides={"license": "apache-2.0"}).mteb_model_meta
    assert override.license == "apache-2.0" and override.embed_dim == 384
    assert isinstance(GeckoMtebModel(encoder), mteb.EncoderProtocol)


def test_from_checkpoint_and_model_meta_loader_build_the_same_model(minilm_dir):
    model = GeckoMtebModel.from_checkpoint(minilm_dir, dim=64, batch_size=16)
    meta = model.mteb_model_meta
    assert meta.name == f"gecko_jax/{os.path.basename(minilm_dir)}"
    assert meta.release_date is not None and meta.embed_dim == 64 and model.batch_size == 16

    reloaded = meta.load_model()

    assert isinstance(reloaded, GeckoMtebModel) and reloaded.dim == 64
    assert (
        reloaded.mteb_model_meta.name == meta.name
        and reloaded.mteb_model_meta.revision == meta.revision
    )
    strings = TaskStrings(overrides={"SciFact": "claim"})
    custom = GeckoMtebModel.from_checkpoint(
        minilm_dir, task_strings=strings
    ).mteb_model_meta.load_model()
    assert custom.task_strings == strings


def test_prompt_styles_and_task_tables_get_separate_result_files(encoder, tmp_path):
    cache = mteb.ResultCache(cache_path=str(tmp_path))
    models = [
        GeckoMtebModel(encoder),
        GeckoMtebModel(encoder, task_prompts="none"),
        GeckoMtebModel(encoder, task_strings=TaskStrings(overrides={"STS": "similar"})),
    ]
    paths = {cache.get_task_result_path("STSBenchmark", m.mteb_model_meta) for m in models}
    assert len(paths) == 3
    assert models[0].mteb_model_meta.experiment_kwargs is None
    assert models[1].mteb_model_meta.experiment_kwargs == {"task_prompts": "none"}


def test_run_mteb_writes_one_resumable_result_per_dim(recording, sts_pairs, tmp_path, monkeypatch):
    task = sts_task(sts_pairs[:24])
    monkeypatch.setattr(mteb_adapter, "resolve_tasks", lambda tasks, benchmark: [task])
    monkeypatch.setattr(mteb_adapter, "Encoder", types.SimpleNamespace(load=lambda name: recording))
    run = {
        "checkpoint": MINILM,
        "tasks": ["STSBenchmark"],
        "output_dir": str(tmp_path),
        "dims": [384, 32],
    }

    paths = run_mteb(**run)

    assert [os.path.relpath(p, tmp_path).split(os.sep)[:2] for p in paths] == [
        ["results", "gecko_jax__all-MiniLM-L6-v2-dim384"],
        ["results", "gecko_jax__all-MiniLM-L6-v2-dim32"],
    ]
    assert all(p.endswith("STSBenchmark.json") and os.path.isfile(p) for p in paths)
    assert [c["dim"] for c in recording.calls] == [384, 384, 32, 32]

    recording.calls.clear()
    assert run_mteb(**run) == paths and recording.calls == []
    assert len(run_mteb(**run, overwrite=True)) == 2 and len(recording.calls) == 4


def test_missing_dataset_offline_is_a_clear_error(recording, tmp_path, monkeypatch):
    monkeypatch.setattr(mteb_adapter, "Encoder", types.SimpleNamespace(load=lambda name: recording))
    with pytest.raises(
        DatasetUnavailableError,
        match=r"MTEB task STSBenchmark: dataset 'mteb/stsbenchmark-sts' .*HF_HUB_OFFLINE is set",
    ):
        run_mteb(MINILM, tasks=["STSBenchmark"], output_dir=str(tmp_path))
    assert recording.calls == []
