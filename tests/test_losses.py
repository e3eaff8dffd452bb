"""Tests of gecko_jax.losses against a float64 per-query reference of Gecko eq. 3."""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gecko_jax.losses import ContrastiveLossConfig, contrastive_loss

TOL = 1e-5


# ----------------------------------------------------------------------------- reference


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.sqrt(np.sum(v * v))), 1e-12)


def _row_loss(target: float, others: list[float], label_smoothing: float) -> float:
    """-log e^t / (e^t + sum e^o), with smoothing over every candidate of the row."""
    denominator = np.exp(target) + sum(np.exp(o) for o in others)
    nll = -np.log(np.exp(target) / denominator)
    if not label_smoothing:
        return nll
    smooth = -np.mean([np.log(np.exp(c) / denominator) for c in [target, *others]])
    return (1 - label_smoothing) * nll + label_smoothing * smooth


def reference_loss(q, p, n, cfg, *, scale=None, ids=None, nmask=None) -> float:
    """Eq. 3 written out per query with python loops, in float64."""
    q, p = np.asarray(q, np.float64), np.asarray(p, np.float64)
    b, d = q.shape
    k = 0 if n is None else n.shape[1]
    scale = 1.0 / cfg.temperature if scale is None else float(scale)
    dims = cfg.mrl_dims or (d,)
    weights = cfg.mrl_weights or (1.0,) * len(dims)

    def false_negative(i: int, j: int) -> bool:
        return cfg.mask_false_negatives and ids is not None and j != i and ids[i] == ids[j]

    def usable(j: int, kk: int) -> bool:
        return nmask is None or bool(nmask[j][kk])

    total = 0.0
    for dim, weight in zip(dims, weights):
        qs = [_unit(q[i, :dim]) for i in range(b)]
        ps = [_unit(p[i, :dim]) for i in range(b)]
        ns = [[_unit(np.asarray(n[i, kk, :dim], np.float64)) for kk in range(k)] for i in range(b)]

        def s(x: np.ndarray, y: np.ndarray) -> float:
            return scale * float(np.dot(x, y))

        query_rows = []
        for i in range(b):
            others = []
            for j in range(b):
                if j != i and not false_negative(i, j):
                    others.append(s(qs[i], ps[j]))
                    if cfg.same_tower_negatives:
                        others.append(s(qs[i], qs[j]))
            if cfg.hard_negatives == "own":
                others += [s(qs[i], ns[i][kk]) for kk in range(k) if usable(i, kk)]
            elif cfg.hard_negatives == "batch":
                for j in range(b):
                    others += [s(qs[i], ns[j][kk]) for kk in range(k) if usable(j, kk)]
            query_rows.append(_row_loss(s(qs[i], ps[i]), others, cfg.label_smoothing))
        loss = np.mean(query_rows)
        if cfg.bidirectional:
            doc_rows = [
                _row_loss(
                    s(ps[i], qs[i]),
                    [s(ps[i], qs[j]) for j in range(b) if j != i and not false_negative(i, j)],
                    cfg.label_smoothing,
                )
                for i in range(b)
            ]
            loss = 0.5 * (loss + np.mean(doc_rows))
        total += weight * loss
    return float(total)


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class Batch:
    q: np.ndarray
    p: np.ndarray
    n: np.ndarray | None
    ids: np.ndarray
    nmask: np.ndarray | None


