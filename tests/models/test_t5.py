"""Tests of the T5 encoder: parity with Hugging Face, import, presets, dtypes, axes."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from transformers.models.t5.modeling_t5 import T5Attention

from gecko_jax.models import architectures, hf_checkpoint, t5
from gecko_jax.models.hf_checkpoint import CheckpointError

TINY = dict(vocab_size=99, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2)
# max_distance 16 < L=40, so the logarithmic and the saturated buckets are both exercised.
TINY_HF = dict(TINY, relative_attention_max_distance=16)
SEQ_LEN = 40

# name -> (HF model class, HF config class, feed_forward_proj)
HF_CASES = {
    "t5-gated-gelu": (transformers.T5EncoderModel, transformers.T5Config, "gated-gelu"),
    "t5-relu": (transformers.T5EncoderModel, transformers.T5Config, "relu"),
    "t5-seq2seq": (transformers.T5ForConditionalGeneration, transformers.T5Config, "gated-gelu"),
    "umt5-gated-silu": (transformers.UMT5EncoderModel, transformers.UMT5Config, "gated-silu"),
}


def _save_tiny(directory: str, case: str, **overrides: object) -> torch.nn.Module:
    model_cls, config_cls, ff = HF_CASES[case]
    torch.manual_seed(0)
    model = model_cls(config_cls(**{**TINY_HF, "feed_forward_proj": ff, **overrides})).eval()
    model.save_pretrained(directory, safe_serialization=True)
    return model


def _batch() -> tuple[np.ndarray, np.ndarray]:
    """Three rows of different lengths (40, 25, 5), pads filled with id 0."""
    rng = np.random.default_rng(0)
    mask = np.arange(SEQ_LEN)[None, :] < np.array([[SEQ_LEN], [25], [5]])
    ids = np.where(mask, rng.integers(1, TINY["vocab_size"], mask.shape), 0)
    return ids.astype(np.int32), mask


def _tiny_params(config: t5.T5Config) -> dict:
    ids, mask = _batch()
    variables = jax.jit(t5.T5Encoder(config).init)(jax.random.PRNGKey(0), ids, mask)
    return nn.unbox(variables["params"])


@pytest.fixture(scope="module", params=sorted(HF_CASES))
def hf_checkpoint_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    directory = str(tmp_path_factory.mktemp(request.param))
    return directory, _save_tiny(directory, request.param)


def test_parity_with_hugging_face(hf_checkpoint_dir) -> None:
    directory, torch_model = hf_checkpoint_dir
    ids, mask = _batch()
    with torch.no_grad():
        encoder = torch_model.get_encoder()
        want = encoder(
            input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long()
        ).last_hidden_state.numpy()

    config, params = architectures.load_hf_backbone(directory)
    assert isinstance(config, t5.T5Config)
    got = jax.jit(t5.T5Encoder(config).apply)({"params": params}, ids, mask)

    assert got.shape == (3, SEQ_LEN, TINY["d_model"])
    np.testing.assert_allclose(np.asarray(got)[mask], want[mask], atol=1e-4, rtol=0)


def test_mapping_covers_exactly_the_params() -> None:
    for config in (
        t5.T5Config(**TINY),
        t5.T5Config(**TINY, feed_forward_proj="relu"),
        t5.T5Config(**TINY, per_layer_relative_bias=True),
    ):
        shapes = hf_checkpoint.flatten_shapes(architectures.abstract_params(t5.T5Encoder(config)))
        assert set(t5.hf_param_mapping(config)) == set(shapes)


@pytest.mark.parametrize(
    "bidirectional,num_buckets,max_distance",
    [(True, 32, 128), (False, 32, 128), (True, 32, 16), (True, 16, 64), (False, 64, 256)],
)
def test_relative_position_bucket_matches_hugging_face(
    bidirectional: bool, num_buckets: int, max_distance: int
) -> None:
    positions = np.arange(-600, 601)
    want = T5Attention._relative_position_bucket(
        torch.from_numpy(positions),
        bidirectional=bidirectional,
        num_buckets=num_buckets,
        max_distance=max_distance,
    ).numpy()
    got = t5.relative_position_bucket(positions, bidirectional, num_buckets, max_distance)
    np.testing.assert_array_equal(np.asarray(got), want)
    assert want.min() >= 0 and want.max() == num_buckets - 1


def test_named_xl_is_the_gecko_1b_backbone() -> None:
    config = t5.T5Config.named("xl")
    assert (config.d_model, config.d_kv, config.num_heads, config.d_ff, config.num_layers) == (
        2048,
        64,
        32,
        5120,
        24,
    )
    assert config.vocab_size == 32128 and config.feed_forward_proj == "gated-gelu"
    assert config.hidden_size == 2048

    shapes = architectures.abstract_params(t5.T5Encoder(config))  # eval_shape: no allocation
    count = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))
    assert 1.1e9 < count < 1.3e9, count


def test_named_presets_and_unknown_name() -> None:
    assert t5.T5Config.named("base").d_model == 768
    assert t5.T5Config.named("large", dtype="bfloat16").dtype == "bfloat16"
    with pytest.raises(ValueError, match="small, base, large, xl"):
        t5.T5Config.named("xxxl")


def test_bfloat16_activations_float32_params() -> None:
    config32 = t5.T5Config(**TINY)
    config16 = t5.T5Config(**TINY, dtype="bfloat16")
    params = _tiny_params(config16)
    assert {x.dtype for x in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.float32)}

    ids, mask = _batch()
    out16 = jax.jit(t5.T5Encoder(config16).apply)({"params": params}, ids, mask)
    out32 = jax.jit(t5.T5Encoder(config32).apply)({"params": params}, ids, mask)
    assert out16.dtype == jnp.bfloat16 and out32.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(out16.astype(jnp.float32))[mask], np.asarray(out32)[mask], atol=0.1, rtol=0.05
    )


def test_logical_axis_names() -> None:
    ids, mask = _batch()
    config = t5.T5Config(**TINY)
    boxed = jax.jit(t5.T5Encoder(config).init)(jax.random.PRNGKey(0), ids, mask)["params"]
    layer = boxed["layers_0"]
    assert boxed["token_embedder"]["embedding"].names == ("vocab", "embed")
    assert boxed["relpos_bias"]["embedding"].names == ("relpos_buckets", "heads")
    assert boxed["final_norm"]["scale"].names == ("embed",)
    assert layer["attention"]["query"]["dense"]["kernel"].names == ("embed", "heads", "kv")
    assert layer["attention"]["out"]["dense"]["kernel"].names == ("heads", "kv", "embed")
    assert layer["mlp"]["wi_0"]["dense"]["kernel"].names == ("embed", "mlp")
    assert layer["mlp"]["wo"]["dense"]["kernel"].names == ("mlp", "embed")

    specs = nn.get_partition_spec(boxed)
    assert specs["layers_1"]["mlp"]["wi_1"]["dense"]["kernel"] == jax.sharding.PartitionSpec(
        "embed", "mlp"
    )


def test_dropout_uses_the_dropout_rng() -> None:
    config = t5.T5Config(**TINY, dropout_rate=0.2)
    params = _tiny_params(config)
    ids, mask = _batch()
    apply = jax.jit(t5.T5Encoder(config).apply, static_argnames="deterministic")
    clean = apply({"params": params}, ids, mask)

    def noisy(seed: int) -> jax.Array:
        return apply(
            {"params": params},
            ids,
            mask,
            deterministic=False,
            rngs={"dropout": jax.random.PRNGKey(seed)},
        )

    assert not np.allclose(noisy(1), clean)
    np.testing.assert_array_equal(noisy(1), noisy(1))
    assert not np.allclose(noisy(1), noisy(2))


def test_shape_mismatch_names_the_tensor(tmp_path) -> None:
    _save_tiny(str(tmp_path), "t5-gated-gelu")
    config_path = tmp_path / "config.json"
    hf_config = json.loads(config_path.read_text())
    hf_config["d_ff"] = 48
    config_path.write_text(json.dumps(hf_config))

    with pytest.raises(CheckpointError, match="DenseReluDense") as info:
        architectures.load_hf_backbone(tmp_path)
    assert "(64, 32)" in str(info.value)


def test_from_hf_errors(tmp_path) -> None:
    hf_config = {"model_type": "t5", **TINY}
    assert t5.T5Config.from_hf(hf_config).feed_forward_proj == "relu"  # HF's default
    assert t5.T5Config.from_hf({**hf_config, "model_type": "umt5"}).per_layer_relative_bias

    with pytest.raises(KeyError, match="d_kv"):
        t5.T5Config.from_hf({k: v for k, v in hf_config.items() if k != "d_kv"})
    with pytest.raises(ValueError, match="feed_forward_proj"):
        t5.T5Config.from_hf({**hf_config, "feed_forward_proj": "fancy-gelu"})
    with pytest.raises(ValueError, match="max_distance"):
        t5.T5Config.from_hf({**hf_config, "relative_attention_max_distance": 8})
    with pytest.raises(ValueError, match="Unsupported activation"):
        t5.T5Config.from_hf({**hf_config, "feed_forward_proj": "gated-tanh"})

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mt5", "d_model": 8}))
    with pytest.raises(CheckpointError, match="Invalid t5 config"):
        architectures.load_hf_backbone(tmp_path)


def test_embedding_saved_as_encoder_embed_tokens_is_read(tmp_path) -> None:
    import safetensors.numpy

    _save_tiny(str(tmp_path), "t5-gated-gelu")
    weights = tmp_path / "model.safetensors"
    tensors = safetensors.numpy.load_file(str(weights))
    shared = tensors.pop("shared.weight")
    safetensors.numpy.save_file({**tensors, "encoder.embed_tokens.weight": shared}, str(weights))
    _, params = architectures.load_hf_backbone(tmp_path)
    np.testing.assert_array_equal(params["token_embedder"]["embedding"], shared)
