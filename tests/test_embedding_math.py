"""L2 normalisation and Matryoshka truncation: values, numpy/jax alike, zero rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gecko_jax.embedding_math import l2_normalize, matryoshka_truncate


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows() -> None:
    x = jnp.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(x), [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0]], rtol=1e-6)


def test_l2_normalize_unused_zero_row_gets_a_zero_not_nan_gradient() -> None:
    # A missing hard negative is an all-zero row that the loss masks out.
    x = jnp.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    grad = jax.grad(lambda x: jnp.sum(l2_normalize(x)[0]))(x)
    assert np.isfinite(np.asarray(grad)).all()
    np.testing.assert_array_equal(grad[1], np.zeros(3))


def test_matryoshka_truncate_renormalises_prefix() -> None:
    x = np.array([[3.0, 4.0, 12.0]], np.float32) / 13.0
    np.testing.assert_allclose(matryoshka_truncate(x, 2), [[0.6, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(matryoshka_truncate(jnp.asarray(x), 3), x, rtol=1e-6)
    for bad in (0, 4):
        with pytest.raises(ValueError, match=r"outside 1\.\.3"):
            matryoshka_truncate(x, bad)


def test_matryoshka_truncate_keeps_the_array_kind() -> None:
    x = np.ones((2, 4), np.float32)
    assert isinstance(matryoshka_truncate(x, 2), np.ndarray)
    assert isinstance(matryoshka_truncate(jnp.asarray(x), 2), jax.Array)
    np.testing.assert_allclose(matryoshka_truncate(x, 2), np.full((2, 2), 0.5**0.5), rtol=1e-6)


def test_matryoshka_truncate_unused_zero_row_gets_a_zero_not_nan_gradient() -> None:
    x = jnp.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    grad = jax.grad(lambda x: jnp.sum(matryoshka_truncate(x, 2)[0]))(x)
    assert np.isfinite(np.asarray(grad)).all()
    np.testing.assert_array_equal(grad[1], np.zeros(4))
