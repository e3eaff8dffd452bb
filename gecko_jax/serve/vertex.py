"""The Vertex AI text-embeddings format: request schema, task-type table, response.

Request: ``{"instances": [{"content", "task_type", "title"}], "parameters":
{"autoTruncate", "outputDimensionality"}}``; response: ``{"predictions": [{"embeddings":
{"values", "statistics": {"token_count", "truncated"}}}]}``. Each Vertex task type maps
to a Gecko task string and a side (query or document); a JSON file can override the table.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import pydantic

from gecko_jax.serve.errors import ServiceError
from gecko_jax.serve.service import Embedded

QUERY = "query"
DOCUMENT = "document"
# Vertex's default when an instance names no task type.
DEFAULT_TASK_TYPE = "RETRIEVAL_QUERY"


@dataclasses.dataclass(frozen=True)
class TaskMapping:
    """How one Vertex task type is embedded.

    Attributes:
      task: the Gecko task string (``task: {task} | query: ...``), or None for the text
        unchanged (a model trained without task descriptions).
      kind: ``"query"`` or ``"document"`` (``title: ... | text: ...``).
    """

    task: str | None
    kind: str = QUERY


# Gecko's task strings (paper, Table 9): symmetric tasks embed both sides as queries.
DEFAULT_TASK_TYPES: dict[str, TaskMapping] = {
    "RETRIEVAL_QUERY": TaskMapping("search result", QUERY),
    "RETRIEVAL_DOCUMENT": TaskMapping("search result", DOCUMENT),
    "SEMANTIC_SIMILARITY": TaskMapping("semantic similarity", QUERY),
    "CLASSIFICATION": TaskMapping("classification", QUERY),
    "CLUSTERING": TaskMapping("search result", QUERY),
    "QUESTION_ANSWERING": TaskMapping("question answering", QUERY),
    "FACT_VERIFICATION": TaskMapping("fact checking", QUERY),
    "CODE_RETRIEVAL_QUERY": TaskMapping("code retrieval", QUERY),
}


def load_task_types(path: str | None) -> dict[str, TaskMapping]:
    """The task-type table: the defaults, updated from a JSON file when ``path`` is given.

    The file maps task type names to ``{"task": str | null, "kind": "query" | "document"}``,
    e.g. ``{"CLUSTERING": {"task": "clustering", "kind": "query"}}``; names are
    case-insensitive and new ones may be added.

    Raises:
      ValueError: an unreadable file or a bad entry, naming the file and the entry.
    """
    table = dict(DEFAULT_TASK_TYPES)
    if path is None:
        return table
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the task-type table: {e}") from e
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: expected a JSON object of task types")
    for name, entry in entries.items():
        if not isinstance(entry, dict) or set(entry) - {"task", "kind"}:
            raise ValueError(
                f"{path}: {name}: expected {{'task': string or null, 'kind': 'query' or "
                f"'document'}}, got {entry!r}"
            )
        task, kind = entry.get("task"), entry.get("kind", QUERY)
        if task is not None and not isinstance(task, str):
            raise ValueError(f"{path}: {name}.task must be a string or null, got {task!r}")
        if kind not in (QUERY, DOCUMENT):
            raise ValueError(f"{path}: {name}.kind must be 'query' or 'document', got {kind!r}")
        table[name.upper()] = TaskMapping(task, kind)
    return table


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, populate_by_name=True)


class Instance(_Strict):
    """One text to embed."""

    content: str
    task_type: str | None = None
    title: str | None = None


class Parameters(_Strict):
    """Request-wide options."""

    auto_truncate: bool = pydantic.Field(True, alias="autoTruncate")
    output_dimensionality: int | None = pydantic.Field(None, alias="outputDimensionality")


class PredictRequest(_Strict):
    """A Vertex AI predict request for text embeddings."""

    instances: list[Instance]
    parameters: Parameters = Parameters()


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request body"


def validation_message(error: pydantic.ValidationError) -> str:
    """One line naming each bad field (at most three), or the JSON syntax error."""
    details = error.errors(include_url=False)
    if details and details[0]["type"] == "json_invalid":
        return f"malformed JSON: {details[0]['ctx'].get('error', details[0]['msg'])}"
    parts = [f"{_location(d['loc'])}: {d['msg']}" for d in details[:3]]
    more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
    return "; ".join(parts) + more


def parse_request(body: bytes) -> PredictRequest:
    """Parses and validates a request body.

    Raises:
      ServiceError: malformed JSON or a field of the wrong type, naming the field.
    """
    try:
        return PredictRequest.model_validate_json(body)
    except pydantic.ValidationError as e:
        raise ServiceError(400, validation_message(e)) from None


@dataclasses.dataclass(frozen=True)
class Rows:
    """A request's texts with their Gecko task, side and title."""

    texts: list[str]
    tasks: list[str | None]
    kinds: list[str]
    titles: list[str | None]


def request_rows(request: PredictRequest, task_types: Mapping[str, TaskMapping]) -> Rows:
    """Resolves each instance's task type through the table.

    Raises:
      ServiceError: an unknown task type, or a title on a query-side task, naming the
        instance.
    """
    rows = Rows([], [], [], [])
    for i, instance in enumerate(request.instances):
        name = (instance.task_type or DEFAULT_TASK_TYPE).upper()
        mapping = task_types.get(name)
        if mapping is None:
            raise ServiceError(
                400,
                f"instances[{i}].task_type {instance.task_type!r} is not one of "
                f"{', '.join(sorted(task_types))}",
            )
        if instance.title is not None and mapping.kind != DOCUMENT:
            raise ServiceError(
                400,
                f"instances[{i}].title is only used with a document task type "
                f"(e.g. RETRIEVAL_DOCUMENT), not {name}",
            )
        rows.texts.append(instance.content)
        rows.tasks.append(mapping.task)
        rows.kinds.append(mapping.kind)
        rows.titles.append(instance.title)
    return rows


def predict_response(result: Embedded) -> dict[str, Any]:
    """The response body (embedding rows stay numpy: orjson writes them directly)."""
    return {
        "predictions": [
            {
                "embeddings": {
                    "values": values,
                    "statistics": {"token_count": int(count), "truncated": bool(cut)},
                }
            }
            for values, count, cut in zip(result.embeddings, result.token_counts, result.truncated)
        ]
    }
