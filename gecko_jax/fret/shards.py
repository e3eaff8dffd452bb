"""Shards of seed passages, their files, done markers and atomic writes.

An output directory holds::

    fret-00000-of-00004.jsonl      the rows of shard 0 (or .tfrecord)
    done/fret-00000-of-00004.json  shard 0's done marker: its statistics
    run.json                       the settings the rows were made with (written with
                                   the first rows; a rerun with other settings is refused)
    summary.json                   the run's summary
    passage_embeddings.npy (+ .json)  the corpus embeddings, reused on restart

Every file is written atomically (:func:`gecko_jax.fileio.atomic_path`: locally to a
temporary name, then renamed), and a shard's marker is written after its rows, so a
shard is done exactly when its marker exists: a crash leaves finished shards intact and
the unfinished one without rows. A shard with a marker is never redone. Rows read with
``fret-*.jsonl`` never see temporary files (they end in ``.tmp``) or markers.

One run at a time may use an output directory, or the workers of one run
(:class:`Workers`), on one machine or many: worker ``i`` of ``n`` runs only the shards
``s`` with ``s % n == i``, so no two write the same rows; their temporary files carry
the worker's index (``.w1.tmp``), so each cleans up only its own; ``run.json`` and
``summary.json`` are written by each (the same settings; the summary over every
finished shard).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from gecko_jax import fileio, run_settings
from gecko_jax.fileio import join
from gecko_jax.fret.config import check_workers

ROWS_PREFIX = "fret"
DONE_DIR = "done"
MANIFEST = "run.json"
SUMMARY = "summary.json"
TMP_SUFFIX = fileio.TMP_SUFFIX
DEFAULT_SHARD_SIZE = 1_000


class ShardStateError(ValueError):
    """The output directory holds a run with other settings."""


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """How ``num_passages`` seed passages split into contiguous shards.

    Attributes:
      num_passages: the seed passages.
      count: the number of shards; sizes differ by at most one, larger first.
    """

    num_passages: int
    count: int

    @classmethod
    def make(
        cls, num_passages: int, num_shards: int | None = None, shard_size: int | None = None
    ) -> ShardPlan:
        """A plan from a shard count or a shard size (default size 1,000).

        Raises:
          ValueError: both given, or more shards than passages (names the flag).
        """
        if num_shards is not None and shard_size is not None:
            raise ValueError("give --num_shards or --shard_size, not both")
        if num_shards is None:
            size = shard_size or DEFAULT_SHARD_SIZE
            if size < 1:
                raise ValueError(f"--shard_size must be >= 1, got {size}")
            num_shards = -(-num_passages // size)
        elif not 1 <= num_shards <= num_passages:
            raise ValueError(
                f"--num_shards must be in 1..{num_passages} (the passages), got {num_shards}"
            )
        return cls(num_passages, num_shards)

    def bounds(self, shard: int) -> tuple[int, int]:
        """The ``[start, stop)`` passage indices of one shard."""
        base, extra = divmod(self.num_passages, self.count)
        start = shard * base + min(shard, extra)
        return start, start + base + (shard < extra)


@dataclasses.dataclass(frozen=True)
class Workers:
    """This process's share of a run: worker ``index`` of ``count``.

    Raises:
      ValueError: ``count`` < 1 or ``index`` outside ``0..count-1`` (names the flags).
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        check_workers(self.index, self.count)

    def owns(self, shard: int) -> bool:
        """Whether this worker runs ``shard``."""
        return shard % self.count == self.index

    @property
    def tmp_tag(self) -> str:
        """What this worker's temporary file names carry before ``.tmp`` (none when alone)."""
        return f".w{self.index}" if self.count > 1 else ""


def atomic_write(path: str, write: Callable[[str], Any], tmp_tag: str = "") -> None:
    """Calls ``write(where)`` to write ``path`` atomically (:func:`fileio.atomic_path`).

    ``tmp_tag`` goes into the temporary name (:attr:`Workers.tmp_tag`).
    """
    with fileio.atomic_path(path, tmp_tag + TMP_SUFFIX) as where:
        write(where)


def write_json(path: str, value: Any, tmp_tag: str = "") -> None:
    """Writes JSON atomically (indented)."""
    with fileio.atomic_open(path, "w", tmp_tag + TMP_SUFFIX) as f:
        f.write(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str) -> Any:
    """Reads a JSON file (local or ``gs://``)."""
    with fileio.open(path, "r") as f:
        return json.loads(f.read())


