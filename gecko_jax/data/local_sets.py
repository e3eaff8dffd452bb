"""Local readers that turn files on disk into unified examples (or labelled texts).

Layouts read here (the offline copies in ``../shared/data`` follow them):

* **BEIR** (``read_beir``): a directory with ``corpus.jsonl`` (one object per line:
  ``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``) and
  ``qrels/{split}.tsv`` (tab-separated, header ``query-id  corpus-id  score``). Every
  qrels row with ``score > 0`` becomes one example: query text -> document text, with
  the document's title as ``positive_title``. Rows naming an unknown query or document
  id are counted, warned about and skipped (the job fails past ``max_bad_fraction``).
* **STS** (``read_sts``): the STS Benchmark's original TSV (score in column 5,
  sentences in columns 6 and 7, see :mod:`gecko_jax.data.sts`). Pairs scoring at least
  ``min_score`` become symmetric positive pairs, in both directions by default.
* **Labelled texts** (``read_labelled_texts``): a CSV (``,``) or TSV (``\\t``, chosen by
  a ``.tsv``/``.tab`` suffix) with a header row and standard double-quote quoting, e.g.
  Banking77's ``text,category`` or Amazon Counterfactual's
  ``sentence<TAB>is_counterfactual``. Gives ``(text, label)`` pairs for
  :mod:`gecko_jax.data.classification`.

:func:`examples_source` wraps any loader of unified examples as a ``seqio.DataSource``.
Loaders run when a dataset is requested, never at import or registration time.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

import seqio
import tensorflow as tf

from gecko_jax.data import examples, sts
from gecko_jax.data.examples import BadRowCounter, BadRowError, UnifiedExample

log = logging.getLogger(__name__)

ExampleLoader = Callable[[], Iterable[UnifiedExample]]


def examples_dataset(rows: Sequence[UnifiedExample]) -> tf.data.Dataset:
    """The examples as a tf.data dataset matching :data:`examples.OUTPUT_SIGNATURE`.

    Built from in-memory tensors (not a Python generator), so iterators over it can be
    checkpointed and restored exactly.
    """
    width = max((len(e.negatives) for e in rows), default=0)

    def padded(values: Iterable[Sequence[str]]) -> tf.Tensor:
        return tf.constant(
            [list(v) + [""] * (width - len(v)) for v in values],
            dtype=tf.string,
            shape=[len(rows), width],
        )

    features = {
        examples.TASK: tf.constant([e.task for e in rows], tf.string, shape=[len(rows)]),
        examples.QUERY: tf.constant([e.query for e in rows], tf.string, shape=[len(rows)]),
        examples.POSITIVE: tf.constant([e.positive for e in rows], tf.string, shape=[len(rows)]),
        examples.POSITIVE_TITLE: tf.constant(
            [e.positive_title for e in rows], tf.string, shape=[len(rows)]
        ),
        examples.NEGATIVES: padded(e.negatives for e in rows),
        examples.NEGATIVE_TITLES: padded(
            e.negative_titles or ("",) * len(e.negatives) for e in rows
        ),
        examples.SYMMETRIC: tf.constant([e.symmetric for e in rows], tf.bool, shape=[len(rows)]),
        examples.SOURCE: tf.constant([e.source for e in rows], tf.string, shape=[len(rows)]),
        "num_negatives": tf.constant([len(e.negatives) for e in rows], tf.int32, shape=[len(rows)]),
    }

    def unpad(row: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        count = row.pop("num_negatives")
        row[examples.NEGATIVES] = row[examples.NEGATIVES][:count]
        row[examples.NEGATIVE_TITLES] = row[examples.NEGATIVE_TITLES][:count]
        return row

    return tf.data.Dataset.from_tensor_slices(features).map(unpad)


class ExamplesSource(seqio.DataSource):
    """A seqio data source of unified examples returned by Python loaders, one per split.

    A split's loader runs on the first ``get_dataset(split)`` (so a missing file fails
    there, with the reader's own error, never at import or registration); its examples
    are then kept in memory. Meant for local sets of up to a few hundred thousand rows.
    """

    def __init__(
        self, split_loaders: Mapping[str, ExampleLoader], *, caching_permitted: bool = True
    ) -> None:
        if not split_loaders:
            raise ValueError("ExamplesSource needs at least one split")
        super().__init__(splits=tuple(split_loaders), caching_permitted=caching_permitted)
        self._loaders = dict(split_loaders)
        self._rows: dict[str, list[UnifiedExample]] = {}

    @property
    def supports_arbitrary_sharding(self) -> bool:
        return True

    def list_shards(self, split: str) -> Sequence[str]:
        return [split]

    def examples(self, split: str) -> list[UnifiedExample]:
        """The split's examples (loaded on first use)."""
        if split not in self._loaders:
            raise ValueError(f"unknown split {split!r}; this source has {sorted(self._loaders)}")
        if split not in self._rows:
            self._rows[split] = list(self._loaders[split]())
        return self._rows[split]

    def get_dataset(
        self,
        split: str = "train",
        shuffle: bool = True,
        seed: int | None = None,
        shard_info: seqio.ShardInfo | None = None,
        *,
        sequence_length: Mapping[str, int] | None = None,
        use_cached: bool = False,
        num_epochs: int | None = 1,
    ) -> tf.data.Dataset:
        del shuffle, seed, sequence_length, use_cached, num_epochs  # The Task shuffles and repeats.
        ds = examples_dataset(self.examples(split))
        if shard_info and shard_info.num_shards > 1:
            ds = ds.shard(shard_info.num_shards, shard_info.index)
        return ds


