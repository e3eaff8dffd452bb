"""End to end: a SciFact slice, the loopback LLM, MiniLM retrieval; resuming; bad input; the CLI."""

import dataclasses
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import gin
import pytest

from gecko_jax.cli import fret as cli
from gecko_jax.data import examples as ex
from gecko_jax.data import sources
from gecko_jax.fret import pipeline
from gecko_jax.fret.config import FretConfig, PromptConfig, RetrievalConfig
from gecko_jax.fret.corpus import CorpusError
from gecko_jax.fret.llm.base import NotSupportedError
from gecko_jax.fret.llm.cache import SQLiteCache
from gecko_jax.fret.llm.loopback import LoopbackServer
from gecko_jax.fret.rank import RankingUnsupportedError
from gecko_jax.fret.shards import ShardPlan, ShardStateError
from gecko_jax.fret.summary import format_summary
from gecko_jax.fret.templates import TemplateError
from tests.fret.cache_counts import call_counts

from .pipeline_helpers import (
    MAX_WORDS,
    PASSAGES,
    SHARDS,
    TOP_N,
    fret_config,
    read_rows,
    reuse_embeddings,
)


@pytest.fixture(autouse=True)
def _clean_gin():
    """The CLI parses gin bindings into the process's config: clear them after each test."""
    yield
    gin.clear_config()


def test_rows_are_complete_and_consistent(reference, corpus_path):
    output_dir, summary, rows = reference
    with open(corpus_path, encoding="utf-8") as f:
        records = [json.loads(next(f)) for _ in range(PASSAGES)]
    texts = {r["_id"]: " ".join(r["text"].split()) for r in records}
    assert summary["passages"] == PASSAGES
    assert (
        summary["truncated_passages"]
        == sum(len(r["text"].split()) > MAX_WORDS for r in records)
        > 0
    )
    assert summary["shards"] == {"total": SHARDS, "done": SHARDS, "done_this_run": SHARDS}
    assert summary["rows"] == len(rows) == PASSAGES - summary["seeds_given_up"] > 0
    assert summary["seeds"] == PASSAGES == sum(summary["task_types"].values())
    seed_ids = [r["seed_id"] for r in rows]
    assert seed_ids == [
        r["_id"] for r in records if r["_id"] in set(seed_ids)
    ]  # seed order, no repeats
    changed = sum(r["positive_changed"] for r in rows)
    assert summary["positive_changed"] == changed
    assert summary["positive_changed_share"] == round(changed / len(rows), 4)
    # Every LLM call: one per generation attempt, a QL and an RC call per neighbour.
    llm = summary["llm"]
    assert llm["model"] == "loopback"
    assert (
        llm["requests"] + llm["cache_hits"]
        == summary["generation_attempts"] + len(rows) * TOP_N * 2
    )
    assert llm["prompt_tokens"] > 0 and llm["output_tokens"] > 0 and llm["retries"] == 0
    assert set(summary["seconds"]) >= {
        "read_corpus",
        "embed_corpus",
        "generate",
        "mine",
        "rank",
        "write",
        "wall",
    }
    with open(os.path.join(output_dir, "summary.json"), encoding="utf-8") as f:
        assert json.load(f) == summary
    truncated = "passages truncated to the corpus budget (max_words, max_chars): "
    assert truncated + str(summary["truncated_passages"]) in format_summary(summary)
    seed_found = 0
    for row in rows:
        example = ex.from_record(row)  # the data side reads the row
        assert (example.source, example.symmetric, len(example.negatives)) == ("fret", False, 1)
        assert row["task_type"] in summary["task_types"] and row["llm_model"] == "loopback"
        scores = row["scores"]
        assert len(scores) == TOP_N and sorted(s["rank"] for s in scores) == list(
            range(1, TOP_N + 1)
        )
        for s in scores:
            assert s["rrf"] == pytest.approx(1 / s["rank_ql"] + 1 / s["rank_rc"])
        by_rank = {s["rank"]: s["id"] for s in scores}
        assert row["positive_id"] == by_rank[1] and row["negative_ids"] == [by_rank[TOP_N]]
        assert " ".join(row["positive"].split()) == " ".join(
            texts[row["positive_id"]].split()[:MAX_WORDS]
        )
        assert row["positive_changed"] == (row["positive_id"] != row["seed_id"])
        assert [s["retrieval"] for s in scores] == sorted(
            (s["retrieval"] for s in scores), reverse=True
        )
        seed_found += row["seed_id"] in by_rank.values()
    assert seed_found > len(rows) // 2  # the seed passage is not excluded from retrieval


