"""The Vertex task-type table and its override file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gecko_jax.serve.service import truncate_dims
from gecko_jax.serve.vertex import (
    DEFAULT_TASK_TYPES,
    PredictRequest,
    TaskMapping,
    load_task_types,
    request_rows,
)

VERTEX_TASK_TYPES = {
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
}


def test_every_vertex_task_type_has_a_mapping() -> None:
    assert set(DEFAULT_TASK_TYPES) == VERTEX_TASK_TYPES
    assert DEFAULT_TASK_TYPES["RETRIEVAL_DOCUMENT"].kind == "document"
    assert {m.kind for n, m in DEFAULT_TASK_TYPES.items() if n != "RETRIEVAL_DOCUMENT"} == {"query"}


def test_a_file_overrides_and_extends_the_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "tasks.json"
    path.write_text(
        json.dumps(
            {
                "clustering": {"task": "clustering", "kind": "query"},
                "PLAIN_DOCUMENT": {"task": None, "kind": "document"},
            }
        )
    )
    table = load_task_types(str(path))
    assert table["CLUSTERING"] == TaskMapping("clustering", "query")
    assert table["PLAIN_DOCUMENT"] == TaskMapping(None, "document")
    assert table["RETRIEVAL_QUERY"] == DEFAULT_TASK_TYPES["RETRIEVAL_QUERY"]

    request = PredictRequest.model_validate(
        {
            "instances": [
                {"content": "a", "task_type": "plain_document", "title": "T"},
                {"content": "b"},
            ]
        }
    )
    rows = request_rows(request, table)
    assert rows.tasks == [None, "search result"] and rows.kinds == ["document", "query"]
    assert rows.titles == ["T", None]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{", "cannot read the task-type table"),
        ("[1]", "expected a JSON object"),
        ('{"X": {"task": 3}}', "X.task must be a string or null"),
        ('{"X": {"task": "t", "side": "query"}}', "X: expected"),
    ],
)
def test_a_bad_table_names_the_file_and_entry(tmp_path, content: str, words: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "tasks.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=str(path)) as error:
        load_task_types(str(path))
    assert words in str(error.value)


def test_truncate_dims_renormalises_a_prefix() -> None:
    rows = np.array([[3.0, 4.0, 12.0], [1.0, 0.0, 0.0]], np.float32) / np.array([[13.0], [1.0]])
    out = truncate_dims(rows.astype(np.float32), 2)
    np.testing.assert_allclose(out, [[0.6, 0.8], [1.0, 0.0]], rtol=1e-6)
    assert truncate_dims(rows, None) is rows
