"""Tiny SentencePiece models for tests, with T5's special ids."""

from __future__ import annotations

import pathlib
import random
from collections.abc import Sequence

import sentencepiece as spm


def train_t5_style_model(
    directory: pathlib.Path, words: Sequence[str], sentences: int, max_words: int, vocab_size: int
) -> None:
    """Writes ``directory/spiece.model``: unigram, trained on random sentences of ``words``.

    Ids as in T5: pad 0, EOS 1, UNK 2, no BOS.
    """
    rng = random.Random(0)
    lines = [
        " ".join(rng.choice(words) for _ in range(rng.randint(3, max_words)))
        for _ in range(sentences)
    ]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(directory / "spiece"),
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )


T5_WORDS = (
    "the embedding model retrieves passages for every query about science and "
    "history while a small encoder learns fast vectors"
).split()


def write_tiny_t5(directory: pathlib.Path) -> str:
    """A random 2-layer T5 encoder checkpoint (d_model 32) with a SentencePiece vocabulary
    trained on :data:`T5_WORDS`: a Hugging Face directory ``Encoder.load`` reads."""
    import torch
    import transformers

    train_t5_style_model(directory, T5_WORDS, sentences=300, max_words=12, vocab_size=60)
    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=64,
        d_model=32,
        d_kv=8,
        num_heads=4,
        d_ff=64,
        num_layers=2,
        feed_forward_proj="gated-gelu",
    )
    transformers.T5EncoderModel(config).eval().save_pretrained(
        str(directory), safe_serialization=True
    )
    return str(directory)
