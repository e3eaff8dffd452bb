"""Mining hard negatives for labelled pairs: a SciFact train slice, MiniLM retrieval, the
loopback LLM; the false-negative filter, resuming, the seqio `fret` task, bad input, the CLI."""

import collections
import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from gecko_jax.cli import fret as cli
from gecko_jax.fret import labelled
from gecko_jax.fret.labelled import MiningConfig, mine_labelled
from gecko_jax.fret.shards import ShardStateError

from .pipeline_helpers import read_rows

QUERIES, OTHER_DOCS, WORDS, SHARD_SIZE, TOP_N = 24, 40, 40, 8, 8
MINILM = "all-MiniLM-L6-v2"


def _write_beir(path, corpus, queries, qrels, split="train"):
    os.makedirs(path / "qrels", exist_ok=True)
    for name, records in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        with open(path / name, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    with open(path / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    return str(path)


@pytest.fixture(scope="module")
def scifact(eval_data_dir):
    """The first QUERIES train queries of SciFact, their qrels, their positives and
    OTHER_DOCS other abstracts (cut to WORDS words), plus an exact copy of the first
    query's positive under another id."""
    source = os.path.join(eval_data_dir, "scifact")
    with open(os.path.join(source, "qrels", "train.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    query_ids = list(dict.fromkeys(q for q, _, _ in rows))[:QUERIES]
    qrels = [(q, d, int(s)) for q, d, s in rows if q in query_ids]
    positives = {d for _, d, _ in qrels}
    with open(os.path.join(source, "corpus.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    others = [r for r in records if r["_id"] not in positives][:OTHER_DOCS]
    corpus = [
        {**r, "text": " ".join(r["text"].split()[:WORDS])} for r in records if r["_id"] in positives
    ] + [{**r, "text": " ".join(r["text"].split()[:WORDS])} for r in others]
    first_positive = next(r for r in corpus if r["_id"] == qrels[0][1])
    corpus.append({**first_positive, "_id": "duplicate"})
    with open(os.path.join(source, "queries.jsonl"), encoding="utf-8") as f:
        queries = [r for r in map(json.loads, f) if r["_id"] in query_ids]
    return {"corpus": corpus, "queries": queries, "qrels": qrels}


@pytest.fixture(scope="module")
def data_dir(scifact, tmp_path_factory):
    return _write_beir(tmp_path_factory.mktemp("scifact_slice"), **scifact)


class CountingEncoder:
    """The real encoder, counting the texts it is asked to embed per kind."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []
        self.texts = []

    @property
    def embedding_dim(self):
        return self.inner.embedding_dim

    def encode(self, texts, *args, **kwargs):
        self.calls.append((kwargs.get("kind", "query"), len(texts)))
        self.texts.append(list(texts))
        return self.inner.encode(texts, *args, **kwargs)


def _config(**overrides):
    settings = {"top_n": TOP_N, "negative_ranks": (1, TOP_N), "shard_size": SHARD_SIZE}
    return MiningConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def reference(data_dir, encoder, tmp_path_factory):
    """One run with the defaults but a smaller top N: output dir, summary, rows, calls."""
    output_dir = str(tmp_path_factory.mktemp("mined"))
    counting = CountingEncoder(encoder)
    summary = mine_labelled(
        data_dir, output_dir, MINILM, config=_config(), progress=False, encoder=counting
    )
    return output_dir, summary, read_rows(output_dir), counting.calls, counting.texts


def _reuse_embeddings(reference_dir, output_dir):
    """Copies the corpus embeddings (a rerun over the same corpus reads them the same way)."""
    os.makedirs(output_dir, exist_ok=True)
    for name in ("passage_embeddings.npy", "passage_embeddings.npy.json"):
        shutil.copy(os.path.join(reference_dir, name), os.path.join(output_dir, name))


def _mine(reference, output_dir, encoder, data_dir, **overrides):
    _reuse_embeddings(reference[0], output_dir)
    counting = CountingEncoder(encoder)
    llm = overrides.pop("llm", None)
    config = _config(**overrides)
    summary = mine_labelled(
        data_dir, str(output_dir), MINILM, config=config, llm=llm, progress=False, encoder=counting
    )
    assert ("document", len(_documents(data_dir))) not in counting.calls  # embeddings reused
    return summary, read_rows(output_dir)


def _documents(data_dir):
    with open(os.path.join(data_dir, "corpus.jsonl"), encoding="utf-8") as f:
        return {r["_id"]: r for r in map(json.loads, f)}


def _labels(scifact):
    labels = collections.defaultdict(list)
    for q, d, _ in scifact["qrels"]:
        labels[q].append(d)
    return labels


def test_rows_keep_the_labels_and_never_use_a_positive_as_negative(reference, scifact, data_dir):
    output_dir, summary, rows, calls, _ = reference
    labels, documents = _labels(scifact), _documents(data_dir)
    queries = {q["_id"]: q["text"] for q in scifact["queries"]}
    dropped = summary["dropped"]
    assert summary["pairs"] == len(scifact["qrels"]) == sum(map(len, labels.values()))
    assert summary["queries"] == QUERIES
    assert summary["shards"] == {"total": 3, "done": 3, "done_this_run": 3}
    assert len(rows) == summary["rows"] == summary["pairs"] - dropped["no_negative_left"] > 0
    assert dropped["unknown_query_ids"] == dropped["unknown_doc_ids"] == 0
    # Queries embedded once per shard, every document once.
    assert calls == [("document", len(documents))] + [("query", QUERIES // 3)] * 3
    seen_pairs = set()
    for row in rows:
        query_id = row["query_id"]
        assert row["query"] == queries[query_id]
        assert row["labelled_ids"] == labels[query_id]
        assert row["positive_id"] in labels[query_id] and row["seed_id"] == row["positive_id"]
        assert not row["positive_changed"]
        assert not set(row["negative_ids"]) & set(labels[query_id])  # no positive of the query
        positive = documents[row["positive_id"]]
        assert (row["positive"], row["positive_title"]) == (positive["text"], positive["title"])
        assert row["negatives"] == [documents[i]["text"] for i in row["negative_ids"]]
        assert row["negative_titles"] == [documents[i]["title"] for i in row["negative_ids"]]
        assert len(row["negatives"]) == 1 and row["task"] == MiningConfig().task
        assert row["task_type"] == "labelled" and row["source"] == "fret"
        assert row["embedder"] == MINILM and row["llm_model"] == ""
        # Every candidate's score, retrieval order; the labelled ones are not candidates.
        scores = row["scores"]
        assert len(scores) == TOP_N and [s["rank"] for s in scores] == list(range(1, TOP_N + 1))
        retrieval = [s["retrieval"] for s in scores]
        assert retrieval == sorted(retrieval, reverse=True)
        assert not any(s["labelled"] for s in scores)
        (negative,) = [s for s in scores if s["id"] in row["negative_ids"]]
        assert row["negative_ranks"] == [negative["negative_rank"]]
        # "top": the best-ranked candidate the margin filter left; the margin is taken
        # from the lowest-scoring labelled positive of the query.
        rows_of_query = [r for r in rows if r["query_id"] == query_id]
        if len(rows_of_query) == len(labels[query_id]):
            threshold = labelled.margin_threshold(
                min(r["positive_score"] for r in rows_of_query), MiningConfig().relative_margin
            )
            kept = [s for s in scores if s["retrieval"] <= threshold]
            assert negative == kept[0]
            assert [s["false_negative"] for s in scores] == [
                s["retrieval"] > threshold for s in scores
            ]
        seen_pairs.add((query_id, row["positive_id"]))
    assert len(seen_pairs) == len(rows)
    assert (
        dropped["false_negative_filtered"]
        == sum(s["false_negative"] for r in rows for s in r["scores"])
        + TOP_N * dropped["no_negative_left"]
    )


class TextRecorder:
    """Stands in for a model to see which texts the evaluation embeds."""

    embedding_dim = 4

    def __init__(self):
        self.texts = {}

    def encode(self, texts, task=None, kind="query", **kwargs):
        self.texts[kind] = list(texts)
        return np.eye(len(texts), 4, dtype=np.float32) + 0.5


def test_texts_and_scores_are_the_evaluations(reference, encoder, data_dir):
    """Documents are embedded as the evaluation embeds them (`title + " " + text`),
    queries raw; every score is the cosine of those embeddings."""
    from gecko_jax.eval.retrieval import RetrievalEvaluator
    from gecko_jax.readers import read_beir_split

    output_dir, _, rows, _, texts = reference
    recorder = TextRecorder()
    RetrievalEvaluator(read_beir_split(data_dir, "train")).evaluate(recorder)
    assert texts[0] == recorder.texts["document"]
    assert sum(texts[1:], []) == recorder.texts["query"]
    # The first shard's queries, embedded as mining embeds them (compiled shapes reused).
    queries = encoder.encode(texts[1], kind="query", batch_size=64)
    documents = np.load(os.path.join(output_dir, "passage_embeddings.npy"))
    ids = list(_documents(data_dir))
    checked = 0
    for row in rows:
        if row["query"] in texts[1]:
            query = queries[texts[1].index(row["query"])]
            assert documents[ids.index(row["positive_id"])] @ query == pytest.approx(
                row["positive_score"], abs=1e-5
            )
            cosines = [documents[ids.index(s["id"])] @ query for s in row["scores"]]
            np.testing.assert_allclose(cosines, [s["retrieval"] for s in row["scores"]], atol=1e-5)
            checked += 1
    assert checked >= 6


def test_false_negative_filter_drops_a_copy_of_the_positive(
    reference, scifact, encoder, data_dir, tmp_path
):
    """The corpus holds an exact copy of the first query's positive: it scores as the
    positive does, so the margin drops it; without the margin it is the hardest negative."""
    query_id, positive_id, _ = scifact["qrels"][0]
    (with_margin,) = [r for r in reference[2] if r["query_id"] == query_id]
    copy = next(s for s in with_margin["scores"] if s["id"] == "duplicate")
    assert copy["retrieval"] == pytest.approx(with_margin["positive_score"], abs=1e-5)
    assert copy["false_negative"] and "duplicate" not in with_margin["negative_ids"]
    assert reference[1]["dropped"]["false_negative_filtered"] >= 1

    summary, rows = _mine(reference, tmp_path, encoder, data_dir, relative_margin=None)
    (without,) = [r for r in rows if r["query_id"] == query_id]
    assert without["negative_ids"] == ["duplicate"] and without["negative_ranks"] == [1]
    assert summary["dropped"]["false_negative_filtered"] == 0
    assert not any(s["false_negative"] for r in rows for s in r["scores"])
    assert summary["dropped"]["no_negative_left"] == 0 and len(rows) == summary["pairs"]


def test_choose_negatives_rank_range_margin_and_sampling():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    config = MiningConfig(top_n=6, num_negatives=2, negative_ranks=(2, 5))
    choice = labelled.choose_negatives(scores, 0.75, config, rng_seed=0)
    assert choice == labelled.Choice(negatives=(2, 3), false_negatives=(1,))
    assert labelled.margin_threshold(0.8, 0.05) == pytest.approx(0.76)
    assert labelled.margin_threshold(-0.5, 0.1) == pytest.approx(-0.55)
    assert labelled.margin_threshold(0.8, None) == float("inf")
    random = MiningConfig(top_n=6, num_negatives=2, negative_ranks=(2, 6), sampling="random")
    draws = {labelled.choose_negatives(scores, 1.0, random, seed).negatives for seed in range(40)}
    assert all(len(d) == 2 and d == tuple(sorted(d)) and set(d) <= {1, 2, 3, 4, 5} for d in draws)
    assert len(draws) > 5  # uniform over the 10 pairs
    assert labelled.choose_negatives(scores, 1.0, random, 7) == labelled.choose_negatives(
        scores, 1.0, random, 7
    )
    # Fewer eligible candidates than asked for: what is left (the row is then dropped).
    assert labelled.choose_negatives(scores, 0.55, config, 0).negatives == (4,)


def test_random_sampling_draws_in_the_rank_range(reference, encoder, data_dir, tmp_path):
    summary, rows = _mine(
        reference,
        tmp_path,
        encoder,
        data_dir,
        sampling="random",
        negative_ranks=(3, TOP_N),
        num_negatives=2,
        relative_margin=None,
    )
    assert len(rows) == summary["pairs"]
    ranks = [tuple(r["negative_ranks"]) for r in rows]
    assert all(3 <= a < b <= TOP_N for a, b in ranks)
    assert len(set(ranks)) > 3  # not always the same ranks
    for row in rows:
        by_rank = {s["negative_rank"]: s["id"] for s in row["scores"]}
        assert row["negative_ids"] == [by_rank[k] for k in row["negative_ranks"]]
    _, again = _mine(
        reference,
        tmp_path / "again",
        encoder,
        data_dir,
        sampling="random",
        negative_ranks=(3, TOP_N),
        num_negatives=2,
        relative_margin=None,
    )
    assert [r["negative_ids"] for r in again] == [r["negative_ids"] for r in rows]  # seeded


def test_top1_positive_is_the_top_candidate(reference, scifact, encoder, data_dir, tmp_path):
    summary, rows = _mine(
        reference, tmp_path, encoder, data_dir, positive="top1", relative_margin=None
    )
    labels = _labels(scifact)
    assert len(rows) == summary["queries"] == QUERIES  # one row per query
    labelled_top = 0
    for row in rows:
        top = row["scores"][0]
        assert row["positive_id"] == top["id"] and row["positive_score"] == top["retrieval"]
        assert not set(row["negative_ids"]) & set(labels[row["query_id"]])
        assert row["negative_ids"] != [row["positive_id"]]
        assert [s["labelled"] for s in row["scores"]] == [
            s["id"] in labels[row["query_id"]] for s in row["scores"]
        ]
        # The first candidate neither the positive nor labelled is the negative.
        pool = [s for s in row["scores"][1:] if not s["labelled"]]
        assert row["negative_ids"] == [pool[0]["id"]]
        labelled_top += row["positive_id"] in labels[row["query_id"]]
        assert row["seed_id"] == labels[row["query_id"]][0]
        assert row["positive_changed"] == (row["positive_id"] != row["seed_id"])
    assert summary["positive_labelled"] == labelled_top > 0


def test_rerun_resumes_without_recomputing_finished_shards(reference, encoder, data_dir, tmp_path):
    output_dir = tmp_path / "mined"
    shutil.copytree(reference[0], output_dir)
    files = sorted(glob.glob(str(output_dir / "fret-*.jsonl")))
    mtimes = {path: os.stat(path).st_mtime_ns for path in files}
    counting = CountingEncoder(encoder)
    summary = mine_labelled(
        data_dir, str(output_dir), MINILM, config=_config(), progress=False, encoder=counting
    )
    assert counting.calls == [] and summary["shards"]["done_this_run"] == 0
    assert summary["rows"] == reference[1]["rows"]
    # Shard 1 lost its marker (a crash after writing its rows): only its queries are redone.
    os.remove(output_dir / "done" / "fret-00001-of-00003.json")
    summary = mine_labelled(
        data_dir, str(output_dir), MINILM, config=_config(), progress=False, encoder=counting
    )
    assert counting.calls == [("query", SHARD_SIZE)]  # the corpus embeddings were kept too
    assert summary["shards"] == {"total": 3, "done": 3, "done_this_run": 1}
    assert [p for p in files if os.stat(p).st_mtime_ns != mtimes[p]] == [files[1]]
    assert read_rows(output_dir) == reference[2]
    with pytest.raises(ShardStateError, match="top_n: 8 -> 6"):
        mine_labelled(
            data_dir,
            str(output_dir),
            MINILM,
            config=_config(top_n=6, negative_ranks=(1, 6)),
            progress=False,
            encoder=counting,
        )


def test_rows_go_through_the_seqio_fret_task(reference, minilm_dir):
    from gecko_jax.data import fret_tasks, registry
    from gecko_jax.data.feature_converter import GeckoFeatureConverter
    from gecko_jax.data.vocabularies import vocabulary_from_dir

    output_dir, _, rows, _, _ = reference
    (name, *_) = fret_tasks.register_fret_tasks(
        os.path.join(output_dir, "fret-*.jsonl"), name="fret_mined_scifact"
    )
    ds = registry.get_task_dataset(name, split="train", shuffle=False, num_epochs=1)
    examples = list(ds.as_numpy_iterator())
    task = MiningConfig().task
    assert [e["query_text"].decode() for e in examples] == [
        f"task: {task} | query: {r['query']}" for r in rows
    ]
    assert [e["positive_text"].decode() for e in examples] == [
        f"title: {r['positive_title']} | text: {r['positive']}" for r in rows
    ]
    assert [[n.decode() for n in e["negative_texts"]] for e in examples] == [
        [f"title: {r['negative_titles'][0]} | text: {r['negatives'][0]}"] for r in rows
    ]
    lengths = {"query": 32, "positive": 64, "negative": 64, "num_negatives": 1}
    converter = GeckoFeatureConverter(vocabulary_from_dir(minilm_dir))
    features = list(converter(ds, lengths).take(4).as_numpy_iterator())
    assert len(features) == 4
    for f in features:
        assert f["query_tokens"].shape == (32,) and f["negative_tokens"].shape == (1, 64)
        assert f["negative_mask"].tolist() == [True] and f["query_tokens"][0] == 101  # [CLS]


def test_llm_rescoring_orders_the_candidates_by_rrf(reference, scifact, encoder, server, tmp_path):
    """FRet's QL + RC + RRF with the loopback LLM: negatives follow the fused order."""
    few = dict(scifact, queries=scifact["queries"][:3])
    ids = {q["_id"] for q in few["queries"]}
    few["qrels"] = [row for row in scifact["qrels"] if row[0] in ids]
    data_dir = _write_beir(tmp_path / "data", **few)
    llm = f"openai:{server.base_url}#loopback"
    summary, rows = _mine(
        reference, tmp_path / "out", encoder, data_dir, llm=llm, top_n=4, negative_ranks=(1, 4)
    )
    assert summary["llm"]["model"] == "loopback"
    # A QL and an RC call per candidate (the probe before the first shard is not counted).
    assert summary["llm"]["requests"] + summary["llm"]["cache_hits"] == 3 * 4 * 2
    assert rows and all(r["llm_model"] == "loopback" for r in rows)
    for row in rows:
        scores = row["scores"]
        assert all(s["ql"] is not None and s["rank_ql"] and s["rank_rc"] for s in scores)
        assert [s["rrf"] for s in scores] == [1 / s["rank_ql"] + 1 / s["rank_rc"] for s in scores]
        kept = sorted((s for s in scores if not s["false_negative"]), key=lambda s: s["rank"])
        assert row["negative_ids"] == [kept[0]["id"]]
        assert [s["negative_rank"] for s in sorted(scores, key=lambda s: s["rank"])] == [1, 2, 3, 4]
    rerun, _ = _mine(
        reference, tmp_path / "out", encoder, data_dir, llm=llm, top_n=4, negative_ranks=(1, 4)
    )
    assert rerun["shards"]["done_this_run"] == 0


# ----------------------------------------------------------------- the command line


@pytest.fixture
def patched_load(encoder, monkeypatch):
    """`Encoder.load` answers the module's encoder (its compiled programs are reused)."""
    from gecko_jax.encoder import Encoder

    loaded = []
    monkeypatch.setattr(
        Encoder, "load", classmethod(lambda cls, name: loaded.append(name) or encoder)
    )
    return loaded


def _cli(data_dir, output_dir, *flags):
    argv = ["mine", "--data_dir", str(data_dir), "--output_dir", str(output_dir)]
    return cli.main([*argv, "--top_n", "4", "--negative_ranks", "1,4", "--no_progress", *flags])


def test_cli_counts_and_reports_unknown_ids(
    reference, scifact, patched_load, tmp_path, capsys, caplog
):
    qrels = [*scifact["qrels"], ("no-such-query", "duplicate", 1), ("no-such-query2", "x", 1)]
    qrels.append((scifact["qrels"][0][0], "no-such-doc", 1))
    data_dir = _write_beir(tmp_path / "data", **dict(scifact, qrels=qrels))
    _reuse_embeddings(reference[0], tmp_path / "out")
    with caplog.at_level(logging.WARNING):
        assert _cli(data_dir, tmp_path / "out") == 0
    assert patched_load == [MINILM]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["dropped"]["unknown_query_ids"] == 2
    assert summary["dropped"]["unknown_doc_ids"] == 1
    assert summary["pairs"] == len(scifact["qrels"])
    err = capsys.readouterr().err
    assert "2 unknown_query_ids: qrels rows naming a query not in queries.jsonl" in err
    assert "1 unknown_doc_ids: qrels rows naming a document not in corpus.jsonl" in err
    assert f"FRet mine: {summary['rows']} rows for {QUERIES} queries" in err
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "skipped 3 of" in warning and "2 unknown_query_ids, 1 unknown_doc_ids" in warning
    assert "'no-such-query'" in warning and "'no-such-doc'" in warning


def _bad_sets(scifact, root):
    """(data dir, expected message) of each unusable set."""
    ok = dict(scifact)
    cases = {}
    cases["all_queries_unknown"] = (
        _write_beir(root / "q", **dict(ok, queries=[{"_id": "other", "text": "t"}])),
        r"queries\.jsonl has none of the 24 query ids .*train\.tsv names \(\d+ qrels rows",
    )
    cases["no_document"] = (
        _write_beir(root / "d", **dict(ok, corpus=ok["corpus"][-5:])),
        r"corpus\.jsonl has none of the \d+ documents .*train\.tsv names",
    )
    cases["empty_split"] = (
        _write_beir(root / "e", **dict(ok, qrels=[])),
        r"e/qrels/train\.tsv: no qrels rows: the 'train' split is empty",
    )
    zero = _write_beir(root / "z", **ok)
    open(os.path.join(zero, "qrels", "train.tsv"), "w").close()
    cases["zero_bytes"] = (zero, r"z/qrels/train\.tsv: no qrels rows")
    missing = _write_beir(root / "m", **ok)
    os.remove(os.path.join(missing, "queries.jsonl"))
    cases["missing_queries"] = (missing, r"queries not found: .*m/queries\.jsonl")
    cases["missing_dir"] = (str(root / "nowhere"), r"BEIR dataset directory not found: .*nowhere")
    return cases


def test_cli_bad_input_exits_2_naming_the_file(scifact, patched_load, tmp_path, capsys):
    for name, (data_dir, message) in _bad_sets(scifact, tmp_path).items():
        assert _cli(data_dir, tmp_path / f"out_{name}") == 2, name
        err = capsys.readouterr().err
        assert re.search("gecko-fret mine: error: .*" + message, err), (name, err)
        assert "Traceback" not in err
    assert patched_load == []  # each failed before loading the embedder
    good = _write_beir(tmp_path / "good", **scifact)
    assert _cli(good, tmp_path / "o", "--split", "dev") == 2
    assert re.search(
        r"qrels of split 'dev' not found: .*good/qrels/dev\.tsv", capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--negative_ranks", "5,2"], r"--negative_ranks 5,2: need 1 <= first <= last"),
        (["--negative_ranks", "6,9"], r"--negative_ranks 6,9: .*first <= --top_n 4"),
        (["--num_negatives", "5"], "holds 4 ranks of the --top_n 4 candidates, fewer than"),
        (["--relative_margin", "1.5"], r"--relative_margin must be in \[0, 1\) or none"),
        (["--relative_margin", "much"], "argument --relative_margin: expected a number or none"),
        (["--negative_ranks", "3"], "argument --negative_ranks: expected two comma-separated"),
        (["--sampling", "best"], "argument --sampling: invalid choice: 'best'"),
        (["--positive", "top2"], "argument --positive: invalid choice: 'top2'"),
        (["--task", " "], "--task must be a non-empty task description"),
    ],
)
def test_cli_bad_flags_name_the_flag(flags, message, capsys, tmp_path):
    try:
        status = _cli(tmp_path, tmp_path / "out", *flags)
    except SystemExit as e:  # argparse's own checks
        status = e.code
    assert status == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_cli_subprocess_end_to_end(scifact, tiny_model_dir, tmp_path):
    """`python -m gecko_jax.cli.fret mine ...` with a small random BERT as the embedder."""
    few = dict(scifact, queries=scifact["queries"][:6])
    ids = {q["_id"] for q in few["queries"]}
    few["qrels"] = [row for row in scifact["qrels"] if row[0] in ids]
    data_dir = _write_beir(tmp_path / "data", **few)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gecko_jax.cli.fret", "mine", "--data_dir", data_dir]
    command += ["--output_dir", str(out), "--embedder", tiny_model_dir, "--top_n", "5"]
    command += ["--negative_ranks", "2,5", "--num_negatives", "2", "--sampling", "random"]
    command += ["--relative_margin", "none", "--shard_size", "4", "--task", "verify the claim"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1"}
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_rows(out)
    assert len(rows) == len(few["qrels"]) and {r["task"] for r in rows} == {"verify the claim"}
    assert all(len(r["negatives"]) == 2 and 2 <= min(r["negative_ranks"]) for r in rows)
    assert sorted(os.listdir(out / "done")) == [
        "fret-00000-of-00002.json",
        "fret-00001-of-00002.json",
    ]
    assert "FRet mine: " in done.stderr and "dropped: nothing" in done.stderr
    settings = json.loads((out / "run.json").read_text())
    assert settings["embedder"] == tiny_model_dir and settings["sampling"] == "random"
