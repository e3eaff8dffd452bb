"""One dataset per batch: rates over 1,000 batches, duplicates, hosts, kill and resume."""

from __future__ import annotations

import collections
import math
import os
import signal
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from gecko_jax.checkpoints import CheckpointManager
from gecko_jax.data import iterator_state
from gecko_jax.data.iterator_state import HOST_STATE_KEY
from gecko_jax.data.mixing import MixtureRates, OneDatasetPerBatchMixture
from tests.restore_targets import abstract_like

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
Shard = collections.namedtuple("Shard", "index num_shards")  # the fields of seqio.ShardInfo


def task_dataset(
    dataset_id: int,
    size: int,
    *,
    shard: tuple[int, int] = (0, 1),
    shuffle_seed: int | None = None,
    positive_group: int = 1,
    query_group: int = 1,
    numpy_parse: bool = False,
) -> tf.data.Dataset:
    """Converted examples of one synthetic task; row ``x`` is ``positive_tokens[0]``.

    Rows ``x`` with equal ``x // positive_group`` share a positive id, rows with
    equal ``x // query_group`` share their query tokens.
    """
    ds = tf.data.Dataset.range(size).shard(shard[1], shard[0])
    if shuffle_seed is not None:  # the caller's shuffle: its buffer is part of the state
        ds = ds.shuffle(16, seed=shuffle_seed)
    if numpy_parse:  # external state, as seqio's tf.numpy_function parsers have
        ds = ds.map(
            lambda x: tf.ensure_shape(tf.numpy_function(lambda v: v + 0, [x], tf.int64), [])
        )

    def features(x: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.cast(x, tf.int32)
        row = dataset_id * 10_000 + x
        return {
            "query_tokens": tf.stack([dataset_id * 10_000 + x // query_group, 1, 2, 0]),
            "positive_tokens": tf.stack([row, 3, 0]),
            "positive_ids": dataset_id * 10_000 + x // positive_group,
            "negative_tokens": tf.stack([tf.stack([row, 5, 0]), tf.stack([row, 6, 0])]),
            "negative_mask": tf.stack([True, x % 2 == 0]),
            "dataset_id": tf.constant(dataset_id, tf.int32),
        }

    return ds.map(features)


def _pending_rows(mixture: OneDatasetPerBatchMixture, task: str) -> int:
    """Rows of ``task`` read but not yet served (deferred duplicates, chunk rest)."""
    return len(next(iter(mixture._pending[task].values())))


def rows(batch: dict[str, np.ndarray]) -> list[int]:
    return [int(r) for r in batch["positive_tokens"][:, 0]]


def assert_batches_equal(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want)):
        assert set(g) == set(w), n
        for key in w:
            np.testing.assert_array_equal(g[key], w[key], err_msg=f"batch {n}, {key}")


# -- rates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "rates, expected",
    [
        (MixtureRates.explicit({"a": 1, "b": 2, "c": 5}), {"a": 1 / 8, "b": 2 / 8, "c": 5 / 8}),
        # sqrt of the sizes: 10, 20, 40
        (
            MixtureRates({"a": 100, "b": 400, "c": 1600}, temperature=2.0),
            {"a": 1 / 7, "b": 2 / 7, "c": 4 / 7},
        ),
    ],
)
def test_one_dataset_per_batch_over_1000_batches_at_the_configured_rates(rates, expected) -> None:
    datasets = {name: task_dataset(i, 50, shuffle_seed=i) for i, name in enumerate("abc")}
    mixture = OneDatasetPerBatchMixture(datasets, rates, global_batch_size=8, seed=3)
    assert mixture.probabilities == pytest.approx(expected)
    counts: collections.Counter[str] = collections.Counter()
    for n in range(1000):
        batch = next(mixture)
        ids = batch["dataset_id"]
        assert ids.shape == (8,) and (ids == ids[0]).all(), f"batch {n} mixes datasets {ids}"
        name = "abc"[int(ids[0])]
        assert name == mixture.last_task == mixture.task_for_batch(n)
        assert batch["negative_tokens"].shape == (8, 2, 3)
        counts[name] += 1
    for name, p in expected.items():
        sd = math.sqrt(1000 * p * (1 - p))  # binomial
        assert abs(counts[name] - 1000 * p) <= 3 * sd, (name, dict(counts), p)


def test_rate_modes_and_zero_rate_tasks() -> None:
    assert MixtureRates({"a": 10, "b": 30}).probabilities(["a", "b"]) == pytest.approx(
        {"a": 0.25, "b": 0.75}
    )
    capped = MixtureRates({"a": 10, "b": 30}, maximum=20)
    assert capped.probabilities(["a", "b"]) == pytest.approx({"a": 1 / 3, "b": 2 / 3})
    datasets = {"on": task_dataset(0, 20), "off": task_dataset(1, 20)}
    mixture = OneDatasetPerBatchMixture(datasets, {"on": 1.0, "off": 0.0}, 4, seed=1)
    assert {mixture.task_for_batch(n) for n in range(500)} == {"on"}


def test_bad_configurations_fail_clearly() -> None:
    datasets = {"a": task_dataset(0, 20), "b": task_dataset(1, 20)}
    with pytest.raises(ValueError, match=r"unknown tasks \['zzz'\]"):
        OneDatasetPerBatchMixture(datasets, {"a": 1, "b": 1, "zzz": 1}, 4)
    with pytest.raises(ValueError, match=r"no mixture rate for tasks \['b'\]"):
        OneDatasetPerBatchMixture(datasets, {"a": 1}, 4)
    with pytest.raises(ValueError, match="sum to zero"):
        OneDatasetPerBatchMixture(datasets, {"a": 0, "b": 0}, 4)
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        OneDatasetPerBatchMixture(datasets, {"a": -1, "b": 2}, 4)
    with pytest.raises(ValueError, match="temperature must be positive"):
        OneDatasetPerBatchMixture(datasets, MixtureRates({"a": 1, "b": 1}, temperature=0), 4)
    with pytest.raises(ValueError, match="global batch size 10 is not divisible by 3 hosts"):
        OneDatasetPerBatchMixture(datasets, {"a": 1, "b": 1}, 10, shard_info=Shard(0, 3))
    with pytest.raises(ValueError, match="bad shard"):
        OneDatasetPerBatchMixture(datasets, {"a": 1, "b": 1}, 4, shard_info=Shard(2, 2))
    with pytest.raises(ValueError, match="at least one task"):
        OneDatasetPerBatchMixture({}, {}, 4)
    other = task_dataset(1, 20).map(lambda ex: {**ex, "query_tokens": ex["query_tokens"][:2]})
    with pytest.raises(ValueError, match="'a' and 'b' have different features"):
        OneDatasetPerBatchMixture({"a": datasets["a"], "b": other}, {"a": 1, "b": 1}, 4)
    unbatched = tf.data.Dataset.range(5).map(lambda x: {"query_tokens": tf.range(x)})
    with pytest.raises(ValueError, match="must have a fixed shape"):
        OneDatasetPerBatchMixture({"a": unbatched}, {"a": 1}, 4)


def test_task_choice_is_a_pure_function_of_seed_and_position() -> None:
    def make(seed: int) -> OneDatasetPerBatchMixture:
        datasets = {name: task_dataset(i, 30, shuffle_seed=i) for i, name in enumerate("abc")}
        return OneDatasetPerBatchMixture(
            datasets, {"a": 1, "b": 1, "c": 1}, 4, seed=seed, shuffle_buffer_size=8
        )

    first, second = make(1), make(1)
    assert_batches_equal([next(first) for _ in range(40)], [next(second) for _ in range(40)])
    fresh = make(1)
    assert [fresh.task_for_batch(n) for n in range(40)] == [
        first.task_for_batch(n) for n in range(40)
    ]
    assert [make(2).task_for_batch(n) for n in range(40)] != [
        fresh.task_for_batch(n) for n in range(40)
    ]


# -- duplicates ----------------------------------------------------------------


def test_duplicate_positives_and_queries_are_deferred_not_lost() -> None:
    mixture = OneDatasetPerBatchMixture(
        {"t": task_dataset(0, 60, positive_group=3, query_group=2)}, {"t": 1}, 4, repeat=False
    )
    served = []
    for n, batch in enumerate(mixture):
        assert len(set(batch["positive_ids"].tolist())) == 4, n
        assert len({q.tobytes() for q in batch["query_tokens"]}) == 4, n
        served.append(rows(batch))
    # Rows 1, 2 share row 0's positive; row 1 also its query: both wait for later batches.
    assert served[:2] == [[0, 3, 6, 9], [1, 4, 7, 10]]
    flat = [r for batch in served for r in batch]
    assert len(set(flat)) == len(flat)
    assert len(flat) + _pending_rows(mixture, "t") == 60  # read once, served once or still pending
    assert mixture.dropped_duplicates == 0

    queries_only = OneDatasetPerBatchMixture({"t": task_dataset(0, 20, query_group=2)}, {"t": 1}, 4)
    assert rows(next(queries_only)) == [0, 2, 4, 6]


def test_too_many_duplicates_are_dropped_or_fail() -> None:
    capped = OneDatasetPerBatchMixture(
        {"t": task_dataset(0, 60, positive_group=3)}, {"t": 1}, 4, max_deferred=1
    )
    for _ in range(5):
        next(capped)
    assert capped.dropped_duplicates > 0
    hopeless = OneDatasetPerBatchMixture(
        {"t": task_dataset(0, 30, positive_group=1000)}, {"t": 1}, 4
    )
    with pytest.raises(ValueError, match="too many duplicates.*lower the batch size"):
        next(hopeless)


# -- hosts ---------------------------------------------------------------------


def test_two_hosts_together_serve_the_global_batch() -> None:
    def datasets(shard: tuple[int, int]) -> dict[str, tf.data.Dataset]:
        return {name: task_dataset(i, 40, shard=shard) for i, name in enumerate("ab")}

    rates = {"a": 1, "b": 3}
    whole = OneDatasetPerBatchMixture(datasets((0, 1)), rates, 8, seed=5)
    hosts = [
        OneDatasetPerBatchMixture(datasets((i, 2)), rates, 8, seed=5, shard_info=Shard(i, 2))
        for i in range(2)
    ]
    assert [h.local_batch_size for h in hosts] == [4, 4]
    for n in range(30):
        full = next(whole)
        shares = [next(h) for h in hosts]
        assert hosts[0].last_task == hosts[1].last_task == whole.last_task, n
        assert not set(rows(shares[0])) & set(rows(shares[1])), n
        assert sorted(rows(shares[0]) + rows(shares[1])) == sorted(rows(full)), n


# -- resuming ------------------------------------------------------------------


def resume_mixture() -> OneDatasetPerBatchMixture:
    """Three tasks, mid-epoch after 30 batches: caller and mixer shuffles, numpy parsing."""
    datasets = {
        "nli": task_dataset(0, 120, shuffle_seed=11, positive_group=3, query_group=2),
        "qa": task_dataset(1, 80, shuffle_seed=12, numpy_parse=True),
        "sts": task_dataset(2, 80, shuffle_seed=13, query_group=2),
    }
    return OneDatasetPerBatchMixture(
        datasets, {"nli": 2, "qa": 1, "sts": 1}, global_batch_size=4, seed=7, shuffle_buffer_size=8
    )


def _child_train_and_die(model_dir: str, out_dir: str) -> None:
    """A "training run": saves every 5 steps like train.py, then is SIGKILLed at step 12."""
    mixture = resume_mixture()
    manager = CheckpointManager(model_dir, save_interval_steps=5, max_to_keep=2)
    for step in range(1, 13):
        batch = next(mixture)
        np.savez(os.path.join(out_dir, f"{step}.npz"), **batch)
        manager.save(step, {"step": jnp.int32(step)}, mixture.get_state())
        if step == 10:
            pending = sum(_pending_rows(mixture, t) for t in mixture.tasks)
            np.save(os.path.join(out_dir, "pending_at_10.npy"), pending)
    manager.wait()  # step 10 is on disk; steps 11 and 12 are lost work
    os.kill(os.getpid(), signal.SIGKILL)


def test_kill_and_resume_mid_epoch_gives_the_uninterrupted_batches(tmp_path) -> None:
    total = 30
    uninterrupted = resume_mixture()
    reference = [next(uninterrupted) for _ in range(total)]
    model_dir, out_dir = tmp_path / "ckpt", tmp_path / "batches"
    out_dir.mkdir()
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "from tests.data.test_mixing import _child_train_and_die as f; "
                f"f({str(model_dir)!r}, {str(out_dir)!r})"
            ),
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    before_kill = [dict(np.load(out_dir / f"{step}.npz")) for step in range(1, 13)]
    assert_batches_equal(before_kill, reference[:12])  # the child ran the same pipeline
    assert int(np.load(out_dir / "pending_at_10.npy")) > 0  # deferred rows were part of the state

    manager = CheckpointManager(model_dir)
    assert manager.latest_step() == 10
    state, data_state = manager.restore(abstract_like({"step": jnp.int32(0)}))
    manager.close()
    assert int(state["step"]) == 10 and data_state["position"] == 10
    resumed_mixture = resume_mixture()  # a fresh pipeline in a fresh object graph
    resumed_mixture.set_state(data_state)
    resumed = [next(resumed_mixture) for _ in range(total - 10)]

    assert_batches_equal(before_kill[:10] + resumed, reference)
    served = [r for batch in before_kill[:10] + resumed for r in rows(batch)]
    assert len(served) == len(set(served)) == total * 4  # all within the first epoch: no repeats


