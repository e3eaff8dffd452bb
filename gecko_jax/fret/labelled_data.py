"""A labelled retrieval set for mining: the corpus, and each judged query's relevant documents.

The set is in the BEIR layout (:func:`gecko_jax.readers.read_beir_split` reads the same
files for evaluation): ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{split}.tsv``.
Unlike evaluation, mining reports what it could not use. Qrels rows are counted by why
they were dropped:

* ``unknown_query_ids``: the query id is not in ``queries.jsonl``;
* ``unknown_doc_ids``: the document id is not in ``corpus.jsonl``;
* ``not_relevant_qrels``: a relevance score <= 0 (a judged non-relevant document, not a
  positive; it may still be mined as a negative);
* ``duplicate_qrels``: the same (query, document) pair again;
* ``empty_query_texts`` / ``empty_positive_texts``: nothing to embed or train on.

Dropped rows are a warning; it is an error when none is left, with a message saying
which kind of id was missing and how many.
"""

from __future__ import annotations

import collections
import dataclasses
import logging

from gecko_jax import fileio
from gecko_jax.fret.corpus import Passage
from gecko_jax.readers import read_beir_jsonl, read_beir_qrels, require_file

log = logging.getLogger(__name__)
_EXAMPLES = 3
# Why qrels rows were not used, in the order the summary lists them.
QREL_DROPS = (
    "unknown_query_ids",
    "unknown_doc_ids",
    "not_relevant_qrels",
    "duplicate_qrels",
    "empty_query_texts",
    "empty_positive_texts",
)


@dataclasses.dataclass(frozen=True)
class LabelledQuery:
    """One judged query.

    Attributes:
      id: its id in ``queries.jsonl``.
      text: its text.
      positives: corpus indices of its relevant documents, in qrels order.
    """

    id: str
    text: str
    positives: tuple[int, ...]


@dataclasses.dataclass
class LabelledSet:
    """The corpus and the judged queries of one split.

    Attributes:
      documents: the whole corpus, in file order.
      queries: the queries with at least one usable positive, in qrels order.
      qrels_path: the judgements file read.
      qrels_rows: its rows.
      dropped: qrels rows not used, by reason (:data:`QREL_DROPS`).
    """

    documents: list[Passage]
    queries: list[LabelledQuery]
    qrels_path: str
    qrels_rows: int
    dropped: collections.Counter[str]

    @property
    def pairs(self) -> int:
        """The (query, relevant document) pairs kept."""
        return sum(len(q.positives) for q in self.queries)


def _examples(ids: list[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:_EXAMPLES])
    return shown + (", ..." if len(ids) > _EXAMPLES else "")


def read_labelled_set(data_dir: str, split: str = "train") -> LabelledSet:
    """Reads ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{split}.tsv`` of ``data_dir``.

    Raises:
      FileNotFoundError: the directory or one of its files is missing (named).
      ValueError: a malformed file; a split without qrels rows; no qrels row naming a
        known query, or a known document (with counts); no relevant pair left.
    """
    require_file(data_dir, "BEIR dataset directory")
    qrels_path = fileio.join(data_dir, "qrels", f"{split}.tsv")
    corpus_path = fileio.join(data_dir, "corpus.jsonl")
    queries_path = fileio.join(data_dir, "queries.jsonl")
    require_file(qrels_path, f"qrels of split {split!r}")
    for path, what in ((corpus_path, "corpus"), (queries_path, "queries")):
        require_file(path, what)
    rows = read_beir_qrels(qrels_path) if _has_text(qrels_path) else []
    if not rows:
        raise ValueError(f"{qrels_path}: no qrels rows: the {split!r} split is empty")
    corpus = read_beir_jsonl(corpus_path, ("title", "text"))
    queries = read_beir_jsonl(queries_path, ("text",))
    index = {doc_id: i for i, doc_id in enumerate(corpus)}

    dropped: collections.Counter[str] = collections.Counter()
    unknown_queries: dict[str, None] = {}
    unknown_docs: dict[str, None] = {}
    positives: dict[str, dict[int, None]] = {}
    for row in rows:
        if row.query_id not in queries:
            dropped["unknown_query_ids"] += 1
            unknown_queries[row.query_id] = None
        elif row.corpus_id not in index:
            dropped["unknown_doc_ids"] += 1
            unknown_docs[row.corpus_id] = None
        elif row.score <= 0:
            dropped["not_relevant_qrels"] += 1
        elif index[row.corpus_id] in positives.get(row.query_id, {}):
            dropped["duplicate_qrels"] += 1
        elif not queries[row.query_id]["text"].strip():
            dropped["empty_query_texts"] += 1
        elif not corpus[row.corpus_id]["text"].strip():
            dropped["empty_positive_texts"] += 1
        else:
            positives.setdefault(row.query_id, {})[index[row.corpus_id]] = None
    paths = (qrels_path, queries_path, corpus_path)
    _check_known(len(rows), dropped, unknown_queries, unknown_docs, paths)
    if not positives:
        raise ValueError(
            f"{qrels_path}: none of its {len(rows)} qrels rows is a usable (query, relevant "
            f"document) pair; dropped: {_describe(dropped)}"
        )
    if dropped:
        log.warning(
            "%s: skipped %d of %d qrels rows: %s%s%s",
            qrels_path,
            sum(dropped.values()),
            len(rows),
            _describe(dropped),
            f"; unknown query ids {_examples(list(unknown_queries))}" if unknown_queries else "",
            f"; unknown document ids {_examples(list(unknown_docs))}" if unknown_docs else "",
        )
    return LabelledSet(
        documents=[Passage(i, d["text"], d["title"]) for i, d in corpus.items()],
        queries=[
            LabelledQuery(q, queries[q]["text"], tuple(docs)) for q, docs in positives.items()
        ],
        qrels_path=qrels_path,
        qrels_rows=len(rows),
        dropped=dropped,
    )


def _has_text(path: str) -> bool:
    with fileio.open(path) as f:
        return any(line.strip() for line in f)


def _describe(dropped: collections.Counter[str]) -> str:
    return ", ".join(f"{dropped[k]} {k}" for k in QREL_DROPS if dropped[k]) or "none"


def _check_known(
    rows: int,
    dropped: collections.Counter[str],
    unknown_queries: dict[str, None],
    unknown_docs: dict[str, None],
    paths: tuple[str, str, str],
) -> None:
    """Raises when every qrels row names an unknown query, or (of those that do not) an
    unknown document."""
    qrels_path, queries_path, corpus_path = paths
    if dropped["unknown_query_ids"] == rows:
        raise ValueError(
            f"{queries_path} has none of the {len(unknown_queries)} query ids "
            f"{qrels_path} names ({rows} qrels rows, e.g. "
            f"{_examples(list(unknown_queries))}): is this the right dataset?"
        )
    with_known_query = rows - dropped["unknown_query_ids"]
    if dropped["unknown_doc_ids"] == with_known_query:
        raise ValueError(
            f"{corpus_path} has none of the {len(unknown_docs)} documents {qrels_path} "
            f"names ({with_known_query} qrels rows with a known query, e.g. "
            f"{_examples(list(unknown_docs))}): is this the right corpus?"
        )
