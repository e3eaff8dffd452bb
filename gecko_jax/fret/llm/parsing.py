"""Reading model outputs: a JSON object from generated text, label distributions from
top log-probabilities."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from gecko_jax.fret.llm.base import LabelsNotFoundError, MalformedOutputError

MissingLabels = Literal["raise", "uniform"]

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


def _snippet(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_json_object(text: str) -> dict[str, Any]:
    """Parses the JSON object in a model's reply.

    Accepts the object alone, inside a Markdown code fence, or preceded/followed by
    prose (the first ``{`` starts it).

    Raises:
      MalformedOutputError: no JSON object in ``text``; the message quotes the text.
    """
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    start = body.find("{")
    if start < 0:
        raise MalformedOutputError(f"model output holds no JSON object: {_snippet(text)}")
    try:
        value, _ = json.JSONDecoder().raw_decode(body, start)
    except json.JSONDecodeError as e:
        raise MalformedOutputError(
            f"model output is not valid JSON ({e.msg} at char {e.pos}): {_snippet(text)}"
        ) from e
    if not isinstance(value, dict):
        raise MalformedOutputError(f"model output is not a JSON object: {_snippet(text)}")
    return value


def _label_for_token(token: str, labels: Sequence[str]) -> str | None:
    """The one label that ``token`` starts (exact match first), or None if none/ambiguous."""
    text = token.strip()
    if not text:
        return None
    exact = [label for label in labels if label.strip() == text]
    if len(exact) == 1:
        return exact[0]
    prefixed = [label for label in labels if label.strip().startswith(text)]
    return prefixed[0] if len(prefixed) == 1 else None


def label_distribution(
    candidates: Iterable[tuple[str, float]],
    labels: Sequence[str],
    *,
    missing: MissingLabels = "raise",
) -> dict[str, float]:
    """Turns the top first-token candidates of an answer into label probabilities.

    A candidate token counts for a label when, leading/trailing whitespace stripped, it
    equals the label or is a prefix of exactly one label (so labels should differ in
    their first token: "Yes"/"No", "0".."3", "Highly relevant"/"Not relevant").
    Several tokens of one label add up (" Yes" and "Yes"); a label absent from the
    candidates gets 0 before renormalising over ``labels``.

    Args:
      candidates: ``(token, log_probability)`` pairs, e.g. an API's top log-probs.
      labels: the answers to score, distinct.
      missing: what happens when no label is among the candidates: ``"raise"``
        (:class:`LabelsNotFoundError`) or ``"uniform"`` (1/len(labels) each).

    Returns:
      ``{label: probability}`` over ``labels``, summing to 1.
    """
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError(f"labels must be distinct and non-empty, got {list(labels)}")
    candidates = list(candidates)
    mass = dict.fromkeys(labels, 0.0)
    for token, logprob in candidates:
        label = _label_for_token(token, labels)
        if label is not None and logprob is not None:
            mass[label] += math.exp(logprob)
    total = sum(mass.values())
    if total > 0:
        return {label: value / total for label, value in mass.items()}
    if missing == "uniform":
        return dict.fromkeys(labels, 1.0 / len(labels))
    tokens = [token for token, _ in candidates]
    raise LabelsNotFoundError(
        f"none of the labels {list(labels)} is among the model's top {len(tokens)} "
        f"first tokens {tokens}"
    )
