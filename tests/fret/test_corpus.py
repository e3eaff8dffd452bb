"""Reading the passage corpus: BEIR layout, globs, truncation, bad input."""

import json
import os

import pytest

from gecko_jax.fret.config import CorpusConfig
from gecko_jax.fret.corpus import CorpusError, Passage, read_corpus, truncate


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def test_reads_scifact_corpus(eval_data_dir):
    path = os.path.join(eval_data_dir, "scifact", "corpus.jsonl")
    with open(path, encoding="utf-8") as f:
        expected = [json.loads(next(f)) for _ in range(60)]
    corpus = read_corpus(path, CorpusConfig(max_passages=60, max_words=None))
    assert [p.id for p in corpus.passages] == [r["_id"] for r in expected]
    assert corpus.passages[0] == Passage(
        expected[0]["_id"], expected[0]["text"], expected[0]["title"]
    )
    assert corpus.files == [path] and corpus.truncated == 0


def test_truncates_overlong_passages_and_counts_them(tmp_path):
    path = _write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"_id": "a", "title": "A", "text": "one two  three\nfour five six"},
            {"_id": "b", "text": "short text"},
            {"id": 7, "title": None, "text": "abcdefghij klm"},
        ],
    )
    corpus = read_corpus(path, CorpusConfig(max_words=4))
    assert [p.text for p in corpus.passages] == [
        "one two  three\nfour",
        "short text",
        "abcdefghij klm",
    ]
    assert corpus.truncated == 1
    assert corpus.passages[2] == Passage("7", "abcdefghij klm", "")
    corpus = read_corpus(path, CorpusConfig(max_words=None, max_chars=12))
    assert [p.text for p in corpus.passages] == ["one two", "short text", "abcdefghij"]
    assert corpus.truncated == 2


@pytest.mark.parametrize(
    "text, words, chars, expected",
    [
        ("a b c d", 2, None, "a b"),
        ("a b c d", 9, None, "a b c d"),
        ("hello world", None, 8, "hello"),
        ("hello world", None, 6, "hello"),
        ("hello world", None, 5, "hello"),
        ("helloworld", None, 4, "hell"),
        ("a\tb c", None, 3, "a\tb"),
    ],
)
def test_truncate(text, words, chars, expected):
    assert truncate(text, words, chars) == expected


def test_globs_lists_and_limits(tmp_path):
    _write_jsonl(tmp_path / "part-1.jsonl", [{"_id": "a", "text": "x"}, {"_id": "b", "text": "y"}])
    _write_jsonl(tmp_path / "part-0.jsonl", [{"_id": "c", "text": "z"}])
    corpus = read_corpus(str(tmp_path / "part-*.jsonl"))
    assert [p.id for p in corpus.passages] == ["c", "a", "b"]
    listed = read_corpus(
        f"{tmp_path / 'part-1.jsonl'},{tmp_path / 'part-0.jsonl'}", CorpusConfig(max_passages=2)
    )
    assert [p.id for p in listed.passages] == ["a", "b"]


def test_empty_texts_are_skipped_and_counted(tmp_path):
    path = _write_jsonl(
        tmp_path / "c.jsonl", [{"_id": "a", "text": "  "}, {"_id": "b", "text": "ok"}]
    )
    corpus = read_corpus(path)
    assert [p.id for p in corpus.passages] == ["b"] and corpus.skipped_empty == 1


def test_empty_corpus_names_the_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"empty\.jsonl has no passage with a non-empty 'text'"):
        read_corpus(str(empty))


def test_missing_file_names_the_pattern(tmp_path):
    with pytest.raises(CorpusError, match=r"corpus '.*nothing-\*\.jsonl'.*matches no files"):
        read_corpus(str(tmp_path / "nothing-*.jsonl"))


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"_id": "a", "text": "caf\xe9"}\n')
    with pytest.raises(CorpusError, match=r"cannot read corpus file .*latin1\.jsonl"):
        read_corpus(str(bad))


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"_id": "a", "text": "x"', r"c\.jsonl:2: invalid JSON"),
        ('["a", "x"]', r"c\.jsonl:2: expected a JSON object, got list"),
        ('{"title": "t", "text": "x"}', r"c\.jsonl:2: no id field \(tried _id, id\)"),
        ('{"_id": "b", "text": 5}', r"c\.jsonl:2: field 'text' is of type int, not a string"),
        ('{"_id": "b"}', r"c\.jsonl:2: field 'text' is missing"),
        (
            '{"_id": "a", "text": "again"}',
            r"c\.jsonl:2: duplicate passage id 'a' \(first at .*c\.jsonl:1\)",
        ),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "a", "text": "first"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        read_corpus(str(path))
