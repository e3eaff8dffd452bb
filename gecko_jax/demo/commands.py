"""The ``gecko-*`` commands as child processes that Ctrl-C stops cleanly.

A child runs in its own process group, so a terminal's Ctrl-C reaches the demo only;
the demo passes exactly one SIGINT on and waits: gecko-train then saves its checkpoint
and exits 130 (a second SIGINT would stop it unsaved), gecko-serve shuts down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from gecko_jax import exit_codes

# The environment as the command started, before TensorFlow and JAX (imported by the
# stages run in-process) add their own variables: the children start from this one.
STARTING_ENVIRON = dict(os.environ)


class CommandFailed(exit_codes.Stopped):
    """A child command failed; it printed its own error above."""

    def __init__(self, command: str, status: int) -> None:
        super().__init__(f"{command} failed with exit status {status} (its error is above)")
        self.exit_code = status if status > 0 else exit_codes.FAILED


def module_argv(module: str, *args: str) -> list[str]:
    """``python -m gecko_jax.cli.{module} args...`` with this interpreter."""
    return [sys.executable, "-m", f"gecko_jax.cli.{module}", *args]


def start(argv: Sequence[str], **options: Any) -> subprocess.Popen:
    """Starts ``argv`` in its own process group (output on the demo's own streams)."""
    return subprocess.Popen(list(argv), process_group=0, env=STARTING_ENVIRON, **options)


def stop(process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Sends one SIGINT and waits for the process to end (killed after ``timeout_s``)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(argv: Sequence[str], name: str) -> None:
    """Runs ``argv`` to its end.

    Raises:
      KeyboardInterrupt: Ctrl-C (passed on to the child, which is waited for), or the
        child itself was interrupted.
      CommandFailed: any other non-zero status.
    """
    process = start(argv)
    try:
        status = process.wait()
    except KeyboardInterrupt:
        stop(process, timeout_s=600.0)  # a checkpoint save may take a while
        raise
    if status == exit_codes.INTERRUPTED or status == -signal.SIGINT:
        raise KeyboardInterrupt
    if status != 0:
        raise CommandFailed(name, status)
