"""A run checkpointed on one mesh resumes on another (a resized or re-created slice).

A small T5 dual encoder trains a step on a (data 4, model 2) mesh and is saved with its
input position; the checkpoint is then restored onto (8, 1) and (2, 4) meshes with those
meshes' own shardings. Parameters and optimizer state come back bit for bit, laid out
as the new mesh wants them, and the next step's loss equals the one of a run that never
left (4, 2).
"""

import jax
import numpy as np
import pytest

from gecko_jax import partitioning as P
from gecko_jax.checkpoints import CheckpointManager
from gecko_jax.data.iterator_state import HOST_STATE_KEY
from gecko_jax.losses import ContrastiveLossConfig
from gecko_jax.models.dual_encoder import DualEncoder, HeadConfig
from gecko_jax.models.t5 import T5Config
from gecko_jax.optimizers import OptimizerConfig
from gecko_jax.trainer import TrainConfig, Trainer

SAVED_MESH = (4, 2)
RESTORE_MESHES = [(8, 1), (2, 4)]
BATCH, LENGTH, VOCAB = 8, 8, 128
# Every sharded dimension (vocab, heads, mlp) divides by the largest model axis, 4.
MODEL = DualEncoder(
    T5Config(
        vocab_size=VOCAB,
        d_model=16,
        d_kv=8,
        num_heads=4,
        d_ff=32,
        num_layers=2,
        dropout_rate=0.1,  # keyed by example, not by device: the step is mesh-independent
    ),
    HeadConfig(pooling="mean", projection_dim=8),
)
CONFIG = TrainConfig(
    loss=ContrastiveLossConfig(mrl_dims=(8, 4)),
    optimizer=OptimizerConfig(name="adamw", learning_rate=1e-2, weight_decay=0.01),
    grad_cache_chunk_size=8,
)
DATA_STATE = {"epoch": 0, "examples_seen": BATCH, HOST_STATE_KEY: b"tf.data iterator bytes"}


def _trainer(data: int, model: int) -> Trainer:
    return Trainer(MODEL, P.make_mesh(data, model), P.logical_axis_rules(), CONFIG)


def _batch(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "query_tokens": rng.integers(1, VOCAB, (BATCH, LENGTH), dtype=np.int32),
        "positive_tokens": rng.integers(1, VOCAB, (BATCH, LENGTH), dtype=np.int32),
        "negative_tokens": rng.integers(1, VOCAB, (BATCH, 1, LENGTH), dtype=np.int32),
    }


def _put(trainer: Trainer, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: jax.device_put(v, trainer.batch_sharding) for k, v in batch.items()}


def _leaves(tree) -> dict[str, np.ndarray]:
    return {
        jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
    }


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Trains one step on (4, 2), saves it, then continues one step there for reference."""
    directory = tmp_path_factory.mktemp("mesh_restore") / "checkpoints"
    trainer = _trainer(*SAVED_MESH)
    state = trainer.init_state(jax.random.PRNGKey(0))
    state, _ = trainer.train_step(state, _put(trainer, _batch(1)))
    saved = jax.device_get(state)
    manager = CheckpointManager(directory, save_interval_steps=1)
    assert manager.save(1, state, DATA_STATE)
    manager.close()  # the next step donates the state: the save must be on disk first
    state, metrics = trainer.train_step(state, _put(trainer, _batch(2)))
    return {
        "directory": directory,
        "saved": _leaves(saved),
        "loss": float(metrics["loss"]),
        "params": _leaves(jax.device_get(state.params)),
    }


@pytest.mark.parametrize("shape", RESTORE_MESHES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_restores_on_another_mesh_and_continues(saved_run: dict, shape: tuple[int, int]) -> None:
    trainer = _trainer(*shape)
    target = trainer.abstract_state()
    manager = CheckpointManager(saved_run["directory"])
    state, data_state = manager.restore(target)
    manager.close()

    assert data_state == DATA_STATE
    restored = _leaves(state)
    assert restored.keys() == saved_run["saved"].keys()
    for name, value in saved_run["saved"].items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)  # exact
    shardings = jax.tree_util.tree_leaves(trainer.state_shardings)
    for leaf, want in zip(jax.tree_util.tree_leaves(state), shardings, strict=True):
        assert leaf.sharding == want
        assert leaf.sharding.mesh.devices.shape == (1, *shape)
    # The restored state really is laid out differently from the saved one.
    wi = state.params["backbone"]["layers_0"]["mlp"]["wi_0"]["dense"]["kernel"]
    assert wi.sharding.shard_shape(wi.shape) == (16, 32 // shape[1])

    state, metrics = trainer.train_step(state, _put(trainer, _batch(2)))
    assert int(state.step) == 2
    np.testing.assert_allclose(float(metrics["loss"]), saved_run["loss"], rtol=1e-5, atol=1e-6)
    params = _leaves(jax.device_get(state.params))
    for name, value in saved_run["params"].items():
        np.testing.assert_allclose(params[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