def make_batch(b: int = 6, d: int = 8, k: int = 3, seed: int = 0) -> Batch:
    """Random embeddings; positives near their queries; ids with duplicates."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(b, d)).astype(np.float32)
    p = (q + rng.normal(size=(b, d))).astype(np.float32)
    n = (q[:, None, :] + 1.5 * rng.normal(size=(b, k, d))).astype(np.float32)
    ids = (np.arange(b) % max(b - 2, 1)).astype(np.int32)  # rows 0,1 repeat at the end
    nmask = rng.random((b, k)) > 0.3
    nmask[0] = False  # a row with no hard negative at all
    return Batch(q, p, n, ids, nmask)


def run_both(batch: Batch, cfg: ContrastiveLossConfig, *, scale=None, use_ids=True, use_mask=True):
    """(jax loss, metrics, reference loss) for the same inputs."""
    ids = batch.ids if use_ids else None
    nmask = batch.nmask if use_mask and batch.n is not None else None
    loss, metrics = contrastive_loss(
        jnp.asarray(batch.q),
        jnp.asarray(batch.p),
        None if batch.n is None else jnp.asarray(batch.n),
        cfg,
        logit_scale=None if scale is None else jnp.float32(scale),
        positive_ids=None if ids is None else jnp.asarray(ids),
        negative_mask=None if nmask is None else jnp.asarray(nmask),
    )
    ref = reference_loss(batch.q, batch.p, batch.n, cfg, scale=scale, ids=ids, nmask=nmask)
    return float(loss), metrics, ref


# ----------------------------------------------------------------------------- vs reference

STRUCTURE = list(
    itertools.product([True, False], ["own", "batch", "none"], [0, 1, 3], [False, True])
)


@pytest.mark.parametrize("extras", [False, True], ids=["plain", "extras"])
@pytest.mark.parametrize("same_tower,hard,k,bidirectional", STRUCTURE)
def test_matches_reference_structure(same_tower, hard, k, bidirectional, extras):
    """Every block layout; extras = false-negative masking, smoothing, mask, scale, MRL."""
    batch = make_batch(k=k)
    cfg = ContrastiveLossConfig(
        same_tower_negatives=same_tower,
        hard_negatives=hard,
        bidirectional=bidirectional,
        mask_false_negatives=extras,
        label_smoothing=0.1 if extras else 0.0,
        mrl_dims=(8, 4) if extras else (),
        mrl_weights=(1.0, 0.5) if extras else None,
    )
    loss, _, ref = run_both(batch, cfg, scale=12.5 if extras else None, use_mask=extras)
    np.testing.assert_allclose(loss, ref, rtol=TOL, atol=TOL)


EXTRAS = list(itertools.product([False, True], repeat=5))


@pytest.mark.parametrize("mask_fn,smoothing,nmask,scale,mrl", EXTRAS)
def test_matches_reference_extras(mask_fn, smoothing, nmask, scale, mrl):
    """Every combination of the extras on the paper's layout (batch negatives for variety)."""
    batch = make_batch(k=2, seed=1)
    cfg = ContrastiveLossConfig(
        hard_negatives="batch",
        bidirectional=True,
        mask_false_negatives=mask_fn,
        label_smoothing=0.2 if smoothing else 0.0,
        mrl_dims=(8, 4) if mrl else (),
        mrl_weights=(0.7, 0.3) if mrl else None,
    )
    loss, _, ref = run_both(batch, cfg, scale=33.0 if scale else None, use_mask=nmask)
    np.testing.assert_allclose(loss, ref, rtol=TOL, atol=TOL)


def test_false_negative_masking_needs_ids_and_changes_the_loss():
    batch = make_batch()
    cfg = ContrastiveLossConfig()
    with_ids, _, ref = run_both(batch, cfg)
    without_ids, _, ref_without = run_both(batch, cfg, use_ids=False)
    np.testing.assert_allclose([with_ids, without_ids], [ref, ref_without], rtol=TOL, atol=TOL)
    assert without_ids > with_ids + 1e-3  # masking removed candidates from the denominator
    off, _, _ = run_both(batch, dataclasses.replace(cfg, mask_false_negatives=False))
    np.testing.assert_allclose(off, without_ids, rtol=TOL)


def test_mrl_is_weighted_sum_of_per_dim_losses():
    batch = make_batch()
    cfg = ContrastiveLossConfig(mrl_dims=(8, 4, 2), mrl_weights=(1.0, 0.5, 0.25))
    loss, metrics, _ = run_both(batch, cfg)
    per_dim = []
    for d in (8, 4, 2):
        single = ContrastiveLossConfig(mrl_dims=(d,))
        per_dim.append(run_both(batch, single)[2])
        np.testing.assert_allclose(float(metrics[f"loss_dim_{d}"]), per_dim[-1], rtol=TOL)
    np.testing.assert_allclose(loss, np.dot(per_dim, [1.0, 0.5, 0.25]), rtol=TOL)
    # An empty mrl_dims is the full dimension alone and reports no per-dim entry.
    full, full_metrics, _ = run_both(batch, ContrastiveLossConfig())
    np.testing.assert_allclose(full, per_dim[0], rtol=TOL)
    assert not any(key.startswith("loss_dim_") for key in full_metrics)


