"""Varied sentences for parity tests: ordinary, long, short, non-ASCII, blank."""

import os

from gecko_jax.readers import read_sts_benchmark

HARD_CASES = [
    "",
    " ",
    "\t\n  ",
    "a",
    "OK",
    "?",
    "...",
    "I",
    "x" * 150,
    "don't",
    "U.S.A.",
    "Café au lait, naïve façade, Ångström, jalapeño.",
    "Straße und Fußgänger in Köln — größer als erwartet.",
    "Ça va? Très bien, merci! Où est la bibliothèque?",
    "ﬁnancial ﬂows in ｆｕｌｌｗｉｄｔｈ text and ² superscripts",
    "東京は日本の首都です。人口は約1400万人。",
    "北京欢迎你，长城很美丽！",
    "한국어 문장도 포함됩니다.",
    "Москва — столица России, а Киев — Украины.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "العربية لغة جميلة جداً",
    "हिन्दी भी एक भाषा है।",
    "Emoji 😀🚀🔥 and symbols ©®™ ∑∫√ ≤≥ ←→",
    "Tabs\tand\nnewlines\r\nand  multiple   spaces",
    "Control\x00chars\x07and\ufffdreplacement\u200bzero-width",
    "ALL CAPS SENTENCE WITH NUMBERS 12345 AND $100.50!!!",
    "email@example.com, https://example.org/path?q=1&r=2 #hashtag @mention",
    "C++ / C# / F# and x86_64 -- what's ~the~ best^?",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism "
    "pneumonoultramicroscopicsilicovolcanoconiosis",
]


def long_text(words: int) -> str:
    """A long paragraph (more tokens than the model's limit when ``words`` is large)."""
    base = (
        "The committee reviewed the proposal in detail, noting that several of its "
        "assumptions about cost, schedule and risk needed further evidence. "
    ).split()
    return " ".join(base[i % len(base)] for i in range(words))


def varied_sentences(data_dir: str, n_sts: int = 180) -> list[str]:
    """At least 200 sentences: STS-B train sentences plus hard cases and long texts."""
    pairs = read_sts_benchmark(os.path.join(data_dir, "stsb", "sts-train.csv"))
    sts = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    step = max(1, len(sts) // n_sts)
    sentences = sts[::step][:n_sts] + HARD_CASES
    sentences += [long_text(n) for n in (60, 200, 400, 1000)]
    return sentences
