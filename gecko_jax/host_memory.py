"""Transparent huge pages for XLA:CPU's host buffers, through glibc's malloc tunable.

XLA:CPU allocates a train step's temporaries (gigabytes for a MiniLM step at batch 64)
with ``malloc`` on every execution; glibc serves such sizes with fresh ``mmap`` regions
and returns them on ``free``, so every step touches every page anew: 1.56 million minor
page faults a step on this project's CPU benchmark, about a third of the step. With the
``glibc.malloc.hugetlb=1`` tunable, glibc asks the kernel for transparent huge pages on
those regions (``madvise``): 2 MiB pages cut those faults to about 3,400 a step and the step
time by a third (README, "Training throughput").

glibc reads tunables only when a process starts, so the command-line entry points call
:func:`reexec_with_hugepage_malloc` first: it re-executes the same command, same PID,
with the tunable added to ``GLIBC_TUNABLES``. It does nothing where it cannot help (not
Linux, not glibc >= 2.35, THP disabled by the kernel), when the tunable is already set,
or when ``GECKO_JAX_HUGEPAGE_MALLOC=0``.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

TUNABLE_NAME = "glibc.malloc.hugetlb"
TUNABLE = f"{TUNABLE_NAME}=1"
OPT_OUT_ENV = "GECKO_JAX_HUGEPAGE_MALLOC"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"
MIN_GLIBC = (2, 35)  # the release that added glibc.malloc.hugetlb


def _glibc_version() -> tuple[int, ...] | None:
    library, version = platform.libc_ver()
    if library != "glibc" or not version:
        return None
    try:
        return tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return None


def _thp_mode(path: str = THP_SETTING) -> str | None:
    """The kernel's THP mode (``always``, ``madvise`` or ``never``); None if unknown."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def tunables_with_hugepages(current: str | None) -> str:
    """``GLIBC_TUNABLES`` with :data:`TUNABLE` appended (other tunables kept)."""
    return f"{current}:{TUNABLE}" if current else TUNABLE


def should_reexec(
    environ: Mapping[str, str],
    platform_name: str = sys.platform,
    glibc: tuple[int, ...] | None = None,
    thp_mode: str | None = None,
) -> bool:
    """Whether a process started with ``environ`` would gain from re-executing.

    Args:
      environ: the process environment.
      platform_name: ``sys.platform``.
      glibc: the C library's glibc version (None: not glibc).
      thp_mode: the kernel's THP mode (None: unknown).
    """
    if environ.get(OPT_OUT_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if TUNABLE_NAME in environ.get("GLIBC_TUNABLES", ""):
        return False  # already set (by us before the exec, or by the user)
    if not platform_name.startswith("linux") or glibc is None or glibc < MIN_GLIBC:
        return False
    return thp_mode in ("always", "madvise")


def reexec_with_hugepage_malloc() -> None:
    """Re-executes this command with glibc's malloc using transparent huge pages.

    Returns without doing anything when :func:`should_reexec` says no; otherwise does
    not return (``os.execve`` replaces the process image, keeping its PID, so signals
    sent to it and its parent's ``wait`` are unaffected). Call it before any work.
    """
    if not should_reexec(os.environ, sys.platform, _glibc_version(), _thp_mode()):
        return
    environ = dict(os.environ)
    environ["GLIBC_TUNABLES"] = tunables_with_hugepages(environ.get("GLIBC_TUNABLES"))
    sys.stdout.flush()
    sys.stderr.flush()
    # orig_argv keeps the interpreter's own options (-m module, -c code, -X ...).
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
