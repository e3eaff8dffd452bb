"""One dataset per batch: a resumable mixture whose every batch comes from one task.

Gecko fine-tunes on a mixture where each batch holds examples of a single dataset
(Gemini Embedding and sentence-transformers' round-robin/proportional batch samplers
do the same), so in-batch negatives come from the positive's own distribution.
seqio mixes at the example level; this sits on top of per-task ``tf.data`` datasets
of converted, fixed-shape examples (the feature converter's output).

- **Which task**: batch ``n`` comes from :meth:`OneDatasetPerBatchMixture.task_for_batch`,
  a pure function of ``(seed, n)`` with probabilities from :class:`MixtureRates`.
- **Hosts**: each host passes its own shard of every task (built with
  ``seqio.ShardInfo``) and gets ``global_batch_size / num_shards`` rows; all hosts
  pick the same task for batch ``n``. Batches are host-local (``host_local``).
- **Duplicates**: within a host's share of a batch no two rows have the same
  positive (``positive_ids``, else ``positive_tokens``) or the same
  ``query_tokens``; such a row is deferred to a later batch of its task, not dropped
  (unless more than ``max_deferred`` pile up, which is counted and logged). Across
  hosts the loss masks equal ``positive_ids``.
- **Epochs**: each task's dataset is repeated here (``repeat=True``); it is shuffled
  here only if ``shuffle_buffer_size`` is set (before the repeat, so every epoch is
  reshuffled, seeded by ``seed`` and the task name). Leave it unset when the caller
  shuffles already (seqio's ``get_dataset(shuffle=True, seed=...)``).
- **Resuming**: :meth:`get_state`/:meth:`set_state` capture the position, the rows
  held back and every task's tf.data iterator (``tf.train.Checkpoint``), so a
  resumed run continues exactly, without replaying batches.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import weakref
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gecko_jax.data import iterator_state
from gecko_jax.data.iterator_state import HOST_STATE_KEY

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger(__name__)

KIND = "one_dataset_per_batch"
_VERSION = 1
Batch = dict[str, np.ndarray]


class ShardLike(Protocol):
    """``seqio.ShardInfo`` or anything with its two fields."""

    index: int
    num_shards: int


@dataclasses.dataclass(frozen=True)
class MixtureRates:
    """How often each task supplies a batch: ``rate ∝ min(weight, maximum) ** (1/temperature)``.

    Attributes:
      weights: task name -> weight: the rates themselves (explicit), or the task's
        example count (proportional, temperature).
      temperature: 1 keeps the weights' proportions; larger flattens them toward
        uniform (T5's ``mixing_rate_num_examples``).
      maximum: caps each weight before the temperature, if set.
    """

    weights: Mapping[str, float]
    temperature: float = 1.0
    maximum: float | None = None

    @classmethod
    def explicit(cls, rates: Mapping[str, float]) -> MixtureRates:
        """Rates as given (normalised)."""
        return cls(dict(rates))

    def probabilities(self, tasks: Sequence[str]) -> dict[str, float]:
        """Normalised per-task probabilities for exactly ``tasks``.

        Raises:
          ValueError: a weight for an unknown task, a task without a weight, a
            negative or non-finite weight, a bad temperature/maximum, or all zero.
        """
        unknown = sorted(set(self.weights) - set(tasks))
        if unknown:
            raise ValueError(
                f"mixture rates name unknown tasks {unknown}; the tasks are {sorted(tasks)}"
            )
        missing = sorted(set(tasks) - set(self.weights))
        if missing:
            raise ValueError(f"no mixture rate for tasks {missing}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"mixture temperature must be positive, got {self.temperature}")
        if self.maximum is not None and not self.maximum > 0:
            raise ValueError(f"mixture rate maximum must be positive, got {self.maximum}")
        scaled = {}
        for task in tasks:
            weight = float(self.weights[task])
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"mixture rate of {task!r} must be finite and >= 0, got {weight}")
            if self.maximum is not None:
                weight = min(weight, self.maximum)
            scaled[task] = weight ** (1.0 / self.temperature)
        total = sum(scaled.values())
        if total <= 0:
            raise ValueError(f"mixture rates sum to zero: {dict(self.weights)}")
        return {task: value / total for task, value in scaled.items()}


def _fixed_spec(task: str, element_spec: Any) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    import tensorflow as tf

    if not isinstance(element_spec, Mapping) or not element_spec:
        raise ValueError(f"task {task!r}: examples must be a dict of tensors, got {element_spec}")
    spec = {}
    for name, feature in element_spec.items():
        if not isinstance(feature, tf.TensorSpec) or not feature.shape.is_fully_defined():
            raise ValueError(
                f"task {task!r}: feature {name!r} must have a fixed shape, got {feature}"
            )
        if feature.dtype == tf.string:
            raise ValueError(
                f"task {task!r}: feature {name!r} is a string; mix converted (token id) features"
            )
        spec[name] = (tuple(feature.shape.as_list()), np.dtype(feature.dtype.as_numpy_dtype))
    return spec


class _Snapshot:
    """A mixer's state at one position; the tf.data part is captured on demand.

    The mixer captures its iterators into a live snapshot before it moves them
    (copy on write), so taking a snapshot every step costs nothing unless it is
    kept (a checkpoint that is due, or ``set_state(get_state())`` later).
    """

    def __init__(self, mixer: OneDatasetPerBatchMixture) -> None:
        self._mixer: OneDatasetPerBatchMixture | None = mixer
        self._arrays = mixer._host_arrays()
        self._iterator_files: dict[str, bytes] | None = None
        self._blob: bytes | None = None

    def capture_iterators(self) -> None:
        if self._iterator_files is None:
            assert self._mixer is not None
            self._iterator_files = iterator_state.save_iterators(self._mixer._iterators)
            self._mixer = None

    def to_bytes(self) -> bytes:
        """This host's state as an ``.npz`` blob."""
        if self._blob is None:
            self.capture_iterators()
            assert self._iterator_files is not None
            arrays = dict(self._arrays)
            for name, content in self._iterator_files.items():
                arrays[f"iterators/{name}"] = np.frombuffer(content, dtype=np.uint8)
            self._blob = iterator_state.pack_arrays(arrays)
        return self._blob


class OneDatasetPerBatchMixture:
    """Batches drawn whole from one task at a time, by seeded mixture rates.

    Iterate it for numpy batches (this host's ``local_batch_size`` rows each).

    Args:
      datasets: task name -> ``tf.data.Dataset`` of dicts of fixed-shape numeric
        features (this host's shard); every task must have the same features.
      rates: :class:`MixtureRates` or a mapping of explicit rates.
      global_batch_size: rows per batch over all hosts.
      seed: task choice (and shuffling, if asked); a non-negative int.
      shard_info: this host's ``index`` of ``num_shards`` (default: one host).
      shuffle_buffer_size: if set, shuffle each task here before repeating.
      repeat: repeat each task forever; otherwise iteration stops when the task
        of the next batch runs out.
      dedup: defer rows that would repeat a positive or a query within a batch.
      max_deferred: rows a task may hold back (default 8 local batches); more
        are dropped and counted in ``dropped_duplicates``.
      max_scan: rows examined for one batch before giving up (default 64 local
        batches): a task with too few distinct positives fails instead of looping.
      prefetch: chunks prefetched per task.
    """

    host_local = True  # batches hold this host's rows only, not the global batch

    def __init__(
        self,
        datasets: Mapping[str, tf.data.Dataset],
        rates: MixtureRates | Mapping[str, float],
        global_batch_size: int,
        seed: int = 0,
        *,
        shard_info: ShardLike | None = None,
        shuffle_buffer_size: int | None = None,
        repeat: bool = True,
        dedup: bool = True,
        max_deferred: int | None = None,
        max_scan: int | None = None,
        prefetch: int = 2,
    ) -> None:
        if not datasets:
            raise ValueError("a mixture needs at least one task")
        self.tasks: tuple[str, ...] = tuple(sorted(datasets))
        rates = rates if isinstance(rates, MixtureRates) else MixtureRates.explicit(rates)
        self.probabilities = rates.probabilities(self.tasks)
        self.num_shards, self.shard_index = (
            (1, 0) if shard_info is None else (int(shard_info.num_shards), int(shard_info.index))
        )
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"bad shard: index {self.shard_index} of {self.num_shards}")
        if global_batch_size < 1:
            raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
        if global_batch_size % self.num_shards:
            raise ValueError(
                f"global batch size {global_batch_size} is not divisible by {self.num_shards} hosts"
            )
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // self.num_shards
        self.seed = int(seed)
        self.dedup = dedup
        self.max_deferred = 8 * self.local_batch_size if max_deferred is None else max_deferred
        self.max_scan = 64 * self.local_batch_size if max_scan is None else max_scan
        cumulative = np.cumsum([self.probabilities[t] for t in self.tasks])
        last = max(i for i, t in enumerate(self.tasks) if self.probabilities[t] > 0)
        cumulative[last:] = 1.0  # rounding must never select a zero-rate task
        self._cumulative = cumulative

        specs = {t: _fixed_spec(t, datasets[t].element_spec) for t in self.tasks}
        self._spec = specs[self.tasks[0]]
        for task, spec in specs.items():
            if spec != self._spec:
                raise ValueError(
                    f"tasks {self.tasks[0]!r} and {task!r} have different features: "
                    f"{self._spec} vs {spec}"
                )
        if "positive_ids" in self._spec:
            self._dedup_keys = ["positive_ids"]
        else:
            self._dedup_keys = [k for k in ("positive_tokens",) if k in self._spec]
        self._dedup_keys += [k for k in ("query_tokens",) if k in self._spec]

        self._shuffle_buffer_size = shuffle_buffer_size
        self._repeat = repeat
        self._prefetch = prefetch
        self._iterators = {t: iter(self._pipeline(t, datasets[t])) for t in self.tasks}
        self._pending: dict[str, Batch] = {t: self._empty() for t in self.tasks}
        self._position = 0
        self.dropped_duplicates = 0
        self.last_task: str | None = None
        self._snapshot_ref: weakref.ref[_Snapshot] | None = None

    # -- the pipeline ---------------------------------------------------------

    def _pipeline(self, task: str, dataset: tf.data.Dataset) -> tf.data.Dataset:
        if self._shuffle_buffer_size:
            task_seed = int(
                np.random.SeedSequence(
                    [self.seed, zlib.crc32(task.encode("utf-8"))]
                ).generate_state(1)[0]
            )
            dataset = dataset.shuffle(
                self._shuffle_buffer_size, seed=task_seed, reshuffle_each_iteration=True
            )
        if self._repeat:
            dataset = dataset.repeat()
        # Whole chunks cross into Python: one tf.data call per local batch, not per row.
        dataset = dataset.batch(self.local_batch_size)
        if self._prefetch:
            dataset = dataset.prefetch(self._prefetch)
        return iterator_state.checkpointable(dataset)

    def _empty(self) -> Batch:
        return {k: np.zeros((0,) + shape, dtype) for k, (shape, dtype) in self._spec.items()}

    def _pull(self, task: str) -> Batch:
        chunk = next(self._iterators[task])  # StopIteration ends the mixture (repeat=False)
        return {k: np.asarray(v) for k, v in chunk.items()}

    # -- batches --------------------------------------------------------------

    @property
    def position(self) -> int:
        """The index of the next batch."""
        return self._position

    def task_for_batch(self, position: int) -> str:
        """The task batch ``position`` comes from: a pure function of (seed, position)."""
        u = np.random.default_rng([self.seed, position]).random()
        return self.tasks[int(np.searchsorted(self._cumulative, u, side="right"))]

    def __iter__(self) -> OneDatasetPerBatchMixture:
        return self

    def __next__(self) -> Batch:
        self._freeze_snapshot()
        task = self.task_for_batch(self._position)
        batch = self._assemble(task)
        self._position += 1
        self.last_task = task
        return batch

    def _assemble(self, task: str) -> Batch:
        """The next ``local_batch_size`` distinct rows of ``task``; the rest stays pending."""
        pool = self._pending[task]
        size = len(pool[next(iter(pool))])
        chosen: list[int] = []
        deferred: list[int] = []
        seen: list[set[bytes]] = [set() for _ in self._dedup_keys]
        row = 0
        while len(chosen) < self.local_batch_size:
            if row == size:
                if row >= self.max_scan:
                    self._pending[task] = pool
                    raise ValueError(
                        f"task {task!r}: only {len(chosen)} of {self.local_batch_size} rows with "
                        f"distinct {' and '.join(self._dedup_keys)} after examining {row} rows; "
                        "the task has too many duplicates for this batch size: lower the "
                        f"batch size (--gin.BATCH_SIZE, at most {len(chosen)} rows per host)"
                    )
                try:
                    chunk = self._pull(task)
                except StopIteration:
                    self._pending[task] = pool
                    raise
                pool = {k: np.concatenate([pool[k], chunk[k]]) for k in pool}
                size = len(pool[next(iter(pool))])
            if self.dedup:
                keys = [pool[k][row].tobytes() for k in self._dedup_keys]
                if any(key in s for key, s in zip(keys, seen)):
                    deferred.append(row)
                    row += 1
                    continue
                for key, s in zip(keys, seen):
                    s.add(key)
            chosen.append(row)
            row += 1
        if len(deferred) > self.max_deferred:
            dropped = len(deferred) - self.max_deferred
            self.dropped_duplicates += dropped
            log.warning(
                "task %r: dropped %d duplicate rows (more than max_deferred=%d held back)",
                task,
                dropped,
                self.max_deferred,
            )
            deferred = deferred[: self.max_deferred]
        keep = np.concatenate([np.asarray(deferred, np.int64), np.arange(row, size)])
        self._pending[task] = {k: v[keep] for k, v in pool.items()}
        index = np.asarray(chosen, np.int64)
        return {k: v[index] for k, v in pool.items()}

    # -- state ----------------------------------------------------------------

    def _host_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "version": np.int64(_VERSION),
            "position": np.int64(self._position),
            "tasks": np.array(self.tasks),
            "shard": np.array([self.shard_index, self.num_shards], np.int64),
            "dropped_duplicates": np.int64(self.dropped_duplicates),
        }
        for i, task in enumerate(self.tasks):
            for name, value in self._pending[task].items():
                arrays[f"pending/{i}/{name}"] = value  # never mutated in place: safe to share
        return arrays

    def _freeze_snapshot(self) -> None:
        """Lets a snapshot still in use capture the iterators before they move."""
        snapshot = self._snapshot_ref() if self._snapshot_ref is not None else None
        if snapshot is not None:
            snapshot.capture_iterators()
        self._snapshot_ref = None

    def get_state(self) -> dict[str, Any]:
        """The position of the next batch.

        JSON values (shared by every host) plus this host's state under
        :data:`~gecko_jax.data.iterator_state.HOST_STATE_KEY`, a lazy snapshot that
        :class:`gecko_jax.checkpoints.CheckpointManager` serialises only when it
        writes a checkpoint. Cheap to call every step.
        """
        snapshot = self._snapshot_ref() if self._snapshot_ref is not None else None
        if snapshot is None:
            snapshot = _Snapshot(self)
            self._snapshot_ref = weakref.ref(snapshot)
        return {
            "kind": KIND,
            "version": _VERSION,
            "seed": self.seed,
            "position": self._position,
            "tasks": list(self.tasks),
            "global_batch_size": self.global_batch_size,
            "num_shards": self.num_shards,
            "probabilities": dict(self.probabilities),
            HOST_STATE_KEY: snapshot,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continues from a state of :meth:`get_state` (in memory or restored).

        Mixture rates may change between runs (the position stays valid); the
        tasks, seed, batch size and host count may not.

        Raises:
          ValueError: the state belongs to another input or configuration.
        """
        if state.get("kind") != KIND:
            raise ValueError(
                f"the saved input state is not a one-dataset-per-batch mixture's "
                f"(kind {state.get('kind')!r}); was the run started with another input?"
            )
        expected = {
            "seed": self.seed,
            "tasks": list(self.tasks),
            "global_batch_size": self.global_batch_size,
            "num_shards": self.num_shards,
        }
        for key, value in expected.items():
            if state.get(key) != value:
                raise ValueError(
                    f"the saved input state has {key}={state.get(key)!r}, this run {value!r}"
                )
        if HOST_STATE_KEY not in state:
            raise ValueError(f"the saved input state has no per-host part ({HOST_STATE_KEY!r})")
        arrays = iterator_state.unpack_arrays(
            iterator_state.host_state_bytes(state[HOST_STATE_KEY])
        )
        if int(arrays["position"]) != int(state["position"]):
            raise ValueError(
                f"per-host input state at batch {int(arrays['position'])} does not "
                f"match the shared state's batch {state['position']}"
            )
        if list(arrays["tasks"]) != list(self.tasks):
            raise ValueError(f"per-host input state is for tasks {list(arrays['tasks'])}")
        shard = tuple(int(x) for x in arrays["shard"])
        if shard != (self.shard_index, self.num_shards):
            raise ValueError(
                f"per-host input state is host {shard[0]}'s of {shard[1]}; "
                f"this is host {self.shard_index} of {self.num_shards}"
            )
        saved = sorted({k.split("/")[2] for k in arrays if k.startswith("pending/")})
        if saved != sorted(self._spec):
            raise ValueError(
                f"per-host input state has features {saved}, this run {sorted(self._spec)}"
            )
        pending = {}
        for i, task in enumerate(self.tasks):
            pending[task] = {name: arrays[f"pending/{i}/{name}"] for name in self._spec}
        prefix = "iterators/"
        files = {k[len(prefix) :]: arrays[k].tobytes() for k in arrays if k.startswith(prefix)}
        self._freeze_snapshot()
        try:
            iterator_state.restore_iterators(self._iterators, files)
        except Exception as e:  # TF's own message names ops, not our configuration
            raise ValueError(
                "could not restore the tasks' tf.data iterators; did a per-task pipeline change "
                f"(sources, shuffle buffer, batch size)? {type(e).__name__}: {e}"
            ) from e
        self._pending = pending
        self._position = int(arrays["position"])
        self.dropped_duplicates = int(arrays["dropped_duplicates"])
