"""seqio data sources reading unified examples from JSONL or TFRecord files.

:func:`file_source` builds a :class:`UnifiedFileSource`, a ``seqio.FileDataSource``
whose datasets yield the features of :data:`examples.OUTPUT_SIGNATURE`, with
``negatives`` and ``negative_titles`` as 1-D ragged specs (:data:`ELEMENT_SPEC`;
plain tensors inside maps, batched without a per-element map, see
:mod:`preprocessors`). Rows are parsed in batches of :data:`PARSE_BATCH` by one
``tf.numpy_function`` call (never one Python call per row). Bad rows are counted
and skipped with a warning naming ``file:line`` (JSONL) or ``file:record``
(TFRecord), both 1-based; the dataset fails once the bad fraction of
:class:`examples.BadRowCounter` is exceeded, mid-stream or at the end of the input.

Iterator checkpoints (``tf.train.Checkpoint(iterator=...)``) work: the datasets set
``ExternalStatePolicy.IGNORE``, which is sound because the parser's output depends
on its inputs only. The bad-row counts are not part of a checkpoint.

:func:`write_examples` writes the same formats (FRet output, tests).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import seqio
import tensorflow as tf
from google.protobuf import message

from gecko_jax.data import examples as ex

log = logging.getLogger(__name__)

JSONL = "jsonl"
TFRECORD = "tfrecord"
FILE_FORMATS = (JSONL, TFRECORD)
PARSE_BATCH = 1024  # Rows per Python parse call.

_EXTENSIONS = {
    "jsonl": JSONL,
    "json": JSONL,
    "ndjson": JSONL,
    "tfrecord": TFRECORD,
    "tfrecords": TFRECORD,
    "tfrec": TFRECORD,
    "tfr": TFRECORD,
}
# Shard suffixes and glob characters after an extension: "x.jsonl-00000-of-00016",
# "x.jsonl-*-of-00016", "x.tfrecord*", "x.jsonl@16".
_SHARD_SUFFIX = re.compile(r"(-[\d*?\[\]]+(-of-[\d*?\[\]]+)?|@\d+|[*?]+)$")
_AT_SHARDS = re.compile(r"^(.*)@(\d+)$")

FilePattern = str | Sequence[str]
# Keep only rows whose string field (first) holds one of the values (second); other
# rows are neither good nor bad. FRet's per-task-type slices filter on "task_type".
RowFilter = tuple[str, frozenset[str]]

# The element spec of the datasets: examples.OUTPUT_SIGNATURE with 1-D ragged lists.
ELEMENT_SPEC: dict[str, tf.TypeSpec] = {
    name: tf.RaggedTensorSpec(spec.shape, spec.dtype, ragged_rank=0)
    if name in (ex.NEGATIVES, ex.NEGATIVE_TITLES)
    else spec
    for name, spec in ex.OUTPUT_SIGNATURE.items()
}


def infer_format(path: str) -> str:
    """``'jsonl'`` or ``'tfrecord'`` from a file name or pattern's extension.

    Raises:
      ValueError: the extension is not one of the known ones.
    """
    for part in reversed(os.path.basename(path).split(".")[1:]):
        kind = _EXTENSIONS.get(_SHARD_SUFFIX.sub("", part).lower())
        if kind:
            return kind
    raise ValueError(
        f"cannot infer the file format of {path!r} from its extension "
        f"(known: {sorted(_EXTENSIONS)}); pass file_format= one of {FILE_FORMATS}"
    )


def split_patterns(file_pattern: FilePattern) -> list[str]:
    """A pattern, a comma-separated list or a sequence of them, as a flat list."""
    items = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    patterns = [p.strip() for item in items for p in item.split(",") if p.strip()]
    if not patterns:
        raise ValueError(f"empty file pattern: {file_pattern!r}")
    return patterns


def expand_pattern(pattern: str) -> list[str]:
    """The sorted files of one glob or ``name@N`` pattern (local or ``gs://``).

    Raises:
      FileNotFoundError: nothing matches (the message names the pattern).
    """
    at = _AT_SHARDS.match(pattern)
    if at:
        base, count = at.group(1), int(at.group(2))
        files = [f"{base}-{i:05d}-of-{count:05d}" for i in range(count)]
        missing = [f for f in files if not tf.io.gfile.exists(f)]
        if missing:
            raise FileNotFoundError(
                f"file pattern {pattern!r}: {len(missing)} shards missing, e.g. {missing[0]}"
            )
        return files
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"file pattern {pattern!r} matches no files")
    return files


# ----------------------------------------------------------------------------- parsing


def _json_example(
    raw: bytes, default_task: str, source: str, symmetric: bool, row_filter: RowFilter | None = None
) -> ex.UnifiedExample | None:
    try:
        record = json.loads(raw)
    except UnicodeDecodeError as e:
        raise ex.BadRowError(f"invalid UTF-8 at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise ex.BadRowError(f"invalid JSON: {e.msg} at column {e.colno}") from None
    except RecursionError:
        raise ex.BadRowError("invalid JSON: nested too deeply") from None
    if row_filter is not None and isinstance(record, dict):
        field, allowed = row_filter
        if record.get(field) not in allowed:
            return None
    return ex.from_record(record, default_task, source, symmetric)


def _feature_strings(feature: Any, name: str) -> list[str]:
    kind = feature.WhichOneof("kind")
    if kind is None:
        return []
    if kind != "bytes_list":
        raise ex.BadRowError(f"field {name!r} must be a bytes feature, got {kind}")
    try:
        return [v.decode("utf-8") for v in feature.bytes_list.value]
    except UnicodeDecodeError as e:
        raise ex.BadRowError(f"invalid UTF-8 in field {name!r} at byte {e.start}") from None


_SCALAR_FIELDS = (ex.TASK, ex.QUERY, ex.POSITIVE, ex.POSITIVE_TITLE, ex.SOURCE)
_LIST_FIELDS = (ex.NEGATIVES, ex.NEGATIVE_TITLES)


def _tf_example(
    raw: bytes, default_task: str, source: str, symmetric: bool, row_filter: RowFilter | None = None
) -> ex.UnifiedExample | None:
    try:
        proto = tf.train.Example.FromString(raw)
    except message.DecodeError:
        raise ex.BadRowError("not a serialized tf.train.Example") from None
    features = proto.features.feature
    if row_filter is not None:
        field, allowed = row_filter
        values = _feature_strings(features[field], field) if field in features else []
        if len(values) != 1 or values[0] not in allowed:
            return None
    record: dict[str, Any] = {}
    for name in _SCALAR_FIELDS:
        if name in features:
            values = _feature_strings(features[name], name)
            if len(values) != 1:
                raise ex.BadRowError(f"field {name!r} must hold one value, got {len(values)}")
            record[name] = values[0]
    for name in _LIST_FIELDS:
        if name in features:
            record[name] = _feature_strings(features[name], name)
    if ex.SYMMETRIC in features:
        flag = features[ex.SYMMETRIC]
        values = list(flag.int64_list.value) if flag.WhichOneof("kind") == "int64_list" else None
        if values is None or len(values) != 1 or values[0] not in (0, 1):
            raise ex.BadRowError("field 'symmetric' must be one int64 0 or 1")
        record[ex.SYMMETRIC] = bool(values[0])
    return ex.from_record(record, default_task, source, symmetric)


_DECODERS: dict[str, Callable[..., ex.UnifiedExample | None]] = {
    JSONL: _json_example,
    TFRECORD: _tf_example,
}
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
        self._decode = _DECODERS[file_format]
        self._skip_blank = file_format == JSONL
        self._args = (default_task, source, symmetric, row_filter)
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
                example = self._decode(raw, *self._args)
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
        if file_format not in FILE_FORMATS:
            raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {file_format!r}")
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
        files = [f for p in self._split_to_filepattern[split] for f in expand_pattern(p)]
        return list(dict.fromkeys(files))

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
        splits = {split: split_patterns(p) for split, p in file_pattern.items()}
    else:
        splits = {"train": split_patterns(file_pattern)}
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


# ----------------------------------------------------------------------------- writing


def example_to_record(example: ex.UnifiedExample) -> dict[str, Any]:
    """A unified example as a JSON-ready dict (the JSONL row format).

    Empty ``task``, ``source`` and titles are left out, so that a reader's defaults
    (``default_task``, ``source_name``) apply to them.
    """
    features = example.as_features()
    record = {k: features[k] for k in ex.OUTPUT_SIGNATURE}
    for name in (ex.TASK, ex.SOURCE, ex.POSITIVE_TITLE):
        if not record[name]:
            del record[name]
    if not any(record[ex.NEGATIVE_TITLES]):
        del record[ex.NEGATIVE_TITLES]
    return record


def _strings(values: Iterable[str]) -> tf.train.Feature:
    return tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in values])
    )


def _extra_feature(value: Any) -> tf.train.Feature:
    """An extra (non-unified) field as a feature: strings, bools/ints, floats, lists of
    one of them; anything else (dicts, mixed lists) as its JSON text."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if all(isinstance(v, str) for v in values):
        return _strings(values)
    if all(isinstance(v, (bool, int)) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
    return _strings([json.dumps(value, ensure_ascii=False, sort_keys=True)])


def example_to_tf_example(
    example: ex.UnifiedExample, extra: Mapping[str, Any] | None = None
) -> tf.train.Example:
    """A unified example as a ``tf.train.Example`` (the TFRecord row format).

    Args:
      example: the example.
      extra: additional fields (audit data such as FRet's scores), written as extra
        features; readers of the unified format ignore them.
    """
    record = example_to_record(example)
    feature = {name: _strings([record[name]]) for name in _SCALAR_FIELDS if name in record}
    feature.update({name: _strings(record[name]) for name in _LIST_FIELDS if name in record})
    feature[ex.SYMMETRIC] = tf.train.Feature(
        int64_list=tf.train.Int64List(value=[int(example.symmetric)])
    )
    for name, value in (extra or {}).items():
        if name in ex.OUTPUT_SIGNATURE:
            raise ValueError(f"extra field {name!r} clashes with a unified-format field")
        feature[name] = _extra_feature(value)
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_examples(
    examples: Iterable[ex.UnifiedExample],
    path: str,
    file_format: str | None = None,
    extras: Iterable[Mapping[str, Any]] | None = None,
) -> int:
    """Writes examples as JSONL or TFRecord (local or ``gs://``); returns the count.

    Args:
      examples: the examples, written in order.
      path: the output file.
      file_format: ``'jsonl'`` or ``'tfrecord'``; None infers it from ``path``.
      extras: per example, additional fields written beside the unified ones (JSON
        keys, or extra features); readers of the unified format ignore them.
    """
    file_format = file_format or infer_format(path)
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {file_format!r}")
    examples = list(examples)
    extras = list(extras) if extras is not None else [{}] * len(examples)
    if len(extras) != len(examples):
        raise ValueError(f"{len(extras)} extras for {len(examples)} examples")
    if file_format == JSONL:
        with tf.io.gfile.GFile(path, "w") as f:
            for example, extra in zip(examples, extras):
                clash = set(extra) & set(ex.OUTPUT_SIGNATURE)
                if clash:
                    raise ValueError(
                        f"extra fields {sorted(clash)} clash with unified-format fields"
                    )
                row = {**example_to_record(example), **extra}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        with tf.io.TFRecordWriter(path) as writer:
            for example, extra in zip(examples, extras):
                writer.write(example_to_tf_example(example, extra).SerializeToString())
    return len(examples)
