"""File sources: JSONL/TFRecord rows, patterns, sharding, bad rows, iterator checkpoints."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import seqio
import tensorflow as tf

from gecko_jax.data import examples as ex
from gecko_jax.data import sources
from gecko_jax.data.vocabularies import vocabulary_from_dir
from gecko_jax.rows import to_tf_example, write_examples

ROWS = [
    ex.UnifiedExample(
        "question answering",
        "who wrote {Faust} | part 1?",
        "Goethe wrote it.",
        positive_title="Faust",
        negatives=("Schiller", "Kant"),
        negative_titles=("Friedrich", ""),
        source="fret",
    ),
    ex.UnifiedExample(
        "fact checking", "Die Erde ist rund — ✓", "Ja, sie ist rund. 地球", source="fret"
    ),
    ex.UnifiedExample(
        "sentence similarity",
        "a man plays",
        "a person plays",
        symmetric=True,
        negatives=("a cat sleeps",),
    ),
]


def _decoded(example: dict) -> dict:
    def text(v):
        return v.decode("utf-8") if isinstance(v, bytes) else v

    return {
        k: ([text(x) for x in v] if isinstance(v, np.ndarray) else text(v))
        for k, v in example.items()
    }


def _read(source: seqio.DataSource, **kwargs) -> list[dict]:
    kwargs.setdefault("shuffle", False)
    return [_decoded(e) for e in source.get_dataset(**kwargs).as_numpy_iterator()]


def _expected(rows, source: str = "") -> list[dict]:
    out = []
    for row in rows:
        features = row.as_features()
        features[ex.SOURCE] = features[ex.SOURCE] or source
        out.append({k: (bool(v) if k == ex.SYMMETRIC else v) for k, v in features.items()})
    return out


def _numbered(n: int, prefix: str = "q") -> list[ex.UnifiedExample]:
    return [ex.UnifiedExample("search result", f"{prefix} {i}", f"passage {i}") for i in range(n)]


def _queries(examples: list[dict]) -> list[str]:
    return [e[ex.QUERY] for e in examples]


@pytest.mark.parametrize("suffix", ["jsonl", "tfrecord"])
def test_round_trip_with_element_spec_and_token_ids(tmp_path, minilm_dir, suffix) -> None:
    path = str(tmp_path / f"rows.{suffix}")
    assert write_examples(ROWS, path) == 3
    source = sources.file_source(path, source_name="mine")
    ds = source.get_dataset(shuffle=False)
    ragged = (ex.NEGATIVES, ex.NEGATIVE_TITLES)  # 1-D ragged lists, plain tensors in maps
    assert ds.element_spec == {
        name: tf.RaggedTensorSpec(spec.shape, spec.dtype, ragged_rank=0) if name in ragged else spec
        for name, spec in ex.OUTPUT_SIGNATURE.items()
    }
    for name, spec in ex.OUTPUT_SIGNATURE.items():  # Same dtypes and shapes.
        assert (ds.element_spec[name].dtype, ds.element_spec[name].shape) == (
            spec.dtype,
            spec.shape,
        )
    got = [_decoded(e) for e in ds.as_numpy_iterator()]
    assert got == _expected(ROWS, source="mine")
    # The strings survive byte-exact: their token ids are those of the Python strings.
    vocab = vocabulary_from_dir(minilm_dir)
    ids = vocab.tokenize([g[ex.QUERY] for g in got], 32)
    want = vocab.tokenize([r.query for r in ROWS], 32)
    for a, b in zip(ids, want):
        np.testing.assert_array_equal(a, b)
    assert ids[0].tolist()[:4] == [101, 2040, 2626, 1063]  # [CLS] who wrote {


def test_jsonl_field_variants_and_defaults(tmp_path) -> None:
    path = tmp_path / "v.jsonl"
    lines = [
        {"query": "q1", "positive": "p1", "negative": "n1"},
        {
            "query": "q2",
            "positive": "p2",
            "negatives": ["n2", "n3"],
            "task": "t2",
            "symmetric": False,
        },
        {"query": "q3", "positive": "p3", "positive_title": None, "source": "s3"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + "\n   \n", encoding="utf-8")
    got = _read(sources.file_source(str(path), default_task="dflt", symmetric=True))
    assert [g[ex.TASK] for g in got] == ["dflt", "t2", "dflt"]
    assert [g[ex.NEGATIVES] for g in got] == [["n1"], ["n2", "n3"], []]
    assert [g[ex.NEGATIVE_TITLES] for g in got] == [[""], ["", ""], []]
    assert [g[ex.SYMMETRIC] for g in got] == [True, False, True]
    assert [g[ex.SOURCE] for g in got] == [str(path), str(path), "s3"]


def _write_shards(tmp_path, n_files: int, rows_per_file: int, suffix: str = "jsonl") -> list[str]:
    paths = []
    for i in range(n_files):
        path = str(tmp_path / f"data.{suffix}-{i:05d}-of-{n_files:05d}")
        write_examples(_numbered(rows_per_file, prefix=f"f{i}"), path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("suffix", ["jsonl", "tfrecord"])
def test_sharded_patterns_read_every_file(tmp_path, suffix) -> None:
    paths = _write_shards(tmp_path, 3, 4, suffix)
    want = [f"f{i} {j}" for i in range(3) for j in range(4)]
    for pattern in (
        f"{tmp_path}/data.{suffix}-*-of-00003",
        f"{tmp_path}/data.{suffix}@3",
        ",".join(paths),
        paths,
    ):
        source = sources.file_source(pattern)
        assert source.list_shards("train") == paths
        assert sorted(_queries(_read(source))) == sorted(want)


def test_pattern_matching_nothing_is_an_error_naming_it(tmp_path) -> None:
    pattern = f"{tmp_path}/nothing-*.jsonl"
    source = sources.file_source(pattern)  # Registration works before the files exist.
    with pytest.raises(FileNotFoundError, match="nothing-"):
        source.get_dataset()
    (tmp_path / "one.jsonl").write_text('{"query": "q", "positive": "p"}\n')
    with pytest.raises(FileNotFoundError, match="nothing-"):
        sources.file_source([str(tmp_path / "one.jsonl"), pattern]).get_dataset()


@pytest.mark.parametrize("n_files, num_shards", [(4, 2), (1, 3), (2, 3)])
def test_shard_info_splits_are_disjoint_and_cover_all_rows(tmp_path, n_files, num_shards) -> None:
    _write_shards(tmp_path, n_files, 7)
    source = sources.file_source(f"{tmp_path}/data.jsonl-*")
    everything = _queries(_read(source))
    assert len(everything) == 7 * n_files
    parts = [
        _queries(_read(source, shard_info=seqio.ShardInfo(i, num_shards), shuffle=True, seed=3))
        for i in range(num_shards)
    ]
    assert all(parts)
    flat = [q for part in parts for q in part]
    assert len(flat) == len(set(flat)) and sorted(flat) == sorted(everything)


def test_shuffle_is_deterministic_by_seed(tmp_path) -> None:
    _write_shards(tmp_path, 8, 3)
    source = sources.file_source(f"{tmp_path}/data.jsonl-*")
    a, b = (_queries(_read(source, shuffle=True, seed=5)) for _ in range(2))
    c = _queries(_read(source, shuffle=True, seed=6))
    assert a == b and sorted(a) == sorted(c) and a != c


def test_num_input_examples(tmp_path) -> None:
    assert sources.file_source("x.jsonl").num_input_examples("train") is None
    source = sources.file_source(
        {"train": "a.jsonl", "validation": "b.jsonl"},
        num_input_examples={"train": 10, "validation": 2},
    )
    assert source.splits == ("train", "validation") and source.num_input_examples("validation") == 2


def _good_lines(n: int) -> list[bytes]:
    return [json.dumps({"query": f"q{i}", "positive": f"p{i}"}).encode() for i in range(n)]


BAD_JSONL = {
    "invalid JSON": b'{"query": "q", "positive": ',
    "invalid UTF-8": b'{"query": "caf\xc3 au lait", "positive": "p"}',
    "missing field 'positive'": b'{"query": "q"}',
    "field 'negatives' must be a string or a list of strings": (
        b'{"query": "q", "positive": "p", "negatives": [1]}'
    ),
    "empty query": b'{"query": "  ", "positive": "p"}',
    "field 'query' must be a string": b'{"query": 7, "positive": "p"}',
    "invalid unicode (lone surrogate)": b'{"query": "\\ud800", "positive": "p"}',
}


def test_bad_jsonl_rows_are_skipped_with_a_warning_naming_file_and_line(tmp_path, caplog) -> None:
    lines = _good_lines(300)
    bad_lines = {}
    for k, raw in enumerate(BAD_JSONL.values()):
        lines.insert(10 + 40 * k, raw)
    for number, raw in enumerate(lines, start=1):
        for reason, bad in BAD_JSONL.items():
            if raw == bad:
                bad_lines[reason] = number
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with caplog.at_level(logging.WARNING):
        got = _read(sources.file_source(str(path), max_bad_fraction=0.05))
    assert _queries(got) == [f"q{i}" for i in range(300)]
    messages = [r.getMessage() for r in caplog.records]
    for reason, number in bad_lines.items():
        assert any(f"{path}:{number}" in m and reason in m for m in messages), (reason, messages)


def test_too_many_bad_rows_fail_mid_stream_naming_file_line_and_fraction(tmp_path) -> None:
    lines = _good_lines(400)
    for k in range(0, 400, 20):  # 5% bad.
        lines[k] = b'{"query": ""}'
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines))
    ds = sources.file_source(str(path), max_bad_fraction=0.02).get_dataset(shuffle=False)
    with pytest.raises(
        tf.errors.OpError, match=rf"rows are bad \(more than 2\.00%\); last at {path}:\d+"
    ):
        list(ds.as_numpy_iterator())


def test_bad_fraction_is_checked_at_the_end_of_a_small_input(tmp_path) -> None:
    lines = _good_lines(9) + [b"not json"]
    path = tmp_path / "small.jsonl"
    path.write_bytes(b"\n".join(lines))
    ds = sources.file_source(str(path), max_bad_fraction=0.05).get_dataset(shuffle=False)
    with pytest.raises(
        tf.errors.OpError, match=rf"1 of 10 rows are bad.*last bad row at {path}:10"
    ):
        list(ds.as_numpy_iterator())
    # Within the limit it passes.
    assert len(_read(sources.file_source(str(path), max_bad_fraction=0.1))) == 9


def _bytes_feature(*values: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def test_bad_tfrecord_records_are_skipped_naming_file_and_record(tmp_path, caplog) -> None:
    good = [to_tf_example(e).SerializeToString() for e in _numbered(200)]
    missing = tf.train.Example(
        features=tf.train.Features(feature={"positive": _bytes_feature(b"p")})
    )
    wrong_type = tf.train.Example(
        features=tf.train.Features(
            feature={
                "query": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
                "positive": _bytes_feature(b"p"),
            }
        )
    )
    bad_utf8 = tf.train.Example(
        features=tf.train.Features(
            feature={"query": _bytes_feature(b"\xff\xfe"), "positive": _bytes_feature(b"p")}
        )
    )
    bad = {
        3: missing.SerializeToString(),
        50: wrong_type.SerializeToString(),
        100: bad_utf8.SerializeToString(),
        150: b"\x08garbage",
    }
    records = list(good)
    for index in sorted(bad):
        records.insert(index - 1, bad[index])
    path = str(tmp_path / "bad.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    with caplog.at_level(logging.WARNING):
        got = _read(sources.file_source(path, max_bad_fraction=0.05))
    assert _queries(got) == [f"q {i}" for i in range(200)]
    messages = " ".join(r.getMessage() for r in caplog.records)
    for index, reason in [
        (3, "missing field 'query'"),
        (50, "field 'query' must be a bytes feature"),
        (100, "invalid UTF-8 in field 'query'"),
        (150, "not a serialized tf.train.Example"),
    ]:
        assert f"{path}:{index}: {reason}" in messages, (index, messages)


@pytest.mark.parametrize("shuffle", [False, True])
def test_iterator_checkpoint_continues_with_exactly_the_next_examples(tmp_path, shuffle) -> None:
    _write_shards(tmp_path, 3, 1000)
    source = sources.file_source(f"{tmp_path}/data.jsonl-*")

    def dataset() -> tf.data.Dataset:
        return source.get_dataset(shuffle=shuffle, seed=7).map(lambda e: e[ex.QUERY])

    full = list(dataset().as_numpy_iterator())
    assert len(full) == 3000
    it = iter(dataset())
    head = [next(it).numpy() for _ in range(1500)]  # Past one parse batch of every file.
    prefix = tf.train.Checkpoint(iterator=it).write(os.path.join(tmp_path, "ckpt", "it"))
    [next(it) for _ in range(10)]  # Advancing after the save must not matter.
    fresh = iter(dataset())  # A new dataset object, as in a restarted job.
    tf.train.Checkpoint(iterator=fresh).read(prefix).assert_consumed()
    tail = [x.numpy() for x in fresh]
    assert head + tail == full
