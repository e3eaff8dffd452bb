"""Classification data as contrastive triples (Gecko paper, section 3.3).

Any labelled set of ``(text, label)`` pairs becomes triples: the query is a text x, the
positive another text x+ with the same label, the hard negative a text x- with a
different label. All three sides use the query format (``symmetric=True``).

Texts of one label are near-duplicates to the model, so the positives of other
examples in a batch would be false negatives. Each text therefore gets a unique id
appended (``id_format``, default ``"{text} [id {id}]"``). With ``id_scope="triple"``
(default) the three texts of one triple share the triple's id, so an in-batch text of
the same label always differs from the query's positive by its id, while the hard
negative (same id, other label) is told apart by its label alone. With
``id_scope="text"`` every input text keeps its own id wherever it appears.

Sampling is deterministic given ``seed``: positives uniformly among the other texts of
the label, negatives uniformly among all texts of other labels.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import seqio

from gecko_jax.data import local_sets
from gecko_jax.data.examples import UnifiedExample

ID_SCOPES = ("triple", "text")
SINGLETON_POLICIES = ("error", "skip")


def _validate(items: Sequence[tuple[str, str]]) -> None:
    for index, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"item {index}: expected a (text, label) pair, got {item!r}")
        text, label = item
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"item {index}: text must be a non-empty string, got {text!r}")
        if not isinstance(label, (str, int)) or isinstance(label, bool):
            raise ValueError(f"item {index}: label must be a string or int, got {label!r}")


def build_triples(
    items: Sequence[tuple[str, str | int]],
    *,
    task: str = "classification",
    seed: int = 0,
    id_format: str = "{text} [id {id}]",
    id_scope: str = "triple",
    singleton_labels: str = "error",
    num_negatives: int = 1,
    source: str = "",
) -> list[UnifiedExample]:
    """Turns labelled texts into (x, same-label x+, other-label x-) examples.

    Every text whose label has at least two texts becomes the query of one example,
    in input order.

    Args:
      items: ``(text, label)`` pairs; labels are compared as given.
      task: the task string of every example (e.g. ``"classification"`` or the
        dataset's intent description).
      seed: sampling seed; the same inputs and seed give the same triples.
      id_format: how an id is appended; fields ``{text}`` and ``{id}``.
      id_scope: ``"triple"`` (one id per example, shared by its three texts) or
        ``"text"`` (each input text's index is its id).
      singleton_labels: a label with a single text cannot give a positive:
        ``"error"`` raises, ``"skip"`` uses such texts only as negatives.
      num_negatives: hard negatives per example (sampled with replacement).
      source: the examples' ``source``.

    Returns:
      The examples, ``symmetric=True``.

    Raises:
      ValueError: malformed items, fewer than two labels, a single-text label with
        ``singleton_labels="error"``, or a bad argument.
    """
    if id_scope not in ID_SCOPES:
        raise ValueError(f"id_scope must be one of {ID_SCOPES}, got {id_scope!r}")
    if singleton_labels not in SINGLETON_POLICIES:
        raise ValueError(
            f"singleton_labels must be one of {SINGLETON_POLICIES}, got {singleton_labels!r}"
        )
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    if "{text}" not in id_format or "{id}" not in id_format:
        raise ValueError(f"id_format must contain {{text}} and {{id}}, got {id_format!r}")
    _validate(items)

    members: dict[str | int, list[int]] = {}
    for index, (_, label) in enumerate(items):
        members.setdefault(label, []).append(index)
    if len(members) < 2:
        raise ValueError(f"classification triples need at least two labels, got {list(members)}")
    if singleton_labels == "error":
        for label, indices in members.items():
            if len(indices) == 1:
                raise ValueError(
                    f"label {label!r} has a single text (item {indices[0]}), so it has no "
                    "positive; pass singleton_labels='skip' to use it only as a negative"
                )

    # All indices grouped by label, so "any text of another label" is one contiguous
    # range with the query label's block cut out.
    flat: list[int] = []
    block: dict[str | int, tuple[int, int]] = {}
    for label, indices in members.items():
        block[label] = (len(flat), len(indices))
        flat.extend(indices)
    rank = {index: r for indices in members.values() for r, index in enumerate(indices)}

    rng = random.Random(seed)
    result = []
    for index, (_, label) in enumerate(items):
        same = members[label]
        if len(same) < 2:
            continue
        r = rng.randrange(len(same) - 1)
        positive = same[r + 1 if r >= rank[index] else r]
        start, size = block[label]
        negatives = []
        for _ in range(num_negatives):
            r = rng.randrange(len(flat) - size)
            negatives.append(flat[r + size if r >= start else r])

        ids = (
            [len(result)] * (2 + num_negatives)
            if id_scope == "triple"
            else [index, positive, *negatives]
        )
        texts = [items[i][0] for i in (index, positive, *negatives)]
        tagged = [id_format.format(text=t, id=i) for t, i in zip(texts, ids)]
        result.append(
            UnifiedExample(
                task=task,
                query=tagged[0],
                positive=tagged[1],
                negatives=tuple(tagged[2:]),
                symmetric=True,
                source=source,
            )
        )
    return result


def classification_source(
    load_items: Callable[[], Sequence[tuple[str, str | int]]],
    *,
    split: str = "train",
    **build_kwargs,
) -> seqio.DataSource:
    """A seqio data source of triples built from ``load_items()`` when first read.

    Args:
      load_items: returns the ``(text, label)`` pairs (called at ``get_dataset`` time).
      split: the split name the source offers.
      **build_kwargs: passed to :func:`build_triples`.
    """
    return local_sets.examples_source({split: lambda: build_triples(load_items(), **build_kwargs)})
