"""Dual-encoder head: masked mean pooling, projection and L2 normalisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gecko_jax.models.bert import BertConfig
from gecko_jax.models.dual_encoder import DualEncoder, HeadConfig, mean_pool

TINY = BertConfig(
    vocab_size=50,
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=32,
)


def test_mean_pool_ignores_padding() -> None:
    hidden = jnp.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = jnp.array([[1, 1, 0]])
    np.testing.assert_allclose(mean_pool(hidden, mask), [[2.0, 3.0]])
    # An all-padding row pools to zeros instead of NaN.
    np.testing.assert_allclose(mean_pool(hidden, jnp.zeros((1, 3))), [[0.0, 0.0]])


def test_dual_encoder_projection_and_normalisation() -> None:
    model = DualEncoder(TINY, HeadConfig(projection_dim=8))
    ids = jnp.array([[5, 6, 7, 0], [8, 9, 0, 0]], jnp.int32)
    variables = model.init(jax.random.PRNGKey(0), ids, ids > 0)
    assert set(variables["params"]) == {"backbone", "projection"}
    out = model.apply(variables, ids, ids > 0)
    assert out.shape == (2, 8) and out.dtype == jnp.float32
    np.testing.assert_allclose(jnp.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)
    assert model.embedding_dim == 8


def test_padding_does_not_change_the_embedding() -> None:
    model = DualEncoder(TINY, HeadConfig())
    short = jnp.array([[5, 6, 7]], jnp.int32)
    padded = jnp.array([[5, 6, 7, 0, 0, 0]], jnp.int32)
    variables = model.init(jax.random.PRNGKey(0), padded, padded > 0)
    np.testing.assert_allclose(
        model.apply(variables, short, short > 0),
        model.apply(variables, padded, padded > 0),
        atol=1e-6,
    )


def test_cls_pooling_takes_first_token() -> None:
    model = DualEncoder(TINY, HeadConfig(pooling="cls", normalize=False))
    ids = jnp.array([[5, 6, 7]], jnp.int32)
    variables = model.init(jax.random.PRNGKey(0), ids, ids > 0)
    out = model.apply(variables, ids, ids > 0)
    assert out.shape == (1, 16)
    assert float(jnp.linalg.norm(out)) != pytest.approx(1.0, abs=1e-3)


def test_head_config_validates() -> None:
    with pytest.raises(ValueError, match="Unknown pooling 'max'"):
        HeadConfig(pooling="max")
    with pytest.raises(ValueError, match="projection_dim must be positive"):
        HeadConfig(projection_dim=0)