def test_tfrecord_output_is_read_by_the_data_side(
    reference, corpus_path, server, encoder, tmp_path
):
    output_dir, _, rows = reference
    config = fret_config(
        corpus_path,
        server,
        tmp_path,
        output_format="tfrecord",
        cache=os.path.join(output_dir, pipeline.CACHE_FILE),
    )
    reuse_embeddings(output_dir, tmp_path)
    summary = pipeline.run(config, encoder=encoder, echo=False)
    assert summary["llm"]["requests"] == 0  # every call answered by the first run's cache
    source = sources.file_source(str(tmp_path / "fret-*.tfrecord"))
    read = list(source.get_dataset("train", shuffle=False).as_numpy_iterator())
    assert [r["query"].decode() for r in read] == [r["query"] for r in rows]
    assert [r["negatives"][0].decode() for r in read] == [r["negatives"][0] for r in rows]


class Crash(RuntimeError):
    """Raised mid-shard to simulate a crash."""


class CrashingClient:
    """Delegates to a real client; after the first shard is done, fails on its N-th call."""

    def __init__(self, inner, marker: str, calls_after_marker: int):
        self.inner, self.marker, self.left = inner, marker, calls_after_marker

    model_id = property(lambda self: self.inner.model_id)
    usage = property(lambda self: self.inner.usage)

    def _tick(self):
        if os.path.exists(self.marker):
            self.left -= 1
            if self.left < 0:
                raise Crash("simulated crash in shard 2")

    async def generate(self, *args, **kwargs):
        self._tick()
        return await self.inner.generate(*args, **kwargs)

    async def log_likelihood(self, *args):
        self._tick()
        return await self.inner.log_likelihood(*args)

    async def label_probabilities(self, *args):
        self._tick()
        return await self.inner.label_probabilities(*args)

    async def aclose(self):
        await self.inner.aclose()


def test_resume_after_a_crash_loses_and_repeats_nothing(
    reference, corpus_path, server, encoder, tmp_path
):
    reference_dir, _, reference_rows = reference
    config = fret_config(corpus_path, server, tmp_path)
    reuse_embeddings(reference_dir, tmp_path)
    marker = os.path.join(tmp_path, "done", f"fret-00000-of-{SHARDS:05d}.json")
    # 10 generation calls, then ranking calls: the crash lands in shard 2's ranking.
    crashing = lambda c: CrashingClient(pipeline.open_client(c), marker, 30)  # noqa: E731
    with pytest.raises(Crash):
        pipeline.run(config, client_factory=crashing, encoder=encoder, echo=False)
    first_shard = tmp_path / f"fret-00000-of-{SHARDS:05d}.jsonl"
    kept = first_shard.read_bytes()
    assert sorted(os.listdir(tmp_path / "done")) == [os.path.basename(marker)]
    assert not glob.glob(str(tmp_path / "fret-00001-*"))
    cache = SQLiteCache(os.path.join(tmp_path, pipeline.CACHE_FILE))
    calls_before = len(cache)
    cache.close()

    summary = pipeline.run(config, encoder=encoder, echo=False)
    assert summary["shards"] == {"total": SHARDS, "done": SHARDS, "done_this_run": SHARDS - 1}
    assert first_shard.read_bytes() == kept
    rows = read_rows(tmp_path)
    assert rows == reference_rows  # no row lost, none duplicated, same content
    assert summary["rows"] == len(rows)
    cache = SQLiteCache(os.path.join(tmp_path, pipeline.CACHE_FILE))
    counts = call_counts(cache)
    cache.close()
    assert calls_before > PASSAGES // SHARDS * (1 + TOP_N * 2) and len(counts) > calls_before
    assert set(counts.values()) == {1}  # no LLM call was paid twice
    assert summary["llm"]["cache_hits"] > 0  # the resumed shard re-hit the cache

    again = pipeline.run(config, encoder=encoder, echo=False)  # everything done: nothing to do
    assert again["shards"]["done_this_run"] == 0 and again["rows"] == len(rows)


