"""gin plumbing for command-line entry points, in T5X's style.

t5x is not on the package index, so its small flag conventions are reproduced here:
``--gin_file`` (repeatable), ``--gin_bindings`` (repeatable), ``--gin_search_paths``
and the ``--gin.NAME=VALUE`` shorthand for a binding.
"""

from __future__ import annotations

import os
from typing import Sequence

import gin

GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")


def rewrite_gin_args(argv: Sequence[str]) -> list[str]:
    """Turns ``--gin.NAME=VALUE`` into ``--gin_bindings=NAME = VALUE``."""
    out = []
    for arg in argv:
        if arg.startswith("--gin.") and "=" in arg:
            name, value = arg[len("--gin."):].split("=", 1)
            out.append(f"--gin_bindings={name} = {value}")
        else:
            out.append(arg)
    return out


def parse_gin(
    gin_files: Sequence[str], gin_bindings: Sequence[str], search_paths: Sequence[str] = ()
) -> None:
    """Parses gin files and bindings; errors name the file and the binding.

    The repository's ``gin/`` directory and the current directory are always searched,
    so ``--gin_file=runs/finetune.gin`` works from anywhere.
    """
    for path in [*search_paths, os.getcwd(), GIN_DIR]:
        gin.add_config_file_search_path(path)
    gin.parse_config_files_and_bindings(list(gin_files), list(gin_bindings), finalize_config=True)
