"""Dual-encoder head: masked mean pooling, projection, L2 normalisation, packed rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gecko_jax import packing
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


@pytest.mark.parametrize(
    "head",
    [HeadConfig(pooling="cls", projection_dim=8, normalize=False), HeadConfig(pooling="mean")],
    ids=["cls-projection", "mean-normalised"],
)
def test_packed_rows_give_each_text_its_own_embedding(head: HeadConfig) -> None:
    texts = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14], [15], [16, 17, 18, 19]]
    packed = packing.packed_batches(
        [np.array(t, np.int32) for t in texts], pass_tokens=64, max_length=16
    )
    # Rows of 16 tokens hold at most 4 texts: [5 tokens, 4, 3, 2] and [1].
    (batch,) = packed
    model = DualEncoder(TINY, head)
    variables = model.init(jax.random.PRNGKey(0), jnp.array([texts[0]]), jnp.ones((1, 3)))
    out = model.apply(
        variables,
        batch.token_ids,
        batch.segment_ids > 0,
        segment_ids=batch.segment_ids,
        positions=batch.positions,
        num_segments=packing.segments_per_row(16),
    )
    assert out.shape == (2, 4, model.embedding_dim)
    for index, row, slot in zip(batch.indices, batch.rows, batch.slots):
        alone = jnp.array([texts[index]], jnp.int32)
        np.testing.assert_allclose(
            out[row, slot], model.apply(variables, alone, alone > 0)[0], atol=1e-5
        )


def test_packed_rows_need_positions_and_a_segment_count() -> None:
    model = DualEncoder(TINY, HeadConfig())
    ids = jnp.array([[5, 6, 7]], jnp.int32)
    variables = model.init(jax.random.PRNGKey(0), ids, ids > 0)
    with pytest.raises(ValueError, match="need positions and num_segments"):
        model.apply(variables, ids, ids > 0, segment_ids=jnp.ones_like(ids))
