"""gecko-embed and gecko-demo, run as a user would."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gecko_jax import Encoder
from gecko_jax.cli import demo, embed


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


def test_bad_inputs_name_the_file_line_or_flag(tmp_path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bad.jsonl:2: invalid JSON"):
        embed.main(["--input", str(source), "--output", str(tmp_path / "o.npy")])
    source.write_text('{"text": "ok"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(
        SystemExit, match=r"bad.jsonl:2: expected an object with a string field 'text'"
    ):
        embed.main(["--input", str(source), "--output", str(tmp_path / "o.npy")])
    with pytest.raises(SystemExit, match=r"cannot read --input .*missing.txt"):
        embed.main(["--input", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "o.npy")])
    with pytest.raises(SystemExit, match=r"--output must end in .npy or .jsonl"):
        embed.main(["--input", str(source), "--output", str(tmp_path / "o.csv")])


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


def test_demo_prints_sensible_similarities(capsys) -> None:
    assert demo.main([]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("[") and "]  " in line]
    scores = np.array([[float(v) for v in row.split("]", 1)[1].split()] for row in rows])
    assert scores.shape == (5, 5)
    np.testing.assert_allclose(np.diag(scores), 1.0, atol=0.01)
    assert scores[0, 1] > scores[0, 2] + 0.3  # the two guitar sentences
    assert scores[2, 3] > scores[2, 4] + 0.3  # the two stock-market sentences
