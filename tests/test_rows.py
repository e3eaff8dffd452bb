"""gecko_jax.rows: the unified and FRet rows, their JSONL and TFRecord forms."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tensorflow as tf

from gecko_jax import rows
from gecko_jax.rows import UnifiedExample

EXAMPLES = [
    UnifiedExample("", "q1", "p1"),
    UnifiedExample("qa", "q2 ☃", "p2", "T2", ("n1", "n2"), ("", "t"), True, "src"),
    UnifiedExample("qa", "q3", "p3", "", ("n3",), (), False, ""),
]


def _fret_row(positive_title: str = "", negative_title: str = "") -> rows.FretRow:
    example = UnifiedExample(
        "fact checking: is it true?",
        "q ☃",
        "pos",
        positive_title,
        ("neg",),
        (negative_title,),
        False,
        rows.FRET_SOURCE,
    )
    scores = (
        {"id": "p", "retrieval": 0.5, "ql": -1.25, "rc": None, "rank": 1},
        {"id": "n", "retrieval": 0.25, "ql": -3.0, "rc": None, "rank": 2},
    )
    return rows.FretRow(example, "fact checking", "s", "p", ("n",), scores, "llm", "enc")


def _tf_records(path: str) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(path)]


@pytest.mark.parametrize(
    "name, kind",
    [
        ("fret.jsonl", "jsonl"),
        ("gs://b/fret.jsonl-00000-of-00016", "jsonl"),
        ("d/fret.jsonl-*-of-00016", "jsonl"),
        ("x.json", "jsonl"),
        ("pairs.tfrecord", "tfrecord"),
        ("p.tfrecord-00003-of-00010", "tfrecord"),
        ("p.tfrecords*", "tfrecord"),
        ("x.jsonl@4", "jsonl"),
    ],
)
def test_infer_format(name: str, kind: str) -> None:
    assert rows.infer_format(name) == kind


def test_unknown_formats_are_errors() -> None:
    with pytest.raises(ValueError, match="rows.csv"):
        rows.infer_format("rows.csv")
    with pytest.raises(ValueError, match="file_format must be one of"):
        rows.check_format("csv")


def test_jsonl_rows_leave_out_empty_defaults(tmp_path) -> None:
    path = str(tmp_path / "r.jsonl")
    assert rows.write_examples(EXAMPLES, path, extras=[{}, {"score": 0.5}, {}]) == 3
    lines = (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        '{"query": "q1", "positive": "p1", "negatives": [], "symmetric": false}'
    )  # no task, source or titles: the reader's defaults apply
    assert json.loads(lines[1]) == {**EXAMPLES[1].as_features(), "score": 0.5}
    assert "☃" in lines[1]  # not escaped
    got = [rows.decode_row(line.encode(), "jsonl", "default", "file") for line in lines]
    assert got[0] == UnifiedExample("default", "q1", "p1", source="file")
    assert got[1:] == [
        EXAMPLES[1],
        UnifiedExample("qa", "q3", "p3", "", ("n3",), (), False, "file"),
    ]


def test_tfrecord_rows_round_trip_with_typed_extras(tmp_path) -> None:
    path = str(tmp_path / "r.tfrecord")
    extras = [{}, {"ids": ["a", "b"], "flag": True, "rrf": [1.0, 0.5], "audit": {"z": 1}}, {}]
    rows.write_examples(EXAMPLES, path, extras=extras)
    raw = _tf_records(path)
    features = tf.train.Example.FromString(raw[1]).features.feature
    assert features["ids"].bytes_list.value == [b"a", b"b"]
    assert features["flag"].int64_list.value == [1]
    assert features["rrf"].float_list.value == [1.0, 0.5]
    assert features["audit"].bytes_list.value == [b'{"z": 1}']
    assert [rows.decode_row(r, "tfrecord", "default", "file") for r in raw] == [
        UnifiedExample("default", "q1", "p1", source="file"),
        EXAMPLES[1],
        UnifiedExample("qa", "q3", "p3", "", ("n3",), (), False, "file"),
    ]


@pytest.mark.parametrize("file_format", rows.FILE_FORMATS)
def test_row_filter_keeps_one_task_type(tmp_path, file_format) -> None:
    path = str(tmp_path / f"r.{file_format}")
    types = [{"task_type": "qa"}, {"task_type": "fact checking"}, {}]
    rows.write_examples(EXAMPLES, path, extras=types)
    if file_format == rows.JSONL:
        raw = (tmp_path / "r.jsonl").read_bytes().splitlines()
    else:
        raw = _tf_records(path)
    keep = ("task_type", frozenset({"fact checking"}))
    got = [rows.decode_row(r, file_format, row_filter=keep) for r in raw]
    assert got == [None, EXAMPLES[1], None]


def test_bad_rows_say_why() -> None:
    with pytest.raises(rows.BadRowError, match="invalid JSON"):
        rows.decode_row(b'{"query": ', "jsonl")
    with pytest.raises(rows.BadRowError, match="invalid UTF-8"):
        rows.decode_row(b'{"query": "caf\xc3"}', "jsonl")
    with pytest.raises(rows.BadRowError, match="missing field 'positive'"):
        rows.decode_row(b'{"query": "q"}', "jsonl")
    with pytest.raises(rows.BadRowError, match="not a serialized tf.train.Example"):
        rows.decode_row(b"\xff\xff", "tfrecord")
    with pytest.raises(rows.BadRowError, match="empty query"):
        UnifiedExample("t", " ", "p")


def test_extra_fields_may_not_shadow_unified_ones(tmp_path) -> None:
    for suffix in rows.FILE_FORMATS:
        with pytest.raises(ValueError, match="clash"):
            rows.write_examples(EXAMPLES[:1], str(tmp_path / f"x.{suffix}"), extras=[{"query": ""}])


def test_fret_jsonl_row_keeps_empty_titles_after_the_unified_fields() -> None:
    line = json.dumps(_fret_row().as_json(), ensure_ascii=False)
    assert line == (
        '{"task": "fact checking: is it true?", "query": "q ☃", "positive": "pos", '
        '"negatives": ["neg"], "symmetric": false, "source": "fret", "positive_title": "", '
        '"negative_titles": [""], "task_type": "fact checking", "seed_id": "s", '
        '"positive_id": "p", "negative_ids": ["n"], "positive_changed": true, '
        '"scores": [{"id": "p", "retrieval": 0.5, "ql": -1.25, "rc": null, "rank": 1}, '
        '{"id": "n", "retrieval": 0.25, "ql": -3.0, "rc": null, "rank": 2}], '
        '"llm_model": "llm", "embedder": "enc"}'
    )
    titled = _fret_row("PT", "NT").as_json()
    assert list(titled)[3:6] == ["positive_title", "negatives", "negative_titles"]


@pytest.mark.parametrize("file_format", rows.FILE_FORMATS)
def test_fret_rows_are_read_as_unified_examples(tmp_path, file_format) -> None:
    row = _fret_row("PT")
    path = str(tmp_path / f"fret.{file_format}")
    assert rows.write_fret_rows([row, row], path, file_format) == 2
    if file_format == rows.JSONL:
        raw = (tmp_path / "fret.jsonl").read_bytes().splitlines()
        assert [rows.decode_row(r, "jsonl") for r in raw] == [row.example] * 2
        assert json.loads(raw[0])["scores"] == list(row.scores)
    else:
        raw = _tf_records(path)
        # Empty titles are left out of TFRecord rows; read back, they are filled again.
        got = [rows.decode_row(r, "tfrecord").as_features() for r in raw]
        assert got == [row.example.as_features()] * 2
        features = tf.train.Example.FromString(raw[0]).features.feature
        assert features["scores"].bytes_list.value == [json.dumps(list(row.scores)).encode()]
        assert features["positive_changed"].int64_list.value == [1]
        assert features["negative_ids"].bytes_list.value == [b"n"]


def test_import_does_not_load_tensorflow() -> None:
    code = "import sys, gecko_jax.rows; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
