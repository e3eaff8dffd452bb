"""Plain readers: no seqio or TensorFlow behind them, line endings, bad rows, BEIR splits."""

import logging
import subprocess
import sys

import pytest

from gecko_jax import readers

_IMPORT_CHECK = """
import sys
import {module}
heavy = sorted(m for m in ("seqio", "tensorflow") if m in sys.modules)
print(",".join(heavy))
"""


@pytest.mark.parametrize("module", ["gecko_jax.readers", "gecko_jax.eval.evaluators"])
def test_importing_pulls_in_neither_seqio_nor_tensorflow(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert result.stdout.strip() == "", f"{module} imports {result.stdout.strip()}"


def test_sts_benchmark_columns_and_windows_line_endings(tmp_path) -> None:
    path = tmp_path / "sts-dev.csv"
    path.write_bytes(
        b"main-captions\tMSRvid\t2012test\t0001\t5.000\tA man.\tA person.\n"
        b'main-forums\tx\t2015\t0002\t1.5\tSay "hi".\tBye.\tnote\r\n'
    )
    assert readers.read_sts_benchmark(path) == [
        readers.StsPair("A man.", "A person.", 5.0),
        readers.StsPair('Say "hi".', "Bye.", 1.5),
    ]


def test_sts_benchmark_errors_name_file_and_line(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="STS Benchmark file not found"):
        readers.read_sts_benchmark(str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("a\tb\tc\td\tfive\ts1\ts2\n")
    with pytest.raises(ValueError, match=r"bad\.csv:1: score 'five' is not a number"):
        readers.read_sts_benchmark(str(bad))


def test_labelled_texts_delimiter_and_bad_rows(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.csv"
    path.write_text('label,text\nA,"one, quoted"\n,empty label\nB,two\n')
    with caplog.at_level(logging.WARNING):
        pairs = readers.read_labelled_texts(
            str(path), text_field="text", label_field="label", max_bad_fraction=0.5
        )
    assert pairs == [("one, quoted", "A"), ("two", "B")]
    assert f"{path}:3: empty label" in caplog.text
    with pytest.raises(readers.BadInputError, match="1 of 3 rows are bad"):
        readers.read_labelled_texts(str(path), text_field="text", label_field="label")
    assert readers.delimiter_for("a.TSV") == "\t" and readers.delimiter_for("a.csv") == ","


def test_beir_qrels_and_jsonl(tmp_path) -> None:
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n\nq2\td2\t0\n")
    assert readers.read_beir_qrels(str(tmp_path / "qrels.tsv")) == [
        readers.Qrel("q1", "d1", 1.0, 2),
        readers.Qrel("q2", "d2", 0.0, 4),
    ]
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "T", "text": "x"}\n{"_id": 2, "text": "y", "title": null}\n'
    )
    corpus = readers.read_beir_jsonl(str(tmp_path / "corpus.jsonl"), ("title", "text"))
    assert corpus == {"d1": {"title": "T", "text": "x"}, "2": {"title": "", "text": "y"}}
    wanted = readers.read_beir_jsonl(str(tmp_path / "corpus.jsonl"), ("text",), {"2"})
    assert wanted == {"2": {"text": "y"}}
    (tmp_path / "dup.jsonl").write_text('{"_id": "a"}\n{"_id": "a"}\n')
    with pytest.raises(ValueError, match=r"dup\.jsonl:2: duplicate _id 'a'"):
        readers.read_beir_jsonl(str(tmp_path / "dup.jsonl"), ("text",))
