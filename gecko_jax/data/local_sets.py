"""Local sets as unified examples, and a seqio source of in-memory examples.

The files are read by :mod:`gecko_jax.readers` (layouts there); this module turns them
into training examples:

* **BEIR** (``read_beir``): every qrels row with ``score > 0`` becomes one example:
  query text -> document text, with the document's title as ``positive_title``. Rows
  naming an unknown query or document id are counted, warned about and skipped (the
  job fails past ``max_bad_fraction``).
* **STS** (``read_sts``): pairs scoring at least ``min_score`` become symmetric positive
  pairs, in both directions by default.
* **Labelled texts** (``read_labelled_texts``, from :mod:`gecko_jax.readers`):
  ``(text, label)`` pairs for :mod:`gecko_jax.data.classification`.

:func:`examples_source` wraps any loader of unified examples as a ``seqio.DataSource``.
Loaders run when a dataset is requested, never at import or registration time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import seqio
import tensorflow as tf

from gecko_jax.data import examples
from gecko_jax.data.examples import BadRowCounter, BadRowError, UnifiedExample
from gecko_jax.readers import read_beir_jsonl, read_beir_qrels, read_sts_benchmark, require_file

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
        self, split: str = "train", shard_info: seqio.ShardInfo | None = None, **unused: Any
    ) -> tf.data.Dataset:
        """The examples of ``split`` in order: the Task shuffles and repeats them.

        Args:
          split: the split to read.
          shard_info: this host's shard of the rows, if any.
          **unused: seqio's other source arguments (shuffle, seed, sequence_length,
            use_cached, num_epochs), which a Task handles itself for an in-memory source.
        """
        del unused
        ds = examples_dataset(self.examples(split))
        if shard_info and shard_info.num_shards > 1:
            ds = ds.shard(shard_info.num_shards, shard_info.index)
        return ds


def examples_source(
    split_loaders: Mapping[str, ExampleLoader], *, caching_permitted: bool = True
) -> ExamplesSource:
    """An :class:`ExamplesSource` (split name -> function returning unified examples)."""
    return ExamplesSource(split_loaders, caching_permitted=caching_permitted)


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
    qrels_path = require_file(os.path.join(data_dir, "qrels", f"{split}.tsv"), "BEIR qrels file")
    corpus_path = require_file(os.path.join(data_dir, "corpus.jsonl"), "BEIR corpus file")
    queries_path = require_file(os.path.join(data_dir, "queries.jsonl"), "BEIR queries file")
    source = source or f"beir/{os.path.basename(os.path.normpath(data_dir))}/{split}"
    qrels = [row for row in read_beir_qrels(qrels_path) if row.score > 0]
    queries = read_beir_jsonl(queries_path, ("text",), {r.query_id for r in qrels})
    corpus = read_beir_jsonl(corpus_path, ("title", "text"), {r.corpus_id for r in qrels})
    counter = BadRowCounter(qrels_path, max_bad_fraction=max_bad_fraction)
    result = []
    for query_id, doc_id, _, number in qrels:
        try:
            if query_id not in queries:
                raise BadRowError(f"unknown query id {query_id!r}")
            if doc_id not in corpus:
                raise BadRowError(f"unknown corpus id {doc_id!r}")
            example = UnifiedExample(
                task=task,
                query=queries[query_id]["text"],
                positive=corpus[doc_id]["text"],
                positive_title=corpus[doc_id]["title"],
                source=source,
            )
        except BadRowError as e:
            counter.record_bad(f"{qrels_path}:{number}", str(e))
        else:
            result.append(example)
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
    for pair in read_sts_benchmark(path):
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