def test_peeking_then_rewinding_and_lazy_snapshots(monkeypatch) -> None:
    captures = []
    real_save = iterator_state.save_iterators
    monkeypatch.setattr(
        iterator_state, "save_iterators", lambda its: captures.append(1) or real_save(its)
    )
    mixture = resume_mixture()
    for _ in range(5):  # train.py asks for the state every step and usually drops it
        next(mixture)
        mixture.get_state()
    assert captures == []
    position = mixture.get_state()  # train.py's init: peek at a batch, then rewind
    peeked = [next(mixture) for _ in range(3)]
    assert captures == [1]  # the kept snapshot captured the iterators before they moved
    mixture.set_state(position)
    assert_batches_equal([next(mixture) for _ in range(3)], peeked)


def test_set_state_rejects_other_inputs_and_configurations() -> None:
    mixture = resume_mixture()
    state = mixture.get_state()
    with pytest.raises(ValueError, match="not a one-dataset-per-batch mixture"):
        mixture.set_state({"epoch": 0, "offset": 16, "seed": 0})
    with pytest.raises(ValueError, match="seed=8"):
        mixture.set_state({**state, "seed": 8})
    with pytest.raises(ValueError, match="no per-host part"):
        mixture.set_state({k: v for k, v in state.items() if k != HOST_STATE_KEY})
    datasets = {"a": task_dataset(0, 20), "b": task_dataset(1, 20)}
    unshuffled = OneDatasetPerBatchMixture(datasets, {"a": 1, "b": 1}, 4)
    shuffled = OneDatasetPerBatchMixture(datasets, {"a": 1, "b": 1}, 4, shuffle_buffer_size=8)
    next(shuffled)
    with pytest.raises(ValueError, match="did a per-task pipeline change"):
        unshuffled.set_state(shuffled.get_state())
    host1 = OneDatasetPerBatchMixture(datasets, {"a": 1, "b": 1}, 4, shard_info=Shard(1, 2))
    host0_state = OneDatasetPerBatchMixture(
        datasets, {"a": 1, "b": 1}, 4, shard_info=Shard(0, 2)
    ).get_state()
    with pytest.raises(ValueError, match="host 0's of 2; this is host 1 of 2"):
        host1.set_state(host0_state)
