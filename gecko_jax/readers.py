"""Plain readers of the evaluation and training sets on disk, and bad-row accounting.

Both the input pipeline (its seqio sources) and the evaluators read these files; this
module needs neither seqio nor TensorFlow (``gs://`` paths go through
:mod:`gecko_jax.fileio`). Layouts:

* **BEIR**: a directory with ``corpus.jsonl`` (one object per line: ``_id``, ``title``,
  ``text``), ``queries.jsonl`` (``_id``, ``text``) and ``qrels/{split}.tsv``
  (tab-separated, header ``query-id  corpus-id  score``).
* **STS Benchmark**: the original tab-separated ``sts-{train,dev,test}.csv`` (score in
  column 5, sentences in columns 6 and 7).
* **Labelled texts**: a CSV (``,``) or TSV (``\\t``, chosen by a ``.tsv``/``.tab``
  suffix) with a header row and standard double-quote quoting, e.g. Banking77's
  ``text,category`` or Amazon Counterfactual's ``sentence<TAB>is_counterfactual``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from typing import NamedTuple

from gecko_jax import fileio

log = logging.getLogger(__name__)

_EXAMPLES_IN_WARNING = 3


class BadInputError(ValueError):
    """Too many bad rows in an input: the job stops."""


class BadRowCounter:
    """Counts good and bad rows of one input; warns per bad row, fails past a fraction.

    Attributes:
      name: the input's name in messages (a task or file pattern).
      max_bad_fraction: the job fails once bad / seen exceeds this, after
        ``min_rows`` rows have been seen (so one early bad row does not fail it).
      min_rows: rows seen before the fraction is enforced.
      max_warnings: individual warnings logged; later bad rows are only counted.
    """

    def __init__(
        self, name: str, max_bad_fraction: float = 0.01, min_rows: int = 100, max_warnings: int = 20
    ) -> None:
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.name, self.max_bad_fraction = name, max_bad_fraction
        self.min_rows, self.max_warnings = min_rows, max_warnings
        self.good = 0
        self.bad = 0
        self.reasons: dict[str, int] = {}
        self.first_bad = ""  # "file:line: reason" of the first bad row

    def record_good(self, count: int = 1) -> None:
        """Counts ``count`` good rows."""
        self.good += count

    def record_bad(self, where: str, reason: str) -> None:
        """Counts one bad row at ``where`` (``file:line``), warns, maybe fails.

        Raises:
          BadInputError: the bad-row fraction exceeds ``max_bad_fraction``.
        """
        self.bad += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self.first_bad = self.first_bad or f"{where}: {reason}"
        if self.bad <= self.max_warnings:
            log.warning("%s: skipping bad row at %s: %s", self.name, where, reason)
        seen = self.good + self.bad
        if seen >= self.min_rows and self.bad > self.max_bad_fraction * seen:
            raise BadInputError(
                f"{self.name}: {self.bad} of {seen} rows are bad (more than "
                f"{self.max_bad_fraction:.2%}); last at {where}: {reason}"
            )

    def finish(self) -> None:
        """Enforces the fraction at the end of an input, however few rows it had.

        Raises:
          BadInputError: the bad-row fraction exceeds ``max_bad_fraction``.
        """
        seen = self.good + self.bad
        if self.bad and self.bad > self.max_bad_fraction * seen:
            raise BadInputError(
                f"{self.name}: {self.bad} of {seen} rows are bad (more than "
                f"{self.max_bad_fraction:.2%}), the first at {self.first_bad}; "
                f"all: {self.reasons}"
            )
        if self.bad:
            log.warning(
                "%s: skipped %d bad rows of %d: %s", self.name, self.bad, seen, self.reasons
            )


def require_file(path: str, what: str) -> str:
    """Returns ``path``.

    Raises:
      FileNotFoundError: ``path`` does not exist; the message starts with ``what``.
    """
    if not fileio.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


# ------------------------------------------------------------------ BEIR


def read_beir_jsonl(
    path: str, fields: Sequence[str], wanted: set[str] | None = None
) -> dict[str, dict[str, str]]:
    """``_id`` -> the string ``fields`` of each object of a BEIR JSONL file.

    Args:
      path: ``corpus.jsonl`` or ``queries.jsonl`` (local or ``gs://``).
      fields: the string fields to keep (a missing or null one reads as "").
      wanted: keep only these ids (None: all).

    Raises:
      FileNotFoundError: no such file.
      ValueError: invalid JSON, an object without ``_id``, a duplicate ``_id``, a
        non-string field (each names ``file:line``).
    """
    require_file(path, "BEIR file")
    found: dict[str, dict[str, str]] = {}
    with fileio.open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: invalid JSON: {e.msg}") from None
            if not isinstance(record, dict) or "_id" not in record:
                raise ValueError(f"{path}:{number}: expected an object with field '_id'")
            key = str(record["_id"])
            if wanted is not None and key not in wanted:
                continue
            if key in found:
                raise ValueError(f"{path}:{number}: duplicate _id {key!r}")
            values = {field: record.get(field) or "" for field in fields}
            bad = [field for field, value in values.items() if not isinstance(value, str)]
            if bad:
                raise ValueError(f"{path}:{number}: field {bad[0]!r} must be a string")
            found[key] = values
    return found


class Qrel(NamedTuple):
    """One BEIR relevance judgement and the file line it came from."""

    query_id: str
    corpus_id: str
    score: float
    line: int


def read_beir_qrels(path: str) -> list[Qrel]:
    """Reads a BEIR qrels TSV (with a header row) in file order.

    Raises:
      FileNotFoundError: no such file.
      ValueError: a missing header column or a malformed row (names file and line).
    """
    require_file(path, "BEIR qrels file")
    rows = []
    with fileio.open(path) as f:
        header = f.readline().rstrip("\r\n").split("\t")
        columns = {}
        for name in ("query-id", "corpus-id", "score"):
            if name not in header:
                raise ValueError(f"{path}:1: header {header} lacks column {name!r}")
            columns[name] = header.index(name)
        for number, line in enumerate(f, start=2):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            try:
                rows.append(
                    Qrel(
                        parts[columns["query-id"]],
                        parts[columns["corpus-id"]],
                        float(parts[columns["score"]]),
                        number,
                    )
                )
            except (IndexError, ValueError):
                raise ValueError(
                    f"{path}:{number}: expected query-id, corpus-id, score; got {line!r}"
                ) from None
    return rows


@dataclasses.dataclass(frozen=True)
class BeirSplit:
    """A BEIR corpus with the queries and judgements of one split.

    Attributes:
      doc_ids, doc_titles, doc_texts: the whole corpus, in file order.
      query_ids, query_texts: the judged queries (those with a relevant document).
      qrels: query id -> document id -> relevance, for known ids only.
      skipped_qrels: qrels rows dropped because they name an unknown query or document.
    """

    doc_ids: list[str]
    doc_titles: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, float]]
    skipped_qrels: int = 0


def read_beir_split(data_dir: str, split: str = "test") -> BeirSplit:
    """Reads ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{split}.tsv`` of ``data_dir``.

    Qrels rows naming an unknown query or document id are counted, logged as a warning
    (with a few examples) and skipped.

    Raises:
      FileNotFoundError: the directory or one of its files is missing (named).
      ValueError: malformed files, or no judged query left.
    """
    require_file(data_dir, "BEIR dataset directory")
    qrels_path = fileio.join(data_dir, "qrels", f"{split}.tsv")
    rows = read_beir_qrels(qrels_path)
    corpus = read_beir_jsonl(fileio.join(data_dir, "corpus.jsonl"), ("title", "text"))
    queries = read_beir_jsonl(fileio.join(data_dir, "queries.jsonl"), ("text",))
    qrels: dict[str, dict[str, float]] = {}
    unknown = []
    for row in rows:
        if row.query_id not in queries:
            unknown.append(f"line {row.line}: unknown query id {row.query_id!r}")
        elif row.corpus_id not in corpus:
            unknown.append(f"line {row.line}: unknown corpus id {row.corpus_id!r}")
        else:
            qrels.setdefault(row.query_id, {})[row.corpus_id] = row.score
    if unknown:
        log.warning(
            "%s: skipped %d of %d qrels rows naming unknown ids (%s%s)",
            qrels_path,
            len(unknown),
            len(rows),
            "; ".join(unknown[:_EXAMPLES_IN_WARNING]),
            ", ..." if len(unknown) > _EXAMPLES_IN_WARNING else "",
        )
    judged = [q for q, rel in qrels.items() if any(r > 0 for r in rel.values())]
    if not judged:
        raise ValueError(f"{qrels_path}: no query with a relevant document among known ids")
    return BeirSplit(
        doc_ids=list(corpus),
        doc_titles=[d["title"] for d in corpus.values()],
        doc_texts=[d["text"] for d in corpus.values()],
        query_ids=judged,
        query_texts=[queries[q]["text"] for q in judged],
        qrels={q: qrels[q] for q in judged},
        skipped_qrels=len(unknown),
    )


# ------------------------------------------------------------------ STS Benchmark


@dataclasses.dataclass(frozen=True)
class StsPair:
    """One scored sentence pair."""

    sentence1: str
    sentence2: str
    score: float


def read_sts_benchmark(path: str | os.PathLike) -> list[StsPair]:
    """Reads ``sts-{train,dev,test}.csv``: score in column 5, sentences in 6 and 7.

    Some lines carry extra trailing columns (source notes); they are ignored. The file
    is tab-separated without quoting, so quotes inside sentences are kept verbatim.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: a line with fewer than 7 columns or a non-numeric score (names the
        file and line).
    """
    path = os.fspath(path)
    require_file(path, "STS Benchmark file")
    pairs = []
    with fileio.open(path) as f:
        for number, line in enumerate(f, start=1):
            columns = line.rstrip("\r\n").split("\t")
            if len(columns) < 7:
                raise ValueError(
                    f"{path}:{number}: expected >= 7 tab-separated columns, got {len(columns)}"
                )
            try:
                score = float(columns[4])
            except ValueError:
                raise ValueError(f"{path}:{number}: score {columns[4]!r} is not a number") from None
            pairs.append(StsPair(columns[5], columns[6], score))
    return pairs


# ------------------------------------------------------------------ labelled texts


def delimiter_for(path: str) -> str:
    """The field separator a labelled-text file's name implies: tab for ``.tsv``/``.tab``."""
    return "\t" if path.lower().endswith((".tsv", ".tab")) else ","


def read_labelled_texts(
    path: str,
    *,
    text_field: str | None = None,
    label_field: str | None = None,
    delimiter: str | None = None,
    max_bad_fraction: float = 0.01,
) -> list[tuple[str, str]]:
    """Reads a CSV/TSV file with a header row as ``(text, label)`` pairs.

    Args:
      path: the file (local or ``gs://``).
      text_field: header name of the text column (default: the first column).
      label_field: header name of the label column (default: the second column).
      delimiter: the field separator (default: tab for ``.tsv``/``.tab``, else comma).
      max_bad_fraction: rows with an empty text or label tolerated, as a fraction.

    Returns:
      The pairs in file order; labels are strings as written (e.g. ``"0"``).

    Raises:
      FileNotFoundError: no such file.
      ValueError: the header lacks a named field, or the file has no header.
      BadInputError: too many rows with an empty text or label.
    """
    require_file(path, "labelled text file")
    delimiter = delimiter or delimiter_for(path)
    with fileio.open(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}: empty file; expected a header row")
        if len(header) < 2 and (text_field is None or label_field is None):
            raise ValueError(f"{path}:1: header {header} has fewer than 2 columns")

        def column(field: str | None, default: int, role: str) -> int:
            if field is None:
                return default
            if field not in header:
                raise ValueError(f"{path}:1: no {role} field {field!r} in header {header}")
            return header.index(field)

        text_col = column(text_field, 0, "text")
        label_col = column(label_field, 1, "label")
        counter = BadRowCounter(path, max_bad_fraction=max_bad_fraction)
        pairs = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not row:
                continue
            if len(row) <= max(text_col, label_col):
                counter.record_bad(where, f"expected {len(header)} fields, got {len(row)}")
                continue
            text, label = row[text_col], row[label_col].strip()
            if not text.strip():
                counter.record_bad(where, "empty text")
                continue
            if not label:
                counter.record_bad(where, "empty label")
                continue
            pairs.append((text, label))
            counter.record_good()
    counter.finish()
    return pairs
