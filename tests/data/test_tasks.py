"""Registered tasks, read through seqio: formatted query/positive/negative texts."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from gecko_jax.data import academic, eval_data, registry, tasks


def _texts(
    name: str, split: str = "train", limit: int | None = None
) -> list[tuple[str, str, list[str]]]:
    ds = registry.get_task_dataset(name, split=split, shuffle=False, num_epochs=1)
    if limit is not None:
        ds = ds.take(limit)
    return [
        (
            r["query_text"].decode(),
            r["positive_text"].decode(),
            [n.decode() for n in r["negative_texts"]],
        )
        for r in ds.as_numpy_iterator()
    ]


@pytest.fixture(scope="module")
def default_tasks(eval_data_dir: str) -> list[str]:
    return tasks.register_default_tasks(eval_data_dir)


def test_tfds_tasks_are_registered_at_import() -> None:
    for name in ("nq", "snli", "mnli"):
        task = seqio.get_mixture_or_task(name)
        assert isinstance(task, registry.UnifiedTask)
        assert task.metadata["origin"].startswith("tfds:")
    assert seqio.get_mixture_or_task("nq").metadata["task"] == "question answering"


def test_nq_task_through_seqio() -> None:
    with tfds.testing.mock_data(num_examples=12, max_value=30):
        nq = academic.natural_questions()
        unified = nq.preprocessors[0](nq.source.get_dataset("train", shuffle=False))
        expected = [
            (
                f"task: question answering | query: {r['query'].decode()}",
                f"title: {r['positive_title'].decode()} | text: {r['positive'].decode()}",
                [],
            )
            for r in unified.as_numpy_iterator()
        ]
        got = _texts("nq")
    assert expected and got == expected


def _fake_nli(self, split, decoders=None, read_config=None, shuffle_files=False, **kwargs):
    del self, split, decoders, read_config, shuffle_files, kwargs
    return tf.data.Dataset.from_tensor_slices(
        {
            "premise": ["A man plays a guitar.", "A man plays a guitar.", "A man plays a guitar."],
            "hypothesis": ["A man makes music.", "A man sleeps.", "The man is famous."],
            "label": np.array([0, 2, 1], np.int64),
        }
    )


@pytest.mark.parametrize("name", ["snli", "mnli"])
def test_nli_tasks_through_seqio(name: str) -> None:
    with tfds.testing.mock_data(as_dataset_fn=_fake_nli):
        got = _texts(name)
    assert got == [
        (
            "task: sentence similarity | query: A man plays a guitar.",
            "task: sentence similarity | query: A man makes music.",
            ["task: sentence similarity | query: A man sleeps."],
        )
    ]


def test_default_task_names(default_tasks: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_tasks[:7] == [
        "nq",
        "snli",
        "mnli",
        "stsb_train",
        "banking77_train",
        "amazon_counterfactual_train",
        "scifact_train",
    ]
    for name in default_tasks:
        metadata = seqio.get_mixture_or_task(name).metadata
        assert (
            metadata["task_type"] and metadata["paper"] and metadata["origin"] and metadata["task"]
        )
    assert (
        seqio.get_mixture_or_task("banking77_train")
        .metadata["origin"]
        .endswith("banking77/train.csv")
    )
    monkeypatch.setenv(eval_data.EVAL_DATA_ENV, "/somewhere")
    assert tasks.eval_data_dir() == "/somewhere" and tasks.eval_data_dir("/given") == "/given"
    monkeypatch.delenv(eval_data.EVAL_DATA_ENV)
    with pytest.raises(FileNotFoundError, match="GECKO_EVAL_DATA"):
        tasks.eval_data_dir()


def test_stsb_train_task(default_tasks: list[str]) -> None:
    rows = _texts("stsb_train")
    assert len(rows) == 2 * 1406
    assert rows[0] == (
        "task: sentence similarity | query: A plane is taking off.",
        "task: sentence similarity | query: An air plane is taking off.",
        [],
    )
    assert len(_texts("stsb_train", split="validation")) == 2 * 264


def test_banking77_train_task(default_tasks: list[str]) -> None:
    rows = _texts("banking77_train")
    assert len(rows) == 10003
    query, positive, negatives = rows[0]
    assert query == "task: classification | query: I am still waiting on my card? [id 0]"
    assert positive.startswith("task: classification | query: ") and positive.endswith(" [id 0]")
    assert len(negatives) == 1 and negatives[0].endswith(" [id 0]")


def test_amazon_counterfactual_train_task(default_tasks: list[str]) -> None:
    rows = _texts("amazon_counterfactual_train", limit=2)
    assert rows[0][0] == (
        "task: classification | query: "
        "In person it looks as though it would have cost a lot more. [id 0]"
    )


def test_scifact_train_task(default_tasks: list[str]) -> None:
    rows = _texts("scifact_train")
    assert len(rows) == 919
    query, positive, negatives = rows[0]
    assert (
        query
        == "task: fact checking | query: 0-dimensional biomaterials lack inductive properties."
    )
    assert positive.startswith(
        "title: New opportunities: the use of nanotechnologies to manipulate and track stem "
        "cells. | text: Nanotechnologies are emerging platforms"
    )
    assert negatives == []


def test_register_pair_corpus(tmp_path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"query": "who wrote it", "positive": "She did.", "positive_title": "Book"},
        {"query": "what is x", "positive": "x is y", "negative": "z", "task": "search result"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = tasks.register_pair_corpus("test_pairs_corpus", str(path), task="question answering")
    assert task.metadata["task_type"] == "pairs"
    assert _texts("test_pairs_corpus") == [
        ("task: question answering | query: who wrote it", "title: Book | text: She did.", []),
        (
            "task: search result | query: what is x",
            "title: none | text: x is y",
            ["title: none | text: z"],
        ),
    ]
    seqio.TaskRegistry.remove("test_pairs_corpus")


def test_register_classification_task(tmp_path) -> None:
    path = tmp_path / "intents.csv"
    path.write_text("utterance,intent\nhi there,greet\nbye now,leave\nhello,greet\n")
    tasks.register_classification_task(
        "test_intents",
        str(path),
        text_field="utterance",
        label_field="intent",
        task="intent of the user",
        singleton_labels="skip",
    )
    q = "task: intent of the user | query: "
    assert _texts("test_intents") == [
        (q + "hi there [id 0]", q + "hello [id 0]", [q + "bye now [id 0]"]),
        (q + "hello [id 1]", q + "hi there [id 1]", [q + "bye now [id 1]"]),
    ]
    seqio.TaskRegistry.remove("test_intents")


def test_registration_reads_nothing(tmp_path) -> None:
    missing = str(tmp_path / "no_beir")
    tasks.register_beir_task("test_missing_beir", missing)
    with pytest.raises(FileNotFoundError, match=os.path.join("no_beir", "qrels", "train.tsv")):
        _texts("test_missing_beir")
    seqio.TaskRegistry.remove("test_missing_beir")


def test_local_academic_tasks(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    hotpot = tmp_path / "hotpot.json"
    hotpot.write_text(
        json.dumps(
            [
                {
                    "question": "Where is the tower?",
                    "context": [["Tower", ["It is in Paris."]], ["Other", ["Unrelated text."]]],
                    "supporting_facts": [["Tower", 0]],
                }
            ]
        )
    )
    med = tmp_path / "medmcqa.json"
    med.write_text(
        json.dumps(
            {
                "question": "Cause of scurvy?",
                "opa": "a",
                "opb": "b",
                "opc": "c",
                "opd": "d",
                "cop": 2,
                "exp": "Vitamin C deficiency.",
            }
        )
        + "\n"
    )
    monkeypatch.delenv(tasks.FEVER_CLAIMS_ENV, raising=False)
    monkeypatch.delenv(tasks.FEVER_WIKI_ENV, raising=False)
    monkeypatch.setenv(tasks.MEDMCQA_ENV, str(med))
    names = tasks.register_local_academic_tasks(hotpotqa_path=str(hotpot))
    assert names == ["hotpotqa", "medmcqa"]
    assert _texts("hotpotqa") == [
        (
            "task: question answering | query: Where is the tower?",
            "title: Tower | text: It is in Paris.",
            ["title: Other | text: Unrelated text."],
        )
    ]
    assert _texts("medmcqa") == [
        (
            "task: question answering | query: Cause of scurvy?",
            "title: none | text: Vitamin C deficiency.",
            [],
        )
    ]
    with pytest.raises(ValueError, match="fever needs both"):
        tasks.register_local_academic_tasks(fever_claims_path=str(tmp_path / "claims.jsonl"))
    for name in names:
        seqio.TaskRegistry.remove(name)