def examples_source(
    split_loaders: Mapping[str, ExampleLoader], *, caching_permitted: bool = True
) -> ExamplesSource:
    """An :class:`ExamplesSource` (split name -> function returning unified examples)."""
    return ExamplesSource(split_loaders, caching_permitted=caching_permitted)


def _require_file(path: str, what: str) -> str:
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


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
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"BEIR file not found: {path}")
    found: dict[str, dict[str, str]] = {}
    with tf.io.gfile.GFile(path, "r") as f:
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
    _require_file(path, "BEIR qrels file")
    rows = []
    with tf.io.gfile.GFile(path, "r") as f:
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


def read_beir(
    data_dir: str,
    split: str = "train",
    *,
    task: str = "search result",
    source: str | None = None,
    max_bad_fraction: float = 0.01,
) -> list[UnifiedExample]:
    """Reads a BEIR-layout directory as query -> relevant document examples.

    Args:
      data_dir: the directory holding ``corpus.jsonl``, ``queries.jsonl``, ``qrels/``.
      split: which ``qrels/{split}.tsv`` to read.
      task: the task string of every example.
      source: the examples' ``source`` (default: ``beir/{dir name}/{split}``).
      max_bad_fraction: qrels rows with unknown ids tolerated, as a fraction.

    Returns:
      One example per qrels row with a positive score, in qrels order.

    Raises:
      FileNotFoundError: a missing file (named in the message).
      examples.BadInputError: too many qrels rows name unknown ids.
    """
    qrels_path = _require_file(os.path.join(data_dir, "qrels", f"{split}.tsv"), "BEIR qrels file")
    corpus_path = _require_file(os.path.join(data_dir, "corpus.jsonl"), "BEIR corpus file")
    queries_path = _require_file(os.path.join(data_dir, "queries.jsonl"), "BEIR queries file")
    source = source or f"beir/{os.path.basename(os.path.normpath(data_dir))}/{split}"
    qrels = [row for row in read_beir_qrels(qrels_path) if row.score > 0]
    queries = read_beir_jsonl(queries_path, ("text",), {r.query_id for r in qrels})
    corpus = read_beir_jsonl(corpus_path, ("title", "text"), {r.corpus_id for r in qrels})
    counter = BadRowCounter(qrels_path, max_bad_fraction=max_bad_fraction)
    result = []
    for query_id, doc_id, _, number in qrels:
        where = f"{qrels_path}:{number}"
        if query_id not in queries:
            counter.record_bad(where, f"unknown query id {query_id!r}")
            continue
        if doc_id not in corpus:
            counter.record_bad(where, f"unknown corpus id {doc_id!r}")
            continue
        try:
            result.append(
                UnifiedExample(
                    task=task,
                    query=queries[query_id]["text"],
                    positive=corpus[doc_id]["text"],
                    positive_title=corpus[doc_id]["title"],
                    source=source,
                )
            )
        except BadRowError as e:
            counter.record_bad(where, str(e))
            continue
        counter.record_good()
    counter.finish()
    return result


def read_sts(
    path: str,
    *,
    min_score: float = 4.0,
    task: str = "sentence similarity",
    both_directions: bool = True,
    source: str | None = None,
) -> list[UnifiedExample]:
    """Reads an STS Benchmark TSV as symmetric positive pairs.

    Args:
      path: ``sts-{train,dev}.csv`` (score in column 5, sentences in 6 and 7).
      min_score: pairs scoring at least this (0-5 scale) are kept.
      task: the task string of every example.
      both_directions: also emit (sentence2 -> sentence1) for each kept pair.
      source: the examples' ``source`` (default: the file name).

    Returns:
      The examples, in file order (each pair's reverse right after it).
    """
    source = source or os.path.basename(path)
    result = []
    for pair in sts.read_sts_benchmark(path):
        if pair.score < min_score:
            continue
        directions = [(pair.sentence1, pair.sentence2)]
        if both_directions:
            directions.append((pair.sentence2, pair.sentence1))
        for query, positive in directions:
            result.append(
                UnifiedExample(
                    task=task,
                    query=query,
                    positive=positive,
                    symmetric=True,
                    source=source,
                )
            )
    return result


def _delimiter_for(path: str) -> str:
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
      path: the file (local or any ``tf.io.gfile`` path).
      text_field: header name of the text column (default: the first column).
      label_field: header name of the label column (default: the second column).
      delimiter: the field separator (default: tab for ``.tsv``/``.tab``, else comma).
      max_bad_fraction: rows with an empty text or label tolerated, as a fraction.

    Returns:
      The pairs in file order; labels are strings as written (e.g. ``"0"``).

    Raises:
      FileNotFoundError: no such file.
      ValueError: the header lacks a named field, or the file has no header.
      examples.BadInputError: too many rows with an empty text or label.
    """
    _require_file(path, "labelled text file")
    delimiter = delimiter or _delimiter_for(path)
    with tf.io.gfile.GFile(path, "r") as f:
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
