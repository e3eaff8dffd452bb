"""register_unified_task: seqio tasks of formatted text, metadata, datasets, features."""

from __future__ import annotations

import numpy as np
import pytest
import seqio
import tensorflow as tf

from gecko_jax.data import examples as ex
from gecko_jax.data import preprocessors as prep
from gecko_jax.data import registry, sources
from gecko_jax.data.feature_converter import GeckoFeatureConverter
from gecko_jax.data.vocabularies import vocabulary_from_dir
from gecko_jax.formats import InputFormat
from gecko_jax.rows import write_examples

ROWS = [
    ex.UnifiedExample(
        "question answering",
        "who wrote Faust?",
        "Goethe.",
        positive_title="Faust",
        negatives=("Schiller",),
    ),
    ex.UnifiedExample(
        "sentence similarity",
        "a man plays",
        "a person plays",
        symmetric=True,
        negatives=("a cat | sleeps",),
    ),
    ex.UnifiedExample("search result", "{braces}", "body", source="web"),
]


@pytest.fixture()
def task_name(request):
    name = f"test_registry_{request.node.name}".replace("[", "_").replace("]", "").replace("-", "_")
    yield name
    seqio.TaskRegistry.remove(name)


def _texts(ds: tf.data.Dataset) -> list[tuple[str, str, list[str], str, str]]:
    return [
        (
            e[prep.QUERY_TEXT].decode(),
            e[prep.POSITIVE_TEXT].decode(),
            [n.decode() for n in e[prep.NEGATIVE_TEXTS]],
            e[ex.TASK].decode(),
            e[ex.SOURCE].decode(),
        )
        for e in ds.as_numpy_iterator()
    ]


def test_file_task_formats_texts_and_keeps_metadata(tmp_path, task_name) -> None:
    path = str(tmp_path / "rows.jsonl")
    write_examples(ROWS, path)
    task = registry.register_unified_task(
        task_name,
        sources.file_source(path, source_name="fret"),
        metadata={"type": "fret", "paper_section": "3.2"},
    )
    assert seqio.get_mixture_or_task(task_name) is task
    assert task.metadata["paper_section"] == "3.2" and task.input_format == InputFormat()
    with pytest.raises(TypeError):
        task.metadata["type"] = "changed"  # type: ignore[index]
    got = _texts(registry.get_task_dataset(task_name, shuffle=False, num_epochs=1))
    assert got == [
        (
            "task: question answering | query: who wrote Faust?",
            "title: Faust | text: Goethe.",
            ["title: none | text: Schiller"],
            "question answering",
            "fret",
        ),
        (
            "task: sentence similarity | query: a man plays",
            "task: sentence similarity | query: a person plays",
            ["task: sentence similarity | query: a cat | sleeps"],
            "sentence similarity",
            "fret",
        ),
        (
            "task: search result | query: {braces}",
            "title: none | text: body",
            [],
            "search result",
            "web",
        ),
    ]


def test_replace_and_duplicate_names(tmp_path, task_name) -> None:
    source = sources.file_source(str(tmp_path / "x.jsonl"))
    first = registry.register_unified_task(task_name, source)
    second = registry.register_unified_task(task_name, source, metadata={"v": 2})
    assert seqio.get_mixture_or_task(task_name) is second is not first
    with pytest.raises(ValueError, match="already registered"):
        registry.register_unified_task(task_name, source, replace=False)


