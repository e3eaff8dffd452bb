"""Gecko-1b as its gin files configure it (the T5 v1.1 XL encoder from T5X files), abstractly."""

import os

import gin
import pytest

from gecko_jax import gin_models
from gecko_jax.models import t5
from gecko_jax.models.hf_checkpoint import CheckpointError
from gecko_jax.models.t5x_model import T5XModelSpec
from gecko_jax.pretrained import load_pretrained, pretrained_architecture
from tests.sentencepiece_models import T5_WORDS, train_t5_style_model

T5X_LEGACY = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "fixtures", "t5x", "test_t5_tiny.checkpoint_0"
)


@pytest.fixture(scope="module")
def gecko_1b() -> tuple[gin_models.AbstractModel, dict]:
    try:
        built = gin_models.gecko_1b_abstract()
        return built, gin.get_bindings("gecko_jax.t5x_pretrained")
    finally:
        gin.clear_config()


def test_parameter_count_is_the_papers_1_2b(gecko_1b) -> None:
    count = gecko_1b[0].param_count
    print(f"gecko_1b parameters: {count:,}")
    assert 1.1e9 <= count <= 1.35e9
    # T5 v1.1 XL encoder: embedding, 24 x (attention, gated MLP, 2 norms), final norm,
    # relative position table; then the 2048 -> 768 projection.
    d, ff, heads, kv, layers, vocab = 2048, 5120, 32, 64, 24, 32128
    per_layer = 4 * d * heads * kv + 3 * d * ff + 2 * d
    assert count == vocab * d + layers * per_layer + d + 32 * heads + d * 768


def test_backbone_is_t5_v1_1_xl_with_the_papers_head(gecko_1b) -> None:
    built = gecko_1b[0]
    backbone = built.model.backbone
    assert backbone == t5.T5Config.named("xl", dtype="bfloat16")
    assert (backbone.d_model, backbone.d_ff, backbone.num_layers) == (2048, 5120, 24)
    assert (backbone.num_heads, backbone.d_kv, backbone.vocab_size) == (32, 64, 32128)
    assert backbone.feed_forward_proj == "gated-gelu"
    assert (backbone.relative_attention_num_buckets, backbone.relative_attention_max_distance) == (
        32,
        128,
    )
    assert (built.model.head.pooling, built.model.head.projection_dim) == ("mean", 768)
    assert built.train_config.loss.mrl_dims == (768, 256)
    assert built.max_lengths == {"query": 64, "document": 512}
    kernel = built.params["backbone"]["layers_23"]["attention"]["query"]["dense"]["kernel"]
    assert kernel.value.shape == (2048, 32, 64) and kernel.names == ("embed", "heads", "kv")


def test_gin_macros_reach_the_t5x_model(gecko_1b) -> None:
    bindings = gecko_1b[1]
    assert bindings["architecture"] == "t5_v1_1_xl"
    assert (
        bindings["checkpoint"] == "gs://t5-data/pretrained_models/t5x/t5_1_1_xl/checkpoint_1000000"
    )
    assert bindings["vocabulary"] == "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"


def test_vocabulary_macro_is_required() -> None:
    bindings = [b for b in gin_models.GECKO_1B_BINDINGS if not b.startswith("T5_VOCABULARY")]
    try:
        with pytest.raises(ValueError, match=r"T5_VOCABULARY.*%gin.REQUIRED"):
            gin_models.abstract_model_from_gin(gin_models.GECKO_1B_GIN_FILES, bindings)
    finally:
        gin.clear_config()


def test_t5x_model_name_round_trips_and_builds_without_files() -> None:
    spec = T5XModelSpec("t5_v1_1_small", vocabulary="/no/spiece.model", checkpoint="/no/ckpt_1")
    name = spec.to_init_from()
    assert name == "t5x:t5_v1_1_small?checkpoint=/no/ckpt_1&vocabulary=/no/spiece.model"
    assert T5XModelSpec.from_init_from(name) == spec
    assert T5XModelSpec.from_init_from("all-MiniLM-L6-v2") is None
    assert pretrained_architecture(name).backbone == t5.T5Config.named("small")  # reads no file
    with pytest.raises(CheckpointError, match=r"Unknown T5X architecture 't5_v1_1_huge'"):
        T5XModelSpec.from_init_from(name.replace("small", "huge"))


def test_t5x_checkpoint_that_disagrees_with_the_architecture_names_the_array(tmp_path) -> None:
    train_t5_style_model(tmp_path, T5_WORDS, sentences=100, max_words=8, vocab_size=40)
    vocabulary = str(tmp_path / "spiece.model")
    name = T5XModelSpec("t5_v1_1_small", vocabulary, T5X_LEGACY).to_init_from()
    with pytest.raises(
        CheckpointError,
        match=r"'target/encoder/encoder_norm/scale'.*\(8,\).*expects \(512,\).*final_norm/scale",
    ):
        load_pretrained(name)
    missing = T5XModelSpec("t5_v1_1_small", str(tmp_path / "none.model"), T5X_LEGACY)
    with pytest.raises(CheckpointError, match=r"SentencePiece vocabulary not found: .*none.model"):
        load_pretrained(missing.to_init_from())
