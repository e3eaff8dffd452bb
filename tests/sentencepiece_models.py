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
