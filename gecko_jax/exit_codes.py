"""Exit statuses of the ``gecko-*`` commands, which launchers and job specs rely on.

A launcher restarts a run on :data:`PREEMPTED` only: the run saved a checkpoint and the
same command resumes it. :data:`INTERRUPTED` also kept its work, but a person asked to
stop. :data:`FAILED` and :data:`USAGE` would fail again: a restart cannot help.
"""

from __future__ import annotations

FINISHED = 0
FAILED = 1  # the run failed by its own fault (a non-finite loss, a bug)
USAGE = 2  # bad flags, gin, files, rows or paths; argparse uses 2 as well
PREEMPTED = 75  # SIGTERM: checkpoint saved; sysexits.h's EX_TEMPFAIL, "try again later"
INTERRUPTED = 130  # SIGINT (Ctrl-C): checkpoint saved; the shell's 128 + SIGINT


class Stopped(Exception):
    """A command ended early on purpose; the message is its one-line explanation.

    Attributes:
      exit_code: the status the command exits with.
    """

    exit_code = FAILED
