"""Every shipped gin file parses, and binds what its comments promise."""

import glob
import importlib.resources
import logging
import os

import gin
import pytest

import gecko_jax.train  # noqa: F401  (registers the configurables)
from gecko_jax import gin_utils

GIN_FILES = sorted(
    os.path.relpath(p, gin_utils.GIN_DIR)
    for p in glob.glob(os.path.join(gin_utils.GIN_DIR, "*", "*.gin"))
)
REQUIRED = [
    "MODEL_DIR = '/tmp/x'",
    "TRAIN_STEPS = 10",
    "TRAIN_FILE = 'x.jsonl'",
    "MIXTURE_OR_TASK_NAME = 'x'",
    "T5_CHECKPOINT = '/t5'",
    "T5X_CHECKPOINT = 'gs://bucket/t5x/checkpoint_1000000'",
    "T5_VOCABULARY = 'gs://bucket/sentencepiece.model'",
    "FRET_FILES = 'fret-*.jsonl'",
]


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def test_all_gin_files_are_covered() -> None:
    assert {
        "models/minilm_l6.gin",
        "models/gecko_1b.gin",
        "runs/finetune.gin",
        "runs/pretrain.gin",
        "local/minilm_stsb.gin",
        "tpu/v4_64.gin",
        "tpu/v5e_64.gin",
    } <= set(GIN_FILES)


@pytest.mark.parametrize("name", GIN_FILES)
def test_gin_file_parses(name: str) -> None:
    self_contained = ("runs/", "local/", "tpu/")  # these include their run and model files
    files = [name] if name.startswith(self_contained) else ["runs/finetune.gin", name]
    gin_utils.parse_gin(files, REQUIRED, check_macros=False)
    assert gin.query_parameter("gecko_jax.train.model_dir") is not None


def test_gecko_1b_binds_the_paper_settings() -> None:
    gin_utils.parse_gin(["runs/finetune.gin", "models/gecko_1b.gin"], REQUIRED, check_macros=False)
    assert gin.query_parameter("gecko_jax.HeadConfig.projection_dim") == 768
    assert gin.query_parameter("gecko_jax.ContrastiveLossConfig.mrl_dims") == (768, 256)
    assert gin.query_parameter("gecko_jax.train.dtype") == "bfloat16"


def test_pretrain_uses_in_batch_negatives_and_grad_cache() -> None:
    gin_utils.parse_gin(["runs/pretrain.gin", "models/minilm_l6.gin"], REQUIRED, check_macros=False)
    assert gin.query_parameter("gecko_jax.ContrastiveLossConfig.hard_negatives") == "none"
    assert gin.query_parameter("gecko_jax.train.num_negatives") == 0  # pairs have none
    assert gin.query_parameter("gecko_jax.ContrastiveLossConfig.same_tower_negatives") is False
    assert gin.query_parameter("gecko_jax.TrainConfig.grad_cache_chunk_size") == 256


def test_missing_gin_file_lists_search_paths() -> None:
    with pytest.raises(
        FileNotFoundError, match=r"gin file 'runs/nope.gin' not found in the search paths"
    ):
        gin_utils.parse_gin(["runs/nope.gin"], [])


def test_packaged_gin_files_are_package_resources() -> None:
    packaged = importlib.resources.files("gecko_jax") / "gin"
    assert os.path.samefile(str(packaged), gin_utils.GIN_DIR)
    assert (packaged / "local" / "minilm_stsb.gin").is_file()


def test_found_from_outside_the_checkout_without_search_paths(
    tmp_path, monkeypatch, caplog
) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        gin_utils.parse_gin(["local/minilm_stsb.gin"], REQUIRED, check_macros=False)
    assert gin.query_parameter("gecko_jax.train.model_dir") is not None
    # gin's misses on the way to an included file are not reported as errors
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_user_files_and_search_paths_come_before_the_packaged_ones(tmp_path, monkeypatch) -> None:
    override = "include 'runs/finetune.gin'\ninclude 'models/minilm_l6.gin'\nBATCH_SIZE = {}\n"
    (tmp_path / "cwd" / "local").mkdir(parents=True)
    (tmp_path / "cwd" / "local" / "mine.gin").write_text(override.format(3))
    (tmp_path / "extra" / "local").mkdir(parents=True)
    (tmp_path / "extra" / "local" / "mine.gin").write_text(override.format(5))
    (tmp_path / "extra" / "local" / "minilm_stsb.gin").write_text(override.format(7))
    monkeypatch.chdir(tmp_path / "cwd")
    extra = [str(tmp_path / "extra")]
    gin_utils.parse_gin(["local/mine.gin"], REQUIRED, extra, check_macros=False)
    assert gin.query_parameter("%BATCH_SIZE") == 3  # the current directory's
    gin.clear_config()
    gin_utils.parse_gin(["local/minilm_stsb.gin"], REQUIRED, extra, check_macros=False)
    assert gin.query_parameter("%BATCH_SIZE") == 7  # the search path's


def test_missing_include_still_fails(tmp_path, monkeypatch) -> None:
    (tmp_path / "broken.gin").write_text("include 'runs/nope.gin'\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match=r"runs/nope.gin"):
        gin_utils.parse_gin(["broken.gin"], REQUIRED, check_macros=False)


def test_a_misspelt_macro_binding_names_the_macro_it_meant() -> None:
    with pytest.raises(ValueError, match=r"--gin\.TRAIN_STESP: .*did you mean TRAIN_STEPS\?"):
        gin_utils.parse_gin(
            ["runs/finetune.gin", "inputs/pairs_file.gin"], ["TRAIN_STESP = 3", "MODEL_DIR = 'x'"]
        )
