"""``gecko-export`` as a user runs it: one-line errors naming the path or flag, nothing
half-written, and the flags reaching the exporters."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops the SavedModel uses)

from gecko_jax import Encoder
from gecko_jax.cli import export
from gecko_jax.model_dir import ModelSpec, write_spec
from gecko_jax.models.dual_encoder import HeadConfig


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        status = export.main(argv)
    except SystemExit as e:  # argparse's own checks
        status = e.code
    assert status == 2
    message = capsys.readouterr().err
    assert message.startswith("gecko-export: ") and "Traceback" not in message
    return message


def test_model_directory_without_checkpoint(tmp_path, tiny_model_dir: str, capsys) -> None:
    model_dir = tmp_path / "untrained"
    model_dir.mkdir()
    write_spec(str(model_dir), ModelSpec(tiny_model_dir, HeadConfig(), 32))
    for kind in ("saved_model", "sentence_transformers"):
        message = _fails([kind, str(model_dir), str(tmp_path / "out")], capsys)
        assert f"no checkpoint in {model_dir}/checkpoints" in message
    assert sorted(os.listdir(tmp_path)) == ["untrained"]


def test_unknown_model_family(tmp_path, tiny_model_dir: str, capsys) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    config = json.loads(open(os.path.join(tiny_model_dir, "config.json")).read())
    (odd / "config.json").write_text(json.dumps({**config, "model_type": "nomic_bert"}))
    message = _fails(["sentence_transformers", str(odd), str(tmp_path / "out")], capsys)
    assert "model_type='nomic_bert'" in message
    assert not (tmp_path / "out").exists()


def test_existing_output_and_bad_flags(tmp_path, tiny_model_dir: str, capsys) -> None:
    out = tmp_path / "out"
    (out / "1").mkdir(parents=True)
    message = _fails(["saved_model", tiny_model_dir, str(out)], capsys)
    assert f"{out}/1 already exists; pass --overwrite" in message
    (tmp_path / "st").mkdir()
    message = _fails(["sentence_transformers", tiny_model_dir, str(tmp_path / "st")], capsys)
    assert f"{tmp_path / 'st'} already exists; pass --overwrite" in message
    message = _fails(["saved_model", tiny_model_dir, str(tmp_path / "x"), "--dim", "33"], capsys)
    assert "--dim: 33 outside 1..32" in message
    message = _fails(
        ["saved_model", tiny_model_dir, str(tmp_path / "x"), "--platforms", "cpu,gpu"], capsys
    )
    assert "--platforms: gpu" in message
    message = _fails(["saved_model", tiny_model_dir, str(tmp_path / "x"), "--version", "0"], capsys)
    assert "--version must be a positive integer" in message
    assert sorted(os.listdir(tmp_path)) == ["out", "st"] and os.listdir(out) == ["1"]


def test_saved_model_flags_reach_the_export(tmp_path, tiny_model_dir: str) -> None:
    out = tmp_path / "served"
    argv = ["saved_model", tiny_model_dir, str(out), "--dim", "8", "--platforms", "cpu"]
    assert export.main([*argv, "--serialization_version", "10", "--version", "4"]) == 0
    with open(out / "4" / "assets.extra" / "gecko_model_info.json") as f:
        info = json.load(f)
    assert info["default_dim"] == 8 and info["serialization_version"] == 10
    assert info["platforms"] == ["cpu"]
    texts = ["a first sentence", "another one, a little longer than the first"]
    loaded = tf.saved_model.load(str(out / "4")).signatures["serving_default"]
    got = loaded(
        text=tf.constant(texts),
        task=tf.constant(["", ""]),
        title=tf.constant(["", ""]),
        kind=tf.constant(["query", "query"]),
    )
    want = Encoder.load(tiny_model_dir).encode(texts, dim=8)
    assert got["embedding"].shape == (2, 8)
    np.testing.assert_allclose(got["embedding"].numpy(), want, atol=1e-5)
