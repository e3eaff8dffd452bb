"""GradCache: the same loss and gradients as the plain step, in flat memory."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gecko_jax import grad_cache
from gecko_jax import partitioning as P
from gecko_jax.models.dual_encoder import DualEncoder, HeadConfig
from gecko_jax.trainer import TrainConfig, Trainer, check_batch
from tests.test_trainer import (
    BERT,
    DROPOUT_MODEL,  # dropout on: GradCache must replay each example's masks exactly
    MRL,
    assert_trees_close,
    one_device_mesh,
    random_batch,
    sharded_eval_step,
    sharded_loss_and_grads,
)

# Queries shorter than documents: positives and negatives share a forward pass.
BATCH = random_batch(batch_size=16, k=2, query_length=6, doc_length=8, seed=4)


def _trainer(
    mesh: jax.sharding.Mesh, chunk: int | None, model: DualEncoder = DROPOUT_MODEL
) -> Trainer:
    config = TrainConfig(loss=MRL, learnable_temperature=True, grad_cache_chunk_size=chunk)
    return Trainer(model, mesh, P.STANDARD_LOGICAL_AXIS_RULES, config)


@pytest.mark.parametrize("mesh_shape", [(1, 1), (4, 2)])
def test_grad_cache_equals_the_plain_step_with_dropout(mesh_shape: tuple[int, int]) -> None:
    devices = jax.devices()[: mesh_shape[0] * mesh_shape[1]]
    mesh = P.make_mesh(*mesh_shape, devices=devices)
    plain = _trainer(mesh, None)
    state = plain.init_state(jax.random.PRNGKey(0))
    state = state.replace(step=state.step + 3)  # dropout keys fold in the step
    loss, metrics, grads = sharded_loss_and_grads(plain, state, BATCH)
    # Dropout is really on: the deterministic loss differs.
    assert abs(float(sharded_eval_step(plain, state, BATCH)["loss"]) - float(loss)) > 1e-3

    for chunk in (4, 8):
        cached = _trainer(mesh, chunk)
        cached_loss, cached_metrics, cached_grads = sharded_loss_and_grads(cached, state, BATCH)
        np.testing.assert_allclose(
            float(cached_loss), float(loss), rtol=1e-5, err_msg=f"chunk {chunk}"
        )
        assert_trees_close(cached_metrics, metrics)
        assert_trees_close(cached_grads, grads)
        assert abs(float(cached_grads["log_logit_scale"])) > 1e-3


def test_grad_cache_train_step_runs_sharded() -> None:
    trainer = _trainer(P.make_mesh(4, 2), 4)
    state = trainer.init_state(jax.random.PRNGKey(1))
    before = float(state.log_logit_scale)
    state, metrics = trainer.train_step(state, BATCH)
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))
    assert float(state.log_logit_scale) != before
    kernel = state.params["backbone"]["layer_0"]["intermediate"]["dense"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "model")


def test_chunks_must_divide_the_batch_and_split_over_data() -> None:
    with pytest.raises(
        ValueError, match="grad_cache_chunk_size 5 does not divide the global batch size 16"
    ):
        trainer = _trainer(one_device_mesh(), 5)
        check_batch(trainer.config, BATCH, trainer.mesh)
    with pytest.raises(
        ValueError, match="grad_cache_chunk_size 2 is not divisible by the data axis size 4"
    ):
        trainer = _trainer(P.make_mesh(4, 2), 2)
        check_batch(trainer.config, BATCH, trainer.mesh)


def test_grad_cache_memory_stays_flat_as_the_batch_grows() -> None:
    model = DualEncoder(
        dataclasses.replace(BERT, max_position_embeddings=32), HeadConfig(projection_dim=16)
    )

    def temp_bytes(chunk: int | None, batch_size: int) -> int:
        trainer = _trainer(one_device_mesh(), chunk, model)
        batch = {
            "query_tokens": jax.ShapeDtypeStruct((batch_size, 32), jnp.int32),
            "positive_tokens": jax.ShapeDtypeStruct((batch_size, 32), jnp.int32),
            "negative_tokens": jax.ShapeDtypeStruct((batch_size, 1, 32), jnp.int32),
        }
        with trainer.context():
            compiled = trainer.jitted_train_step.lower(trainer.abstract_state(), batch).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    cached = temp_bytes(4, 16), temp_bytes(4, 64)
    plain = temp_bytes(None, 16), temp_bytes(None, 64)
    assert cached[1] < 1.5 * cached[0], cached
    assert plain[1] > 2.5 * plain[0], plain
    assert cached[1] < plain[1] / 4, (cached, plain)


def test_grad_cache_functions_on_a_toy_encoder() -> None:
    """The generic functions: a linear 'encoder' and a loss needing the whole batch."""
    rs = np.random.RandomState(0)
    params = {"w": jnp.asarray(rs.randn(3, 2), jnp.float32)}
    inputs = {
        "x": jnp.asarray(rs.randn(12, 3), jnp.float32),
        "y": jnp.asarray(rs.randn(12, 4, 3), jnp.float32),
    }

    def embed(p, chunk, start):
        # Depends on the global index, as dropout keys do.
        scale = 1.0 + 0.1 * (start + jnp.arange(chunk["x"].shape[0]))[:, None]
        return {"x": jnp.tanh(chunk["x"] @ p["w"]) * scale, "y": jnp.tanh(chunk["y"] @ p["w"])}

    def loss(e, lp):
        logits = e["x"] @ e["x"].T * lp["t"] + jnp.sum(e["y"] ** 2)
        return jnp.mean(jax.nn.logsumexp(logits, axis=-1)), {"n": jnp.sum(e["x"])}

    lp = {"t": jnp.asarray(2.0)}
    expected = grad_cache.plain_loss_and_grads(embed, loss, params, lp, inputs)
    for chunk in (1, 3, 12):
        got = jax.jit(
            lambda p, lp_, x, c=chunk: grad_cache.grad_cache_loss_and_grads(
                embed, loss, p, lp_, x, c
            )
        )(params, lp, inputs)
        assert_trees_close(got, expected)
    with pytest.raises(ValueError, match="does not divide the global batch size 12"):
        grad_cache.grad_cache_loss_and_grads(embed, loss, params, lp, inputs, 5)
