"""gin plumbing for command-line entry points, in T5X's style.

t5x is not on the package index, so its small flag conventions are reproduced here:
``--gin_file`` (repeatable), ``--gin_bindings`` (repeatable), ``--gin_search_paths``
and the ``--gin.NAME=VALUE`` shorthand for a binding.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import gin

GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")


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


def parse_gin(
    gin_files: Sequence[str], gin_bindings: Sequence[str], search_paths: Sequence[str] = ()
) -> None:
    """Parses gin files and bindings; errors name the file and the binding.

    ``search_paths``, then the repository's ``gin/`` directory, then the current
    directory are searched, so ``--gin_file=runs/finetune.gin`` works from anywhere.

    Raises:
      FileNotFoundError: a gin file is in none of the search paths (all are listed).
    """
    paths = [*search_paths, GIN_DIR, os.getcwd()]
    for path in paths:
        gin.add_config_file_search_path(path)
    files = [_find_gin_file(name, paths) for name in gin_files]
    gin.parse_config_files_and_bindings(files, list(gin_bindings), finalize_config=True)


def _find_gin_file(name: str, paths: Sequence[str]) -> str:
    if os.path.isabs(name) or name.startswith("gs://"):
        return name
    for path in paths:
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"gin file {name!r} not found in the search paths {list(paths)}")
