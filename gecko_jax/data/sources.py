"""seqio data sources reading unified examples from JSONL or TFRecord files.

:func:`file_source` builds a :class:`UnifiedFileSource`, a ``seqio.FileDataSource``
whose datasets yield the features of :data:`examples.OUTPUT_SIGNATURE`, with
``negatives`` and ``negative_titles`` as 1-D ragged specs (``ragged_rank=0``:
plain tensors inside maps, batched without a per-element map, see
:mod:`preprocessors`). Rows are parsed in batches of :data:`PARSE_BATCH` by one
``tf.numpy_function`` call (never one Python call per row). Bad rows are counted
and skipped with a warning naming ``file:line`` (JSONL) or ``file:record``
(TFRecord), both 1-based; the dataset fails once the bad fraction of
:class:`examples.BadRowCounter` is exceeded, mid-stream or at the end of the input.

Iterator checkpoints (``tf.train.Checkpoint(iterator=...)``) work: the datasets set
``ExternalStatePolicy.IGNORE``, which is sound because the parser's output depends
on its inputs only. The bad-row counts are not part of a checkpoint.

The row formats themselves (fields, JSONL and TFRecord encodings) are
:mod:`gecko_jax.rows`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import seqio
import tensorflow as tf

from gecko_jax import fileio
from gecko_jax.data import examples as ex
from gecko_jax.rows import JSONL, RowFilter, check_format, decode_row, infer_format

log = logging.getLogger(__name__)

PARSE_BATCH = 1024  # Rows per Python parse call.

FilePattern = str | Sequence[str]


# ----------------------------------------------------------------------------- parsing

# Columns out of one parse call; negatives are flat with per-row counts.
_COLUMNS = (ex.TASK, ex.QUERY, ex.POSITIVE, ex.POSITIVE_TITLE, ex.SOURCE)
_PARSE_DTYPES = [tf.string] * 5 + [tf.string, tf.string, tf.int64, tf.bool]


class _BatchParser:
    """The Python side of one dataset: parses row batches, keeps the bad-row counts."""

    def __init__(
        self,
        file_format: str,
        name: str,
        default_task: str,
        source: str,
        symmetric: bool,
        max_bad_fraction: float,
        row_filter: RowFilter | None = None,
    ) -> None:
        self._skip_blank = file_format == JSONL
        self._args = (file_format, default_task, source, symmetric, row_filter)
        self._counter = ex.BadRowCounter(name, max_bad_fraction)
        self._last_bad = ""
        self._lock = threading.Lock()

    def __call__(
        self, path: Any, indices: np.ndarray, rows: np.ndarray, end: Any
    ) -> list[np.ndarray]:
        path = np.asarray(path).item()
        with self._lock:
            if end:
                self._finish()
            return self._parse(path.decode("utf-8", "replace"), indices, rows)

    def _finish(self) -> None:
        try:
            self._counter.finish()
        except ex.BadInputError as e:
            raise ex.BadInputError(f"{e}; last bad row at {self._last_bad}") from None

    def _parse(self, path: str, indices: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
        columns: list[list[bytes]] = [[] for _ in _COLUMNS]
        negatives: list[bytes] = []
        titles: list[bytes] = []
        counts: list[int] = []
        flags: list[bool] = []
        good = 0
        for index, raw in zip(indices.tolist(), rows.tolist()):
            if self._skip_blank and not raw.strip():
                continue
            try:
                example = decode_row(raw, *self._args)
                if example is None:  # filtered out
                    continue
                # Encoding here also rejects lone surrogates ("\ud800" in JSON).
                encoded = [getattr(example, c).encode("utf-8") for c in _COLUMNS]
                negs = [n.encode("utf-8") for n in example.negatives]
                negative_titles = example.negative_titles or ("",) * len(negs)
                negative_titles = [t.encode("utf-8") for t in negative_titles]
            except (ex.BadRowError, UnicodeError) as e:
                reason = (
                    str(e) if isinstance(e, ex.BadRowError) else "invalid unicode (lone surrogate)"
                )
                self._counter.record_good(good)
                good = 0
                self._last_bad = f"{path}:{index}"
                self._counter.record_bad(self._last_bad, reason)
                continue
            good += 1
            for column, value in zip(columns, encoded):
                column.append(value)
            negatives.extend(negs)
            titles.extend(negative_titles)
            counts.append(len(negs))
            flags.append(example.symmetric)
        self._counter.record_good(good)
        out = [np.array(c, dtype=object) for c in columns]
        out += [np.array(negatives, dtype=object), np.array(titles, dtype=object)]
        return out + [np.array(counts, dtype=np.int64), np.array(flags, dtype=bool)]


def _parsed_to_features(parsed: Sequence[tf.Tensor]) -> dict[str, tf.Tensor | tf.RaggedTensor]:
    *columns, negatives, titles, counts, flags = parsed
    features: dict[str, Any] = {}
    for name, column in zip(_COLUMNS, columns):
        features[name] = tf.ensure_shape(column, [None])
    counts = tf.ensure_shape(counts, [None])
    features[ex.NEGATIVES] = tf.RaggedTensor.from_row_lengths(
        tf.ensure_shape(negatives, [None]), counts
    )
    features[ex.NEGATIVE_TITLES] = tf.RaggedTensor.from_row_lengths(
        tf.ensure_shape(titles, [None]), counts
    )
    features[ex.SYMMETRIC] = tf.ensure_shape(flags, [None])
    return features


def checkpointable_options() -> tf.data.Options:
    """Options that let tf.data checkpoint iterators through the (pure) Python parser."""
    options = tf.data.Options()
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return options


# ------------------------------------------------------------------------------ source


class UnifiedFileSource(seqio.FileDataSource):
    """Unified examples from JSONL or TFRecord files (see :func:`file_source`)."""

    def __init__(
        self,
        split_to_filepattern: Mapping[str, Sequence[str]],
        file_format: str,
        *,
        default_task: str = "",
        symmetric: bool = False,
        source_name: str = "",
        max_bad_fraction: float = 0.01,
        num_input_examples: Mapping[str, int] | None = None,
        cycle_length: int = 16,
        row_filter: RowFilter | None = None,
    ) -> None:
        check_format(file_format)
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.file_format = file_format
        self.default_task, self.symmetric = default_task, symmetric
        self.source_name, self.max_bad_fraction = source_name, max_bad_fraction
        self.row_filter = row_filter
        reader = tf.data.TextLineDataset if file_format == JSONL else tf.data.TFRecordDataset
        super().__init__(
            read_file_fn=reader,
            split_to_filepattern={k: list(v) for k, v in split_to_filepattern.items()},
            num_input_examples=num_input_examples,
            cycle_length=cycle_length,
            block_length=1,  # Elements are batches of PARSE_BATCH rows.
        )

    @property
    def supports_arbitrary_sharding(self) -> bool:
        # Shards by files when there are enough, otherwise by rows.
        return True

    def list_shards(self, split: str) -> Sequence[str]:
        """The files of ``split``, sorted per pattern, duplicates removed.

        Raises:
          FileNotFoundError: a pattern matches no files.
        """
        if split not in self._split_to_filepattern:
            raise ValueError(f"{self}: no split {split!r}; splits are {list(self.splits)}")
        return fileio.list_files(self._split_to_filepattern[split])

    def get_dataset(
        self,
        split: str = "train",
        shuffle: bool = True,
        seed: int | None = None,
        shard_info: seqio.ShardInfo | None = None,
        *,
        sequence_length: Mapping[str, int] | None = None,  # Unused.
        use_cached: bool = False,  # Unused.
        num_epochs: int | None = 1,  # Unused (seqio's Task repeats).
    ) -> tf.data.Dataset:
        """The examples of ``split`` (files shuffled by ``seed`` when ``shuffle``)."""
        del sequence_length, use_cached, num_epochs
        files = self.list_shards(split)
        by_files = shard_info is not None and len(files) >= shard_info.num_shards
        row_shard = shard_info if shard_info is not None and not by_files else None
        files_ds = tf.data.Dataset.from_tensor_slices(np.array(files, dtype=str))
        if by_files:
            files_ds = files_ds.shard(shard_info.num_shards, shard_info.index)
        if shuffle:
            files_ds = files_ds.shuffle(len(files), seed=seed)
        batches = files_ds.interleave(
            lambda path: self._row_batches(path, row_shard),
            cycle_length=min(self._cycle_length, len(files)),
            block_length=self._block_length,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        # One empty batch flagged `end` lets the parser enforce the bad fraction at the end.
        end = tf.data.Dataset.from_tensors(
            (tf.constant(""), tf.zeros([0], tf.int64), tf.zeros([0], tf.string), tf.constant(True))
        )
        name = self.source_name or ",".join(self._split_to_filepattern[split])
        parser = _BatchParser(
            self.file_format,
            name,
            self.default_task,
            self.source_name or name,
            self.symmetric,
            self.max_bad_fraction,
            self.row_filter,
        )

        def parse(path: tf.Tensor, indices: tf.Tensor, rows: tf.Tensor, last: tf.Tensor) -> dict:
            # Stateful (the default) also keeps tf.data from parallelising this map.
            parsed = tf.numpy_function(parser, [path, indices, rows, last], _PARSE_DTYPES)
            return _parsed_to_features(parsed)

        # The parse map is sequential so that the end marker is parsed after every row;
        # the prefetch gives the (GIL-bound) parser its own thread.
        ds = batches.concatenate(end).map(parse).prefetch(2).unbatch()
        return ds.with_options(checkpointable_options())

    def _row_batches(self, path: tf.Tensor, row_shard: seqio.ShardInfo | None) -> tf.data.Dataset:
        """(path, 1-based row numbers, rows, end=False) batches of one file."""
        rows = self._reader(path)
        if row_shard is None:

            def number(i: tf.Tensor, batch: tf.Tensor) -> tuple:
                indices = i * PARSE_BATCH + 1 + tf.range(tf.size(batch, tf.int64), dtype=tf.int64)
                return path, indices, batch, tf.constant(False)

            return rows.batch(PARSE_BATCH).enumerate().map(number)
        rows = rows.enumerate(start=1).shard(row_shard.num_shards, row_shard.index)
        return rows.batch(PARSE_BATCH).map(lambda i, batch: (path, i, batch, tf.constant(False)))

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.file_format}: {self._split_to_filepattern})"


def file_source(
    file_pattern: FilePattern | Mapping[str, FilePattern],
    *,
    file_format: str | None = None,
    default_task: str = "",
    symmetric: bool = False,
    source_name: str | None = None,
    max_bad_fraction: float = 0.01,
    num_input_examples: int | Mapping[str, int] | None = None,
    row_filter: tuple[str, Iterable[str]] | None = None,
) -> UnifiedFileSource:
    """A seqio DataSource of unified examples read from JSONL or TFRecord files.

    Files are only listed when a dataset is made, so tasks can be registered for
    files that do not exist yet.

    Args:
      file_pattern: glob pattern(s) (local or ``gs://``), ``name@N`` shard specs,
        comma-separated lists; or a mapping from split name to such patterns. A
        plain pattern is the ``train`` split.
      file_format: ``'jsonl'`` or ``'tfrecord'``; None infers it from the extension
        (``x.jsonl``, ``x.jsonl-00000-of-00016``, ``x.tfrecord*``, ...).
      default_task: the task of rows without a ``task`` field.
      symmetric: the ``symmetric`` flag of rows without one.
      source_name: the ``source`` of rows without one, and the input's name in
        messages; None uses the file pattern.
      max_bad_fraction: the dataset fails once more than this fraction of the rows
        seen is bad (checked after 100 rows and at the end of the input).
      num_input_examples: the number of rows, when known (per split for a mapping).
      row_filter: ``(field, values)``: keep only rows whose string ``field`` is one
        of ``values`` (e.g. ``("task_type", ["fact checking"])``); others are skipped
        without counting as bad.

    Raises:
      ValueError: an unknown format, or one that cannot be inferred.
    """
    if isinstance(file_pattern, Mapping):
        splits = {split: fileio.split_patterns(p) for split, p in file_pattern.items()}
    else:
        splits = {"train": fileio.split_patterns(file_pattern)}
    if file_format is None:
        kinds = {infer_format(p) for patterns in splits.values() for p in patterns}
        if len(kinds) > 1:
            raise ValueError(
                f"file patterns {splits} mix formats {sorted(kinds)}; pass file_format="
            )
        file_format = kinds.pop()
    if isinstance(num_input_examples, int):
        num_input_examples = {split: num_input_examples for split in splits}
    return UnifiedFileSource(
        splits,
        file_format,
        default_task=default_task,
        symmetric=symmetric,
        source_name=source_name or "",
        max_bad_fraction=max_bad_fraction,
        num_input_examples=num_input_examples,
        row_filter=None if row_filter is None else (row_filter[0], frozenset(row_filter[1])),
    )