def _wait_for(condition, proc, what, timeout_s=180.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            pytest.fail(
                f"gecko-fret exited ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_killed_or_interrupted_mid_shard_then_resume(
    reference, corpus_path, encoder, tmp_path, signum
):
    """kill -9 loses nothing finished; Ctrl-C also says so in one line, with status 130."""
    reference_dir, _, reference_rows = reference
    reuse_embeddings(reference_dir, tmp_path)
    cache_file = os.path.join(tmp_path, pipeline.CACHE_FILE)
    with LoopbackServer(latency_s=0.1) as slow:  # slow answers keep shard 2 in flight for a while
        config = fret_config(corpus_path, slow, tmp_path)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gecko_jax.cli.fret",
                "--corpus",
                corpus_path,
                "--output_dir",
                str(tmp_path),
                "--llm",
                config.llm,
                "--max_passages",
                str(PASSAGES),
                "--max_words",
                str(MAX_WORDS),
                "--num_shards",
                str(SHARDS),
                "--top_n",
                str(TOP_N),
                "--no_progress",
                "--gin.RetrievalConfig.batch_size=32",
            ],
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            marker = tmp_path / "done" / f"fret-00000-of-{SHARDS:05d}.json"
            _wait_for(marker.exists, proc, "the first shard was done")
            cache = SQLiteCache(cache_file)
            entries = len(cache)
            _wait_for(lambda: len(cache) >= entries + 15, proc, "shard 2's calls")
            cache.close()
        finally:
            proc.send_signal(signum)
            status = proc.wait(timeout=60)
            stderr = proc.stderr.read()
            proc.stderr.close()
        if signum == signal.SIGINT:
            assert status == 130 and "Traceback" not in stderr, stderr[-3000:]
            assert f"gecko-fret: interrupted; finished shards are kept in {tmp_path}" in stderr
        else:
            assert status == -signal.SIGKILL
        assert not (
            tmp_path / "done" / f"fret-00001-of-{SHARDS:05d}.json"
        ).exists()  # killed mid-shard
        assert not glob.glob(str(tmp_path / "fret-00001-*"))
        summary = pipeline.run(config, encoder=encoder, echo=False)
    assert summary["shards"]["done_this_run"] == SHARDS - 1
    assert read_rows(tmp_path) == reference_rows
    cache = SQLiteCache(cache_file)
    assert set(call_counts(cache).values()) == {1}
    cache.close()


def test_other_settings_in_the_same_output_dir_are_refused(reference, corpus_path, server):
    output_dir, _, _ = reference
    with pytest.raises(ShardStateError, match=r"run\.json: .*other settings") as raised:
        pipeline.run(fret_config(corpus_path, server, output_dir, seed=5), echo=False)
    listed = [line for line in str(raised.value).splitlines() if line.startswith("  ")]
    assert listed == ["  seed: 0 -> 5"]  # only the key that changed


def test_bad_template_fails_before_any_output(corpus_path, server, tmp_path):
    template = tmp_path / "gen.txt"
    template.write_text("Write a query.\nTask type: {task_type}\n", encoding="utf-8")
    output_dir = tmp_path / "out"
    config = fret_config(
        corpus_path, server, output_dir, prompts=PromptConfig(generation_template=str(template))
    )
    with pytest.raises(TemplateError, match=r"gen\.txt lacks the required placeholder \{passage\}"):
        pipeline.run(config, echo=False)
    assert not output_dir.exists()


def test_empty_corpus_is_an_error(server, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"empty\.jsonl has no passage"):
        pipeline.run(fret_config(str(empty), server, tmp_path / "out"), echo=False)


