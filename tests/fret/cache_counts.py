"""How many backend calls the LLM cache recorded per key (its ``calls`` column)."""

from __future__ import annotations

import os
import sqlite3

from gecko_jax.fret.llm.cache import SQLiteCache


def call_counts(cache: SQLiteCache | str | os.PathLike[str]) -> dict[str, int]:
    """``{key: calls}`` for every entry of a cache (an open one, or its file)."""
    path = cache.path if isinstance(cache, SQLiteCache) else os.fspath(cache)
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT key, calls FROM calls").fetchall())
    finally:
        db.close()
