"""The pure steps and the sharded train step: equal to one device for every loss option;
optimizers."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as PS

from gecko_jax import partitioning as P
from gecko_jax.losses import ContrastiveLossConfig
from gecko_jax.models.bert import BertConfig
from gecko_jax.models.dual_encoder import DualEncoder, HeadConfig
from gecko_jax.optimizers import DECAYS, OptimizerConfig, build_optimizer, build_schedule
from gecko_jax.trainer import (
    TrainConfig,
    Trainer,
    check_batch,
    eval_step,
    loss_and_grads,
    train_step,
    trainable,
)

BERT = BertConfig(
    vocab_size=64,
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=4,
    intermediate_size=32,
    max_position_embeddings=16,
)
MODEL = DualEncoder(BERT, HeadConfig(projection_dim=16))
MRL = ContrastiveLossConfig(mrl_dims=(16, 8))
MESH_SHAPES = [(8, 1), (4, 2), (2, 4), (2, 2, 2)]  # (data, model) or (replica, data, model)


def make_mesh(shape: tuple[int, ...]) -> jax.sharding.Mesh:
    return P.make_mesh(*shape[-2:], replica=shape[0] if len(shape) == 3 else 1)


def one_device_mesh() -> jax.sharding.Mesh:
    return P.make_mesh(1, 1, devices=jax.devices()[:1])


def random_batch(
    batch_size: int = 16, k: int = 2, query_length: int = 8, doc_length: int = 8, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random token rows (pad id 0 after a random length), two duplicated positives."""
    rs = np.random.RandomState(seed)

    def tokens(*shape: int) -> np.ndarray:
        ids = rs.randint(1, BERT.vocab_size, shape).astype(np.int32)
        lengths = rs.randint(2, shape[-1] + 1, shape[:-1])
        return np.where(np.arange(shape[-1]) < lengths[..., None], ids, 0).astype(np.int32)

    batch = {
        "query_tokens": tokens(batch_size, query_length),
        "positive_tokens": tokens(batch_size, doc_length),
        "negative_tokens": tokens(batch_size, k, doc_length),
        "positive_ids": np.arange(batch_size, dtype=np.int32),
        "negative_mask": np.ones((batch_size, k), bool),
    }
    for dup, orig in ((5, 3), (11, 2)):  # same positive text -> a false negative to mask
        batch["positive_tokens"][dup] = batch["positive_tokens"][orig]
        batch["positive_ids"][dup] = orig
    batch["negative_mask"][1, 1] = False
    return batch


def assert_trees_close(actual, expected, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """Leafwise ``|a - b| <= atol * max(1, max|b|) + rtol * |b|``.

    The absolute term scales with each leaf's magnitude: gradients summed over many
    tokens reach hundreds, and float32 sums in another order differ by ~1e-7 of that.
    """
    actual, expected = jax.device_get(actual), jax.device_get(expected)
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(actual), jax.tree_util.tree_leaves(expected)
    ):
        scale = max(1.0, float(np.max(np.abs(b)))) if np.size(b) else 1.0
        np.testing.assert_allclose(
            a, b, rtol=rtol, atol=atol * scale, err_msg=jax.tree_util.keystr(path)
        )


def sharded_loss_and_grads(trainer: Trainer, state, batch):  # type: ignore[no-untyped-def]
    """:func:`loss_and_grads` jitted on the trainer's mesh, gradients sharded like the params."""
    rep = P.replicated(trainer.mesh)
    out = (rep, rep, trainable(trainer.config, trainer.state_shardings))
    with trainer.context():
        return trainer.jit(loss_and_grads, out)(state, dict(batch))


def sharded_eval_step(trainer: Trainer, state, batch):  # type: ignore[no-untyped-def]
    """:func:`eval_step` jitted on the trainer's mesh."""
    with trainer.context():
        return trainer.jit(eval_step, P.replicated(trainer.mesh))(state, dict(batch))


