"""STS Benchmark pairs as training rows (the file itself is read by :mod:`gecko_jax.readers`)."""

from __future__ import annotations

import json
import os

from gecko_jax.readers import StsPair


def write_positive_pairs_jsonl(
    pairs: list[StsPair],
    path: str | os.PathLike,
    min_score: float = 4.0,
    task: str | None = None,
) -> int:
    """Writes pairs scoring at least ``min_score`` as training rows (both directions).

    Similar sentences are symmetric, so each pair gives (s1 -> s2) and (s2 -> s1).

    Returns:
      The number of rows written.
    """
    rows = []
    for pair in pairs:
        if pair.score >= min_score:
            for query, positive in (
                (pair.sentence1, pair.sentence2),
                (pair.sentence2, pair.sentence1),
            ):
                row = {"query": query, "positive": positive}
                if task is not None:
                    row["task"] = task
                rows.append(row)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return len(rows)
