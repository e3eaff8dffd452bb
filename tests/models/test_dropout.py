"""Row-keyed dropout: rate, independence of batch position, rescaling, sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from gecko_jax.models.dropout import Dropout, keep_mask


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_keep_rate_matches_the_rate(rate: float) -> None:
    keep = np.asarray(keep_mask(jax.random.PRNGKey(0), jnp.arange(64), (64, 8, 33, 17), rate))
    n = keep.size
    sigma = np.sqrt(rate * (1 - rate) / n)
    assert abs((1 - keep.mean()) - rate) < 4 * sigma, keep.mean()
    # No structure along any axis: each row and each column position drops about `rate`.
    assert np.all(
        np.abs(1 - keep.reshape(64, -1).mean(axis=1) - rate)
        < 6 * np.sqrt(rate * (1 - rate) / keep[0].size)
    )
    assert np.all(
        np.abs(1 - keep.reshape(64, -1).mean(axis=0) - rate)
        < 6 * np.sqrt(rate * (1 - rate) / 64) + 1e-9
    )


def test_a_rows_mask_depends_on_its_id_not_its_position() -> None:
    key = jax.random.PRNGKey(3)
    full = np.asarray(keep_mask(key, jnp.array([5, 7, 9, 11]), (4, 6, 10), 0.3))
    alone = np.asarray(keep_mask(key, jnp.array([9]), (1, 6, 10), 0.3))
    shuffled = np.asarray(keep_mask(key, jnp.array([11, 9, 5, 7]), (4, 6, 10), 0.3))
    np.testing.assert_array_equal(full[2], alone[0])
    np.testing.assert_array_equal(full[[3, 2, 0, 1]], shuffled)
    assert not np.array_equal(full[0], full[1])  # different ids, different masks
    other_key = np.asarray(
        keep_mask(jax.random.PRNGKey(4), jnp.array([5, 7, 9, 11]), (4, 6, 10), 0.3)
    )
    assert not np.array_equal(full, other_key)


def test_typed_and_raw_keys_give_the_same_mask() -> None:
    rows = jnp.arange(3)
    raw = keep_mask(jax.random.PRNGKey(1), rows, (3, 50), 0.2)
    typed = keep_mask(jax.random.wrap_key_data(jax.random.PRNGKey(1)), rows, (3, 50), 0.2)
    np.testing.assert_array_equal(raw, typed)


def test_dropout_zeroes_and_rescales_and_is_off_when_deterministic() -> None:
    x = jnp.ones((8, 128, 32))
    module = Dropout(0.25)
    assert module.apply({}, x, True) is x
    out = np.asarray(module.apply({}, x, False, rngs={"dropout": jax.random.PRNGKey(0)}))
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert abs(out.mean() - 1.0) < 0.02  # expectation preserved
    rows = jnp.array([3, 1, 2, 0, 4, 5, 6, 7])
    by_id = np.asarray(module.apply({}, x, False, rows, rngs={"dropout": jax.random.PRNGKey(0)}))
    np.testing.assert_array_equal(by_id[1], out[1])
    np.testing.assert_array_equal(by_id[0], out[3])


def test_mask_is_the_same_when_rows_are_sharded() -> None:
    key = jax.random.PRNGKey(7)
    rows = jnp.arange(16) * 3
    expected = np.asarray(keep_mask(key, rows, (16, 4, 9), 0.1))
    mesh = jax.make_mesh((8,), ("data",))
    sharded_rows = jax.device_put(rows, NamedSharding(mesh, PartitionSpec("data")))
    fn = jax.jit(
        lambda r: keep_mask(key, r, (16, 4, 9), 0.1),
        out_shardings=NamedSharding(mesh, PartitionSpec("data")),
    )
    np.testing.assert_array_equal(np.asarray(fn(sharded_rows)), expected)