# Together these switch every loss option away from its default at least once.
LOSS_OPTIONS = {
    "gecko_eq3_mrl_false_negative_masking": TrainConfig(loss=MRL),
    "no_same_tower_batch_negatives": TrainConfig(
        loss=dataclasses.replace(MRL, same_tower_negatives=False, hard_negatives="batch")
    ),
    "no_hard_negatives_no_masking": TrainConfig(
        loss=dataclasses.replace(MRL, hard_negatives="none", mask_false_negatives=False)
    ),
    "bidirectional_label_smoothing_learnable_temperature": TrainConfig(
        loss=dataclasses.replace(MRL, bidirectional=True, label_smoothing=0.1),
        learnable_temperature=True,
    ),
}


@pytest.mark.parametrize("option", list(LOSS_OPTIONS))
def test_sharded_loss_and_grads_equal_one_device(option: str) -> None:
    config = LOSS_OPTIONS[option]
    batch = random_batch()
    single = Trainer(MODEL, one_device_mesh(), P.STANDARD_LOGICAL_AXIS_RULES, config)
    state = single.init_state(jax.random.PRNGKey(0))
    loss, metrics, grads = sharded_loss_and_grads(single, state, batch)
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert set(grads) == (
        {"params", "log_logit_scale"} if config.learnable_temperature else {"params"}
    )
    if config.learnable_temperature:
        assert float(metrics["logit_scale"]) == pytest.approx(1 / MRL.temperature)
        assert abs(float(grads["log_logit_scale"])) > 1e-3

    for shape in MESH_SHAPES:
        trainer = Trainer(MODEL, make_mesh(shape), P.STANDARD_LOGICAL_AXIS_RULES, config)
        sharded = jax.device_put(state, trainer.state_shardings)
        sharded_loss, sharded_metrics, sharded_grads = sharded_loss_and_grads(
            trainer, sharded, batch
        )
        np.testing.assert_allclose(float(sharded_loss), float(loss), rtol=1e-5, err_msg=str(shape))
        assert_trees_close(sharded_metrics, metrics)
        assert_trees_close(sharded_grads, grads)
        kernel = sharded_grads["params"]["backbone"]["layer_0"]["intermediate"]["dense"]["kernel"]
        assert kernel.sharding.spec == PS(None, "model")


def test_sharded_train_step_equals_one_device_and_donates() -> None:
    config = TrainConfig(
        loss=MRL,
        learnable_temperature=True,
        optimizer=OptimizerConfig(learning_rate=1e-3, weight_decay=0.01),
    )
    batch = random_batch(seed=1)
    single = Trainer(MODEL, one_device_mesh(), P.STANDARD_LOGICAL_AXIS_RULES, config)
    state = jax.device_get(single.init_state(jax.random.PRNGKey(0)))  # host copy: steps donate
    expected_state, expected = single.train_step(
        jax.device_put(state, single.state_shardings), batch
    )
    for key in (
        "loss",
        "accuracy",
        "logit_scale",
        "grad_norm",
        "learning_rate",
        "loss_dim_8",
        "loss_dim_16",
    ):
        assert np.isfinite(float(expected[key])), key
    assert float(expected["learning_rate"]) == pytest.approx(1e-3)
    assert int(expected_state.step) == 1
    # Without dropout, evaluation sees the loss the update was computed from.
    eval_metrics = sharded_eval_step(single, jax.device_put(state, single.state_shardings), batch)
    assert float(eval_metrics["loss"]) == pytest.approx(float(expected["loss"]), rel=1e-6)

    for shape in MESH_SHAPES:
        trainer = Trainer(MODEL, make_mesh(shape), P.STANDARD_LOGICAL_AXIS_RULES, config)
        sharded = jax.device_put(state, trainer.state_shardings)
        new_state, metrics = trainer.train_step(sharded, batch)
        assert sharded.params["projection"]["dense"]["kernel"].is_deleted()  # donated
        assert_trees_close(metrics, expected)
        assert_trees_close(new_state.params, expected_state.params)
        assert_trees_close(new_state.log_logit_scale, expected_state.log_logit_scale)
        assert float(new_state.log_logit_scale) != pytest.approx(math.log(20.0), abs=1e-6)