class ShardStore:
    """The shard files of one output directory.

    Args:
      output_dir: the directory (created if missing).
      plan: the shard plan.
      extension: the rows files' extension (``"jsonl"`` or ``"tfrecord"``).
      workers: this process's share of the shards (default: all of them).
    """

    def __init__(
        self, output_dir: str, plan: ShardPlan, extension: str, workers: Workers | None = None
    ) -> None:
        self.output_dir, self.plan, self.extension = output_dir, plan, extension
        self.workers = workers or Workers()
        fileio.makedirs(join(output_dir, DONE_DIR))

    def name(self, shard: int) -> str:
        """``fret-00003-of-00016``."""
        return f"{ROWS_PREFIX}-{shard:05d}-of-{self.plan.count:05d}"

    def rows_path(self, shard: int) -> str:
        """The rows file of a shard."""
        return join(self.output_dir, f"{self.name(shard)}.{self.extension}")

    def marker_path(self, shard: int) -> str:
        """The done marker of a shard."""
        return join(self.output_dir, DONE_DIR, f"{self.name(shard)}.json")

    def is_done(self, shard: int) -> bool:
        """Whether the shard's marker and rows both exist."""
        return fileio.exists(self.marker_path(shard)) and fileio.exists(self.rows_path(shard))

    def pending(self) -> list[int]:
        """This worker's shards not done yet, in order."""
        return [i for i in range(self.plan.count) if self.workers.owns(i) and not self.is_done(i)]

    def write_json(self, name: str, value: Any) -> None:
        """Writes ``output_dir/name`` as JSON, atomically."""
        write_json(join(self.output_dir, name), value, self.workers.tmp_tag)

    def write_rows(self, shard: int, write: Callable[[str], Any]) -> None:
        """Writes a shard's rows atomically with ``write(temporary_path)``."""
        atomic_write(self.rows_path(shard), write, self.workers.tmp_tag)

    def mark_done(self, shard: int, stats: Mapping[str, Any]) -> None:
        """Writes a shard's done marker (after its rows)."""
        if not fileio.exists(self.rows_path(shard)):
            raise ShardStateError(
                f"shard {shard} has no rows file {self.rows_path(shard)} to mark done"
            )
        write_json(self.marker_path(shard), {"shard": shard, **stats}, self.workers.tmp_tag)

    def done(self) -> list[int]:
        """The finished shards (of every worker), in order."""
        return [i for i in range(self.plan.count) if self.is_done(i)]

    def done_stats(self) -> list[dict[str, Any]]:
        """The markers of the finished shards, in shard order."""
        return [read_json(self.marker_path(i)) for i in self.done()]

    def recorded_settings(self) -> dict[str, Any] | None:
        """The settings in ``run.json``, or None before the first rows."""
        path = join(self.output_dir, MANIFEST)
        return read_json(path) if fileio.exists(path) else None

    def record_manifest(self, settings: Mapping[str, Any]) -> None:
        """Writes ``run.json`` unless it exists (called before the first rows are written).

        With several workers it is checked on every call too, so that of two workers
        started at once with other settings, the one whose file lost is refused before
        its next shard (:meth:`check_manifest`).
        """
        path = join(self.output_dir, MANIFEST)
        if not fileio.exists(path):
            write_json(path, settings, self.workers.tmp_tag)
        if self.workers.count > 1:
            self.check_manifest(settings)

    def remove_temporary(self) -> int:
        """Deletes the temporary files a crash of this worker left behind; returns how many."""
        pattern = f"*{self.workers.tmp_tag}{TMP_SUFFIX}"
        stale = fileio.glob(join(self.output_dir, pattern))
        stale += fileio.glob(join(self.output_dir, DONE_DIR, pattern))
        for path in stale:
            fileio.remove(path)
        return len(stale)

    def check_manifest(self, settings: Mapping[str, Any]) -> None:
        """Checks ``settings`` against those in ``run.json``, if any.

        Raises:
          ShardStateError: the directory was written with other settings (names them).
        """
        recorded = self.recorded_settings()
        if recorded is None:
            return
        found = run_settings.changes(recorded, settings, current_keys_only=True)
        if found:
            raise ShardStateError(
                f"{join(self.output_dir, MANIFEST)}: this output directory holds rows made "
                f"with other settings; changed:\n{run_settings.describe(found)}\n"
                "use a new --output_dir, or restore those settings to resume"
            )
