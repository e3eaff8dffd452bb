"""gecko-embed, run as a user would."""

import json
import os
import re
import subprocess
import sys

import numpy as np

from gecko_jax import Encoder
from gecko_jax.cli import embed


def test_lines_to_npy(tmp_path, encoder: Encoder) -> None:
    lines = ["first sentence", "", "Ünïcödé line ✓", "the last one"]
    source = tmp_path / "input.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    assert embed.main(["--input", str(source), "--output", str(out), "--dim", "64"]) == 0
    got = np.load(out)
    assert got.shape == (4, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, encoder.encode(lines, dim=64), atol=1e-5)
    assert not os.path.exists(str(out) + ".tmp")


def test_jsonl_to_jsonl_keeps_fields_and_formats_documents(tmp_path, encoder: Encoder) -> None:
    records = [
        {"id": 7, "body": "Paris is the capital of France.", "head": "Paris"},
        {"id": 8, "body": "Berlin is in Germany.", "head": None},
    ]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    embed.main(
        [
            "--input",
            str(source),
            "--output",
            str(out),
            "--text_field",
            "body",
            "--title_field",
            "head",
            "--task",
            "question answering",
            "--kind",
            "document",
        ]
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [7, 8] and rows[0]["head"] == "Paris"
    expected = encoder.encode(
        [
            "title: Paris | text: Paris is the capital of France.",
            "title: none | text: Berlin is in Germany.",
        ]
    )
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), expected, atol=1e-5)


def _fails_naming(capsys, argv: list[str], pattern: str) -> None:
    assert embed.main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err
    assert err.startswith("gecko-embed: error: ") and len(err.strip().splitlines()) == 1


def test_bad_inputs_name_the_file_line_or_flag(tmp_path, capsys) -> None:
    source = tmp_path / "bad.jsonl"
    out = ["--output", str(tmp_path / "o.npy")]
    source.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    _fails_naming(capsys, ["--input", str(source), *out], r"bad.jsonl:2: invalid JSON")
    source.write_text('{"text": "ok"}\n{"body": "no text"}\n', encoding="utf-8")
    _fails_naming(
        capsys,
        ["--input", str(source), *out],
        r"bad.jsonl:2: expected an object with a string field 'text'",
    )
    missing = ["--input", str(tmp_path / "missing.txt"), *out]
    _fails_naming(capsys, missing, r"cannot read --input .*missing.txt")
    csv = ["--input", str(source), "--output", str(tmp_path / "o.csv")]
    _fails_naming(capsys, csv, r"--output must end in .npy or .jsonl")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"fine\nalso fine\n\x89PNG\r\n\x1a\n\x00\xff\xfe\n")
    _fails_naming(capsys, ["--input", str(binary), *out], r"blob.txt:3: not UTF-8 text")
    assert not (tmp_path / "o.npy").exists()


def test_binary_input_can_be_read_with_replacements(tmp_path) -> None:
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("café\nnaïve\n".encode("latin-1"))
    records = embed.read_records(str(binary), "lines", "text", encoding_errors="replace")
    assert [r["text"] for r in records] == ["caf\ufffd", "na\ufffdve"]


def test_dim_beyond_the_model_is_refused_before_it_loads(tmp_path, capsys, minilm_dir) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n", encoding="utf-8")
    argv = ["--input", str(source), "--output", str(tmp_path / "o.npy"), "--model", minilm_dir]
    _fails_naming(capsys, [*argv, "--dim", "10000"], r"--dim 10000 is outside 1\.\.384")


def test_module_entry_point_runs(tmp_path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello world\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    done = subprocess.run(
        [sys.executable, "-m", "gecko_jax.cli.embed", "--input", str(source), "--output", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote 1 x 384 embeddings" in done.stderr
    assert np.load(out).shape == (1, 384)
