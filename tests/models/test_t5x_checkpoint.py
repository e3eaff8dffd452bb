"""T5X checkpoints, written by T5X itself, read into our T5 encoder (both file formats)."""

import dataclasses
import gzip
import math
import os

import jax
import numpy as np
import pytest
import torch
import transformers

from gecko_jax.models import t5
from gecko_jax.models import t5x_checkpoint as t5x
from gecko_jax.models.hf_checkpoint import CheckpointError

# Written by T5X itself (see the README there), so the loader reads what T5X users hold.
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "t5x")
LEGACY = os.path.join(FIXTURES, "test_t5_tiny.checkpoint_0")
TENSORSTORE = os.path.join(FIXTURES, "tiny_t5", "checkpoint_1")
SEQ_LEN = 48  # past the 8 exact buckets per direction: logarithmic buckets are exercised


@pytest.fixture(scope="module")
def legacy_target() -> dict[str, np.ndarray]:
    return t5x.read_t5x_checkpoint(LEGACY, select=lambda name: name.startswith("target/"))


@pytest.fixture(scope="module")
def legacy_config(legacy_target) -> t5.T5Config:
    return t5x.t5_config_from_t5x(legacy_target)


def _batch(vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.arange(SEQ_LEN)[None, :] < np.array([[SEQ_LEN], [30], [3]])
    ids = np.where(mask, rng.integers(1, vocab_size, mask.shape), 0)
    return ids.astype(np.int32), mask


def _hf_state_dict(arrays: dict[str, np.ndarray], num_layers: int) -> dict[str, torch.Tensor]:
    """The fixture's encoder under Hugging Face's T5 names (torch Linear weights are [out, in])."""
    enc = "target/encoder"
    state = {
        "shared.weight": arrays["target/token_embedder/embedding"],
        "encoder.embed_tokens.weight": arrays["target/token_embedder/embedding"],
        "encoder.final_layer_norm.weight": arrays[f"{enc}/encoder_norm/scale"],
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": arrays[
            f"{enc}/relpos_bias/rel_embedding"
        ].T,
    }
    for i in range(num_layers):
        ours, hf = f"{enc}/layers_{i}", f"encoder.block.{i}"
        for t5x_name, hf_name in (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o")):
            state[f"{hf}.layer.0.SelfAttention.{hf_name}.weight"] = arrays[
                f"{ours}/attention/{t5x_name}/kernel"
            ].T
        state[f"{hf}.layer.0.layer_norm.weight"] = arrays[f"{ours}/pre_attention_layer_norm/scale"]
        state[f"{hf}.layer.1.layer_norm.weight"] = arrays[f"{ours}/pre_mlp_layer_norm/scale"]
        for name in ("wi_0", "wi_1", "wo"):
            state[f"{hf}.layer.1.DenseReluDense.{name}.weight"] = arrays[
                f"{ours}/mlp/{name}/kernel"
            ].T
    return {name: torch.from_numpy(np.array(v, np.float32)) for name, v in state.items()}


def test_legacy_checkpoint_names_and_derived_config(legacy_target, legacy_config) -> None:
    assert legacy_target["target/encoder/layers_1/attention/query/kernel"].shape == (8, 12)
    assert legacy_target["target/decoder/logits_dense/kernel"].shape == (8, 32128)
    assert legacy_config == t5.T5Config(
        vocab_size=32128, d_model=8, d_kv=3, num_heads=4, d_ff=16, num_layers=2
    )


def test_legacy_encoder_matches_hugging_face(legacy_target, legacy_config) -> None:
    cfg = legacy_config
    hf_config = transformers.T5Config(
        vocab_size=cfg.vocab_size,
        d_model=cfg.d_model,
        d_kv=cfg.d_kv,
        num_heads=cfg.num_heads,
        d_ff=cfg.d_ff,
        num_layers=cfg.num_layers,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
    )
    torch_model = transformers.T5EncoderModel(hf_config).eval()
    missing, unexpected = torch_model.load_state_dict(
        _hf_state_dict(legacy_target, cfg.num_layers), strict=False
    )
    assert not unexpected and not missing, (missing, unexpected)
    ids, mask = _batch(cfg.vocab_size)
    with torch.no_grad():
        want = torch_model(
            input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long()
        ).last_hidden_state.numpy()

    params = t5x.load_t5x_encoder(LEGACY, cfg)
    got = np.asarray(jax.jit(t5.T5Encoder(cfg).apply)({"params": params}, ids, mask))

    assert got.shape == (3, SEQ_LEN, 8)
    print("max |ours - Hugging Face|:", np.abs(got[mask] - want[mask]).max())
    np.testing.assert_allclose(got[mask], want[mask], atol=1e-5, rtol=0)
    # The kernels are used as stored: a 1/sqrt(d_kv) query scaling would not match.
    scaled = jax.tree_util.tree_map(lambda x: x, params)
    for i in range(cfg.num_layers):
        q = scaled[f"layers_{i}"]["attention"]["query"]["dense"]
        q["kernel"] = q["kernel"] / math.sqrt(cfg.d_kv)
    off = np.asarray(t5.T5Encoder(cfg).apply({"params": scaled}, ids, mask))
    assert np.abs(off[mask] - want[mask]).max() > 1e-3


def _zarr_chunk(array_dir: str, chunk: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """A one-chunk zarr array read by hand: gzip over little-endian C-order values."""
    with open(os.path.join(TENSORSTORE, array_dir, chunk), "rb") as f:
        raw = gzip.decompress(f.read())
    return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).reshape(shape)


def test_tensorstore_layout_arrays_load_exactly() -> None:
    arrays = t5x.read_t5x_checkpoint(TENSORSTORE)

    assert sorted(arrays) == [
        "state/param_states/bias",
        "state/param_states/kernel",
        "state/param_states/step",
        "state/step",
    ]
    kernel = arrays["state/param_states/kernel"]
    assert kernel.dtype == np.float64 and kernel.shape == (10, 5)
    np.testing.assert_array_equal(
        kernel, _zarr_chunk("state.param_states.kernel", "0.0", "float64", (10, 5))
    )
    bias = arrays["state/param_states/bias"]
    assert bias.dtype == np.float32 and bias.shape == (5,)
    np.testing.assert_array_equal(
        bias, _zarr_chunk("state.param_states.bias", "0", "float32", (5,))
    )
    step = arrays["state/param_states/step"]
    assert step.dtype == np.int32 and step.shape == ()
    assert int(step) == int(_zarr_chunk("state.param_states.step", "0", "int32", ())) == 1
    assert int(arrays["state/step"]) == 1  # stored inline in the index


def test_select_reads_only_the_named_arrays() -> None:
    arrays = t5x.read_t5x_checkpoint(TENSORSTORE, select=lambda name: name.endswith("bias"))
    assert list(arrays) == ["state/param_states/bias"]


def test_detects_t5x_checkpoints(tmp_path) -> None:
    assert t5x.is_t5x_checkpoint(TENSORSTORE)
    assert t5x.is_t5x_checkpoint(LEGACY)
    assert not t5x.is_t5x_checkpoint(os.path.dirname(TENSORSTORE))  # the run dir, not a step
    (tmp_path / "1" / "state").mkdir(parents=True)  # an orbax step directory
    assert not t5x.is_t5x_checkpoint(str(tmp_path))
    with pytest.raises(CheckpointError, match=r"No T5X checkpoint at .*checkpoint_N"):
        t5x.read_t5x_checkpoint(str(tmp_path))


def test_mismatching_shape_names_the_array_and_both_shapes(legacy_config) -> None:
    wider = dataclasses.replace(legacy_config, d_ff=32)
    with pytest.raises(
        CheckpointError,
        match=r"'target/encoder/layers_0/mlp/wi_0/kernel'.*\(8, 16\).*expects \(8, 32\)",
    ):
        t5x.load_t5x_encoder(LEGACY, wider)
    more_heads = dataclasses.replace(legacy_config, num_heads=6, d_kv=2)
    with pytest.raises(CheckpointError, match=r"relpos_bias/rel_embedding.*\(4, 32\)"):
        t5x.load_t5x_encoder(LEGACY, more_heads)


def test_initialises_a_sharded_train_state(legacy_config) -> None:
    """As gecko-train does with a T5X ``init_checkpoint``: abstract state in, state out."""
    from gecko_jax import partitioning
    from gecko_jax.models.dual_encoder import DualEncoder, HeadConfig
    from gecko_jax.trainer import Trainer

    model = DualEncoder(backbone=legacy_config, head=HeadConfig(projection_dim=4))
    trainer = Trainer(model, partitioning.make_mesh(4, 2))
    abstract = trainer.abstract_state().params["backbone"]
    backbone = t5x.load_t5x_backbone(LEGACY, abstract)

    assert jax.tree_util.tree_structure(backbone) == jax.tree_util.tree_structure(abstract)
    state = trainer.init_state(jax.random.PRNGKey(0), {"backbone": backbone})
    query = state.params["backbone"]["layers_1"]["attention"]["query"]["dense"]["kernel"]
    assert (
        query.sharding.spec
        == abstract["layers_1"]["attention"]["query"]["dense"]["kernel"].sharding.spec
    )
    np.testing.assert_array_equal(
        np.asarray(query),
        t5x.read_t5x_checkpoint(LEGACY)["target/encoder/layers_1/attention/query/kernel"].reshape(
            8, 4, 3
        ),
    )


@pytest.mark.parametrize(
    "directory, kvstore",
    [
        (
            "gs://t5-data/pretrained_models/t5x/t5_1_1_xl/checkpoint_1000000",
            {
                "driver": "gcs",
                "bucket": "t5-data",
                "path": "pretrained_models/t5x/t5_1_1_xl/checkpoint_1000000/target.encoder.x/",
            },
        ),
        ("/ckpt/checkpoint_1", {"driver": "file", "path": "/ckpt/checkpoint_1/target.encoder.x/"}),
    ],
)
def test_tensorstore_specs_read_from_the_checkpoint_directory(directory, kvstore) -> None:
    metadata = {"chunks": [2], "compressor": {"id": "gzip", "level": 1}, "shape": [2]}
    written = [
        # as T5X writes it locally, through gfile, and to GCS (a placeholder bucket)
        {"driver": "zarr", "kvstore": {"driver": "gfile", "path": "target.encoder.x/"}},
        {"driver": "zarr", "kvstore": {"driver": "file", "path": "target.encoder.x/"}},
        {
            "driver": "zarr",
            "kvstore": {"bucket": "t5x-dummy-bucket", "driver": "gcs", "path": "target.encoder.x/"},
        },
        # tensorstore < 0.1.14: the path beside the kvstore
        {"driver": "zarr", "kvstore": {"driver": "file"}, "path": "target.encoder.x/"},
    ]
    for spec in written:
        spec = {**spec, "dtype": "float32", "metadata": metadata}
        resolved = t5x.absolute_tensorstore_spec(spec, directory, "target/encoder/x")
        assert resolved == {
            "driver": "zarr",
            "dtype": "float32",
            "metadata": metadata,
            "kvstore": kvstore,
        }
