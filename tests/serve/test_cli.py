"""gecko-serve's command line: flags, Vertex AI defaults, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gecko_jax.cli import serve

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        serve.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--port", "--max_instances", "--max_batch_tokens", "--task_types"):
        assert flag in text
    assert "(default: 250)" in text and "(default: 16384)" in text


def test_vertex_variables_set_the_defaults() -> None:
    environ = {
        "AIP_HTTP_PORT": "9123",
        "AIP_PREDICT_ROUTE": "/predict/here",
        "AIP_HEALTH_ROUTE": "/health/here",
    }
    args = serve.build_parser(environ).parse_args([])
    assert (args.port, args.predict_route, args.health_route) == (
        9123,
        "/predict/here",
        "/health/here",
    )
    plain = serve.build_parser({}).parse_args([])
    assert (plain.port, plain.predict_route, plain.health_route) == (8080, None, None)


def _run(*flags: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run(
        [sys.executable, "-m", "gecko_jax.cli.serve", *flags],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=environ,
    )


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("/no/such/model_dir", "--model /no/such/model_dir: no such model directory"),
        ("no-such-model", "neither a model directory nor a packaged model name"),
    ],
)
def test_a_bad_model_is_a_one_line_error(model: str, words: str) -> None:
    result = _run("--model", model, "--port", "0")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("gecko-serve:")]
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_task_type_table_names_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    table = tmp_path / "tasks.json"
    table.write_text(json.dumps({"CLUSTERING": {"task": "clustering", "kind": "both"}}))
    result = _run("--model", str(tmp_path), "--task_types", str(table))
    assert result.returncode == 2
    assert f"{table}: CLUSTERING.kind must be 'query' or 'document'" in result.stderr