def test_bad_llm_spec_records_nothing(corpus_path, server, tmp_path):
    with pytest.raises(ValueError, match="--llm: unknown LLM spec 'gpt'"):
        pipeline.run(fret_config(corpus_path, server, tmp_path, llm="gpt"), echo=False)
    assert not (tmp_path / "run.json").exists()  # a corrected rerun is not refused


def test_top_n_larger_than_the_corpus(corpus_path, server, tmp_path):
    config = fret_config(
        corpus_path, server, tmp_path, retrieval=RetrievalConfig(top_n=PASSAGES + 1)
    )
    with pytest.raises(
        ValueError, match=rf"--top_n {PASSAGES + 1} exceeds the corpus.s {PASSAGES} passages"
    ):
        pipeline.run(config, echo=False)


def test_cli_run(corpus_path, server, encoder, tmp_path, capsys, monkeypatch):
    from gecko_jax.encoder import Encoder

    loaded = []  # the module's encoder stands in, so that its compiled programs are reused
    monkeypatch.setattr(
        Encoder, "load", classmethod(lambda cls, name: loaded.append(name) or encoder)
    )
    status = cli.main(
        [
            "--corpus",
            corpus_path,
            "--output_dir",
            str(tmp_path),
            "--llm",
            f"openai:{server.base_url}#loopback",
            "--max_passages",
            "12",
            "--shard_size",
            "5",
            "--top_n",
            "3",
            "--ranking",
            "rc",
            "--negative",
            "random",
            "--task_types",
            "question answering=2,recipe lookup",
            "--seed",
            "4",
            "--output_format",
            "tfrecord",
            "--no_progress",
            "--gin.GenerationConfig.max_attempts=2",
        ]
    )
    assert status == 0
    assert loaded == ["all-MiniLM-L6-v2"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["shards"]["total"] == 3 and summary["seeds"] == 12
    assert set(summary["task_types"]) <= {"question answering", "recipe lookup"}
    assert "FRet: " in capsys.readouterr().err
    settings = json.loads((tmp_path / "run.json").read_text())
    assert settings["generation"]["max_attempts"] == 2
    assert settings["ranking"] == {"ranking": "rc", "negative": "random"}
    assert len(glob.glob(str(tmp_path / "fret-*-of-00003.tfrecord"))) == 3


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--negative", "rank:1"], "argument --negative: .*rank:1 would be the positive"),
        (["--num_shards", "0"], "argument --num_shards: must be >= 1, got 0"),
        (["--top_n", "1"], "argument --top_n: must be >= 2, got 1"),
        (
            ["--task_types", ","],
            "argument --task_types: expected distinct comma-separated task types",
        ),
        (["--task_types", "qa=heavy"], "argument --task_types: 'qa=heavy'"),
        (
            ["--num_shards", "2", "--shard_size", "3"],
            "argument --shard_size: not allowed with argument --num_shards",
        ),
        (["--ranking", "bm25"], "argument --ranking: invalid choice: 'bm25'"),
        (["--gin.GenerationConfig.max_atempts=2"], "max_atempts"),
        (["--worker_index", "-1"], "argument --worker_index: must be >= 0, got -1"),
        (["--worker_count", "0"], "argument --worker_count: must be >= 1, got 0"),
        (
            ["--worker_index", "2", "--worker_count", "2"],
            r"--worker_index .* must be in 0\.\.1 for --worker_count 2, got 2",
        ),
        (
            ["--worker_index", "1"],
            r"--worker_index .* must be in 0\.\.0 for --worker_count 1, got 1",
        ),
        (
            ["--llm", "vertex-batch:gemini-2.0-flash"],
            "--batch_staging_dir .* is required by --llm vertex-batch",
        ),
        (
            ["--batch_staging_dir", "gs://b/p"],
            "--batch_staging_dir .* is only for --llm vertex-batch:MODEL",
        ),
        (
            [
                "--llm",
                "vertex-batch:m",
                "--batch_staging_dir",
                "gs://b/p",
                "--llm_concurrency",
                "4",
            ],
            "--llm_concurrency .* does not apply to --llm vertex-batch",
        ),
    ],
)
def test_cli_bad_flags_name_the_flag(flags, message, capsys, tmp_path):
    argv = ["--corpus", "c.jsonl", "--output_dir", str(tmp_path), "--llm", "loopback", *flags]
    try:
        status = cli.main(argv)
    except SystemExit as e:  # argparse's own checks
        status = e.code
    assert status == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err


