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
import importlib.resources
import logging
import os
from collections.abc import Iterator, Sequence

import gin

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
    gin_files: Sequence[str], gin_bindings: Sequence[str], search_paths: Sequence[str] = ()
) -> None:
    """Parses gin files and bindings; errors name the file and the binding.

    A relative name is looked up in the current directory, then ``search_paths``,
    then the packaged ``gecko_jax/gin/``, and ``include`` statements inside the files
    in the same places, so ``--gin_file=runs/finetune.gin`` works from anywhere.

    Raises:
      FileNotFoundError: a gin file is in none of the search paths (all are listed).
    """
    paths = [os.getcwd(), *search_paths, GIN_DIR]
    files = [_find_gin_file(name, paths) for name in gin_files]
    # gin itself tries the current directory first, then the paths added here, in order.
    for path in [*search_paths, GIN_DIR]:
        if path not in _search_paths_given_to_gin:
            gin.add_config_file_search_path(path)
            _search_paths_given_to_gin.add(path)
    with _without_search_path_misses():
        gin.parse_config_files_and_bindings(files, list(gin_bindings), finalize_config=True)


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