def test_metrics():
    batch = make_batch(seed=3)
    cfg = ContrastiveLossConfig(mrl_dims=(4, 8))
    loss, metrics, _ = run_both(batch, cfg)
    q = batch.q / np.linalg.norm(batch.q, axis=-1, keepdims=True)
    p = batch.p / np.linalg.norm(batch.p, axis=-1, keepdims=True)
    n = batch.n / np.linalg.norm(batch.n, axis=-1, keepdims=True)
    np.testing.assert_allclose(float(metrics["loss"]), loss)
    np.testing.assert_allclose(float(metrics["logit_scale"]), 20.0, rtol=1e-6)
    positive_similarity = np.mean(np.sum(q * p, -1))
    np.testing.assert_allclose(float(metrics["positive_similarity"]), positive_similarity, rtol=TOL)
    own = np.einsum("bd,bkd->bk", q, n)
    np.testing.assert_allclose(
        float(metrics["negative_similarity"]), own[batch.nmask].mean(), rtol=TOL, atol=TOL
    )
    # Accuracy: the positive beats every candidate the row actually sees.
    candidates = np.concatenate([q @ p.T, np.where(np.eye(6, dtype=bool), -9, q @ q.T)], axis=1)
    candidates = np.concatenate([candidates, np.where(batch.nmask, own, -9)], axis=1)
    dup = (batch.ids[:, None] == batch.ids[None, :]) & ~np.eye(6, dtype=bool)
    candidates[:, :6][dup] = candidates[:, 6:12][dup] = -9
    expected = np.mean(np.argmax(candidates, axis=1) == np.arange(6))
    assert 0.0 < expected < 1.0
    np.testing.assert_allclose(float(metrics["accuracy"]), expected)
    _, no_neg_metrics, _ = run_both(dataclasses.replace(batch, n=None), cfg)
    assert "negative_similarity" not in no_neg_metrics


# ----------------------------------------------------------------------------- gradients


def _numeric_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        plus, minus = x.astype(np.float64), x.astype(np.float64)
        plus[idx] += h
        minus[idx] -= h
        grad[idx] = (f(plus) - f(minus)) / (2 * h)
    return grad


@pytest.mark.parametrize(
    "cfg,scale",
    [
        (ContrastiveLossConfig(), None),
        (
            ContrastiveLossConfig(
                hard_negatives="batch", bidirectional=True, label_smoothing=0.1, mrl_dims=(6, 3)
            ),
            15.0,
        ),
    ],
    ids=["paper", "batch-bidirectional-mrl"],
)
def test_gradients_match_finite_differences(cfg, scale):
    b = make_batch(b=4, d=6, k=2, seed=5)
    kwargs = {"positive_ids": jnp.asarray(b.ids), "negative_mask": jnp.asarray(b.nmask)}
    scale_arg = jnp.float32(20.0 if scale is None else scale)
    grads = jax.grad(
        lambda q, p, n, s: contrastive_loss(
            q, p, n, cfg, logit_scale=None if scale is None else s, **kwargs
        )[0],
        argnums=(0, 1, 2, 3),
    )(jnp.asarray(b.q), jnp.asarray(b.p), jnp.asarray(b.n), scale_arg)

    ref = {"cfg": cfg, "scale": scale, "ids": b.ids, "nmask": b.nmask}
    numeric = [
        _numeric_grad(lambda x: reference_loss(x, b.p, b.n, **ref), b.q),
        _numeric_grad(lambda x: reference_loss(b.q, x, b.n, **ref), b.p),
        _numeric_grad(lambda x: reference_loss(b.q, b.p, x, **ref), b.n),
    ]
    for got, want in zip(grads[:3], numeric):
        np.testing.assert_allclose(np.asarray(got), want, rtol=TOL, atol=TOL)
    assert np.abs(numeric[2][0]).max() == 0.0  # row 0's negatives are all masked
    if scale is not None:
        want = _numeric_grad(
            lambda s: reference_loss(b.q, b.p, b.n, **{**ref, "scale": float(s[0])}),
            np.array([scale]),
        )
        np.testing.assert_allclose(float(grads[3]), want[0], rtol=TOL, atol=TOL)


def test_fully_masked_rows_keep_gradients_finite():
    b = make_batch(b=4, k=2)
    grads = jax.grad(
        lambda q, p, n: contrastive_loss(
            q,
            p,
            n,
            ContrastiveLossConfig(label_smoothing=0.1, bidirectional=True),
            positive_ids=jnp.zeros(4, jnp.int32),  # everything is a duplicate
            negative_mask=jnp.zeros((4, 2), bool),
        )[0],
        argnums=(0, 1, 2),
    )(jnp.asarray(b.q), jnp.asarray(b.p), jnp.asarray(b.n))
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


# ----------------------------------------------------------------------------- layout


def _loss(batch: Batch, cfg: ContrastiveLossConfig) -> float:
    return run_both(batch, cfg)[0]


def _permuted(batch: Batch, perm: np.ndarray) -> Batch:
    return Batch(batch.q[perm], batch.p[perm], batch.n[perm], batch.ids[perm], batch.nmask[perm])


@pytest.mark.parametrize("hard", ["own", "batch", "none"])
def test_permutation_equivariant(hard):
    batch = make_batch(b=8, k=3, seed=7)
    cfg = ContrastiveLossConfig(hard_negatives=hard, bidirectional=True, label_smoothing=0.1)
    perm = np.random.default_rng(0).permutation(8)
    np.testing.assert_allclose(_loss(_permuted(batch, perm), cfg), _loss(batch, cfg), rtol=TOL)


