"""Model directories as sentence-transformers writes them, old and new layouts."""

import json
import os
import shutil

import numpy as np

from gecko_jax import Encoder
from gecko_jax.models import named


def _sentence_transformers_6_folder(minilm_dir: str, path: str) -> str:
    """all-MiniLM-L6-v2 laid out as sentence-transformers 6 / transformers 5 save it: the
    single "pooling_mode" key, no max_seq_length, and tokenizer.json without vocab.txt."""
    os.makedirs(os.path.join(path, "1_Pooling"))
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(os.path.join(minilm_dir, name), os.path.join(path, name))
    with open(os.path.join(minilm_dir, "tokenizer_config.json")) as f:
        tokenizer_config = {**json.load(f), "model_max_length": 256}
    files = {
        "tokenizer_config.json": tokenizer_config,
        "modules.json": [
            {
                "idx": 0,
                "name": "0",
                "path": "",
                "type": "sentence_transformers.base.modules.transformer.Transformer",
            },
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
            },
        ],
        "1_Pooling/config.json": {"embedding_dimension": 384, "pooling_mode": "mean"},
        "sentence_bert_config.json": {"transformer_task": "feature-extraction"},
    }
    for name, value in files.items():
        with open(os.path.join(path, name), "w") as f:
            json.dump(value, f)
    return path


def test_a_sentence_transformers_6_folder_loads_as_the_model_it_holds(
    tmp_path, minilm_dir: str, encoder: Encoder
) -> None:
    folder = _sentence_transformers_6_folder(minilm_dir, str(tmp_path / "st6"))
    layout = named.read_sentence_transformers_layout(folder)
    assert layout is not None
    assert (layout.head.pooling, layout.max_seq_length) == ("mean", 256)
    loaded = Encoder.load(folder)
    assert loaded.max_length == 256
    texts = ["A man is playing a guitar.", "Ünïcödé and [MASK] tokens, déjà vu"]
    assert [list(t) for t in loaded.tokenize(texts).token_ids] == [
        list(t) for t in encoder.tokenize(texts).token_ids
    ]
    np.testing.assert_allclose(loaded.encode(texts), encoder.encode(texts), atol=1e-6)
