"""Academic sets: NQ and NLI conversions (hand-built and TFDS-mocked), local HotpotQA,
FEVER and MedMCQA."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from gecko_jax.data import academic, examples
from gecko_jax.data.examples import UnifiedExample


def _decode(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [v.decode() for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _rows(ds: tf.data.Dataset) -> list[dict]:
    return [{k: _decode(v) for k, v in row.items()} for row in ds.as_numpy_iterator()]


def _apply(academic_set: academic.AcademicSet, split: str = "train") -> tf.data.Dataset:
    ds = academic_set.source.get_dataset(split, shuffle=False)
    for preprocessor in academic_set.preprocessors:
        ds = preprocessor(ds)
    return ds


def _check_signature(ds: tf.data.Dataset) -> None:
    assert set(ds.element_spec) == set(examples.OUTPUT_SIGNATURE)
    for name, spec in examples.OUTPUT_SIGNATURE.items():
        assert ds.element_spec[name].dtype == spec.dtype, name
        assert ds.element_spec[name].shape.as_list() == spec.shape.as_list(), name


# ------------------------------------------------------------------ Natural Questions

_NQ_SIGNATURE = {
    "question": {"text": tf.TensorSpec([], tf.string)},
    "document": {
        "title": tf.TensorSpec([], tf.string),
        "tokens": {
            "token": tf.TensorSpec([None], tf.string),
            "is_html": tf.TensorSpec([None], tf.bool),
        },
    },
    "annotations": {
        "long_answer": {
            "start_token": tf.TensorSpec([None], tf.int64),
            "end_token": tf.TensorSpec([None], tf.int64),
        }
    },
}
_TOKENS = ["<P>", "Paris", "is", "the", "capital", ".", "</P>", "<P>", "Other", "</P>"]
_HTML = [True, False, False, False, False, False, True, True, False, True]


def _nq(question: str, title: str, starts: list[int], ends: list[int]) -> dict:
    return {
        "question": {"text": question},
        "document": {"title": title, "tokens": {"token": _TOKENS, "is_html": _HTML}},
        "annotations": {
            "long_answer": {
                "start_token": np.array(starts, np.int64),
                "end_token": np.array(ends, np.int64),
            }
        },
    }


def test_nq_to_unified_exact_rows() -> None:
    records = [
        _nq("capital of france", "France", [-1, 0], [-1, 7]),  # 2nd annotator found it
        _nq("no answer here", "France", [-1], [-1]),
        _nq("no annotations", "France", [], []),
        _nq("other paragraph", "Doc", [7], [10]),
    ]
    ds = tf.data.Dataset.from_generator(lambda: iter(records), output_signature=_NQ_SIGNATURE)
    out = academic.nq_to_unified(ds)
    _check_signature(out)
    assert _rows(out) == [
        {
            "task": "question answering",
            "query": "capital of france",
            "positive": "Paris is the capital .",
            "positive_title": "France",
            "negatives": [],
            "negative_titles": [],
            "symmetric": False,
            "source": "natural_questions",
        },
        {
            "task": "question answering",
            "query": "other paragraph",
            "positive": "Other",
            "positive_title": "Doc",
            "negatives": [],
            "negative_titles": [],
            "symmetric": False,
            "source": "natural_questions",
        },
    ]


def _nq_reference(record: dict) -> tuple[str, str, str] | None:
    """The expected (query, passage, title) of one raw NQ record, in plain Python."""
    tokens = [t.decode() for t in record["document"]["tokens"]["token"]]
    html = list(record["document"]["tokens"]["is_html"])
    tokens = tokens[: len(html)]  # the mock draws each sequence's length independently
    la = record["annotations"]["long_answer"]
    for start, end in zip(la["start_token"], la["end_token"]):
        if start >= 0 and end > start:
            start, end = min(start, len(tokens)), min(end, len(tokens))
            passage = " ".join(t for t, h in zip(tokens[start:end], html[start:end]) if not h)
            question = record["question"]["text"].decode()
            if passage.strip() and question.strip():
                return question, passage, record["document"]["title"].decode()
            return None
    return None


def test_nq_from_mocked_tfds() -> None:
    nq = academic.natural_questions()
    assert nq.metadata["origin"] == "tfds:natural_questions/default:0.1.0"
    with tfds.testing.mock_data(num_examples=12, max_value=30):
        raw = list(nq.source.get_dataset("train", shuffle=False).as_numpy_iterator())
        out = _apply(nq)
        _check_signature(out)
        got = [(r["query"], r["positive"], r["positive_title"]) for r in _rows(out)]
    expected = [e for e in map(_nq_reference, raw) if e is not None]
    assert len(raw) == 12 and 0 < len(expected) < 12  # some mock records lack an answer
    assert got == expected


# ------------------------------------------------------------------ NLI

_NLI = [
    ("A man plays a guitar.", "A man makes music.", 0),
    ("A man plays a guitar.", "The man is famous.", 1),
    ("Two dogs run.", "Animals move.", 0),  # no contradiction: dropped
    ("A man plays a guitar.", "A man sleeps.", 2),
    ("A child reads.", "A child swims.", 2),
    ("A man plays a guitar.", "Someone plays an instrument.", 0),
    ("A child reads.", "A kid reads a book.", 0),
    ("A child reads.", "Nobody reads.", 2),
    ("A child reads.", "No gold label.", -1),
    ("A woman cooks.", "A person cooks.", 0),
    ("A woman cooks.", "A woman sleeps.", 2),
    ("A woman cooks.", "Food is made.", 0),
    ("A woman cooks.", "Nobody cooks.", 2),
    ("Only a contradiction.", "Not so.", 2),
]
_NLI_EXPECTED = [
    ("A man plays a guitar.", "A man makes music.", "A man sleeps."),
    ("A man plays a guitar.", "Someone plays an instrument.", "A man sleeps."),
    ("A child reads.", "A kid reads a book.", "A child swims."),
    ("A woman cooks.", "A person cooks.", "A woman sleeps."),
    ("A woman cooks.", "Food is made.", "Nobody cooks."),
]


def _nli_dataset() -> tf.data.Dataset:
    premises, hypotheses, labels = zip(*_NLI)
    return tf.data.Dataset.from_tensor_slices(
        {
            "premise": list(premises),
            "hypothesis": list(hypotheses),
            "label": np.array(labels, np.int64),
        }
    )


def _triples(ds: tf.data.Dataset) -> list[tuple[str, str, str]]:
    rows = _rows(ds)
    for r in rows:
        assert r["symmetric"] is True and r["negative_titles"] == [""] and r["positive_title"] == ""
    return [(r["query"], r["positive"], *r["negatives"]) for r in rows]


def test_nli_to_unified_groups_by_premise() -> None:
    out = academic.nli_to_unified(_nli_dataset(), source="toy", chunk_size=4)
    _check_signature(out)
    assert _triples(out) == _NLI_EXPECTED
    first = _rows(out)[0]
    assert (first["task"], first["source"]) == ("sentence similarity", "toy")


def _fake_nli_as_dataset(
    self, split, decoders=None, read_config=None, shuffle_files=False, **kwargs
):
    del self, split, decoders, read_config, shuffle_files, kwargs
    return _nli_dataset()


@pytest.mark.parametrize(
    "make, name, split",
    [
        (academic.snli, "snli", "train"),
        (academic.mnli, "mnli", "validation"),
    ],
)
def test_nli_sets_from_mocked_tfds(make, name, split) -> None:
    nli = make()
    assert nli.name == name and "contradiction" in nli.metadata["paper"]
    with tfds.testing.mock_data(as_dataset_fn=_fake_nli_as_dataset):
        out = _apply(nli, split)
        _check_signature(out)
        assert _triples(out) == _NLI_EXPECTED
        assert {r["source"] for r in _rows(out)} == {name}


def test_nli_with_random_mock_records_is_well_formed() -> None:
    # Random premises never repeat, so no premise has both labels: no rows, no error.
    with tfds.testing.mock_data(num_examples=20):
        assert _rows(_apply(academic.snli())) == []


# ------------------------------------------------------------------ HotpotQA

_HOTPOT_GOOD = {
    "_id": "a1",
    "question": "Which city is the capital of the country of the Eiffel Tower?",
    "answer": "Paris",
    "type": "bridge",
    "level": "easy",
    "context": [
        ["Eiffel Tower", ["The Eiffel Tower is in Paris,", " France."]],
        ["Louvre", ["The Louvre is a museum."]],
        ["France", ["France's capital is Paris."]],
        ["Seine", ["The Seine is a river."]],
    ],
    "supporting_facts": [["Eiffel Tower", 0], ["France", 0], ["Eiffel Tower", 1]],
}
_HOTPOT_BAD = {**_HOTPOT_GOOD, "_id": "a2", "supporting_facts": [["Berlin", 0]]}


def _expected_hotpot(num_negatives: int) -> list[UnifiedExample]:
    negs = (("The Louvre is a museum.", "Louvre"), ("The Seine is a river.", "Seine"))[
        :num_negatives
    ]
    return [
        UnifiedExample(
            task="question answering",
            query=_HOTPOT_GOOD["question"],
            positive=text,
            positive_title=title,
            negatives=tuple(n for n, _ in negs),
            negative_titles=tuple(t for _, t in negs),
            source="hotpotqa",
        )
        for text, title in (
            ("The Eiffel Tower is in Paris, France.", "Eiffel Tower"),
            ("France's capital is Paris.", "France"),
        )
    ]


def test_read_hotpotqa_json_array(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hotpot_train_v1.1.json"
    path.write_text(json.dumps([_HOTPOT_GOOD, _HOTPOT_BAD]))
    with caplog.at_level(logging.WARNING):
        rows = academic.read_hotpotqa(str(path), max_bad_fraction=0.5)
    assert rows == _expected_hotpot(1)
    assert f"{path}[1]" in caplog.text and "'Berlin' is not in 'context'" in caplog.text
    with pytest.raises(examples.BadInputError):
        academic.read_hotpotqa(str(path))


def test_read_hotpotqa_jsonl_two_negatives(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hotpot.jsonl"
    path.write_text(json.dumps(_HOTPOT_GOOD) + "\n{not json\n")
    with caplog.at_level(logging.WARNING):
        rows = academic.read_hotpotqa(str(path), num_negatives=2, max_bad_fraction=0.5)
    assert rows == _expected_hotpot(2)
    assert f"{path}:2" in caplog.text and "invalid JSON" in caplog.text
    with pytest.raises(FileNotFoundError, match="missing.json"):
        academic.read_hotpotqa(str(tmp_path / "missing.json"))


# ------------------------------------------------------------------ FEVER

_CLAIMS = [
    {
        "id": 1,
        "verifiable": "VERIFIABLE",
        "label": "SUPPORTS",
        "claim": "Nikolaj worked with Fox.",
        "evidence": [
            [[100, 200, "Nikolaj_Coster-Waldau", 7]],
            [[101, 201, "Fox_Broadcasting_Company", 0]],
            [[102, 202, "Nikolaj_Coster-Waldau", 7]],
        ],
    },
    {
        "id": 2,
        "verifiable": "NOT VERIFIABLE",
        "label": "NOT ENOUGH INFO",
        "claim": "Unknown.",
        "evidence": [[[300, None, None, None]]],
    },
    {
        "id": 3,
        "verifiable": "VERIFIABLE",
        "label": "REFUTES",
        "claim": "Paris is in Germany.",
        "evidence": [
            [[400, 500, "Paris_-LRB-city-RRB-", 0], [400, 501, "Paris_-LRB-city-RRB-", 2]]
        ],
    },
    {
        "id": 4,
        "verifiable": "VERIFIABLE",
        "label": "SUPPORTS",
        "claim": "Missing page.",
        "evidence": [[[1, 2, "Nowhere", 0]]],
    },
]
_PAGES = [
    {
        "id": "Nikolaj_Coster-Waldau",
        "text": "Nikolaj Coster-Waldau is a Danish actor .",
        "lines": "0\tNikolaj Coster-Waldau is a Danish actor .\tDanish\n"
        "7\tHe appeared on Fox .\tFox",
    },
    {
        "id": "Fox_Broadcasting_Company",
        "text": "Fox is a television network .",
        "lines": "0\tFox is a television network .\n1\t",
    },
    {
        "id": "Paris_-LRB-city-RRB-",
        "text": "Paris is a city . It has a river . It is in France .",
        "lines": "0\tParis is a city .\n1\tIt has a river .\n2\tIt is in France .",
    },
    {"id": "Unrelated", "text": "Not needed .", "lines": "0\tNot needed ."},
]


def _write_fever(tmp_path) -> tuple[str, str]:
    claims = tmp_path / "train.jsonl"
    claims.write_text("".join(json.dumps(c) + "\n" for c in _CLAIMS))
    (tmp_path / "wiki-pages").mkdir()
    (tmp_path / "wiki-pages" / "wiki-001.jsonl").write_text(
        "".join(json.dumps(p) + "\n" for p in _PAGES[:2])
    )
    (tmp_path / "wiki-pages" / "wiki-002.jsonl").write_text(
        "".join(json.dumps(p) + "\n" for p in _PAGES[2:])
    )
    return str(claims), str(tmp_path / "wiki-pages" / "wiki-*.jsonl")


def test_read_fever_pages(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    claims, pages = _write_fever(tmp_path)
    with caplog.at_level(logging.WARNING):
        rows = academic.read_fever(claims, pages, max_bad_fraction=0.3)
    assert [(r.query, r.positive, r.positive_title) for r in rows] == [
        (
            "Nikolaj worked with Fox.",
            "Nikolaj Coster-Waldau is a Danish actor .",
            "Nikolaj Coster-Waldau",
        ),
        ("Nikolaj worked with Fox.", "Fox is a television network .", "Fox Broadcasting Company"),
        (
            "Paris is in Germany.",
            "Paris is a city . It has a river . It is in France .",
            "Paris (city)",
        ),
    ]
    assert {(r.task, r.source, r.symmetric) for r in rows} == {("fact checking", "fever", False)}
    assert f"{claims}:4" in caplog.text and "'Nowhere'" in caplog.text


def test_read_fever_sentences_and_errors(tmp_path) -> None:
    claims, pages = _write_fever(tmp_path)
    rows = academic.read_fever(claims, pages, positive_unit="sentence", max_bad_fraction=0.3)
    assert [r.positive for r in rows] == [
        "He appeared on Fox .",
        "Fox is a television network .",
        "Paris is a city . It is in France .",
    ]
    with pytest.raises(examples.BadInputError):
        academic.read_fever(claims, pages)
    with pytest.raises(FileNotFoundError, match="no FEVER wiki-pages files match"):
        academic.read_fever(claims, str(tmp_path / "none-*.jsonl"), max_bad_fraction=0.3)
    assert academic.fever_title("A_-LSB-b-RSB-_-COLON-_c") == "A [b] : c"


# ------------------------------------------------------------------ MedMCQA

_MED = [
    {
        "id": "a",
        "question": "Which vitamin deficiency causes scurvy?",
        "opa": "Vitamin A",
        "opb": "Vitamin C",
        "opc": "Vitamin D",
        "opd": "Vitamin K",
        "cop": 2,
        "exp": "Scurvy is caused by vitamin C deficiency.",
        "subject_name": "Medicine",
    },
    {
        "id": "b",
        "question": "No explanation?",
        "opa": "1",
        "opb": "2",
        "opc": "3",
        "opd": "4",
        "cop": 1,
        "exp": None,
    },
    {
        "id": "c",
        "question": "Empty explanation?",
        "opa": "1",
        "opb": "2",
        "opc": "3",
        "opd": "4",
        "cop": 1,
        "exp": "  ",
    },
]


@pytest.mark.parametrize(
    "style, query",
    [
        ("question", "Which vitamin deficiency causes scurvy?"),
        ("question_and_answer", "Which vitamin deficiency causes scurvy? Vitamin C"),
        (
            "question_and_options",
            "Which vitamin deficiency causes scurvy?\n"
            "A. Vitamin A\nB. Vitamin C\nC. Vitamin D\nD. Vitamin K",
        ),
    ],
)
def test_read_medmcqa(tmp_path, style: str, query: str) -> None:
    path = tmp_path / "train.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in _MED))
    rows = academic.read_medmcqa(str(path), query_style=style)
    assert rows == [
        UnifiedExample(
            task="question answering",
            query=query,
            positive="Scurvy is caused by vitamin C deficiency.",
            source="medmcqa",
        )
    ]


def test_medmcqa_bad_rows_and_local_source(tmp_path) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps(_MED[0]) + "\n" + json.dumps({"id": "x", "exp": "e"}) + "\n")
    with pytest.raises(examples.BadInputError, match="missing field 'question'"):
        academic.read_medmcqa(str(path))
    medmcqa = academic.medmcqa({"train": str(path)})
    assert medmcqa.preprocessors == () and medmcqa.metadata["files"] == {"train": str(path)}
    with pytest.raises(examples.BadInputError):
        medmcqa.source.get_dataset("train")
    path.write_text(json.dumps(_MED[0]) + "\n")
    rows = _rows(academic.medmcqa(str(path)).source.get_dataset("train"))
    assert [(r["query"], r["positive"]) for r in rows] == [
        ("Which vitamin deficiency causes scurvy?", "Scurvy is caused by vitamin C deficiency.")
    ]
