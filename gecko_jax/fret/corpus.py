"""Reading the passage corpus FRet draws seed passages and neighbours from.

The corpus is JSONL in the BEIR ``corpus.jsonl`` layout: one object per line with an
id (``_id`` or ``id``), an optional ``title`` and a ``text``. Files are local or
``gs://`` (:mod:`gecko_jax.fileio`); a path may be a glob or a comma-separated list.

Passages longer than the LLM context budget (``CorpusConfig.max_words`` /
``max_chars``) are truncated at a word boundary and counted. Lines with an empty text
are skipped and counted. An unreadable file, a bad JSON line, a missing or duplicate
id and an empty corpus are :class:`CorpusError` naming the file (and line).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any

import tensorflow as tf
from tqdm.auto import tqdm

from gecko_jax import fileio
from gecko_jax.fret.config import CorpusConfig

_WORD = re.compile(r"\S+")
_LAST_SPACE = re.compile(r"\s\S*$")


class CorpusError(ValueError):
    """The corpus cannot be read or is unusable."""


@dataclasses.dataclass(frozen=True)
class Passage:
    """One corpus passage.

    Attributes:
      id: its id in the corpus (unique).
      text: the text (truncated to the budget).
      title: the title, "" when it has none.
    """

    id: str
    text: str
    title: str = ""


@dataclasses.dataclass
class Corpus:
    """The passages of a corpus and what reading them did.

    Attributes:
      passages: in file order (files sorted per pattern).
      files: the files read.
      truncated: passages cut to the budget.
      skipped_empty: lines skipped for an empty text.
    """

    passages: list[Passage]
    files: list[str]
    truncated: int = 0
    skipped_empty: int = 0


def truncate(text: str, max_words: int | None, max_chars: int | None) -> str:
    """``text`` cut after ``max_words`` words and to ``max_chars`` characters.

    Cuts fall at word boundaries (a single word longer than ``max_chars`` is cut
    inside); the text before the cut is kept verbatim.
    """
    end = len(text)
    if max_words is not None:
        for count, match in enumerate(_WORD.finditer(text), start=1):
            if count == max_words:
                end = match.end()
                break
    if max_chars is not None and end > max_chars:
        end = max_chars
        if not text[max_chars].isspace():  # inside a word: back off to its start
            space = _LAST_SPACE.search(text, 0, max_chars)
            end = space.start() if space and space.start() > 0 else max_chars
    return text[:end].rstrip()


def _field(record: dict[str, Any], name: str, where: str, required: bool) -> str:
    value = record.get(name)
    if value is None and not required:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "text":
        return str(value)
    if not isinstance(value, str):
        kind = "missing" if value is None else f"of type {type(value).__name__}, not a string"
        raise CorpusError(f"{where}: field {name!r} is {kind}")
    return value


def _lines(path: str) -> Iterator[tuple[int, str]]:
    try:
        with fileio.open(path, "r") as f:
            yield from enumerate(f, start=1)
    except (tf.errors.OpError, OSError, UnicodeDecodeError) as e:
        raise CorpusError(f"cannot read corpus file {path}: {e}") from None


def _record(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise CorpusError(f"{where}: invalid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(record, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def read_corpus(
    pattern: str, options: CorpusConfig | None = None, progress: bool = False
) -> Corpus:
    """Reads passages from JSONL file(s).

    Args:
      pattern: a path, glob or comma-separated list of them (local or ``gs://``).
      options: fields, truncation budget and passage limit (default: ``CorpusConfig()``).
      progress: show a progress bar (per line).

    Raises:
      CorpusError: no file matches, a file is unreadable, a line is bad, an id repeats,
        or no passage has a text.
    """
    options = options or CorpusConfig()
    try:
        files = fileio.list_files(pattern)
    except (FileNotFoundError, ValueError) as e:
        raise CorpusError(f"corpus {pattern!r}: {e}") from None
    corpus = Corpus([], files)
    seen: dict[str, str] = {}
    bar = tqdm(
        desc="read corpus", unit=" passages", disable=not progress, total=options.max_passages
    )
    with bar:
        for path in corpus.files:
            if _full(corpus, options):
                break
            for number, line in _lines(path):
                if _full(corpus, options):
                    break
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                passage = _passage(_record(line, where), where, options)
                if passage is None:
                    corpus.skipped_empty += 1
                    continue
                if passage.id in seen:
                    first = seen[passage.id]
                    raise CorpusError(
                        f"{where}: duplicate passage id {passage.id!r} (first at {first})"
                    )
                seen[passage.id] = where
                text = truncate(passage.text, options.max_words, options.max_chars)
                if text != passage.text:
                    corpus.truncated += 1
                    passage = dataclasses.replace(passage, text=text)
                corpus.passages.append(passage)
                bar.update(1)
    if not corpus.passages:
        raise CorpusError(
            f"corpus {', '.join(corpus.files)} has no passage with a non-empty "
            f"{options.text_field!r} field"
        )
    return corpus


def _full(corpus: Corpus, options: CorpusConfig) -> bool:
    return options.max_passages is not None and len(corpus.passages) >= options.max_passages


def _passage(record: dict[str, Any], where: str, options: CorpusConfig) -> Passage | None:
    """The passage of one record; None for an empty text."""
    id_field = next((f for f in options.id_fields if f in record), None)
    if id_field is None:
        raise CorpusError(f"{where}: no id field (tried {', '.join(options.id_fields)})")
    passage_id = _field(record, id_field, where, required=True)
    text = _field(record, options.text_field, where, required=True)
    title = _field(record, options.title_field, where, required=False)
    if not text.strip():
        return None
    return Passage(passage_id, text, title)
