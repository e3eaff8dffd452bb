"""What an export starts from, and how its output directory is written."""

import os

import numpy as np
import pytest

from gecko_jax.export.output import staged_directory
from gecko_jax.export.source import ExportError, check_dims, load_source
from gecko_jax.models.dual_encoder import HeadConfig
from tests.model_dirs import write_model_dir


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> str:
    return write_model_dir(
        tmp_path_factory.mktemp("trained") / "model",
        tiny_model_dir,
        HeadConfig(projection_dim=24),
        step=9,
        matryoshka_dims=(24, 12),
    )


def test_model_dir_source_records_its_checkpoint(trained_dir: str, tiny_model_dir: str) -> None:
    source = load_source(trained_dir)
    assert source.step == 9 and source.base_dir == tiny_model_dir
    assert source.checkpoint_dir == os.path.join(trained_dir, "checkpoints")
    assert source.matryoshka_dims == (24, 12) and source.encoder.embedding_dim == 24
    embedding = source.encoder.encode(["a sentence"])
    assert embedding.shape == (1, 24)
    np.testing.assert_allclose(np.linalg.norm(embedding), 1.0, rtol=1e-5)
    with pytest.raises(ExportError, match="no checkpoint of step 3"):
        load_source(trained_dir, step=3)


def test_named_source(minilm_dir: str) -> None:
    source = load_source("all-MiniLM-L6-v2")
    assert source.step is None and source.base_dir == minilm_dir
    check_dims(source, (384, 128))
    with pytest.raises(ExportError, match=r"--dims: 385 outside 1\.\.384"):
        check_dims(source, (128, 385))


def test_unloadable_sources_name_the_path(tmp_path, trained_dir: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match=f"{empty} is not a model"):
        load_source(empty)
    no_checkpoint = tmp_path / "untrained"
    no_checkpoint.mkdir()
    with open(os.path.join(trained_dir, "encoder.json")) as f:
        (no_checkpoint / "encoder.json").write_text(f.read())
    with pytest.raises(ExportError, match=f"no checkpoint in {no_checkpoint}/checkpoints"):
        load_source(no_checkpoint)
    assert not (no_checkpoint / "checkpoints").exists()
    with pytest.raises(ExportError, match="neither a model directory nor a known model name"):
        load_source(tmp_path / "missing")


def test_staged_directory_replaces_only_on_success(tmp_path) -> None:
    out = tmp_path / "export"
    with staged_directory(out) as staging:
        with open(os.path.join(staging, "a.txt"), "w") as f:
            f.write("one")
    assert sorted(os.listdir(tmp_path)) == ["export"] and (out / "a.txt").read_text() == "one"
    with pytest.raises(ExportError, match=f"{out} already exists; pass --overwrite"):
        with staged_directory(out):
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with staged_directory(out, overwrite=True) as staging:
            with open(os.path.join(staging, "b.txt"), "w") as f:
                f.write("half")
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["export"] and os.listdir(out) == ["a.txt"]
    with staged_directory(out, overwrite=True) as staging:
        with open(os.path.join(staging, "b.txt"), "w") as f:
            f.write("two")
    assert sorted(os.listdir(tmp_path)) == ["export"] and os.listdir(out) == ["b.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        with staged_directory(tmp_path / "file", overwrite=True):
            pass
