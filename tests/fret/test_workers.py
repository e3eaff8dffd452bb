"""Several workers over one output directory: each runs its share of the shards."""

import json
import os
import threading

import pytest

from gecko_jax.fret import pipeline
from gecko_jax.fret.config import FretConfig
from gecko_jax.fret.shards import ShardPlan, ShardStore, Workers

from .pipeline_helpers import PASSAGES, SHARDS, fret_config, read_rows, reuse_embeddings


def _worker(corpus_path, server, output_dir, index, count, **overrides):
    cache = os.path.join(output_dir, f"cache-{index}.sqlite")  # one per machine
    return fret_config(
        corpus_path,
        server,
        output_dir,
        worker_index=index,
        worker_count=count,
        cache=cache,
        **overrides,
    )


def _done(output_dir):
    return sorted(os.listdir(os.path.join(output_dir, "done")))


def _marker(shard):
    return f"fret-{shard:05d}-of-{SHARDS:05d}.json"


def test_two_workers_one_after_the_other_write_the_single_workers_rows(
    reference, corpus_path, server, encoder, tmp_path
):
    reference_dir, reference_summary, reference_rows = reference
    reuse_embeddings(reference_dir, tmp_path)
    stale = tmp_path / f"fret-00001-of-{SHARDS:05d}.jsonl.w1.tmp"  # worker 1's crash leftover
    stale.write_text("partial", encoding="utf-8")

    first = pipeline.run(_worker(corpus_path, server, tmp_path, 0, 2), encoder=encoder, echo=False)
    assert _done(tmp_path) == [_marker(0), _marker(2)]  # shards 0 and 2: s % 2 == 0
    assert stale.exists()  # not worker 0's to remove
    assert first["shards"] == {"total": SHARDS, "done": 2, "done_this_run": 2}
    assert first["workers"] == {
        "count": 2,
        "written_by": 0,
        "done": {"0": {"shards": 2, "seeds": 20, "rows": first["rows"]}},
    }

    second = pipeline.run(_worker(corpus_path, server, tmp_path, 1, 2), encoder=encoder, echo=False)
    assert not stale.exists()
    assert _done(tmp_path) == [_marker(s) for s in range(SHARDS)]
    assert read_rows(tmp_path) == reference_rows  # none missing, none twice, the same content
    assert second["shards"] == {"total": SHARDS, "done": SHARDS, "done_this_run": 1}
    assert second["rows"] == reference_summary["rows"] and second["seeds"] == PASSAGES
    assert second["workers"]["done"] == {
        "0": first["workers"]["done"]["0"],
        "1": {"shards": 1, "seeds": 10, "rows": second["rows"] - first["rows"]},
    }
    assert json.loads((tmp_path / "summary.json").read_text()) == second
    # The same pinned settings as the single worker's run: the worker flags are not among them.
    settings, single = (json.loads((d / "run.json").read_text()) for d in (tmp_path, reference_dir))
    assert {**settings, "output_dir": None} == {**single, "output_dir": None}
    assert not {"worker_index", "worker_count", "cache"} & set(settings)

    alone = pipeline.run(fret_config(corpus_path, server, tmp_path), encoder=encoder, echo=False)
    assert alone["shards"]["done_this_run"] == 0 and alone["rows"] == second["rows"]


def test_two_workers_at_once(reference, corpus_path, server, encoder, tmp_path):
    _, reference_summary, reference_rows = reference
    errors, summaries = [], {}

    def work(index):
        try:  # both embed the corpus and write it too, each through its own temporary files
            summaries[index] = pipeline.run(
                _worker(corpus_path, server, tmp_path, index, 2), encoder=encoder, echo=False
            )
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [summaries[i]["shards"]["done_this_run"] for i in range(2)] == [2, 1]
    assert read_rows(tmp_path) == reference_rows
    final = json.loads((tmp_path / "summary.json").read_text())
    assert final["rows"] == reference_summary["rows"] and final["shards"]["done"] == SHARDS
    assert {k: v["shards"] for k, v in final["workers"]["done"].items()} == {"0": 2, "1": 1}
    assert not list(tmp_path.glob("**/*.tmp"))


def test_bad_worker_settings_name_the_flags(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"--worker_index \(FretConfig.worker_index\) must be in 0\.\.1 "
        r"for --worker_count 2, got 2",
    ):
        FretConfig(corpus="c", output_dir="o", llm="loopback", worker_index=2, worker_count=2)
    with pytest.raises(
        ValueError, match=r"--worker_count \(FretConfig.worker_count\) must be >= 1, got 0"
    ):
        FretConfig(corpus="c", output_dir="o", llm="loopback", worker_count=0)
    with pytest.raises(ValueError, match="--worker_index .* got -1"):
        Workers(-1, 3)
    store = ShardStore(str(tmp_path), ShardPlan.make(10, num_shards=5), "jsonl", Workers(1, 3))
    assert store.pending() == [1, 4] and store.workers.tmp_tag == ".w1"
    assert (
        ShardStore(str(tmp_path), ShardPlan.make(10, num_shards=5), "jsonl").workers.tmp_tag == ""
    )
