"""Writing an export directory so that nothing half-written is ever left at its path."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

from gecko_jax.export.source import ExportError


@contextlib.contextmanager
def staged_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yields a scratch directory that becomes ``path`` when the block succeeds.

    The export is written beside ``path`` and renamed into place at the end, so a
    failure or an interruption leaves ``path`` as it was (absent, or the old export).

    Args:
      path: the final directory.
      overwrite: replace an existing ``path``; without it an existing path is refused.

    Raises:
      ExportError: ``path`` exists and ``overwrite`` is False, or it is a file.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        if not overwrite:
            raise ExportError(f"{path} already exists; pass --overwrite to replace it")
        if not os.path.isdir(path):
            raise ExportError(f"{path} is a file, not an export directory")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = f"{path}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        yield staging
        if os.path.exists(path):
            retired = f"{path}.old-{os.getpid()}"
            os.rename(path, retired)
            os.rename(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
