"""The STS Benchmark's original TSV layout: reading it, and turning it into pairs."""

from __future__ import annotations

import dataclasses
import json
import os


@dataclasses.dataclass(frozen=True)
class StsPair:
    """One scored sentence pair."""

    sentence1: str
    sentence2: str
    score: float


def read_sts_benchmark(path: str | os.PathLike) -> list[StsPair]:
    """Reads ``sts-{train,dev,test}.csv``: score in column 5, sentences in 6 and 7.

    Some lines carry extra trailing columns (source notes); they are ignored. The file
    is tab-separated without quoting, so quotes inside sentences are kept verbatim.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: a line with fewer than 7 columns or a non-numeric score (names the
        file and line).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"STS Benchmark file not found: {path}")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            columns = line.rstrip("\n").split("\t")
            if len(columns) < 7:
                raise ValueError(
                    f"{path}:{number}: expected >= 7 tab-separated columns, got {len(columns)}"
                )
            try:
                score = float(columns[4])
            except ValueError:
                raise ValueError(f"{path}:{number}: score {columns[4]!r} is not a number") from None
            pairs.append(StsPair(columns[5], columns[6], score))
    return pairs


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
