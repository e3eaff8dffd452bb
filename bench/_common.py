"""Helpers shared by the training benchmarks: worker subprocesses, RSS, results files.

Each benchmark runs every measured configuration in a child process started with
:func:`run_worker` (the same script with ``--worker ...``); the child prints one JSON
object as its last stdout line (:func:`emit`). A child can be given an address-space
cap, so a configuration that needs more memory fails inside its own process instead
of pushing the machine into swap or the OOM killer.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_DATA = os.environ.get("GECKO_EVAL_DATA", os.path.join(REPO, "..", "shared", "data"))
RESULTS_DIR = os.path.join(HERE, "results")
MIB = 1024 * 1024
OUT_OF_MEMORY_MARKERS = ("RESOURCE_EXHAUSTED", "MemoryError", "std::bad_alloc", "Out of memory")


def use_repo() -> None:
    """Makes the repository's ``gecko_jax`` importable (it may not be pip-installed)."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)


def start_like_the_commands() -> None:
    """Re-executes this worker with huge-page malloc, as the ``gecko-*`` commands start
    (:mod:`gecko_jax.host_memory`); returns at once where that does not apply."""
    use_repo()
    from gecko_jax import host_memory

    host_memory.reexec_with_hugepage_malloc()


def child_env() -> dict[str, str]:
    """The environment of worker processes: offline, quiet, the repository importable."""
    path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    # Each worker picks its malloc itself (gecko_jax.host_memory), not this shell's.
    environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    return {**environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """This process's resident set size now."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


def cap_address_space(gib: float) -> None:
    """Caps this process's virtual memory; allocations beyond it fail (MemoryError or
    XLA RESOURCE_EXHAUSTED) instead of exhausting the machine's RAM."""
    limit = int(gib * 1024 * MIB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def emit(result: dict[str, Any]) -> None:
    """Prints a worker's result as the last stdout line."""
    print(json.dumps(result), flush=True)


def run_worker(
    script: str, worker_args: list[str], timeout_s: float | None = None
) -> dict[str, Any]:
    """Runs ``script --worker ...`` in a child process and returns its last JSON line.

    A child that fails (non-zero exit, killed, timed out) returns ``{"failed": reason,
    "out_of_memory": bool, "partial": <its last JSON line, if any>, "stderr_tail": ...}``
    instead of raising, so a benchmark can report configurations that run out of memory.
    """
    command = [sys.executable, os.path.abspath(script), *worker_args]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=child_env(), timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as timeout:
        # The exception carries what the child printed so far, as bytes.
        printed = [(timeout.output or b"").decode(), (timeout.stderr or b"").decode()]
        partial = _json_lines(printed[0])
        return {
            "failed": f"timed out after {timeout_s:.0f} s",
            "out_of_memory": False,
            "partial": partial[-1] if partial else {},
            "stderr_tail": printed[1][-2000:],
        }
    results = _json_lines(done.stdout)
    if done.returncode == 0 and results:
        return results[-1]
    reason = (
        f"exit code {done.returncode}"
        if done.returncode > 0
        else f"killed by signal {-done.returncode}"
    )
    markers = [m for m in OUT_OF_MEMORY_MARKERS if m in done.stderr]
    if markers:
        reason += f" ({markers[0]})"
    return {
        "failed": reason,
        "out_of_memory": bool(markers) or done.returncode == -9,
        "partial": results[-1] if results else {},
        "stderr_tail": done.stderr[-2000:],
    }


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def write_results(name: str, data: dict[str, Any]) -> str:
    """Writes ``bench/results/<name>.json`` (git-ignored; an absolute ``name`` writes
    ``<name>.json`` there instead) and returns its path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    return path
