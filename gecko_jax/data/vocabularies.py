"""Seqio vocabularies whose tokenization runs in TensorFlow ops (tf.data, SavedModel).

Both vocabularies share :class:`EncoderVocabulary`'s model-input methods:
``tokenize_tf`` (graph-friendly, ragged int32 ids with the model's special tokens,
truncated) and ``tokenize`` (a fast host-side path over one cached ``tf.function``);
the ``*_with_truncation`` variants also say which texts were cut.

:class:`WordPieceVocabulary` reproduces the Hugging Face ``BertTokenizerFast``
pipeline (added special tokens, ``BertNormalizer``, ``BertPreTokenizer``,
``WordPiece``) with ``tf.strings`` / ``tensorflow_text`` ops, so its ids equal the
Hugging Face ids. :class:`SentencePieceVocabulary` is seqio's, plus EOS handling.
"""

from __future__ import annotations

import abc
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import seqio
import tensorflow as tf
import tensorflow_text as tf_text

# Code points of HF BertNormalizer's `is_chinese_char`. Note 0x2B920 (not 0x2B820):
# the Rust `tokenizers` table leaves U+2B820..U+2B91F out, and we follow it.
_CJK = (
    r"\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
    r"\x{2B740}-\x{2B81F}\x{2B920}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}"
)
# Rust `char::is_whitespace` (Unicode White_Space) minus the Cc members \v \f \x85,
# which clean_text deletes as control characters before mapping whitespace.
_WHITESPACE = r"\t\n\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}"
# clean_text deletes NUL, U+FFFD and "other" characters (Cc, Cf, Co) except \t\n\r.
_CLEAN = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\p{Cf}\p{Co}\x{FFFD}]"
# BertPreTokenizer isolates ASCII punctuation (incl. symbols like $+<=>^`|~) and \p{P}.
_PUNCT = r"[!-/:-@\[-`{-~\p{P}]"
# Stands for one added special token while a segment goes through word splitting;
# a private-use character cannot survive clean_text, so it never comes from text.
_SENTINEL = "\ue000"


