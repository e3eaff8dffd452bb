"""Training rows on disk: the unified example, FRet's rows, and their JSONL / TFRecord form.

Every training row is a unified example (:class:`UnifiedExample`):

=================== ============= ==================================================
field               type          meaning
=================== ============= ==================================================
``task``            str           task description, e.g. "question answering"
``query``           str           the query text (non-empty)
``positive``        str           the document that answers the query
``positive_title``  str           its title, "" when it has none
``negatives``       list[str]     hard negatives (any number, may differ per row)
``negative_titles`` list[str]     their titles ("" when none)
``symmetric``       bool          both sides use the query format (STS, NLI)
``source``          str           where the row came from (dataset or file name)
=================== ============= ==================================================

A row may carry extra fields beside these (readers of the unified format ignore them).
FRet's rows (:class:`FretRow`) carry its audit fields:

======================== ==========================================================
``task_type``            the sampled task type (``"fact checking"``)
``seed_id``              the passage the query was written for
``positive_id``          the passage chosen as positive (top-1 by R)
``negative_ids``         the hard negatives' passage ids
``positive_changed``     whether the positive differs from the seed passage
``scores``               every neighbour: ``id``, ``retrieval``, ``ql``, ``rc``,
                         ``rank_ql``, ``rank_rc``, ``rrf``, ``rank``
``llm_model``            the LLM's model id
``embedder``             the retrieval encoder's name or path
======================== ==========================================================

On disk a row is one JSON object per line (JSONL) or one ``tf.train.Example``
(TFRecord): strings as bytes features, ``symmetric`` and other flags and integers as
int64, floats as float; other extras (FRet's ``scores``) as one JSON string.

The TFRecord half imports TensorFlow when first used, so the schema and the JSONL half
are cheap to import.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf import message

from gecko_jax import fileio

if TYPE_CHECKING:
    import tensorflow as tf

TASK = "task"
QUERY = "query"
POSITIVE = "positive"
POSITIVE_TITLE = "positive_title"
NEGATIVES = "negatives"
NEGATIVE_TITLES = "negative_titles"
SYMMETRIC = "symmetric"
SOURCE = "source"
# The unified fields, in the order rows write them.
FIELDS = (TASK, QUERY, POSITIVE, POSITIVE_TITLE, NEGATIVES, NEGATIVE_TITLES, SYMMETRIC, SOURCE)
_STRING_FIELDS = (TASK, QUERY, POSITIVE, POSITIVE_TITLE, SOURCE)
_LIST_FIELDS = (NEGATIVES, NEGATIVE_TITLES)

# FRet's fields (after the unified ones, in this order).
FRET_SOURCE = "fret"
TASK_TYPE = "task_type"
SEED_ID = "seed_id"
POSITIVE_ID = "positive_id"
NEGATIVE_IDS = "negative_ids"
POSITIVE_CHANGED = "positive_changed"
SCORES = "scores"
LLM_MODEL = "llm_model"
EMBEDDER = "embedder"

# ------------------------------------------------------------------------ file formats

JSONL = "jsonl"
TFRECORD = "tfrecord"
FILE_FORMATS = (JSONL, TFRECORD)

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

# Keep only rows whose string field (first) holds one of the values (second); other
# rows are neither good nor bad. FRet's per-task-type slices filter on "task_type".
RowFilter = tuple[str, frozenset[str]]


def check_format(file_format: str) -> str:
    """Returns ``file_format`` when it is one of :data:`FILE_FORMATS`.

    Raises:
      ValueError: it is not (names the known ones).
    """
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {file_format!r}")
    return file_format


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


# ---------------------------------------------------------------------- the unified row


class BadRowError(ValueError):
    """One input row cannot be converted; ``str(e)`` is the reason."""


@dataclasses.dataclass(frozen=True)
class UnifiedExample:
    """One example in host form (see the module docstring for the fields)."""

    task: str
    query: str
    positive: str
    positive_title: str = ""
    negatives: tuple[str, ...] = ()
    negative_titles: tuple[str, ...] = ()
    symmetric: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        for name in _STRING_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise BadRowError(
                    f"field {name!r} must be a string, got {type(getattr(self, name)).__name__}"
                )
        if not self.query.strip():
            raise BadRowError("empty query")
        if not self.positive.strip():
            raise BadRowError("empty positive")
        if not all(isinstance(n, str) for n in self.negatives):
            raise BadRowError("field 'negatives' must hold strings")
        if self.negative_titles and len(self.negative_titles) != len(self.negatives):
            raise BadRowError(
                f"{len(self.negative_titles)} negative titles for {len(self.negatives)} negatives"
            )

    def as_features(self) -> dict[str, Any]:
        """Every unified field, in :data:`FIELDS` order (titles filled)."""
        titles = self.negative_titles or ("",) * len(self.negatives)
        return {
            TASK: self.task,
            QUERY: self.query,
            POSITIVE: self.positive,
            POSITIVE_TITLE: self.positive_title,
            NEGATIVES: list(self.negatives),
            NEGATIVE_TITLES: list(titles),
            SYMMETRIC: self.symmetric,
            SOURCE: self.source,
        }


def string_list(record: Mapping[str, Any], field: str) -> tuple[str, ...]:
    """A field holding a string or a list of strings, as a tuple (empty if absent)."""
    value = record.get(field)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BadRowError(f"field {field!r} must be a string or a list of strings")


def from_record(
    record: Any, default_task: str = "", source: str = "", symmetric: bool = False
) -> UnifiedExample:
    """Converts one decoded JSON row to an example.

    Accepted fields: ``query`` and ``positive`` (required strings), ``task``,
    ``positive_title``, ``negative`` or ``negatives`` (a string or list of strings),
    ``negative_title(s)``, ``symmetric``, ``source``.

    Raises:
      BadRowError: not an object, a missing or mistyped field, an empty query.
    """
    if not isinstance(record, dict):
        raise BadRowError(f"expected a JSON object, got {type(record).__name__}")
    for field in (QUERY, POSITIVE):
        if field not in record:
            raise BadRowError(f"missing field {field!r}")
    negatives = string_list(record, "negatives") or string_list(record, "negative")
    titles = string_list(record, "negative_titles") or string_list(record, "negative_title")
    flag = record.get(SYMMETRIC, symmetric)
    if not isinstance(flag, bool):
        raise BadRowError("field 'symmetric' must be true or false")
    return UnifiedExample(
        task=record.get(TASK, default_task),
        query=record[QUERY],
        positive=record[POSITIVE],
        positive_title=record.get(POSITIVE_TITLE) or "",
        negatives=negatives,
        negative_titles=titles,
        symmetric=flag,
        source=record.get(SOURCE, source),
    )


# ----------------------------------------------------------------------------- FRet's row


@dataclasses.dataclass(frozen=True)
class FretRow:
    """One row of FRet's output: the unified example and FRet's audit fields.

    Attributes:
      example: the unified example (source ``"fret"``, one hard negative).
      task_type: the sampled task type.
      seed_id: the passage the query was written for.
      positive_id: the passage chosen as positive.
      negative_ids: the hard negatives' passage ids.
      scores: one record per ranked neighbour (``id``, ``retrieval``, ``ql``, ``rc``,
        ``rank_ql``, ``rank_rc``, ``rrf``, ``rank``), in retrieval order.
      llm_model: the LLM's model id.
      embedder: the retrieval encoder's name or path.
    """

    example: UnifiedExample
    task_type: str
    seed_id: str
    positive_id: str
    negative_ids: tuple[str, ...]
    scores: tuple[Mapping[str, Any], ...]
    llm_model: str
    embedder: str

    @property
    def extras(self) -> dict[str, Any]:
        """FRet's fields, by name, in the order rows write them."""
        return {
            TASK_TYPE: self.task_type,
            SEED_ID: self.seed_id,
            POSITIVE_ID: self.positive_id,
            NEGATIVE_IDS: list(self.negative_ids),
            POSITIVE_CHANGED: self.positive_id != self.seed_id,
            SCORES: [dict(s) for s in self.scores],
            LLM_MODEL: self.llm_model,
            EMBEDDER: self.embedder,
        }

    def as_json(self) -> dict[str, Any]:
        """The JSONL record (titles always present, even when empty)."""
        return to_json(self.example, self.extras, keep_titles=True)

    def as_tf_example(self) -> tf.train.Example:
        """The TFRecord row (``scores`` as one JSON string)."""
        extras = self.extras
        extras[SCORES] = json.dumps(extras[SCORES])
        return to_tf_example(self.example, extras)


