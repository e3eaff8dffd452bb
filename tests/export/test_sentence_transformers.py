"""The sentence-transformers export, loaded by sentence-transformers itself (torch, CPU)."""

import copy
import dataclasses
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import safetensors.numpy
import transformers
from sentence_transformers import SentenceTransformer

from gecko_jax.encoder import Encoder
from gecko_jax.export.hf_weights import invert_rule
from gecko_jax.export.sentence_transformers import export_sentence_transformers, prompts_for_task
from gecko_jax.export.source import ExportError, ExportSource, load_source
from gecko_jax.formats import InputFormat
from gecko_jax.models.dual_encoder import HeadConfig
from gecko_jax.models.hf_checkpoint import TensorRule, read_tensors
from tests.model_dirs import write_model_dir
from tests.sentencepiece_models import write_tiny_t5
from tests.text_samples import long_text, varied_sentences

TASK = "search result | find passages that answer the question"


@pytest.fixture(scope="module")
def sentences(eval_data_dir: str) -> list[str]:
    """50: STS-B sentences, hard cases (blank, non-ASCII, symbols) and one over-long text."""
    texts = [t for t in varied_sentences(eval_data_dir, n_sts=20) if len(t) < 200]
    return [*texts, long_text(400)]


@pytest.fixture(scope="module")
def t5_base_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_tiny_t5(tmp_path_factory.mktemp("t5_base"))


@pytest.fixture(scope="module")
def t5_source(tmp_path_factory: pytest.TempPathFactory, t5_base_dir: str) -> ExportSource:
    model_dir = tmp_path_factory.mktemp("t5_trained") / "model"
    write_model_dir(model_dir, t5_base_dir, HeadConfig(projection_dim=16), step=5)
    return load_source(model_dir)


@pytest.fixture(scope="module")
def bert_source(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: str) -> ExportSource:
    model_dir = tmp_path_factory.mktemp("bert_trained") / "model"
    write_model_dir(model_dir, tiny_model_dir, HeadConfig(pooling="cls"), step=3)
    return load_source(model_dir)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, t5_source, bert_source) -> dict:
    """One export per model: name -> (source, task, folder)."""
    root = tmp_path_factory.mktemp("exports")
    minilm = load_source("all-MiniLM-L6-v2")
    made = {}
    for name, source, task in (
        ("minilm", minilm, None),
        ("t5", t5_source, TASK),
        ("bert", bert_source, TASK),
    ):
        folder = export_sentence_transformers(source, root / name, task=task)
        made[name] = (source, task, folder)
    return made


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.min(cos))


@pytest.mark.parametrize("name", ["minilm", "t5", "bert"])
def test_sentence_transformer_reproduces_encoder(
    exports: dict, sentences: list[str], name: str
) -> None:
    source, task, folder = exports[name]
    encoder: Encoder = source.encoder
    model = SentenceTransformer(folder, device="cpu")
    assert model.max_seq_length == encoder.max_length
    assert model.get_embedding_dimension() == encoder.embedding_dim

    plain = model.encode(sentences, batch_size=16)
    ours_plain = encoder.encode(sentences)
    assert _min_cosine(plain, ours_plain) >= 0.9999
    for kind, encode in (("query", model.encode_query), ("document", model.encode_document)):
        # Without a task the encoder embeds texts unchanged on both sides.
        ours = ours_plain if task is None else encoder.encode(sentences, task=task, kind=kind)
        theirs = encode(sentences, batch_size=16)
        assert _min_cosine(theirs, ours) >= 0.9999, kind
        if task is not None:
            # The prompts are what makes them agree: the unprompted embeddings are further off.
            assert np.abs(theirs - ours).max() * 10 < np.abs(plain - ours).max(), kind


