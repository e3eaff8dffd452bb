"""Every shipped gin file parses, and binds what its comments promise."""

import glob
import os

import pytest

import gecko_jax.train  # noqa: F401  (registers the configurables)
import gin
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
    } <= set(GIN_FILES)


@pytest.mark.parametrize("name", GIN_FILES)
def test_gin_file_parses(name: str) -> None:
    files = [name] if name.startswith(("runs/", "local/")) else ["runs/finetune.gin", name]
    gin_utils.parse_gin(files, REQUIRED)
    assert gin.query_parameter("gecko_jax.train.model_dir") is not None


def test_gecko_1b_binds_the_paper_settings() -> None:
    gin_utils.parse_gin(["runs/finetune.gin", "models/gecko_1b.gin"], REQUIRED)
    assert gin.query_parameter("gecko_jax.HeadConfig.projection_dim") == 768
    assert gin.query_parameter("gecko_jax.ContrastiveLossConfig.mrl_dims") == (768, 256)
    assert gin.query_parameter("gecko_jax.train.dtype") == "bfloat16"


def test_pretrain_uses_in_batch_negatives_and_grad_cache() -> None:
    gin_utils.parse_gin(["runs/pretrain.gin", "models/minilm_l6.gin"], REQUIRED)
    assert gin.query_parameter("gecko_jax.ContrastiveLossConfig.hard_negatives") == "none"
    assert gin.query_parameter("gecko_jax.TrainConfig.grad_cache_chunk_size") == 256


def test_missing_gin_file_lists_search_paths() -> None:
    with pytest.raises(
        FileNotFoundError, match=r"gin file 'runs/nope.gin' not found in the search paths"
    ):
        gin_utils.parse_gin(["runs/nope.gin"], [])
