"""The ``fret`` task and its per-task-type slices over FRet-shaped output files."""

from __future__ import annotations

import json

import pytest
import seqio
import tensorflow as tf

from gecko_jax.data import examples as ex
from gecko_jax.data import fret_tasks, registry, sources
from gecko_jax.rows import write_examples

TYPES = [
    "question answering",
    "fact checking",
    "question answering",
    "sentence similarity",
    "search result",
    "fact checking",
]


def _rows() -> list[tuple[ex.UnifiedExample, dict]]:
    rows = []
    for i, task_type in enumerate(TYPES):
        example = ex.UnifiedExample(
            task=f"Given a {task_type} query, find the passage",
            query=f"query {i}",
            positive=f"passage {i}",
            positive_title=f"title {i}",
            negatives=(f"negative {i}",),
            symmetric=task_type == "sentence similarity",
            source="fret",
        )
        audit = {
            "task_type": task_type,
            "seed_id": f"doc{i}",
            "positive_changed": i % 2 == 0,
            "scores": [{"id": f"doc{i}", "ql": -1.5, "rc": 0.75}],
            "rrf": [1.0, 0.5],
        }
        rows.append((example, audit))
    return rows


def _queries(name: str) -> list[str]:
    ds = registry.get_task_dataset(name, split="train", shuffle=False, num_epochs=1)
    return [r["query_text"].decode() for r in ds.as_numpy_iterator()]


@pytest.mark.parametrize("suffix", ["jsonl", "tfrecord"])
def test_slices_hold_their_task_types(tmp_path, suffix: str) -> None:
    rows = _rows()
    half = len(rows) // 2
    for shard, part in enumerate((rows[:half], rows[half:])):
        path = str(tmp_path / f"rows.{suffix}-{shard:05d}-of-00002")
        written = write_examples([e for e, _ in part], path, extras=[a for _, a in part])
        assert written == len(part)
    names = fret_tasks.register_fret_tasks(
        str(tmp_path / f"rows.{suffix}-*"), name=f"fret_{suffix}"
    )
    assert names == [
        f"fret_{suffix}",
        f"fret_{suffix}_question_answering",
        f"fret_{suffix}_search_result",
        f"fret_{suffix}_fact_checking",
        f"fret_{suffix}_sentence_similarity",
    ]
    query = "task: Given a {t} query, find the passage | query: query {i}"
    assert _queries(f"fret_{suffix}") == [query.format(t=t, i=i) for i, t in enumerate(TYPES)]
    assert _queries(f"fret_{suffix}_fact_checking") == [
        query.format(t="fact checking", i=i) for i in (1, 5)
    ]
    assert _queries(f"fret_{suffix}_question_answering") == [
        query.format(t="question answering", i=i) for i in (0, 2)
    ]
    ds = registry.get_task_dataset(
        f"fret_{suffix}_sentence_similarity", split="train", shuffle=False, num_epochs=1
    )
    (row,) = list(ds.as_numpy_iterator())
    # Symmetric rows put the positive in the query format too.
    assert (
        row["positive_text"].decode()
        == "task: Given a sentence similarity query, find the passage | query: passage 3"
    )
    assert [n.decode() for n in row["negative_texts"]] == [
        "task: Given a sentence similarity query, find the passage | query: negative 3"
    ]
    task = seqio.get_mixture_or_task(f"fret_{suffix}_search_result")
    assert task.metadata["task_type"] == "search result"


def test_extra_fields_are_written_and_ignored_by_readers(tmp_path) -> None:
    (example, audit), *_ = _rows()
    jsonl = tmp_path / "one.jsonl"
    write_examples([example], str(jsonl), extras=[audit])
    row = json.loads(jsonl.read_text())
    assert row["task_type"] == "question answering" and row["scores"][0]["ql"] == -1.5
    tfrecord = tmp_path / "one.tfrecord"
    write_examples([example], str(tfrecord), extras=[audit])
    raw = next(iter(tf.data.TFRecordDataset(str(tfrecord)))).numpy()
    features = tf.train.Example.FromString(raw).features.feature
    assert features["task_type"].bytes_list.value == [b"question answering"]
    assert features["positive_changed"].int64_list.value == [1]
    assert features["rrf"].float_list.value == [1.0, 0.5]
    assert json.loads(features["scores"].bytes_list.value[0]) == audit["scores"]
    for path in (jsonl, tfrecord):
        got = list(
            sources.file_source(str(path)).get_dataset("train", shuffle=False).as_numpy_iterator()
        )
        assert [g["query"].decode() for g in got] == ["query 0"]


def test_clashing_extra_field_and_bad_task_type(tmp_path) -> None:
    (example, _), *_ = _rows()
    with pytest.raises(ValueError, match="clash"):
        write_examples([example], str(tmp_path / "x.jsonl"), extras=[{"query": "other"}])
    with pytest.raises(ValueError, match="empty task-name suffix"):
        fret_tasks.register_fret_tasks(str(tmp_path / "x.jsonl"), task_types=["???"])


def test_gin_configured_input_format_reaches_the_fret_rows(tmp_path) -> None:
    import gin

    import gecko_jax.train  # noqa: F401  (registers gecko_jax.InputFormat and the tasks)

    rows = _rows()[:2]
    path = str(tmp_path / "rows.jsonl")
    write_examples([e for e, _ in rows], path, extras=[a for _, a in rows])
    gin.clear_config()
    try:
        # The plain-text bindings bench/finetune_quality.py's plain_format ablation uses.
        gin.parse_config(
            [
                "gecko_jax.register_fret_tasks.input_format = @gecko_jax.InputFormat()",
                "gecko_jax.InputFormat.query_template = '{text}'",
                "gecko_jax.InputFormat.document_template = '{title} {text}'",
                "gecko_jax.InputFormat.missing_title = ''",
            ]
        )
        gin.get_configurable("gecko_jax.register_fret_tasks")(path, name="fret_plain_gin")
    finally:
        gin.clear_config()
    assert _queries("fret_plain_gin") == ["query 0", "query 1"]
    ds = registry.get_task_dataset("fret_plain_gin", split="train", shuffle=False, num_epochs=1)
    got = [
        (r["positive_text"].decode(), r["negative_texts"][0].decode())
        for r in ds.as_numpy_iterator()
    ]
    assert got == [("title 0 passage 0", " negative 0"), ("title 1 passage 1", " negative 1")]