# Dropout and GradCache on: the pure step must key and chunk as the sharded one does.
DROPOUT_MODEL = DualEncoder(
    dataclasses.replace(BERT, dropout_rate=0.1), HeadConfig(projection_dim=16)
)
PURE_STEP_CASES = {
    "plain": (
        MODEL,
        TrainConfig(
            loss=MRL,
            learnable_temperature=True,
            optimizer=OptimizerConfig(learning_rate=1e-3, weight_decay=0.01),
        ),
    ),
    "dropout_grad_cache": (
        DROPOUT_MODEL,
        TrainConfig(loss=MRL, learnable_temperature=True, grad_cache_chunk_size=4),
    ),
}


@pytest.mark.parametrize("case", list(PURE_STEP_CASES))
def test_pure_train_step_equals_the_jitted_trainer_step(case: str) -> None:
    model, config = PURE_STEP_CASES[case]
    batch = random_batch(seed=1)
    trainer = Trainer(model, make_mesh((4, 2)), P.STANDARD_LOGICAL_AXIS_RULES, config)
    state = jax.device_get(trainer.init_state(jax.random.PRNGKey(0)))  # host copy: steps donate
    state = state.replace(step=np.int32(3))  # dropout keys and the schedule read the step
    expected_state, expected = trainer.train_step(
        jax.device_put(state, trainer.state_shardings), batch
    )
    # The function as it is: no Trainer, no jit, no mesh, no axis rules.
    new_state, metrics = train_step(model, config, state, batch)
    assert set(metrics) == set(expected)
    assert_trees_close(metrics, expected)
    assert_trees_close(new_state, expected_state)
    assert int(new_state.step) == 4


def test_init_state_is_sharded_and_mesh_independent() -> None:
    mesh = P.make_mesh(2, 4)
    trainer = Trainer(MODEL, mesh, P.STANDARD_LOGICAL_AXIS_RULES, TrainConfig(loss=MRL))
    state = trainer.init_state(jax.random.PRNGKey(3))
    kernel = state.params["backbone"]["layer_0"]["output"]["dense"]["kernel"]
    assert kernel.sharding.spec == PS("model", None)
    assert {s.data.shape for s in kernel.addressable_shards} == {(8, 16)}
    adam = state.opt_state[1][0]
    assert adam.mu["params"]["backbone"]["layer_0"]["output"]["dense"][
        "kernel"
    ].sharding.spec == PS("model", None)
    assert state.rng.sharding.spec == PS()
    assert int(state.step) == 0 and float(state.log_logit_scale) == pytest.approx(math.log(20.0))

    single = Trainer(MODEL, one_device_mesh(), P.STANDARD_LOGICAL_AXIS_RULES, TrainConfig(loss=MRL))
    assert_trees_close(single.init_state(jax.random.PRNGKey(3)), state, rtol=0, atol=0)
    abstract = trainer.abstract_state()
    assert jax.tree_util.tree_structure(abstract) == jax.tree_util.tree_structure(state)
    assert (
        abstract.params["backbone"]["layer_0"]["output"]["dense"]["kernel"].sharding
        == kernel.sharding
    )


