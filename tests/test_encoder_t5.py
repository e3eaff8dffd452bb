"""Encoder API end to end on a T5 checkpoint with a SentencePiece vocabulary."""

import numpy as np
import pytest
import sentencepiece as spm
import torch
import transformers

from gecko_jax import Encoder
from gecko_jax.data.vocabularies import SentencePieceVocabulary
from tests.sentencepiece_models import write_tiny_t5


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_tiny_t5(tmp_path_factory.mktemp("tiny_t5"))


def _torch_embeddings(model_dir: str, texts: list[str]) -> np.ndarray:
    processor = spm.SentencePieceProcessor(model_file=f"{model_dir}/spiece.model")
    model = transformers.T5EncoderModel.from_pretrained(model_dir).eval()
    rows = []
    for text in texts:
        ids = torch.tensor([processor.encode(text) + [1]])
        with torch.no_grad():
            hidden = model(input_ids=ids).last_hidden_state[0]
        pooled = hidden.mean(0).numpy()
        rows.append(pooled / np.linalg.norm(pooled))
    return np.stack(rows)


def test_t5_encoder_matches_torch_mean_pooling(t5_dir: str) -> None:
    encoder = Encoder.load(t5_dir)
    assert isinstance(encoder.vocabulary, SentencePieceVocabulary)
    assert encoder.embedding_dim == 32 and encoder.max_length == 512
    texts = [
        "the model retrieves passages",
        "science",
        "",
        "a small encoder learns fast vectors " * 5,
    ]
    ours = encoder.encode(texts, batch_size=2)
    ref = _torch_embeddings(t5_dir, texts)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_t5_packed_rows_match_torch(t5_dir: str) -> None:
    """Relative position biases from per-text positions: packed texts see only their own."""
    encoder = Encoder.load(t5_dir)
    texts = [
        "the model retrieves passages",
        "science",
        "",
        "a small encoder learns fast vectors " * 5,
        "distances past the bias table's reach " * 8,
    ]
    tokenized = encoder.tokenize(texts)
    # Tokens further apart than the bias table's 128, and no text cut short.
    assert 128 < tokenized.token_counts[-1] < encoder.max_length
    packed = encoder.embed_packed(tokenized.token_ids)
    np.testing.assert_allclose(packed, _torch_embeddings(t5_dir, texts), atol=1e-4)


def test_t5_encoder_bfloat16(t5_dir: str) -> None:
    texts = ["the model retrieves passages", "history and science"]
    full = Encoder.load(t5_dir).encode(texts)
    half = Encoder.load(t5_dir, dtype="bfloat16").encode(texts)
    assert half.dtype == np.float32
    assert np.min(np.sum(full * half, axis=1)) > 0.99
