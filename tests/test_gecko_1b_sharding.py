"""Gecko-1b's train state sharded over 8 fake devices (4 data x 2 model), and the memory plan.

Nothing real-sized is allocated: the Trainer's abstract state (``jax.eval_shape``) and
its own shardings give every leaf's shard shape, and so the bytes each device holds.
The worked TPU examples (gin/tpu/*.gin) quote :mod:`gecko_jax.memory_plan`'s figures;
they are recomputed here from the files' own bindings.
"""

import glob
import math
import os
import re

import gin
import jax
import pytest

import gecko_jax.train  # noqa: F401  (registers the configurables)
from gecko_jax import gin_models, gin_utils, memory_plan
from gecko_jax import partitioning as P
from gecko_jax.models.dual_encoder import DualEncoder
from gecko_jax.optimizers import OptimizerConfig
from gecko_jax.trainer import TrainConfig, Trainer

GIB = 2**30
D_MODEL, D_FF, HEADS, D_KV, LAYERS, VOCAB, PROJECTION = 2048, 5120, 32, 64, 24, 32128, 768
TPU_FILES = sorted(glob.glob(os.path.join(gin_utils.GIN_DIR, "tpu", "*.gin")))
PLACEHOLDERS = [
    "MODEL_DIR = '/tmp/plan'",
    "TRAIN_STEPS = 100000",
    "MIXTURE_OR_TASK_NAME = 'plan'",
    "T5X_CHECKPOINT = '/tmp/t5x/checkpoint_1000000'",
    "T5_VOCABULARY = '/tmp/sentencepiece.model'",
]


def _gecko_1b_model() -> DualEncoder:
    """Gecko-1b as runs/finetune.gin + models/gecko_1b.gin build it (no weights read)."""
    model = gin_models.gecko_1b_abstract().model
    gin.clear_config()
    return model


def _bytes(leaf) -> int:
    return math.prod(leaf.shape) * leaf.dtype.itemsize


@pytest.fixture(scope="module")
def model() -> DualEncoder:
    return _gecko_1b_model()


@pytest.fixture(scope="module")
def states(model: DualEncoder) -> dict:
    """Optimizer name -> the Trainer's abstract state on a (4 data, 2 model) mesh."""
    mesh = P.make_mesh(4, 2)
    out = {}
    for name in ("adamw", "adafactor"):
        config = TrainConfig(optimizer=OptimizerConfig(name=name))
        out[name] = Trainer(model, mesh, P.logical_axis_rules(), config).abstract_state()
    return out