def test_folder_layout(exports: dict) -> None:
    _, _, folder = exports["t5"]
    modules = json.loads(pathlib.Path(folder, "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Dense", "3_Normalize"]
    pooling = json.loads(pathlib.Path(folder, "1_Pooling", "config.json").read_text())
    assert pooling["pooling_mode"] == "mean" and pooling["pooling_mode_mean_tokens"] is True
    assert pooling["pooling_mode_cls_token"] is False
    dense = json.loads(pathlib.Path(folder, "2_Dense", "config.json").read_text())
    assert (dense["in_features"], dense["out_features"], dense["bias"]) == (32, 16, False)
    weights = safetensors.numpy.load_file(os.path.join(folder, "2_Dense", "model.safetensors"))
    assert set(weights) == {"linear.weight"} and weights["linear.weight"].shape == (16, 32)
    config = json.loads(pathlib.Path(folder, "config.json").read_text())
    assert config["architectures"] == ["T5EncoderModel"] and not config["is_encoder_decoder"]
    st_config = json.loads(pathlib.Path(folder, "config_sentence_transformers.json").read_text())
    assert st_config["prompts"] == {
        "query": f"task: {TASK} | query: ",
        "document": "title: none | text: ",
    }
    assert st_config["default_prompt_name"] is None
    card = pathlib.Path(folder, "README.md").read_text()
    assert "step | 5" in card and "title" in card and "spiece.model" in card

    _, _, bert_folder = exports["bert"]
    pooling = json.loads(pathlib.Path(bert_folder, "1_Pooling", "config.json").read_text())
    assert pooling["pooling_mode"] == "cls" and pooling["pooling_mode_cls_token"] is True
    _, _, minilm_folder = exports["minilm"]
    st_config = json.loads(
        pathlib.Path(minilm_folder, "config_sentence_transformers.json").read_text()
    )
    assert st_config["prompts"] == {}


def test_bert_weights_are_the_trained_ones(exports: dict, tiny_model_dir: str) -> None:
    source, _, folder = exports["bert"]
    exported = read_tensors(folder)
    base = read_tensors(tiny_model_dir)
    assert set(exported) == set(base)
    trained = np.asarray(source.encoder.params["backbone"]["word_embeddings"]["embedding"])
    np.testing.assert_array_equal(exported["embeddings.word_embeddings.weight"], trained)
    # write_model_dir adds noise of std 0.01 to every weight.
    for name in (
        "encoder.layer.1.attention.self.query.weight",
        "encoder.layer.0.output.dense.bias",
    ):
        assert 0.005 < np.std(exported[name] - base[name]) < 0.02, name


def test_t5_tokenizer_gives_the_vocabulary_ids(exports: dict, sentences: list[str]) -> None:
    source, _, folder = exports["t5"]
    encoder: Encoder = source.encoder
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    texts = [*sentences, "<extra_id_0> sentinel text", "  leading  and trailing  ", "ﬁ ＡＢＣ"]
    # Literal "</s>", "<pad>" and "<unk>" in a text are left out: the tokenizers library's
    # Unigram model has no piece types, so it matches control pieces that SentencePiece
    # never produces from text (and transformers splits them out as special tokens).
    ours = encoder.vocabulary.tokenize(texts, encoder.max_length)
    theirs = tokenizer(texts, truncation=True, max_length=encoder.max_length)["input_ids"]
    for text, a, b in zip(texts, ours, theirs):
        assert a.tolist() == b, text


def test_prompts_need_prefix_templates() -> None:
    assert prompts_for_task(InputFormat(), None) == {}
    assert prompts_for_task(InputFormat(), "qa") == {
        "query": "task: qa | query: ",
        "document": "title: none | text: ",
    }
    with pytest.raises(ExportError, match="query template .* not a prefix"):
        prompts_for_task(InputFormat(query_template="{text} (task: {task})"), "qa")
    with pytest.raises(ExportError, match="document template .* cannot be filled"):
        prompts_for_task(InputFormat(document_template="{heading}: {text}"), "qa")


def test_invert_rule_rejects_a_lossy_transform() -> None:
    rule = TensorRule("w", lambda w: w.sum(axis=0))
    with pytest.raises(ExportError, match="'w'.*not a rearrangement"):
        invert_rule(rule, np.zeros(3), (2, 3), "w")
    rule = TensorRule("w", lambda w: w.T.reshape(3, 2, 1))
    value = np.arange(6.0).reshape(3, 2, 1)
    np.testing.assert_array_equal(rule.transform(invert_rule(rule, value, (2, 3), "w")), value)


def test_bad_exports_leave_nothing(tmp_path: pathlib.Path, bert_source) -> None:
    out = tmp_path / "out"
    unknown = tmp_path / "unknown_base"
    shutil.copytree(bert_source.base_dir, unknown)
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps(dict(config, model_type="nomic_bert")))
    with pytest.raises(ExportError, match="model_type='nomic_bert'"):
        export_sentence_transformers(dataclasses.replace(bert_source, base_dir=str(unknown)), out)

    # Fails after the first files are written: the base checkpoint has no weights.
    (unknown / "config.json").write_text(json.dumps(config))
    (unknown / "model.safetensors").unlink()
    with pytest.raises(ExportError, match="No model.safetensors"):
        export_sentence_transformers(dataclasses.replace(bert_source, base_dir=str(unknown)), out)

    suffix_format = copy.copy(bert_source.encoder)
    suffix_format.input_format = InputFormat(query_template="{text} | task: {task}")
    with pytest.raises(ExportError, match="not a prefix"):
        export_sentence_transformers(
            dataclasses.replace(bert_source, encoder=suffix_format), out, task="qa"
        )
    assert sorted(os.listdir(tmp_path)) == ["unknown_base"]

    existing = export_sentence_transformers(bert_source, out, task="qa")
    with pytest.raises(ExportError, match="already exists; pass --overwrite"):
        export_sentence_transformers(bert_source, existing)
    export_sentence_transformers(bert_source, existing, overwrite=True)
    st_config = json.loads(pathlib.Path(existing, "config_sentence_transformers.json").read_text())
    assert st_config["prompts"] == {}
    assert sorted(os.listdir(tmp_path)) == ["out", "unknown_base"]
