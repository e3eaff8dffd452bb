"""When, where and how a benchmark ran: the fields every results JSON records.

:func:`record` gives ``date`` (UTC, ISO 8601), ``machine`` (CPU model, core count,
accelerators) and ``command`` (the benchmark's command line, as a user would type it);
``bench/run_all.py`` puts them in the date, machine and command columns of its table.
"""

from __future__ import annotations

import datetime
import glob
import os
import shlex
import shutil
import subprocess
import sys
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def utc_now() -> str:
    """The current time, UTC, ISO 8601 to the second (``2026-11-30T08:29:13+00:00``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform``'s guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def accelerators() -> list[str]:
    """GPUs named by ``nvidia-smi`` and TPU chips seen as ``/dev/accel*``; empty when none.

    Asked of the system, not of JAX: importing JAX here would start its runtime (and
    claim the accelerator) in processes that otherwise never touch it.
    """
    found = []
    if shutil.which("nvidia-smi"):
        try:
            done = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            found += [line.strip() for line in done.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.TimeoutExpired):
            pass
    # TPU VMs expose their chips as /dev/accel<N> (v4 and older) or /dev/vfio/<N> (v5e on).
    tpu_chips = glob.glob("/dev/accel*") + glob.glob("/dev/vfio/[0-9]*")
    if tpu_chips:
        found.append(f"{len(tpu_chips)} TPU chip(s)")
    return found


def has_gpu() -> bool:
    """Whether ``nvidia-smi`` names a GPU here."""
    return any("TPU" not in name for name in accelerators())


def machine() -> dict[str, Any]:
    """``{"cpu": model, "cpu_count": n, "accelerators": [...]}`` of this machine."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "accelerators": accelerators()}


def command_line(argv: list[str] | None = None) -> str:
    """This process's command, ``python bench/<script>.py <args>`` (paths from the repo)."""
    argv = sys.argv if argv is None else argv
    script = os.path.abspath(argv[0])
    if script.startswith(REPO + os.sep):
        script = os.path.relpath(script, REPO)
    return shlex.join(["python", script, *argv[1:]])


def record(argv: list[str] | None = None) -> dict[str, Any]:
    """``date``, ``machine`` and ``command`` of this run, to merge into a results JSON."""
    return {"date": utc_now(), "machine": machine(), "command": command_line(argv)}