def write_fret_rows(rows: Sequence[FretRow], path: str, file_format: str) -> int:
    """Writes FRet's rows as JSONL or TFRecord (local or ``gs://``); returns the count."""
    if check_format(file_format) == JSONL:
        _write_jsonl(path, (row.as_json() for row in rows))
    else:
        _write_tfrecord(path, (row.as_tf_example() for row in rows))
    return len(rows)


# ------------------------------------------------------------------------------ writing


def to_json(
    example: UnifiedExample, extras: Mapping[str, Any] | None = None, keep_titles: bool = False
) -> dict[str, Any]:
    """A unified example and its extra fields as a JSON-ready dict (the JSONL row).

    Empty ``task`` and ``source`` are left out, so that a reader's defaults
    (``default_task``, ``source_name``) apply to them; empty titles too unless
    ``keep_titles`` (they then follow the other unified fields).

    Raises:
      ValueError: an extra field has a unified field's name.
    """
    features = example.as_features()
    record = {k: features[k] for k in FIELDS}
    for name in (TASK, SOURCE, POSITIVE_TITLE):
        if not record[name]:
            del record[name]
    if not any(record[NEGATIVE_TITLES]):
        del record[NEGATIVE_TITLES]
    if keep_titles:
        record.setdefault(POSITIVE_TITLE, example.positive_title)
        record.setdefault(NEGATIVE_TITLES, list(example.negative_titles))
    extras = extras or {}
    _check_extras(extras)
    return {**record, **extras}