class EncoderVocabulary(seqio.Vocabulary):
    """A seqio vocabulary that also builds encoder inputs (special tokens, truncation)."""

    _min_length = 1  # Shortest max_length that still holds the special tokens.
    _chunk_size = 8192  # Texts per tf.function call in `tokenize`.

    @abc.abstractmethod
    def tokenize_tf_with_truncation(
        self, texts: tf.Tensor, max_length: int | tf.Tensor
    ) -> tuple[tf.RaggedTensor, tf.Tensor]:
        """Model-input ids for a [B] string tensor and whether each text was cut.

        Returns:
          ``(ids, truncated)``: a [B, None] int32 RaggedTensor of at most ``max_length``
          ids per row, and a [B] bool tensor, True where the text had more tokens.
          Usable inside tf.data and tf.function (and so in a SavedModel).
        """

    def tokenize_tf(self, texts: tf.Tensor, max_length: int | tf.Tensor) -> tf.RaggedTensor:
        """Model-input ids for a [B] string tensor: a [B, None] int32 RaggedTensor.

        Usable inside tf.data and tf.function.
        """
        return self.tokenize_tf_with_truncation(texts, max_length)[0]

    def _check_max_length(self, max_length: int | tf.Tensor) -> None:
        if isinstance(max_length, (int, np.integer)) and max_length < self._min_length:
            raise ValueError(
                f"max_length must be >= {self._min_length} for {type(self).__name__}, "
                f"got {max_length}."
            )

    def tokenize(self, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
        """Model-input ids (int32, one array per text), computed in big TF batches."""
        return self.tokenize_with_truncation(texts, max_length)[0]

    def tokenize_with_truncation(
        self, texts: Sequence[str], max_length: int
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Model-input ids (one int32 array per text) and a [B] bool array of cut texts."""
        if isinstance(texts, (str, bytes)):
            raise TypeError("tokenize() takes a sequence of strings, not a single string.")
        self._check_max_length(max_length)
        fn = self.__dict__.get("_tokenize_fn")
        if fn is None:
            fn = tf.function(
                lambda t, n: _ragged_parts(*self.tokenize_tf_with_truncation(t, n)),
                input_signature=[
                    tf.TensorSpec([None], tf.string),
                    tf.TensorSpec([], tf.int32),
                ],
            )
            self._tokenize_fn = fn
        out: list[np.ndarray] = []
        truncated: list[np.ndarray] = []
        for start in range(0, len(texts), self._chunk_size):
            chunk = tf.constant(list(texts[start : start + self._chunk_size]), tf.string)
            values, splits, cut = fn(chunk, tf.constant(max_length, tf.int32))
            out.extend(np.split(values.numpy(), splits.numpy()[1:-1]))
            truncated.append(cut.numpy())
        return out, np.concatenate(truncated) if truncated else np.zeros(0, bool)

    def __getstate__(self) -> dict[str, Any]:
        # The cached tf.function cannot be pickled (gin deep-copies vocabularies).
        state = dict(super().__getstate__())
        state.pop("_tokenize_fn", None)
        return state


def _ragged_parts(
    ids: tf.RaggedTensor, truncated: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    return ids.flat_values, ids.row_splits, truncated


def _add_special(
    ids: tf.RaggedTensor, prefix: Sequence[int], suffix: Sequence[int]
) -> tf.RaggedTensor:
    """Concatenates constant ids before and after every row of a [B, None] tensor."""
    batch = ids.nrows()
    parts = [ids]
    if prefix:
        parts.insert(0, tf.RaggedTensor.from_tensor(tf.tile([list(prefix)], [batch, 1])))
    if suffix:
        parts.append(tf.RaggedTensor.from_tensor(tf.tile([list(suffix)], [batch, 1])))
    return tf.concat(parts, axis=1)


def _read_vocab(vocab_path: str) -> list[str]:
    """The tokens of ``vocab.txt``, or of a WordPiece ``tokenizer.json`` (``model.vocab``:
    token -> id), in id order."""
    if not tf.io.gfile.exists(vocab_path):
        raise FileNotFoundError(f"WordPiece vocabulary file not found: {vocab_path}")
    with tf.io.gfile.GFile(vocab_path, "r") as f:
        if vocab_path.endswith(".json"):
            ids = json.load(f).get("model", {}).get("vocab")
            if not isinstance(ids, dict) or sorted(ids.values()) != list(range(len(ids))):
                raise ValueError(f"{vocab_path}: model.vocab is not a WordPiece vocabulary")
            return sorted(ids, key=ids.__getitem__)
        # One token per line, the id is the line number; only the line break goes.
        return [line.rstrip("\n").rstrip("\r") for line in f]


class WordPieceVocabulary(EncoderVocabulary):
    """BERT WordPiece vocabulary (``vocab.txt``), ids identical to Hugging Face's.

    The normalisation is hand-written in TF ops because ``tf_text.BertTokenizer``
    lower-cases with NFKC case folding (ß -> ss, ﬁ -> fi, fullwidth -> ASCII), which
    differs from HF's per-character ``to_lowercase`` after NFD accent stripping.

    Known limit: HF classifies characters (marks, controls, punctuation) with Unicode
    8.0 tables, TF with current ones, so ids can differ on the few hundred code points
    of rare scripts added or re-categorised since (e.g. Newa, Adlam, Sogdian marks).
    """

    _min_length = 2

    def __init__(
        self,
        vocab_path: str,
        lower_case: bool = True,
        strip_accents: bool | None = None,
        unk_token: str = "[UNK]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        mask_token: str = "[MASK]",
        max_input_chars_per_word: int = 100,
    ):
        """Reads the vocabulary.

        Args:
          vocab_path: BERT ``vocab.txt``; the line number is the id.
          lower_case: lower-case the text (HF ``do_lower_case``).
          strip_accents: NFD + drop nonspacing marks; None follows ``lower_case``.
          unk_token, cls_token, sep_token, pad_token, mask_token: special tokens,
            looked up in the vocabulary (mask is optional).
          max_input_chars_per_word: longer words become ``unk_token``.
        """
        super().__init__(extra_ids=0)
        self._vocab_path = vocab_path
        self._lower_case = lower_case
        self._strip_accents = lower_case if strip_accents is None else strip_accents
        self._max_chars = max_input_chars_per_word
        self._tokens = _read_vocab(vocab_path)
        index = {t: i for i, t in enumerate(self._tokens)}
        missing = [t for t in (unk_token, cls_token, sep_token, pad_token) if t not in index]
        if missing:
            raise ValueError(f"Special tokens {missing} are not in {vocab_path}.")
        if index[pad_token] != seqio.vocabularies.PAD_ID:
            raise ValueError(f"{pad_token} must have id 0 in {vocab_path}, not {index[pad_token]}.")
        self._unk_token = unk_token
        self._unk, self._cls, self._sep = index[unk_token], index[cls_token], index[sep_token]
        # HF matches these in the raw text before normalisation (added tokens).
        specials = [pad_token, unk_token, cls_token, sep_token, mask_token]
        specials = sorted({t for t in specials if t in index}, key=len, reverse=True)
        self._special_re = "|".join(re.escape(t) for t in specials)
        self._init_tf()

    def _init_tf(self) -> None:
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=self._tokens,
            unknown_token=self._unk_token,
            no_pretokenization=True,
            support_detokenization=True,
            token_out_type=tf.int32,
            max_bytes_per_word=4 * self._max_chars,  # The char limit is applied before.
        )

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_wordpiece")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_tf()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WordPieceVocabulary):
            return False
        return self.__getstate__() == other.__getstate__()

    def __str__(self) -> str:
        return f"WordPieceVocabulary(file={self._vocab_path}, lower_case={self._lower_case})"

    @property
    def bos_id(self) -> int:
        return self._cls

    @property
    def eos_id(self) -> int:
        return self._sep

    @property
    def unk_id(self) -> int:
        return self._unk

    @property
    def _base_vocab_size(self) -> int:
        return len(self._tokens)

    def _normalize(self, text: tf.Tensor) -> tf.Tensor:
        """HF BertNormalizer on a string tensor of any shape."""
        text = tf.strings.regex_replace(text, _CLEAN, "")
        text = tf.strings.regex_replace(text, f"[{_WHITESPACE}]", " ")
        text = tf.strings.regex_replace(text, f"([{_CJK}])", r" \1 ")
        if self._strip_accents:
            text = tf_text.normalize_utf8(text, "NFD")
            text = tf.strings.regex_replace(text, r"\p{Mn}", "")
        if self._lower_case:
            # ICU lower-cases a word-final Σ to ς; HF maps each char alone (σ).
            text = tf.strings.regex_replace(text, "Σ", "σ")
            text = tf.strings.lower(text, encoding="utf-8")
        return text

    def _pieces(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """WordPiece ids without special tokens for a [B] string tensor: [B, None]."""
        special = self._special_re
        # 1. Added special tokens are cut out of the raw text (HF `added_tokens`).
        # regex_split stops at NUL; \x01 is deleted by clean_text just like NUL.
        texts = tf.strings.regex_replace(texts, r"\x00", "\x01")
        segments = tf_text.regex_split(texts, special, special)
        flat = segments.flat_values
        is_special = tf.strings.regex_full_match(flat, special)
        text = tf.where(is_special, _SENTINEL, self._normalize(flat))
        # 2. BertPreTokenizer: split on whitespace, isolate every punctuation char.
        keep = f"{_PUNCT}|{_SENTINEL}"
        words = tf_text.regex_split(text, f"[{_WHITESPACE}]+|{keep}", keep)
        word_values = words.flat_values
        word_values = tf.where(
            word_values == _SENTINEL, tf.gather(flat, words.value_rowids()), word_values
        )
        too_long = tf.strings.length(word_values, unit="UTF8_CHAR") > self._max_chars
        word_values = tf.where(too_long, self._unk_token, word_values)
        # 3. WordPiece on every word, then [B, segments, words, pieces] -> [B, pieces].
        ids = self._wordpiece.tokenize(word_values)
        ids = segments.with_flat_values(words.with_flat_values(ids))
        return ids.merge_dims(1, -1)

    def tokenize_tf_with_truncation(
        self, texts: tf.Tensor, max_length: int | tf.Tensor
    ) -> tuple[tf.RaggedTensor, tf.Tensor]:
        """``[CLS] pieces[:max_length - 2] [SEP]`` per text, as HF with truncation."""
        self._check_max_length(max_length)
        pieces = self._pieces(tf.convert_to_tensor(texts, tf.string))
        truncated = pieces.row_lengths() > tf.cast(max_length - 2, tf.int64)
        ids = _add_special(pieces[:, : max_length - 2], [self._cls], [self._sep])
        return ids, truncated

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor | tf.RaggedTensor:
        s = tf.convert_to_tensor(s, tf.string)
        if s.shape.rank == 0:
            return self._pieces(s[tf.newaxis])[0]
        return self._pieces(s)

    def _encode(self, s: str) -> Sequence[int]:
        return self._encode_tf(tf.constant(s)).numpy().tolist()

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        """Joins pieces into words separated by spaces, dropping [CLS]/[SEP]/[PAD]."""
        ids = tf.convert_to_tensor(ids)
        keep = (ids != self.pad_id) & (ids != self._cls) & (ids != self._sep)
        if ids.shape.rank == 1:
            return self._wordpiece.detokenize(tf.boolean_mask(ids, keep)[tf.newaxis])[0]
        return self._wordpiece.detokenize(tf.ragged.boolean_mask(ids, keep))

    def _decode(self, ids: Sequence[int]) -> str:
        return self._decode_tf(tf.constant(list(ids), tf.int32)).numpy().decode("utf-8")


class SentencePieceVocabulary(EncoderVocabulary, seqio.SentencePieceVocabulary):
    """seqio's SentencePiece vocabulary; model inputs are ``pieces[:max_length-1] + [EOS]``."""

    def tokenize_tf_with_truncation(
        self, texts: tf.Tensor, max_length: int | tf.Tensor
    ) -> tuple[tf.RaggedTensor, tf.Tensor]:
        """``pieces[:max_length - 1] + [eos]`` per text (T5 encoder input, no BOS)."""
        self._check_max_length(max_length)
        if self.eos_id is None or self.eos_id < 0:
            raise ValueError(f"SentencePiece model {self.sentencepiece_model_file} has no EOS.")
        pieces = tf.cast(
            self.tf_tokenizer.tokenize(tf.convert_to_tensor(texts, tf.string)), tf.int32
        )
        truncated = pieces.row_lengths() > tf.cast(max_length - 1, tf.int64)
        return _add_special(pieces[:, : max_length - 1], [], [self.eos_id]), truncated


_SENTENCEPIECE_FILES = ("spiece.model", "sentencepiece.model")


def _config_token(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get(key) or default
    # Newer tokenizer_config.json files store AddedToken dicts.
    return value["content"] if isinstance(value, dict) else value


def _is_wordpiece_json(path: str) -> bool:
    tokenizer_json = os.path.join(path, "tokenizer.json")
    if not tf.io.gfile.exists(tokenizer_json):
        return False
    with tf.io.gfile.GFile(tokenizer_json) as f:
        return json.load(f).get("model", {}).get("type") == "WordPiece"


def vocabulary_from_dir(path: str) -> EncoderVocabulary:
    """The vocabulary of a Hugging Face model directory.

    ``vocab.txt`` (or, without it, a WordPiece ``tokenizer.json``) gives a
    :class:`WordPieceVocabulary` (``do_lower_case`` and token names from
    ``tokenizer_config.json`` when present); ``spiece.model`` or
    ``sentencepiece.model`` gives a :class:`SentencePieceVocabulary`.
    """
    vocab_txt = os.path.join(path, "vocab.txt")
    if not tf.io.gfile.exists(vocab_txt) and _is_wordpiece_json(path):
        vocab_txt = os.path.join(path, "tokenizer.json")  # transformers 5 writes only this
    if tf.io.gfile.exists(vocab_txt):
        config: dict[str, Any] = {}
        config_path = os.path.join(path, "tokenizer_config.json")
        if tf.io.gfile.exists(config_path):
            with tf.io.gfile.GFile(config_path) as f:
                config = json.load(f)
        return WordPieceVocabulary(
            vocab_txt,
            lower_case=bool(config.get("do_lower_case", True)),
            strip_accents=config.get("strip_accents"),
            **{
                key: _config_token(config, key, default)
                for key, default in (
                    ("unk_token", "[UNK]"),
                    ("cls_token", "[CLS]"),
                    ("sep_token", "[SEP]"),
                    ("pad_token", "[PAD]"),
                    ("mask_token", "[MASK]"),
                )
            },
        )
    for name in _SENTENCEPIECE_FILES:
        model = os.path.join(path, name)
        if tf.io.gfile.exists(model):
            return SentencePieceVocabulary(model)
    raise FileNotFoundError(
        f"No vocabulary in {path}: looked for vocab.txt, "
        + " and ".join(_SENTENCEPIECE_FILES)
        + "."
    )