def test_init_params_replace_random_leaves_and_bad_ones_are_named() -> None:
    trainer = Trainer(
        MODEL, P.make_mesh(4, 2), P.STANDARD_LOGICAL_AXIS_RULES, TrainConfig(loss=MRL)
    )
    base = jax.device_get(trainer.init_state(jax.random.PRNGKey(0)))
    pretrained = jax.tree_util.tree_map(
        lambda x: np.full(x.shape, 0.5, np.float32), base.params["backbone"]
    )
    state = trainer.init_state(jax.random.PRNGKey(0), {"backbone": pretrained}, random_batch())
    for leaf in jax.tree_util.tree_leaves(state.params["backbone"]):
        np.testing.assert_array_equal(np.asarray(leaf), 0.5)
    assert_trees_close(state.params["projection"], base.params["projection"], rtol=0, atol=0)

    wrong = {"backbone": {"word_embeddings": {"embedding": np.zeros((65, 16), np.float32)}}}
    with pytest.raises(
        ValueError,
        match=r"init_params 'backbone/word_embeddings/embedding' has "
        r"shape \(65, 16\), but the model's is \(64, 16\)",
    ):
        trainer.init_state(jax.random.PRNGKey(0), wrong)
    with pytest.raises(
        ValueError, match=r"init_params has 'backbone/nope/kernel', which the model lacks"
    ):
        trainer.init_state(jax.random.PRNGKey(0), {"backbone": {"nope": {"kernel": np.zeros(2)}}})


def test_adamw_reduces_the_loss_in_bfloat16_with_float32_params() -> None:
    model = DualEncoder(dataclasses.replace(BERT, dtype="bfloat16"), HeadConfig(projection_dim=16))
    config = TrainConfig(loss=MRL, optimizer=OptimizerConfig(learning_rate=3e-3))
    trainer = Trainer(model, P.make_mesh(4, 2), P.STANDARD_LOGICAL_AXIS_RULES, config)
    state = trainer.init_state(jax.random.PRNGKey(0))
    batch = random_batch(seed=2)
    losses = []
    for _ in range(6):
        state, metrics = trainer.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] - 0.5, losses
    assert int(state.step) == 6
    for leaf in jax.tree_util.tree_leaves(state.params):
        assert leaf.dtype == np.float32
    eval_metrics = sharded_eval_step(trainer, state, batch)
    assert float(eval_metrics["loss"]) < losses[0]


def test_batches_the_mesh_cannot_take_are_rejected() -> None:
    trainer = Trainer(
        MODEL, P.make_mesh(8, 1), P.STANDARD_LOGICAL_AXIS_RULES, TrainConfig(loss=MRL)
    )
    with pytest.raises(
        ValueError, match="global batch size 12 is not divisible by the data axis size 8"
    ):
        check_batch(trainer.config, random_batch(batch_size=12), trainer.mesh)
    batch = random_batch()
    del batch["positive_tokens"]
    with pytest.raises(ValueError, match="batch lacks 'positive_tokens'"):
        check_batch(trainer.config, batch, trainer.mesh)


# ----------------------------------------------------------------------- optimizers


@pytest.mark.parametrize(
    "decay, middle",
    [("cosine", 1e-4 + 0.5 * 9e-4), ("linear", 1e-4 + 0.5 * 9e-4), ("constant", 1e-3)],
)
def test_schedules_warm_up_then_decay(decay: str, middle: float) -> None:
    config = OptimizerConfig(
        learning_rate=1e-3,
        warmup_steps=10,
        decay=decay,
        total_steps=110,
        end_learning_rate_fraction=0.1,
    )
    schedule = build_schedule(config)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(5e-4)
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(60)) == pytest.approx(middle, rel=1e-5)
    end = 1e-3 if decay == "constant" else 1e-4
    assert float(schedule(110)) == pytest.approx(end, rel=1e-5)
    assert float(schedule(500)) == pytest.approx(end, rel=1e-5)
    assert float(build_schedule(dataclasses.replace(config, warmup_steps=0))(0)) == pytest.approx(
        1e-3
    )


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"name": "sgd"}, "OptimizerConfig.name"),
        ({"decay": "cosine"}, "OptimizerConfig.total_steps"),
        ({"decay": "linear", "total_steps": 0}, "OptimizerConfig.total_steps"),
        ({"learning_rate": 0.0}, "OptimizerConfig.learning_rate"),
        ({"end_learning_rate_fraction": 1.5}, "OptimizerConfig.end_learning_rate_fraction"),
        ({"b2": 1.0}, "OptimizerConfig.b2"),
        ({"weight_decay": -1.0}, "OptimizerConfig.weight_decay"),
        ({"clip_grad_norm": 0.0}, "OptimizerConfig.clip_grad_norm"),
    ],
)
def test_optimizer_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        OptimizerConfig(**kwargs)


