"""STS Benchmark reader on the real files."""

import os

import pytest

from gecko_jax.readers import read_sts_benchmark


def test_reads_every_split(eval_data_dir: str) -> None:
    sizes = {"train": 5749, "dev": 1500, "test": 1379}
    for split, size in sizes.items():
        pairs = read_sts_benchmark(os.path.join(eval_data_dir, "stsb", f"sts-{split}.csv"))
        assert len(pairs) == size
        assert all(0.0 <= p.score <= 5.0 for p in pairs)
    first = read_sts_benchmark(os.path.join(eval_data_dir, "stsb", "sts-test.csv"))[0]
    assert (first.sentence1, first.sentence2, first.score) == (
        "A girl is styling her hair.",
        "A girl is brushing her hair.",
        2.5,
    )


def test_errors_name_the_file_and_line(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_sts_benchmark(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a\tb\tc\td\t1.0\tx\ty\na\tb\tc\td\thigh\tx\ty\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: score 'high'"):
        read_sts_benchmark(bad)
    bad.write_text("a\tb\tc\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: expected >= 7"):
        read_sts_benchmark(bad)


def test_positive_pairs_go_both_ways(tmp_path, eval_data_dir: str) -> None:
    import json

    from gecko_jax.data.sts import write_positive_pairs_jsonl

    pairs = read_sts_benchmark(os.path.join(eval_data_dir, "stsb", "sts-train.csv"))
    out = tmp_path / "pairs.jsonl"
    written = write_positive_pairs_jsonl(pairs, out, min_score=4.0, task="sentence similarity")
    expected = 2 * sum(p.score >= 4.0 for p in pairs)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written == len(rows) == expected > 2000
    first = next(p for p in pairs if p.score >= 4.0)
    assert rows[0] == {
        "query": first.sentence1,
        "positive": first.sentence2,
        "task": "sentence similarity",
    }
    assert rows[1] == {
        "query": first.sentence2,
        "positive": first.sentence1,
        "task": "sentence similarity",
    }
