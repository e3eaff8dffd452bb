"""STS Benchmark reader on the real files."""

import os

import pytest

from gecko_jax.data.sts import read_sts_benchmark


def test_reads_every_split(shared_data_dir: str) -> None:
    sizes = {"train": 5749, "dev": 1500, "test": 1379}
    for split, size in sizes.items():
        pairs = read_sts_benchmark(os.path.join(shared_data_dir, "stsb", f"sts-{split}.csv"))
        assert len(pairs) == size
        assert all(0.0 <= p.score <= 5.0 for p in pairs)
    first = read_sts_benchmark(os.path.join(shared_data_dir, "stsb", "sts-test.csv"))[0]
    assert (first.sentence1, first.sentence2, first.score) == (
        "A girl is styling her hair.", "A girl is brushing her hair.", 2.5)


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