def test_cli_reports_run_errors(corpus_path, tmp_path, capsys):
    status = cli.main(
        [
            "--corpus",
            corpus_path,
            "--output_dir",
            str(tmp_path),
            "--llm",
            "loopback",
            "--max_passages",
            "4",
            "--top_n",
            "5",
            "--no_progress",
        ]
    )
    assert status == 2
    assert "gecko-fret: error: --top_n 5 exceeds the corpus's 4 passages" in capsys.readouterr().err


def test_shard_plan():
    plan = ShardPlan.make(10, num_shards=3)
    assert [plan.bounds(i) for i in range(plan.count)] == [(0, 4), (4, 7), (7, 10)]
    plan = ShardPlan.make(10, shard_size=5)
    assert [plan.bounds(i) for i in range(plan.count)] == [(0, 5), (5, 10)]
    assert ShardPlan.make(2500).count == 3  # default shard size 1,000
    with pytest.raises(ValueError, match=r"--num_shards must be in 1\.\.10"):
        ShardPlan.make(10, num_shards=11)


def test_config_dataclasses_reject_bad_fields():
    with pytest.raises(ValueError, match="FretConfig.llm must be set"):
        FretConfig(corpus="c", output_dir="o")
    with pytest.raises(ValueError, match="RetrievalConfig.backend must be one of"):
        RetrievalConfig(backend="annoy")
    assert dataclasses.replace(RetrievalConfig(), top_n=7).top_n == 7


class NoQueryLikelihood(CrashingClient):
    """A client that, like Gemini, cannot score a given continuation."""

    async def log_likelihood(self, *args):
        raise NotSupportedError("Gemini scores its own output only")


class UnusedEncoder:
    def encode(self, *args, **kwargs):
        raise AssertionError("nothing should be embedded")


def test_ranking_without_query_likelihood_fails_before_embedding(corpus_path, server, tmp_path):
    config = fret_config(corpus_path, server, tmp_path)
    factory = lambda c: NoQueryLikelihood(pipeline.open_client(c), "", 0)  # noqa: E731
    with pytest.raises(
        RankingUnsupportedError, match="--ranking rrf needs query likelihood.*use --ranking rc"
    ):
        pipeline.run(config, client_factory=factory, encoder=UnusedEncoder(), echo=False)
    assert not glob.glob(str(tmp_path / "fret-*"))


def test_output_trains_through_the_seqio_fret_task(reference, tiny_model_dir, tmp_path):
    """gecko-train reads the rows through the registered `fret` task (gin/local/minilm_fret.gin)."""
    output_dir, _, rows = reference
    model_dir = tmp_path / "model"
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = [
        sys.executable,
        "-m",
        "gecko_jax.cli.train",
        "--gin_file=local/minilm_fret.gin",
        f"--gin.MODEL_DIR='{model_dir}'",
        f"--gin.FRET_FILES='{output_dir}/fret-*.jsonl'",
        "--gin.TRAIN_STEPS=3",
        "--gin.BATCH_SIZE=8",
        f"--gin.train.init_from='{tiny_model_dir}'",
        "--gin.train.query_length=32",
        "--gin.train.document_length=48",
        "--gin.train.log_every=1",
        "--gin.gecko_jax.OptimizerConfig.warmup_steps=1",
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    losses = [float(m) for m in re.findall(r"step \d+/3  loss (\S+)", done.stderr)]
    assert len(losses) == 3 and all(0 < loss < 10 for loss in losses), done.stderr[-3000:]
    assert len(rows) >= 8  # a full batch of FRet rows exists
    with open(model_dir / "checkpoints" / "3" / "data" / "metadata", encoding="utf-8") as f:
        assert json.load(f)["probabilities"] == {"fret": 1.0}