@pytest.mark.parametrize("decay", DECAYS)
def test_a_run_shorter_than_its_warmup_warms_up_over_all_but_its_last_step(decay: str) -> None:
    config = OptimizerConfig(learning_rate=1.0, warmup_steps=10, decay=decay, total_steps=3)
    # The configured value stays (a rerun's settings compare equal); the schedule clamps.
    assert (config.warmup_steps, config.effective_warmup_steps) == (10, 2)
    schedule = build_schedule(config)
    assert [float(schedule(step)) for step in range(3)] == pytest.approx([0.0, 0.5, 1.0])
    longer = OptimizerConfig(warmup_steps=10, decay=decay, total_steps=11)
    assert longer.effective_warmup_steps == 10


def test_train_config_validation() -> None:
    with pytest.raises(ValueError, match="TrainConfig.grad_cache_chunk_size"):
        TrainConfig(grad_cache_chunk_size=0)
    with pytest.raises(ValueError, match="TrainConfig.max_logit_scale"):
        TrainConfig(max_logit_scale=10.0)


@pytest.mark.parametrize("name", ["adamw", "adafactor"])
def test_clipping_bounds_what_reaches_the_optimizer(name: str) -> None:
    params = {"w": np.ones((4, 3), np.float32), "b": np.ones((3,), np.float32)}
    grads = {"w": np.full((4, 3), 100.0, np.float32), "b": np.full((3,), 100.0, np.float32)}
    clipped = build_optimizer(OptimizerConfig(name=name, learning_rate=0.1, clip_grad_norm=1.0))
    unclipped = build_optimizer(OptimizerConfig(name=name, learning_rate=0.1, clip_grad_norm=None))
    _, clipped_state = clipped.update(grads, clipped.init(params), params)
    if name == "adamw":
        # Adam's first moment after one step is (1 - b1) * the (clipped) gradient.
        mu = clipped_state[1][0].mu
        assert float(optax.tree.norm(mu)) == pytest.approx(0.1 * 1.0, rel=1e-5)
        _, raw_state = unclipped.update(grads, unclipped.init(params), params)
        assert float(optax.tree.norm(raw_state[0].mu)) == pytest.approx(
            0.1 * 100 * math.sqrt(15), rel=1e-5
        )
    # Clipping to norm 1 equals feeding the pre-scaled gradient.
    scaled = jax.tree_util.tree_map(lambda g: g / float(optax.tree.norm(grads)), grads)
    a, _ = clipped.update(grads, clipped.init(params), params)
    b, _ = unclipped.update(scaled, unclipped.init(params), params)
    assert_trees_close(a, b, rtol=1e-5, atol=1e-7)


def test_weight_decay_skips_vectors_and_scalars() -> None:
    params = {
        "w": np.ones((2, 2), np.float32),
        "b": np.ones((2,), np.float32),
        "s": np.ones((), np.float32),
    }
    zeros = jax.tree_util.tree_map(np.zeros_like, params)
    opt = build_optimizer(OptimizerConfig(learning_rate=1.0, weight_decay=0.5, clip_grad_norm=None))
    updates, _ = opt.update(zeros, opt.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.5)
    np.testing.assert_allclose(updates["b"], 0.0)
    np.testing.assert_allclose(updates["s"], 0.0)