def _interleaved(negatives: np.ndarray, n_devices: int) -> np.ndarray:
    """What a buggy all_gather gives: each device lays out its shard negative-major
    ([k][local example]), the gather stacks devices, and the result is read back as if
    it were example-major [B, K]."""
    b, k, d = negatives.shape
    shards = negatives.reshape(n_devices, b // n_devices, k, d).transpose(0, 2, 1, 3)
    return shards.reshape(b, k, d)


def test_interleaved_negatives_bug_is_caught():
    """sentence-transformers PR #3453: gathered negatives in the wrong order.

    Our layout is example-major by construction (it matches the per-example reference);
    the interleaved one pairs queries with other examples' negatives and masks, so the
    loss changes and a reference comparison would fail.
    """
    batch = make_batch(b=8, k=3, seed=11)
    buggy = dataclasses.replace(batch, n=_interleaved(batch.n, n_devices=4))
    assert not np.array_equal(buggy.n, batch.n)
    for hard in ("own", "batch"):
        cfg = ContrastiveLossConfig(hard_negatives=hard)
        correct, _, ref = run_both(batch, cfg)
        np.testing.assert_allclose(correct, ref, rtol=TOL)
        assert abs(_loss(buggy, cfg) - ref) > 1e-2, hard


# ----------------------------------------------------------------------------- sharding


def test_sharded_equals_single_device():
    assert jax.device_count() == 8
    batch = make_batch(b=16, d=8, k=2, seed=13)
    args = (batch.q, batch.p, batch.n, batch.ids, batch.nmask)
    for hard in ("own", "batch", "none"):
        cfg = ContrastiveLossConfig(
            hard_negatives=hard, bidirectional=True, label_smoothing=0.1, mrl_dims=(8, 4)
        )

        def step(q, p, n, ids, nmask, scale, cfg=cfg):
            def loss_fn(q, p, n, scale):
                return contrastive_loss(
                    q, p, n, cfg, logit_scale=scale, positive_ids=ids, negative_mask=nmask
                )

            return jax.value_and_grad(loss_fn, argnums=(0, 1, 2, 3), has_aux=True)(q, p, n, scale)

        step = jax.jit(step)
        (want_loss, want_metrics), want_grads = step(*map(jnp.asarray, args), jnp.float32(20.0))
        np.testing.assert_allclose(
            float(want_loss),
            reference_loss(*args[:3], cfg, scale=20.0, ids=batch.ids, nmask=batch.nmask),
            rtol=TOL,
        )
        for shape in [(8, 1), (4, 2), (2, 4)]:
            mesh = Mesh(np.array(jax.devices()).reshape(shape), ("data", "model"))
            sharded = [jax.device_put(x, NamedSharding(mesh, P("data"))) for x in args]
            assert len(sharded[0].addressable_shards) == 8
            (loss, metrics), grads = step(*sharded, jnp.float32(20.0))
            np.testing.assert_allclose(float(loss), float(want_loss), rtol=TOL, atol=TOL)
            for key, value in want_metrics.items():
                np.testing.assert_allclose(float(metrics[key]), float(value), rtol=TOL, atol=TOL)
            for got, want in zip(grads, want_grads):
                np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=TOL, atol=TOL)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"hard_negatives": "all"}, "hard_negatives"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"mrl_dims": (8, 8)}, "mrl_dims"),
        ({"mrl_dims": (0,)}, "mrl_dims"),
        ({"mrl_dims": (8, 4), "mrl_weights": (1.0,)}, "mrl_weights"),
    ],
)
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ContrastiveLossConfig(**kwargs)


def test_call_validation():
    b = make_batch(b=4, d=8, k=2)
    q, p, n = jnp.asarray(b.q), jnp.asarray(b.p), jnp.asarray(b.n)
    with pytest.raises(ValueError, match="mrl_dims"):
        contrastive_loss(q, p, n, ContrastiveLossConfig(mrl_dims=(16, 4)))
    with pytest.raises(ValueError, match="negatives"):
        contrastive_loss(q, p, n[:, :, :4], ContrastiveLossConfig())
    with pytest.raises(ValueError, match="negative_mask"):
        contrastive_loss(q, p, n, ContrastiveLossConfig(), negative_mask=jnp.ones((4, 3), bool))


def test_config_lists_become_tuples():
    cfg = ContrastiveLossConfig(mrl_dims=[8, 4], mrl_weights=[1, 0.5])
    assert cfg.mrl_dims == (8, 4) and cfg.mrl_weights == (1.0, 0.5)
    hash(cfg)  # usable as a jit static argument
