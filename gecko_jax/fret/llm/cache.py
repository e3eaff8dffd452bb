"""An on-disk cache of LLM calls (SQLite, WAL mode), so a rerun never pays twice.

Each entry is keyed by the sha256 of (model, method, prompt, parameters) and counts how
many times the backend was actually called for it (``calls``): in a healthy run every
entry has ``calls == 1``. Several asyncio tasks, threads or processes may share one file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    method TEXT NOT NULL,
    value TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 1,
    updated REAL NOT NULL
)
"""


def cache_key(model: str, method: str, prompt: str, params: Mapping[str, Any]) -> str:
    """sha256 (hex) of the call's identity; parameter order does not matter."""
    payload = json.dumps(
        {"model": model, "method": method, "prompt": prompt, "params": params},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class SQLiteCache:
    """JSON values in one SQLite table.

    Args:
      path: the database file (parent directories are created), or ``":memory:"``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a crash of this process, not of the machine.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as e:
            raise OSError(f"cannot open the LLM cache {self.path}: {e}") from e
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        """The cached value, or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: Any, *, model: str, method: str) -> None:
        """Stores ``value`` (JSON-serialisable) and counts one more backend call for ``key``."""
        encoded = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT INTO calls (key, model, method, value, calls, updated) "
                "VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET "
                "value = excluded.value, calls = calls.calls + 1, updated = excluded.updated",
                (key, model, method, encoded, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        """Closes the database."""
        with self._lock:
            self._db.close()
