"""Files on local disks and in cloud storage (``gs://``): open, list, write atomically.

Local paths go through the standard library; URLs (``gs://bucket/...``, any path with
``://``) through ``tf.io.gfile``, imported only then because TensorFlow takes seconds to
import. Text is UTF-8 and line endings pass through untranslated on both, so a file
reads and writes the same bytes wherever it lives.

A file written with :func:`atomic_path` or :func:`atomic_open` is complete or absent:
a local one is written beside the target under a temporary name and renamed over it; a
cloud object appears only when its upload finishes, so it is written in place.
"""

from __future__ import annotations

import builtins
import contextlib
import glob as globlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import IO, Any

TMP_SUFFIX = ".tmp"
_AT_SHARDS = re.compile(r"^(.*)@(\d+)$")


def _gfile() -> Any:
    import tensorflow as tf  # slow to import: only for URLs

    return tf.io.gfile


def is_url(path: str) -> bool:
    """Whether ``path`` names cloud storage (``gs://...``) rather than a local file."""
    return "://" in path


def join(directory: str, *parts: str) -> str:
    """``os.path.join`` that also suits URLs (always ``/``)."""
    if is_url(directory):
        return "/".join([directory.rstrip("/"), *parts])
    return os.path.join(directory, *parts)


def open(path: str, mode: str = "r") -> IO[Any]:
    """Opens a file for reading or writing (``"r"``, ``"w"``, ``"a"``, with ``"b"``)."""
    if is_url(path):
        return _gfile().GFile(path, mode)
    if "b" in mode:
        return builtins.open(path, mode)
    return builtins.open(path, mode, encoding="utf-8", newline="\n")


def exists(path: str) -> bool:
    """Whether a file or directory exists."""
    return bool(_gfile().exists(path)) if is_url(path) else os.path.exists(path)


def glob(pattern: str) -> list[str]:
    """The paths matching a glob pattern, sorted."""
    return sorted(_gfile().glob(pattern) if is_url(pattern) else globlib.glob(pattern))


def makedirs(path: str) -> None:
    """Creates a directory and its parents; nothing when it exists."""
    if is_url(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
    """Deletes a file."""
    if is_url(path):
        _gfile().remove(path)
    else:
        os.remove(path)


@contextlib.contextmanager
def atomic_path(path: str, tmp_suffix: str = TMP_SUFFIX) -> Iterator[str]:
    """Yields the name to write ``path``'s content under; ``path`` holds it after the block.

    Locally that name is ``path + tmp_suffix``, renamed over ``path`` when the block
    ends and deleted when it raises, so ``path`` is never half-written. For a URL it is
    ``path`` itself; an object the block leaves behind when it raises is deleted.

    Args:
      path: the file to write.
      tmp_suffix: what the temporary name adds to ``path`` (give writers that may run
        at once different suffixes).
    """
    target = path if is_url(path) else path + tmp_suffix
    try:
        yield target
    except BaseException:
        with contextlib.suppress(Exception):
            if exists(target):
                remove(target)
        raise
    if target != path:
        os.replace(target, path)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", tmp_suffix: str = TMP_SUFFIX) -> Iterator[IO[Any]]:
    """Opens ``path`` for writing (``"w"`` or ``"wb"``) through :func:`atomic_path`."""
    with atomic_path(path, tmp_suffix) as target, open(target, mode) as f:
        yield f


def split_patterns(file_pattern: str | Sequence[str]) -> list[str]:
    """A pattern, a comma-separated list or a sequence of them, as a flat list.

    Raises:
      ValueError: no pattern in it.
    """
    items = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    patterns = [p.strip() for item in items for p in item.split(",") if p.strip()]
    if not patterns:
        raise ValueError(f"empty file pattern: {file_pattern!r}")
    return patterns


def expand_pattern(pattern: str) -> list[str]:
    """The sorted files of one glob, or the shards ``name-0000i-of-0000N`` of ``name@N``.

    Raises:
      FileNotFoundError: nothing matches, or a shard is missing (names the pattern).
    """
    at = _AT_SHARDS.match(pattern)
    if at:
        base, count = at.group(1), int(at.group(2))
        files = [f"{base}-{i:05d}-of-{count:05d}" for i in range(count)]
        missing = [f for f in files if not exists(f)]
        if missing:
            raise FileNotFoundError(
                f"file pattern {pattern!r}: {len(missing)} shards missing, e.g. {missing[0]}"
            )
        return files
    files = glob(pattern)
    if not files:
        raise FileNotFoundError(f"file pattern {pattern!r} matches no files")
    return files


def list_files(file_pattern: str | Sequence[str]) -> list[str]:
    """The files of every pattern in ``file_pattern`` (:func:`split_patterns`), in order,
    each once.

    Raises:
      ValueError: no pattern given.
      FileNotFoundError: a pattern matches nothing.
    """
    files = [f for p in split_patterns(file_pattern) for f in expand_pattern(p)]
    return list(dict.fromkeys(files))