def _check_extras(extras: Mapping[str, Any]) -> None:
    clash = set(extras) & set(FIELDS)
    if clash:
        raise ValueError(f"extra fields {sorted(clash)} clash with unified-format fields")


def _tf() -> Any:
    import tensorflow as tf  # slow to import: only for TFRecord rows

    return tf


def _strings(values: Iterable[str]) -> tf.train.Feature:
    tf = _tf()
    return tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in values])
    )


def _extra_feature(value: Any) -> tf.train.Feature:
    """An extra field as a feature: strings, bools/ints, floats, lists of one of them;
    anything else (dicts, mixed lists) as its JSON text."""
    tf = _tf()
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if all(isinstance(v, str) for v in values):
        return _strings(values)
    if all(isinstance(v, (bool, int)) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
    return _strings([json.dumps(value, ensure_ascii=False, sort_keys=True)])


def to_tf_example(
    example: UnifiedExample, extras: Mapping[str, Any] | None = None
) -> tf.train.Example:
    """A unified example and its extra fields as a ``tf.train.Example`` (the TFRecord row).

    Raises:
      ValueError: an extra field has a unified field's name.
    """
    tf = _tf()
    record = to_json(example)
    feature = {name: _strings([record[name]]) for name in _STRING_FIELDS if name in record}
    feature.update({name: _strings(record[name]) for name in _LIST_FIELDS if name in record})
    feature[SYMMETRIC] = tf.train.Feature(
        int64_list=tf.train.Int64List(value=[int(example.symmetric)])
    )
    extras = extras or {}
    _check_extras(extras)
    proto = tf.train.Example(features=tf.train.Features(feature=feature))
    # Added to the built proto, as FRet's files always were: the order of a map's
    # entries on the wire follows how the map was built.
    for name, value in extras.items():
        proto.features.feature[name].CopyFrom(_extra_feature(value))
    return proto


def _write_jsonl(path: str, records: Iterable[Mapping[str, Any]]) -> None:
    with fileio.open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _write_tfrecord(path: str, protos: Iterable[tf.train.Example]) -> None:
    with _tf().io.TFRecordWriter(path) as writer:
        for proto in protos:
            writer.write(proto.SerializeToString())


def write_examples(
    examples: Iterable[UnifiedExample],
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

    Raises:
      ValueError: an unknown format, a count of extras other than of examples, or an
        extra field with a unified field's name.
    """
    file_format = check_format(file_format or infer_format(path))
    examples = list(examples)
    extras = list(extras) if extras is not None else [{}] * len(examples)
    if len(extras) != len(examples):
        raise ValueError(f"{len(extras)} extras for {len(examples)} examples")
    pairs = zip(examples, extras)
    if file_format == JSONL:
        _write_jsonl(path, (to_json(example, extra) for example, extra in pairs))
    else:
        _write_tfrecord(path, (to_tf_example(example, extra) for example, extra in pairs))
    return len(examples)


# ------------------------------------------------------------------------------ reading


def decode_row(
    raw: bytes,
    file_format: str,
    default_task: str = "",
    source: str = "",
    symmetric: bool = False,
    row_filter: RowFilter | None = None,
) -> UnifiedExample | None:
    """The example of one JSONL line or serialized ``tf.train.Example``.

    Args:
      raw: the line or record.
      file_format: ``'jsonl'`` or ``'tfrecord'``.
      default_task, source, symmetric: the values of rows without these fields.
      row_filter: ``(field, values)``: rows whose string ``field`` is not one of
        ``values`` give None.

    Raises:
      BadRowError: the row cannot be decoded or is not a unified row (the reason).
    """
    record = _RECORD_DECODERS[file_format](raw, row_filter)
    return None if record is None else from_record(record, default_task, source, symmetric)


def _json_record(raw: bytes, row_filter: RowFilter | None) -> Any:
    try:
        record = json.loads(raw)
    except UnicodeDecodeError as e:
        raise BadRowError(f"invalid UTF-8 at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise BadRowError(f"invalid JSON: {e.msg} at column {e.colno}") from None
    except RecursionError:
        raise BadRowError("invalid JSON: nested too deeply") from None
    if row_filter is not None and isinstance(record, dict):
        field, allowed = row_filter
        if record.get(field) not in allowed:
            return None
    return record


def _feature_strings(feature: Any, name: str) -> list[str]:
    kind = feature.WhichOneof("kind")
    if kind is None:
        return []
    if kind != "bytes_list":
        raise BadRowError(f"field {name!r} must be a bytes feature, got {kind}")
    try:
        return [v.decode("utf-8") for v in feature.bytes_list.value]
    except UnicodeDecodeError as e:
        raise BadRowError(f"invalid UTF-8 in field {name!r} at byte {e.start}") from None


def _tf_record(raw: bytes, row_filter: RowFilter | None) -> dict[str, Any] | None:
    try:
        proto = _tf().train.Example.FromString(raw)
    except message.DecodeError:
        raise BadRowError("not a serialized tf.train.Example") from None
    features = proto.features.feature
    if row_filter is not None:
        field, allowed = row_filter
        values = _feature_strings(features[field], field) if field in features else []
        if len(values) != 1 or values[0] not in allowed:
            return None
    record: dict[str, Any] = {}
    for name in _STRING_FIELDS:
        if name in features:
            values = _feature_strings(features[name], name)
            if len(values) != 1:
                raise BadRowError(f"field {name!r} must hold one value, got {len(values)}")
            record[name] = values[0]
    for name in _LIST_FIELDS:
        if name in features:
            record[name] = _feature_strings(features[name], name)
    if SYMMETRIC in features:
        flag = features[SYMMETRIC]
        values = list(flag.int64_list.value) if flag.WhichOneof("kind") == "int64_list" else None
        if values is None or len(values) != 1 or values[0] not in (0, 1):
            raise BadRowError("field 'symmetric' must be one int64 0 or 1")
        record[SYMMETRIC] = bool(values[0])
    return record


_RECORD_DECODERS = {JSONL: _json_record, TFRECORD: _tf_record}