def test_parameters_split_over_the_model_axis(states: dict) -> None:
    params = states["adamw"].params
    leaves = jax.tree_util.tree_leaves_with_path(params)
    count = sum(math.prod(x.shape) for _, x in leaves)
    print(f"\ngecko_1b parameters: {count:,}")
    assert 1.1e9 <= count <= 1.35e9

    replicated = {
        jax.tree_util.keystr(path): x for path, x in leaves if "model" not in x.sharding.spec
    }
    # Only the norm scales and the (narrow) projection stay whole on every device.
    norms = [n for n in replicated if n.endswith("['scale']")]
    assert len(norms) == 2 * LAYERS + 1
    assert set(replicated) - set(norms) == {"['projection']['dense']['kernel']"}
    replicated_count = (2 * LAYERS + 1) * D_MODEL + D_MODEL * PROJECTION
    per_layer = 4 * D_MODEL * HEADS * D_KV + 3 * D_MODEL * D_FF
    sharded_count = VOCAB * D_MODEL + 32 * HEADS + LAYERS * per_layer
    assert count == replicated_count + sharded_count

    per_device = memory_plan.sharded_bytes(params)
    print(f"params per device: {per_device / GIB:.3f} GiB of {4 * count / GIB:.3f} GiB")
    assert per_device == 4 * (sharded_count // 2 + replicated_count)
    for _, x in leaves:
        shard = x.sharding.shard_shape(x.shape)
        ratio = 2 if "model" in x.sharding.spec else 1
        assert math.prod(shard) * ratio == math.prod(x.shape)


def test_optimizer_state_per_device(states: dict) -> None:
    params = memory_plan.sharded_bytes(states["adamw"].params)
    adamw = memory_plan.sharded_bytes(states["adamw"].opt_state)
    adafactor = memory_plan.sharded_bytes(states["adafactor"].opt_state)
    print(
        f"\nper device: params {params / GIB:.3f} GiB, AdamW state {adamw / GIB:.3f} GiB, "
        f"Adafactor state {adafactor / GIB:.3f} GiB"
    )
    # AdamW: two float32 moments laid out like the parameters (plus step counters).
    assert 2 * params <= adamw <= 2 * params + 64
    # Adafactor factors every matrix into a row and a column vector, except the 3-D
    # attention kernels [2048, 32, 64] (second-largest dim 64 < optax's 128), whose full
    # second moment is split over 'model' like the kernel.
    attention = LAYERS * 4 * D_MODEL * HEADS * D_KV * 4 // 2
    factored = 4 * (VOCAB + D_MODEL + LAYERS * 3 * (D_MODEL + D_FF) + D_MODEL + PROJECTION)
    unfactored_small = 4 * ((2 * LAYERS + 1) * D_MODEL + 32 * HEADS // 2)
    assert attention + factored + unfactored_small <= adafactor
    assert adafactor <= attention + factored + unfactored_small + 64 * 1024  # (1,) dummies
    assert adafactor < adamw / 5
    opt = states["adafactor"].opt_state
    big = [x for x in jax.tree_util.tree_leaves(opt) if _bytes(x) >= 1 << 20]
    assert all("model" in x.sharding.spec for x in big)


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor"])
def test_memory_plan_measures_the_trainers_shardings(
    model: DualEncoder, states: dict, optimizer: str
) -> None:
    config = TrainConfig(optimizer=OptimizerConfig(name=optimizer), grad_cache_chunk_size=64)
    plan = memory_plan.plan_training(
        model,
        (4, 2),
        batch_size=512,
        query_length=64,
        document_length=512,
        num_negatives=1,
        train_config=config,
    )
    state = states[optimizer]
    assert plan.params_bytes == memory_plan.sharded_bytes(state.params)
    assert plan.optimizer_bytes == memory_plan.sharded_bytes(state.opt_state)
    assert plan.gradient_bytes == plan.params_bytes
    assert plan.tokens_per_step == 512 * (64 + 2 * 512)
    # The activation estimate, by hand: 64 / 4 = 16 examples per data shard.
    tokens = 16 * (64 + 2 * 512)
    per_token = 4 * D_MODEL + (4 * HEADS * D_KV + 4 * D_FF) // 2
    probs = 16 * HEADS // 2 * (64**2 + 2 * 512**2)
    blocks = LAYERS * (tokens * per_token * 2 + probs * 6) + tokens * 2 * D_MODEL * 2
    loss = 2 * 512 * 3 * PROJECTION * 4 + 3 * 128 * 512 * 3 * 4
    assert plan.activation_bytes == blocks + loss
    print(f"\n(4, 2) {optimizer}: {plan.per_chip_line()}")


def test_activations_shrink_with_the_chunk_and_the_model_axis(model: DualEncoder) -> None:
    def act(mesh: tuple[int, int], chunk: int) -> int:
        return memory_plan.activation_bytes(model, mesh, chunk, 64, 512, 1, loss_rows=1024)

    assert act((16, 2), 32) < act((16, 2), 64) < act((16, 2), 128)
    assert act((8, 4), 64) < act((8, 2), 64)  # split over 4 'model' devices instead of 2
    with pytest.raises(ValueError, match="do not split over 16"):
        act((16, 2), 40)


@pytest.mark.parametrize("path", TPU_FILES, ids=os.path.basename)
def test_worked_examples_quote_the_plan(model: DualEncoder, path: str) -> None:
    chip = memory_plan.TPU_CHIPS[os.path.basename(path).split("_")[0]]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    quoted = {
        kind: re.findall(rf"^# (per-{kind}: .*)$", text, re.MULTILINE) for kind in ("chip", "step")
    }
    assert [len(v) for v in quoted.values()] == [1, 1], f"{path} must quote one line of each"
    gin.clear_config()
    try:
        gin_utils.parse_gin([path], PLACEHOLDERS)
        plan = memory_plan.plan_from_gin(model)
    finally:
        gin.clear_config()
    print(f"\n{os.path.basename(path)} {plan.mesh_shape}:\n  {plan.per_chip_line(chip)}")
    print(f"  {plan.per_step_line(chip)}")
    assert quoted["chip"][0] == plan.per_chip_line(chip)
    assert quoted["step"][0] == plan.per_step_line(chip)
    assert plan.total_bytes < 0.75 * chip.hbm_gib * GIB  # room for XLA's own workspace
