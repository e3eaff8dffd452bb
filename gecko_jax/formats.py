"""Gecko's input formats: how a task, a query or a titled document become one string.

The encoder, evaluation and FRet format texts with these templates; the input pipeline
formats its training examples with the same ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

QUERY = "query"
DOCUMENT = "document"
KINDS = (QUERY, DOCUMENT)


@dataclasses.dataclass(frozen=True)
class InputFormat:
    """Templates for the two sides of a dual encoder (paper, section 3).

    Attributes:
      query_template: query side; fields ``{task}`` and ``{text}``.
      document_template: document side; fields ``{title}`` and ``{text}``.
      missing_title: written for ``{title}`` when a document has none.
    """

    query_template: str = "task: {task} | query: {text}"
    document_template: str = "title: {title} | text: {text}"
    missing_title: str = "none"

    def query(self, text: str, task: str) -> str:
        """Formats one query for ``task``."""
        return self.query_template.format(task=task, text=text)

    def document(self, text: str, title: str | None = None) -> str:
        """Formats one document (asymmetric side)."""
        return self.document_template.format(title=title or self.missing_title, text=text)


def check_kind(kind: str) -> str:
    """Validates a ``kind`` argument (``"query"`` or ``"document"``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def apply_format(
    texts: Sequence[str],
    kind: str,
    task: str | None,
    titles: Sequence[str | None] | None = None,
    input_format: InputFormat = InputFormat(),
) -> list[str]:
    """Formats texts the way the model was trained to see them.

    Without a ``task`` texts pass through unchanged (plain sentence-embedding use).
    With one, queries get the query template and documents the document template.

    Args:
      texts: raw texts.
      kind: ``"query"`` or ``"document"``.
      task: the task description (e.g. ``"question answering"``) or ``None``.
      titles: optional per-document titles (documents only).
      input_format: the templates.

    Returns:
      The formatted strings, in order.
    """
    check_kind(kind)
    if titles is not None:
        if kind != DOCUMENT:
            raise ValueError("titles are only used with kind='document'")
        if len(titles) != len(texts):
            raise ValueError(f"got {len(titles)} titles for {len(texts)} texts")
    if task is None:
        return list(texts)
    if kind == QUERY:
        return [input_format.query(t, task) for t in texts]
    titles = titles if titles is not None else [None] * len(texts)
    return [input_format.document(t, title) for t, title in zip(texts, titles)]


def untasked_document(title: str | None, text: str) -> str:
    """A titled document as evaluation (and mining for it) embeds it without a task:
    ``title + " " + text``, as MTEB and sentence-transformers do."""
    return f"{title or ''} {text}".strip()