def _qa_records(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices(
        {"question": ["q one", "q two"], "answer": ["a one", "a two"], "title": ["T1", ""]}
    )


def _to_unified(ds: tf.data.Dataset) -> tf.data.Dataset:
    def convert(r):
        return {
            ex.TASK: "question answering",
            ex.QUERY: r["question"],
            ex.POSITIVE: r["answer"],
            ex.POSITIVE_TITLE: r["title"],
            ex.NEGATIVES: tf.zeros([0], tf.string),
            ex.NEGATIVE_TITLES: tf.zeros([0], tf.string),
            ex.SYMMETRIC: False,
            ex.SOURCE: "qa",
        }

    return ds.map(convert)


def test_preprocessors_turn_raw_records_into_unified_examples(task_name, minilm_dir) -> None:
    fmt = InputFormat(document_template="passage: {text} ({title})", missing_title="-")
    registry.register_unified_task(
        task_name,
        seqio.FunctionDataSource(_qa_records, splits=["train"]),
        preprocessors=[_to_unified],
        input_format=fmt,
    )
    got = _texts(registry.get_task_dataset(task_name, shuffle=False, num_epochs=1))
    assert [(q, p) for q, p, *_ in got] == [
        ("task: question answering | query: q one", "passage: a one (T1)"),
        ("task: question answering | query: q two", "passage: a two (-)"),
    ]
    vocab = vocabulary_from_dir(minilm_dir)
    lengths = {"query": 16, "positive": 8, "negative": 8, "num_negatives": 1}
    features = list(
        GeckoFeatureConverter(vocab)(
            registry.get_task_dataset(task_name, shuffle=False, num_epochs=1),
            lengths,
            dataset_id=3,
        ).as_numpy_iterator()
    )
    want = vocab.tokenize(["passage: a two (-)"], 8)[0]
    np.testing.assert_array_equal(features[1]["positive_tokens"], np.pad(want, (0, 8 - len(want))))
    # [CLS] passage : a two ( - ) [SEP]
    assert want.tolist() == [101, 6019, 1024, 1037, 2048, 1006, 1011, 102]
    assert [int(f["dataset_id"]) for f in features] == [3, 3]
    np.testing.assert_array_equal(features[0]["negative_mask"], [False])


def test_incomplete_preprocessing_is_an_error_naming_the_task(task_name) -> None:
    def partial(ds):
        return ds.map(lambda r: {ex.QUERY: r["question"], ex.POSITIVE: r["answer"]})

    registry.register_unified_task(
        task_name, seqio.FunctionDataSource(_qa_records, splits=["train"]), preprocessors=[partial]
    )
    with pytest.raises(ValueError, match=f"task '{task_name}'.*missing unified feature 'task'"):
        registry.get_task_dataset(task_name, shuffle=False)


def test_sharded_shuffled_repeated_task(tmp_path, task_name) -> None:
    for i in range(2):
        write_examples(
            [ex.UnifiedExample("t", f"q{i}-{j}", "p") for j in range(5)],
            str(tmp_path / f"d.jsonl-{i:05d}-of-00002"),
        )
    registry.register_unified_task(task_name, sources.file_source(f"{tmp_path}/d.jsonl-*"))
    shards = [
        [
            q
            for q, *_ in _texts(
                registry.get_task_dataset(
                    task_name, seed=1, shard_info=seqio.ShardInfo(i, 3), num_epochs=1
                )
            )
        ]
        for i in range(3)
    ]
    flat = [q for s in shards for q in s]
    assert len(flat) == len(set(flat)) == 10
    a = [q for q, *_ in _texts(registry.get_task_dataset(task_name, seed=1).take(30))]
    b = [q for q, *_ in _texts(registry.get_task_dataset(task_name, seed=1).take(30))]
    assert a == b and set(a) == set(flat)  # Repeats forever by default.


def test_converted_pipeline_checkpoint_resumes_exactly(tmp_path, task_name, minilm_dir) -> None:
    for i in range(3):
        write_examples(
            [
                ex.UnifiedExample("t", f"q{i} {j}", f"p{i} {j}", negatives=(f"n{j}",) * (j % 2))
                for j in range(400)
            ],
            str(tmp_path / f"d.tfrecord-{i:05d}-of-00003"),
        )
    registry.register_unified_task(task_name, sources.file_source(f"{tmp_path}/d.tfrecord-*"))
    converter = GeckoFeatureConverter(vocabulary_from_dir(minilm_dir), tokenize_batch=64)
    lengths = {"query": 8, "positive": 8, "negative": 8, "num_negatives": 1}

    def dataset() -> tf.data.Dataset:
        ds = registry.get_task_dataset(task_name, seed=4, num_epochs=1)
        return converter(ds, lengths).map(lambda f: f["query_tokens"])

    full = [x.tolist() for x in dataset().as_numpy_iterator()]
    assert len(full) == 1200
    it = iter(dataset())
    head = [next(it).numpy().tolist() for _ in range(700)]
    prefix = tf.train.Checkpoint(iterator=it).write(str(tmp_path / "ckpt" / "it"))
    fresh = iter(dataset())
    tf.train.Checkpoint(iterator=fresh).read(prefix).assert_consumed()
    assert head + [x.numpy().tolist() for x in fresh] == full
