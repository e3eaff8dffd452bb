"""BERT encoder: parity with transformers' BertModel, import errors, dtypes, axes."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from gecko_jax.models import architectures
from gecko_jax.models.bert import BertConfig, BertEncoder
from gecko_jax.models.hf_checkpoint import CheckpointError

TINY = dict(
    vocab_size=101,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    type_vocab_size=2,
)


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(**TINY), add_pooling_layer=False).eval()
    path = str(tmp_path_factory.mktemp("tiny_bert"))
    model.save_pretrained(path, safe_serialization=True)
    return path


def _batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, TINY["vocab_size"], size=(3, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 2:] = 0
    return np.where(mask, ids, 0), mask


def test_tiny_bert_matches_transformers(tiny_bert_dir: str) -> None:
    config, params = architectures.load_hf_backbone(tiny_bert_dir)
    assert config == BertConfig(**TINY, dropout_rate=0.1)  # hidden_dropout_prob
    ids, mask = _batch()
    ours = np.asarray(BertEncoder(config).apply({"params": params}, ids, mask))
    model = transformers.BertModel.from_pretrained(tiny_bert_dir, add_pooling_layer=False).eval()
    with torch.no_grad():
        ref = model(
            input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask)
        ).last_hidden_state.numpy()
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], ref[real], atol=1e-4, rtol=0)
    assert np.abs(ours[real]).max() > 0.1  # not trivially zero


def test_token_types_are_used(tiny_bert_dir: str) -> None:
    config, params = architectures.load_hf_backbone(tiny_bert_dir)
    ids, mask = _batch()
    model = BertEncoder(config)
    plain = model.apply({"params": params}, ids, mask)
    typed = model.apply({"params": params}, ids, mask, token_type_ids=np.ones_like(ids))
    assert not np.allclose(plain, typed)


def test_bfloat16_activations_float32_params(tiny_bert_dir: str) -> None:
    config, params = architectures.load_hf_backbone(tiny_bert_dir, dtype="bfloat16")
    ids, mask = _batch()
    out = BertEncoder(config).apply({"params": params}, ids, mask)
    assert out.dtype == jnp.bfloat16
    assert all(p.dtype == np.float32 for p in jax.tree_util.tree_leaves(params))
    full_config, _ = architectures.load_hf_backbone(tiny_bert_dir)
    ref = BertEncoder(full_config).apply({"params": params}, ids, mask)
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=0.1)


def test_params_carry_logical_axis_names() -> None:
    model = BertEncoder(BertConfig(**TINY))
    ids = jnp.ones((1, 4), jnp.int32)
    boxed = model.init(jax.random.PRNGKey(0), ids, ids)["params"]
    specs = nn.get_partition_spec(boxed)
    assert tuple(specs["word_embeddings"]["embedding"]) == ("vocab", "embed")
    assert tuple(specs["layer_0"]["attention"]["query"]["dense"]["kernel"]) == (
        "embed",
        "heads",
        "kv",
    )
    assert tuple(specs["layer_0"]["attention"]["out"]["dense"]["kernel"]) == (
        "heads",
        "kv",
        "embed",
    )
    assert tuple(specs["layer_1"]["intermediate"]["dense"]["kernel"]) == ("embed", "mlp")
    assert tuple(specs["layer_1"]["output"]["dense"]["kernel"]) == ("mlp", "embed")


def test_dropout_is_active_only_when_not_deterministic(tiny_bert_dir: str) -> None:
    config, params = architectures.load_hf_backbone(tiny_bert_dir)
    model = BertEncoder(BertConfig(**{**TINY, "dropout_rate": 0.5}))
    ids, mask = _batch()
    a = model.apply({"params": params}, ids, mask)
    b = model.apply(
        {"params": params}, ids, mask, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)}
    )
    np.testing.assert_allclose(
        a, BertEncoder(config).apply({"params": params}, ids, mask), atol=1e-6
    )
    assert not np.allclose(a, b)


def _edit_config(src: str, dst: str, **changes: object) -> str:
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    config.update(changes)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f)
    return dst


def test_shape_mismatch_names_the_tensor(tiny_bert_dir: str, tmp_path) -> None:
    bad = _edit_config(tiny_bert_dir, str(tmp_path / "bad"), intermediate_size=48)
    os.symlink(
        os.path.join(tiny_bert_dir, "model.safetensors"), os.path.join(bad, "model.safetensors")
    )
    with pytest.raises(
        CheckpointError, match=r"encoder\.layer\.0\.intermediate\.dense\.weight.*\(64, 32\)"
    ):
        architectures.load_hf_backbone(bad)


def test_unknown_architecture_lists_supported(tiny_bert_dir: str, tmp_path) -> None:
    bad = _edit_config(tiny_bert_dir, str(tmp_path / "gpt"), model_type="gpt2")
    with pytest.raises(CheckpointError, match=r"model_type='gpt2'.*supported model types: bert"):
        architectures.load_hf_backbone(bad)


def test_missing_and_corrupt_checkpoints(tiny_bert_dir: str, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        architectures.load_hf_backbone(tmp_path / "nowhere")
    no_weights = _edit_config(tiny_bert_dir, str(tmp_path / "no_weights"))
    with pytest.raises(CheckpointError, match="No model.safetensors"):
        architectures.load_hf_backbone(no_weights)
    corrupt = _edit_config(tiny_bert_dir, str(tmp_path / "corrupt"))
    with open(os.path.join(corrupt, "model.safetensors"), "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="Corrupt or unreadable safetensors"):
        architectures.load_hf_backbone(corrupt)
    with open(os.path.join(corrupt, "config.json"), "w") as f:
        f.write("{truncated")
    with pytest.raises(CheckpointError, match="Cannot parse .*config.json"):
        architectures.load_hf_backbone(corrupt)


def test_missing_tensor_is_named(tiny_bert_dir: str, tmp_path) -> None:
    import safetensors.numpy

    tensors = safetensors.numpy.load_file(os.path.join(tiny_bert_dir, "model.safetensors"))
    del tensors["encoder.layer.1.output.LayerNorm.weight"]
    partial = _edit_config(tiny_bert_dir, str(tmp_path / "partial"))
    safetensors.numpy.save_file(tensors, os.path.join(partial, "model.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"'encoder\.layer\.1\.output\.LayerNorm\.weight' is missing"
    ):
        architectures.load_hf_backbone(partial)
