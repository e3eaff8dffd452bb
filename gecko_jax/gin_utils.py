"""gin plumbing for command-line entry points, in T5X's style.

t5x is not on the package index, so its small flag conventions are reproduced here:
``--gin_file`` (repeatable), ``--gin_bindings`` (repeatable), ``--gin_search_paths``
and the ``--gin.NAME=VALUE`` shorthand for a binding. The gin files under
``gecko_jax/gin/`` ship inside the package (as T5X ships its configs), so
``--gin_file=runs/finetune.gin`` works in any install and from any directory.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.resources
import logging
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import gin

from gecko_jax import fileio

# Wheels install packages as directories, so the packaged gin files have real paths
# that gin can open.
GIN_DIR = str(importlib.resources.files("gecko_jax") / "gin")

_search_paths_given_to_gin: set[str] = set()  # gin keeps them for the whole process


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
    """Turns ``--gin.NAME=VALUE`` into ``--gin_bindings=NAME = VALUE``."""
    out = []
    for arg in argv:
        if arg.startswith("--gin.") and "=" in arg:
            name, value = arg[len("--gin.") :].split("=", 1)
            out.append(f"--gin_bindings={name} = {value}")
        else:
            out.append(arg)
    return out


def _comma_separated(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def add_gin_flags(parser: argparse.ArgumentParser) -> None:
    """Adds ``--gin_file``, ``--gin_bindings`` and ``--gin_search_paths`` to ``parser``.

    Pass the command line through :func:`rewrite_gin_args` first, so that the
    ``--gin.NAME=VALUE`` shorthand becomes a binding.
    """
    group = parser.add_argument_group("gin configuration")
    group.add_argument(
        "--gin_file",
        action="append",
        default=[],
        metavar="FILE",
        help="gin file (repeatable; later files override earlier ones), looked up in the "
        "current directory, then --gin_search_paths, then the packaged gecko_jax/gin/ "
        "(e.g. runs/finetune.gin, local/minilm_stsb.gin)",
    )
    group.add_argument(
        "--gin_bindings",
        action="append",
        default=[],
        metavar="BINDING",
        help="gin binding (repeatable); --gin.NAME=VALUE is short for "
        "--gin_bindings='NAME = VALUE'",
    )
    group.add_argument(
        "--gin_search_paths",
        action="extend",
        type=_comma_separated,
        default=[],
        metavar="DIRS",
        help="comma-separated directories searched for gin files and their includes (repeatable)",
    )


def parse_gin(
    gin_files: Sequence[str],
    gin_bindings: Sequence[str],
    search_paths: Sequence[str] = (),
    check_macros: bool = True,
) -> None:
    """Parses gin files and bindings; errors name the file and the binding.

    A relative name is looked up in the current directory, then ``search_paths``,
    then the packaged ``gecko_jax/gin/``, and ``include`` statements inside the files
    in the same places, so ``--gin_file=runs/finetune.gin`` works from anywhere.

    Raises:
      FileNotFoundError: a gin file is in none of the search paths (all are listed).
      ValueError: a binding of a macro that nothing uses (a typo: names the closest
        macro; unless ``check_macros`` is off), or gin's own errors.
    """
    _register_gs_reader()
    paths = [os.getcwd(), *search_paths, GIN_DIR]
    files = [_find_gin_file(name, paths) for name in gin_files]
    # gin itself tries the current directory first, then the paths added here, in order.
    for path in [*search_paths, GIN_DIR]:
        if path not in _search_paths_given_to_gin:
            gin.add_config_file_search_path(path)
            _search_paths_given_to_gin.add(path)
    with _without_search_path_misses():
        parsed = gin.parse_config_files_and_bindings(
            files, list(gin_bindings), finalize_config=False
        )
    if check_macros:
        texts = [_read(_find_gin_file(name, paths)) for name in _all_files(parsed)]
        check_macro_bindings(gin_bindings, texts)
    gin.finalize()


_MACRO_BINDING = re.compile(r"^\s*([A-Za-z_]\w*)\s*=", re.MULTILINE)
_MACRO_REFERENCE = re.compile(r"%([A-Za-z_]\w*)\b(?!\.)")  # not %gin.REQUIRED


def check_macro_bindings(bindings: Sequence[str], gin_texts: Sequence[str]) -> None:
    """Refuses a command-line binding of a macro that no gin file or binding uses.

    gin accepts such a binding silently, so ``--gin.TRAIN_STESP=3`` would leave
    ``TRAIN_STEPS`` unset (or at its default) without a word.

    Raises:
      ValueError: names the binding and the closest macro in use.
    """
    texts = [*gin_texts, *bindings]
    used = {name for text in texts for name in _MACRO_REFERENCE.findall(text)}
    for binding in bindings:
        for name in _MACRO_BINDING.findall(binding):
            if name not in used:
                close = difflib.get_close_matches(name, sorted(used), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                known = ", ".join(sorted(used)) or "none"
                raise ValueError(
                    f"--gin.{name}: no gin file uses the macro {name}{hint}; macros in use: {known}"
                )


def _all_files(parsed: Sequence[Any]) -> list[str]:
    """Every file of gin's parse tree, includes too."""
    names: list[str] = []
    for node in parsed:
        names.append(node.filename)
        names.extend(_all_files(node.includes))
    return names


def _read(name: str) -> str:
    with fileio.open(name) as f:
        return f.read()


_gs_reader_registered = False


def _register_gs_reader() -> None:
    """Lets gin read ``gs://`` files (and includes) through :mod:`gecko_jax.fileio`."""
    global _gs_reader_registered
    if not _gs_reader_registered:
        gin.config.register_file_reader(
            fileio.open, lambda p: fileio.is_url(p) and fileio.exists(p)
        )
        _gs_reader_registered = True


def _find_gin_file(name: str, paths: Sequence[str]) -> str:
    if os.path.isabs(name) or name.startswith("gs://"):
        return name
    for path in paths:
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"gin file {name!r} not found in the search paths {list(paths)}")


class _SearchPathMissFilter(logging.Filter):
    """Drops gin's ``Path not found`` records.

    To find an included file gin tries each search path in turn, and its package-path
    reader logs each path that lacks the file at ERROR level, though a later path has
    it. A file found in none of the paths still fails: gin raises an ``IOError`` that
    lists them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.module == "resource_reader" and record.msg == "Path not found: %s")


@contextlib.contextmanager
def _without_search_path_misses() -> Iterator[None]:
    root = logging.getLogger()  # gin logs through the logging module's functions
    miss_filter = _SearchPathMissFilter()
    root.addFilter(miss_filter)
    try:
        yield
    finally:
        root.removeFilter(miss_filter)
