"""gecko-serve in front of an exported SavedModel, in a process where JAX cannot load."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from gecko_jax.serve.backends import ModelSourceError, find_saved_model
from tests.serve.servers import every_task_type
from tests.text_samples import long_text

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Makes `import jax` fail, as on a serving image without JAX, then runs gecko-serve.
SERVE_WITHOUT_JAX = """
import importlib.abc, sys

class NoJax(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jax", "jaxlib"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoJax())
from gecko_jax.cli.serve import main
sys.exit(main(sys.argv[1:]))
"""
TEXTS = ["Which planet is known as the red planet?", "Mars is the fourth planet.", "naïve café"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_find_saved_model_picks_the_highest_version(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for version in ("1", "10", "2"):
        (tmp_path / version).mkdir()
    for version in ("1", "2"):
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    assert find_saved_model(str(tmp_path)) == str(tmp_path / "2")
    assert find_saved_model(str(tmp_path / "1")) == str(tmp_path / "1")
    assert find_saved_model(str(tmp_path / "10")) is None
    (tmp_path / "empty" / "3").mkdir(parents=True)
    with pytest.raises(ModelSourceError, match="hold no saved_model.pb"):
        find_saved_model(str(tmp_path / "empty"))


@pytest.fixture(scope="module")
def exported(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from gecko_jax.export.saved_model import export_saved_model
    from gecko_jax.export.source import load_source

    out = tmp_path_factory.mktemp("saved_model") / "tiny"
    export_saved_model(load_source(tiny_model_dir), out, platforms=("cpu",))
    return str(out)


def test_serves_a_saved_model_without_jax(exported: str, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    flags = ["--model", exported, "--host", "127.0.0.1", "--port", str(port)]
    flags += [
        "--warmup_max_length",
        "8",
        "--max_batch_size",
        "4",
        "--model_batch_size",
        "4",
        "--log_level",
        "info",
    ]
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_WITHOUT_JAX, *flags],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "no 200 from /health"
            time.sleep(0.2)

        instances, full = every_task_type(tiny_encoder, TEXTS)
        for dim in (None, 8):
            parameters = {"outputDimensionality": dim} if dim else {}
            response = httpx.post(
                f"{url}/v1/models/tiny:predict",
                json={"instances": instances, "parameters": parameters},
            )
            assert response.status_code == 200, response.text
            predictions = response.json()["predictions"]
            values = np.array([p["embeddings"]["values"] for p in predictions])
            want = full
            if dim:
                want = want[:, :dim] / np.linalg.norm(want[:, :dim], axis=1, keepdims=True)
            assert values.shape == want.shape
            assert _cosines(values, want).min() >= 0.9999

        openai = httpx.post(f"{url}/v1/embeddings", json={"input": TEXTS}).json()
        values = np.array([d["embedding"] for d in openai["data"]])
        assert _cosines(values, tiny_encoder.encode(TEXTS)).min() >= 0.9999
        tokens = int(tiny_encoder.tokenize(TEXTS).token_counts.sum())
        assert openai["usage"]["prompt_tokens"] == tokens

        too_long = httpx.post(
            f"{url}/v1/models/tiny:predict",
            json={
                "instances": [{"content": "a"}, {"content": long_text(200)}],
                "parameters": {"autoTruncate": False},
            },
        )
        assert too_long.status_code == 400 and "instances[1]" in too_long.text
        cut = httpx.post(
            f"{url}/v1/models/tiny:predict", json={"instances": [{"content": long_text(200)}]}
        ).json()["predictions"][0]["embeddings"]["statistics"]
        assert cut == {"token_count": tiny_encoder.max_length, "truncated": True}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    # Uvicorn finishes in-flight requests, then re-raises the signal it caught.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Finished server process" in stderr and "Traceback" not in stderr
