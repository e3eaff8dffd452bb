"""FRet rows: the unified example format plus FRet's own fields, as JSONL or TFRecord.

A row holds the fields the data side reads (:mod:`gecko_jax.data.examples`):
``task``, ``query``, ``positive``, ``positive_title``, ``negatives`` (one hard
negative), ``negative_titles``, ``symmetric`` (false) and ``source`` (``"fret"``), and:

================== ===========================================================
``task_type``      the sampled task type (``"fact checking"``)
``seed_id``        the passage the query was written for
``positive_id``    the passage chosen as positive (top-1 by R)
``negative_ids``   the hard negatives' passage ids
``positive_changed`` whether the positive differs from the seed passage
``scores``         every neighbour: ``id``, ``retrieval``, ``ql``, ``rc``,
                   ``rank_ql``, ``rank_rc``, ``rrf``, ``rank``
``llm_model``      the LLM's model id
``embedder``       the retrieval encoder's name or path
================== ===========================================================

In TFRecord rows these are extra features: bytes for strings (``scores`` as one JSON
string), bytes list ``negative_ids``, int64 ``positive_changed``. The data side ignores
fields it does not know.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from gecko_jax.data import examples as ex
from gecko_jax.data import sources
from gecko_jax.fret.corpus import Passage
from gecko_jax.fret.generate import Generated
from gecko_jax.fret.rank import Ranked

SOURCE = "fret"
FORMATS = (sources.JSONL, sources.TFRECORD)


@dataclasses.dataclass(frozen=True)
class Row:
    """One output row: the unified example and FRet's extra fields."""

    example: ex.UnifiedExample
    extras: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The JSONL record (titles always present, even when empty)."""
        record = sources.example_to_record(self.example)
        record[ex.POSITIVE_TITLE] = self.example.positive_title
        record[ex.NEGATIVE_TITLES] = list(self.example.negative_titles)
        return {**record, **self.extras}

    def as_tf_example(self) -> tf.train.Example:
        """The TFRecord row."""
        proto = sources.example_to_tf_example(self.example)
        features = proto.features.feature
        for name, value in self.extras.items():
            if isinstance(value, bool):
                features[name].int64_list.value.append(int(value))
            elif isinstance(value, str):
                features[name].bytes_list.value.append(value.encode("utf-8"))
            elif name == "negative_ids":
                features[name].bytes_list.value.extend(v.encode("utf-8") for v in value)
            else:
                features[name].bytes_list.value.append(json.dumps(value).encode("utf-8"))
        return proto


def build_row(
    seed: Passage,
    generated: Generated,
    ranked: Ranked,
    passages: Sequence[Passage],
    llm_model: str,
    embedder: str,
) -> Row:
    """The row of one seed passage's query, its ranked neighbours and chosen pair."""
    positive = passages[ranked.candidates[ranked.positive].index]
    negative = passages[ranked.candidates[ranked.negative].index]
    example = ex.UnifiedExample(
        task=generated.task,
        query=generated.query,
        positive=positive.text,
        positive_title=positive.title,
        negatives=(negative.text,),
        negative_titles=(negative.title,),
        symmetric=False,
        source=SOURCE,
    )
    extras = {
        "task_type": generated.task_type,
        "seed_id": seed.id,
        "positive_id": positive.id,
        "negative_ids": [negative.id],
        "positive_changed": positive.id != seed.id,
        "scores": [c.as_record() for c in ranked.candidates],
        "llm_model": llm_model,
        "embedder": embedder,
    }
    return Row(example, extras)


def write_rows(rows: Sequence[Row], path: str, file_format: str) -> int:
    """Writes rows as JSONL or TFRecord (local or ``gs://``); returns the count."""
    if file_format == sources.JSONL:
        with tf.io.gfile.GFile(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row.as_json(), ensure_ascii=False) + "\n")
    elif file_format == sources.TFRECORD:
        with tf.io.TFRecordWriter(path) as writer:
            for row in rows:
                writer.write(row.as_tf_example().SerializeToString())
    else:
        raise ValueError(f"--output_format must be one of {FORMATS}, got {file_format!r}")
    return len(rows)
