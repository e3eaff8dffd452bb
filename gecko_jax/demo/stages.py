"""A resumable run of named stages: a marker per stage, written once the stage is done.

A stage writes its outputs atomically (or through a command that resumes on its own)
and its marker last, so after a crash or Ctrl-C a rerun skips exactly the finished
stages and starts the first unfinished one again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from gecko_jax import fileio

MARKER_DIR = "stages"


def finished_names(workdir: str) -> list[str]:
    """The names of the stages finished in ``workdir``, in the order they finished."""
    directory = os.path.join(workdir, MARKER_DIR)
    if not os.path.isdir(directory):
        return []
    markers = [m for m in os.listdir(directory) if m.endswith(".done")]
    markers.sort(key=lambda m: os.path.getmtime(os.path.join(directory, m)))
    return [m.removesuffix(".done") for m in markers]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the demo.

    Attributes:
      name: the marker's file name (``stages/{name}.done``).
      title: what the stage does, as printed.
      run: does the work; returns what the marker records (paths, counts).
    """

    name: str
    title: str
    run: Callable[[], dict[str, Any]]


class StageRunner:
    """Runs stages in order in ``workdir``, skipping those with a marker."""

    def __init__(self, workdir: str, stages: Sequence[Stage], log: TextIO = sys.stderr) -> None:
        self.workdir = workdir
        self.stages = list(stages)
        self.log = log

    def marker(self, stage: Stage) -> str:
        """The marker file of ``stage``."""
        return os.path.join(self.workdir, MARKER_DIR, f"{stage.name}.done")

    def is_done(self, stage: Stage) -> bool:
        """Whether ``stage`` finished in an earlier or this run."""
        return os.path.exists(self.marker(stage))

    def finished(self) -> list[Stage]:
        """The stages with a marker."""
        return [s for s in self.stages if self.is_done(s)]

    def record(self, stage: Stage) -> dict[str, Any]:
        """What ``stage``'s marker holds."""
        with open(self.marker(stage), encoding="utf-8") as f:
            return json.load(f)

    def _print(self, text: str) -> None:
        print(text, file=self.log, flush=True)

    def run(self) -> None:
        """Runs every unfinished stage in order."""
        os.makedirs(os.path.join(self.workdir, MARKER_DIR), exist_ok=True)
        total = len(self.stages)
        for number, stage in enumerate(self.stages, start=1):
            head = f"[{number}/{total}] {stage.title}"
            if self.is_done(stage):
                self._print(f"{head}: finished in an earlier run, skipped")
                continue
            self._print(f"{head} ...")
            start = time.monotonic()
            record = stage.run()
            seconds = time.monotonic() - start
            with fileio.atomic_open(self.marker(stage)) as f:
                json.dump({**record, "seconds": round(seconds, 1)}, f, indent=2)
            self._print(f"{head}: done in {seconds:.0f} s")
