"""The one error convention of the ``gecko-*`` commands.

A user error (bad flags, gin, files, rows, paths: every error gecko_jax raises for bad
input is a ``ValueError`` or ``OSError`` whose message names the culprit) is one line on
stderr, ``prog: error: ...``, and exit status :data:`~gecko_jax.exit_codes.USAGE`, with
no traceback; ``--debug`` or ``GECKO_DEBUG=1`` shows it. A run that stops on purpose
(:class:`~gecko_jax.exit_codes.Stopped`) prints its own line and status; Ctrl-C prints
what was kept. Anything else is a programming error and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from gecko_jax import exit_codes

DEBUG_ENV = "GECKO_DEBUG"
# gin appends where a configurable was called to the message of what it raised.
_GIN_CONTEXT = "\n  In call to configurable"


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Adds ``--debug``: show the traceback of a user error."""
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of a user error (also: {DEBUG_ENV}=1)",
    )


def error_message(error: BaseException) -> str:
    """The message of a user error, without the call context gin appends to it."""
    text = str(error) if not isinstance(error, KeyError) else str(error.args[0])
    return text.split(_GIN_CONTEXT)[0].strip() or type(error).__name__


def run_command(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
    *,
    user_errors: tuple[type[BaseException], ...] = (),
    on_interrupt: str | Callable[[argparse.Namespace], str] = "",
) -> int:
    """Parses ``argv`` and runs ``body(args)`` under the convention; returns the status.

    Args:
      parser: the command's parser (from :func:`gecko_jax.cli.flags.command_parser`,
        which adds ``--debug``).
      body: the command; returns its status (None: finished).
      argv: the arguments (None: ``sys.argv[1:]``).
      user_errors: further exception types that are user errors for this command.
      on_interrupt: what Ctrl-C leaves behind, e.g. "finished shards are kept in DIR";
        a function of the parsed arguments when it depends on them.
    """
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get(DEBUG_ENV) == "1"
    prog = parser.prog
    try:
        status = body(args)
    except exit_codes.Stopped as e:
        print(f"{prog}: {error_message(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        kept = on_interrupt(args) if callable(on_interrupt) else on_interrupt
        print(f"{prog}: interrupted" + (f"; {kept}" if kept else ""), file=sys.stderr)
        return exit_codes.INTERRUPTED
    except (ValueError, OSError, *user_errors) as e:
        if debug:
            raise
        print(f"{prog}: error: {error_message(e)}", file=sys.stderr)
        return exit_codes.USAGE
    return exit_codes.FINISHED if status is None else status
