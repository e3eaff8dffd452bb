"""The academic fine-tuning sets of Gecko's mixture (paper, section 3.3), as unified examples.

Each set is an :class:`AcademicSet`: a ``seqio.DataSource`` plus the preprocessors that
turn its raw records into the unified format (:mod:`gecko_jax.data.examples`).

From TFDS (tensorflow-datasets 4.9.10; builders, versions and features checked there):

* **Natural Questions**, ``natural_questions/default:0.1.0`` (Beam-built; splits
  ``train``, ``validation``). Query = ``question/text``; positive = the first annotated
  long answer (``annotations/long_answer/{start,end}_token``), i.e. the non-HTML
  ``document/tokens`` of that span joined by spaces; title = ``document/title``.
  Examples without a long answer (``start_token == -1``) are skipped. Task string
  ``"question answering"``.
* **SNLI**, ``snli:1.1.0``, and **MultiNLI**, ``multi_nli:1.1.0`` (features
  ``premise``, ``hypothesis``, ``label`` with 0 entailment, 1 neutral, 2 contradiction,
  -1 no gold label). Hypotheses are grouped by premise; each entailment hypothesis
  gives one example: premise -> entailment hypothesis, with a contradiction hypothesis
  of the same premise as hard negative (the i-th entailment of a premise takes its
  (i mod n)-th contradiction). Premises lacking either are dropped. ``symmetric=True``;
  task string ``"sentence similarity"``.

Not in TFDS 4.9.10 (only as BEIR/MRQA variants), so read from the official releases'
files on local disk or ``gs://`` (a JSON array or JSON lines, both accepted):

* **HotpotQA** (``hotpot_train_v1.1.json``; fields ``_id``, ``question``,
  ``supporting_facts`` = ``[[title, sentence index], ...]``, ``context`` =
  ``[[title, [sentence, ...]], ...]``). One example per supporting paragraph: question
  -> that paragraph's sentences joined, titled by the paragraph title; the first
  ``num_negatives`` non-supporting ``context`` paragraphs (the distractors retrieved
  for the question) are its hard negatives. Task string ``"question answering"``.
* **FEVER** (claims ``train.jsonl``: ``id``, ``claim``, ``label`` in ``SUPPORTS`` /
  ``REFUTES`` / ``NOT ENOUGH INFO``, ``evidence`` = evidence sets of
  ``[annotation id, evidence id, page, sentence index]``; plus the ``wiki-pages/*.jsonl``
  dump: ``id``, ``text``, ``lines`` = ``"0<TAB>sentence<TAB>links...\\n1<TAB>..."``).
  One example per (claim, evidence page): claim -> the page's text (or, with
  ``positive_unit="sentence"``, the evidence sentences of that page), titled by the
  page id with ``_`` and ``-LRB-``-style escapes undone. Claims without evidence (NOT
  ENOUGH INFO) are skipped. Task string ``"fact checking"``.
* **MedMCQA** (``train.json``, JSON lines: ``id``, ``question``, ``opa``..``opd``,
  ``cop`` = the correct option, 1-4 in the official release, ``exp`` = explanation,
  ``subject_name``, ``topic_name``). Query = the question (optionally with the correct
  answer or all options, ``query_style``); positive = ``exp``. Rows without an
  explanation are skipped. Task string ``"question answering"``.

Malformed rows of the local files are counted and skipped with a warning naming the
file and line (``examples.BadRowCounter``); the job fails past ``max_bad_fraction``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from gecko_jax import fileio, readers
from gecko_jax.data import examples as ex
from gecko_jax.data import local_sets
from gecko_jax.data.examples import BadRowCounter, BadRowError, UnifiedExample

log = logging.getLogger(__name__)

Preprocessor = Callable[[tf.data.Dataset], tf.data.Dataset]

NQ_TFDS_NAME = "natural_questions/default:0.1.0"
SNLI_TFDS_NAME = "snli:1.1.0"
MNLI_TFDS_NAME = "multi_nli:1.1.0"
NLI_ENTAILMENT, NLI_CONTRADICTION = 0, 2

QA_TASK = "question answering"
FACT_TASK = "fact checking"
SIMILARITY_TASK = "sentence similarity"
MIXTURE_PAPER = "Gecko section 3.3, academic fine-tuning mixture"


@dataclasses.dataclass(frozen=True)
class AcademicSet:
    """A raw source and the preprocessors that make it unified examples."""

    name: str
    source: seqio.DataSource
    preprocessors: tuple[Preprocessor, ...]
    metadata: Mapping[str, Any]


class TfdsSource(seqio.TfdsDataSource):
    """``seqio.TfdsDataSource`` whose size is unknown (None), not an error, without split metadata.

    seqio asks for a split's size to decide on in-memory caching; TFDS metadata of a
    dataset mocked by ``tfds.testing.mock_data`` (or not prepared) has no split sizes.
    """

    def num_input_examples(self, split: str) -> int | None:
        try:
            return super().num_input_examples(split)
        except KeyError:
            return None


def conform(record: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The unified features of ``record`` with exactly the static shapes of the signature.

    Later steps (``ragged_batch`` in formatting) need ``negatives`` to be ``[None]``,
    not a static ``[0]`` or ``[1]``.
    """
    return {
        name: tf.compat.v1.placeholder_with_default(record[name], spec.shape)
        for name, spec in ex.OUTPUT_SIGNATURE.items()
    }


def _scalar_strings(**features: tf.Tensor) -> dict[str, tf.Tensor]:
    return {k: tf.convert_to_tensor(v, tf.string) for k, v in features.items()}


# --- Natural Questions -------------------------------------------------------------


def nq_to_unified(
    ds: tf.data.Dataset, *, task: str = QA_TASK, source: str = "natural_questions"
) -> tf.data.Dataset:
    """Natural Questions records -> question -> gold long-answer passage examples."""

    def convert(record: Mapping[str, Any]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        tokens = record["document"]["tokens"]["token"]
        is_html = record["document"]["tokens"]["is_html"]
        long_answer = record["annotations"]["long_answer"]
        starts, ends = long_answer["start_token"], long_answer["end_token"]
        # Parallel sequences have equal lengths in NQ; trimming to the shorter one keeps
        # records with unequal lengths (as tfds' random mocks make) from failing.
        size = tf.minimum(tf.size(tokens, out_type=tf.int64), tf.size(is_html, out_type=tf.int64))
        tokens, is_html = tokens[:size], is_html[:size]
        count = tf.minimum(tf.size(starts), tf.size(ends))
        # A sentinel (-1) keeps argmax defined when there are no annotations.
        starts = tf.concat([tf.cast(starts[:count], tf.int64), [-1]], 0)
        ends = tf.concat([tf.cast(ends[:count], tf.int64), [-1]], 0)
        valid = (starts >= 0) & (ends > starts)
        first = tf.argmax(tf.cast(valid, tf.int32), output_type=tf.int32)
        start = tf.clip_by_value(starts[first], 0, size)
        end = tf.clip_by_value(ends[first], start, size)
        words = tf.boolean_mask(tokens[start:end], tf.logical_not(is_html[start:end]))
        passage = tf.strings.reduce_join(words, separator=" ")
        features = {
            **_scalar_strings(
                **{
                    ex.TASK: task,
                    ex.QUERY: record["question"]["text"],
                    ex.POSITIVE: passage,
                    ex.POSITIVE_TITLE: record["document"]["title"],
                    ex.SOURCE: source,
                }
            ),
            ex.NEGATIVES: tf.zeros([0], tf.string),
            ex.NEGATIVE_TITLES: tf.zeros([0], tf.string),
            ex.SYMMETRIC: tf.constant(False),
        }
        return features, valid[first]

    def keep(features: Mapping[str, tf.Tensor], has_answer: tf.Tensor) -> tf.Tensor:
        nonempty = [
            tf.strings.length(tf.strings.strip(features[k])) > 0 for k in (ex.QUERY, ex.POSITIVE)
        ]
        return has_answer & nonempty[0] & nonempty[1]

    def drop_flag(features: dict[str, tf.Tensor], _: tf.Tensor) -> dict[str, tf.Tensor]:
        return conform(features)

    return ds.map(convert).filter(keep).map(drop_flag)


def natural_questions(
    *, task: str = QA_TASK, tfds_name: str = NQ_TFDS_NAME, tfds_data_dir: str | None = None
) -> AcademicSet:
    """Natural Questions from TFDS (decodes only the features the conversion uses)."""
    decoders = tfds.decode.PartialDecoding(
        {
            "question": {"text": True},
            "document": {"title": True, "tokens": True},
            "annotations": {"long_answer": True},
        }
    )
    source = TfdsSource(
        tfds_name=tfds_name,
        tfds_data_dir=tfds_data_dir,
        decoders=decoders,
        splits={"train": "train", "validation": "validation"},
    )
    return AcademicSet(
        name="natural_questions",
        source=source,
        preprocessors=(functools.partial(nq_to_unified, task=task, source="natural_questions"),),
        metadata={
            "task_type": "retrieval",
            "origin": f"tfds:{tfds_name}",
            "paper": MIXTURE_PAPER,
            "task": task,
        },
    )


# --- NLI --------------------------------------------------------------------------


def _pair_hypotheses(
    batch: Mapping[str, tf.Tensor], entailment: int, contradiction: int
) -> dict[str, tf.Tensor]:
    """Pairs every entailment hypothesis with a contradiction of the same premise."""
    premises, premise_id = tf.unique(batch["premise"])
    num_premises = tf.size(premises)

    def by_premise(label: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        mask = tf.equal(batch["label"], label)
        ids = tf.boolean_mask(premise_id, mask)
        order = tf.argsort(ids, stable=True)
        ids, texts = (
            tf.gather(ids, order),
            tf.gather(tf.boolean_mask(batch["hypothesis"], mask), order),
        )
        counts = tf.math.unsorted_segment_sum(tf.ones_like(ids), ids, num_premises)
        return ids, texts, counts, tf.cumsum(counts, exclusive=True)

    e_ids, e_texts, _, e_start = by_premise(entailment)
    _, c_texts, c_count, c_start = by_premise(contradiction)
    rank = tf.range(tf.size(e_ids)) - tf.gather(e_start, e_ids)
    n_contra = tf.gather(c_count, e_ids)
    keep = n_contra > 0
    negative_index = tf.gather(c_start, e_ids) + rank % tf.maximum(n_contra, 1)
    kept_ids = tf.boolean_mask(e_ids, keep)
    negatives = tf.gather(c_texts, tf.boolean_mask(negative_index, keep))
    count = tf.size(kept_ids)
    return {
        "premise": tf.gather(premises, kept_ids),
        "entailment": tf.boolean_mask(e_texts, keep),
        "contradiction": negatives,
        "count": count,
    }


def nli_to_unified(
    ds: tf.data.Dataset,
    *,
    task: str = SIMILARITY_TASK,
    source: str = "nli",
    entailment: int = NLI_ENTAILMENT,
    contradiction: int = NLI_CONTRADICTION,
    chunk_size: int = 65536,
) -> tf.data.Dataset:
    """NLI records -> premise -> entailment examples with a contradiction hard negative.

    Grouping needs the whole split: the entailment and contradiction records are
    gathered into memory (lazily, when the dataset is first iterated; in chunks of
    ``chunk_size``, with vectorised ops only), then paired. Output order: premises by
    first appearance, then their entailments in input order.
    """

    def select(chunk: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        label = tf.cast(chunk["label"], tf.int64)
        keep = tf.logical_or(tf.equal(label, entailment), tf.equal(label, contradiction))
        for name in ("premise", "hypothesis"):
            keep &= tf.strings.length(tf.strings.strip(chunk[name])) > 0
        return {
            "premise": tf.boolean_mask(chunk["premise"], keep),
            "hypothesis": tf.boolean_mask(chunk["hypothesis"], keep),
            "label": tf.boolean_mask(label, keep),
        }

    def append(state: dict[str, tf.Tensor], chunk: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {k: tf.concat([state[k], chunk[k]], 0) for k in state}

    def pairs(_: tf.Tensor) -> tf.data.Dataset:
        empty = {
            "premise": tf.zeros([0], tf.string),
            "hypothesis": tf.zeros([0], tf.string),
            "label": tf.zeros([0], tf.int64),
        }
        whole = ds.batch(chunk_size).map(select).reduce(empty, append)
        paired = _pair_hypotheses(whole, entailment, contradiction)
        count = paired.pop("count")

        def column(value: tf.Tensor) -> tf.Tensor:  # [count, 1] -> elements of shape [None]
            return tf.compat.v1.placeholder_with_default(tf.reshape(value, [-1, 1]), [None, None])

        return tf.data.Dataset.from_tensor_slices(
            {
                ex.TASK: tf.fill([count], task),
                ex.QUERY: paired["premise"],
                ex.POSITIVE: paired["entailment"],
                ex.POSITIVE_TITLE: tf.fill([count], ""),
                ex.NEGATIVES: column(paired["contradiction"]),
                ex.NEGATIVE_TITLES: column(tf.fill([count], "")),
                ex.SYMMETRIC: tf.fill([count], True),
                ex.SOURCE: tf.fill([count], source),
            }
        )

    return tf.data.Dataset.range(1).flat_map(pairs)


def _nli_set(
    name: str, tfds_name: str, splits: Mapping[str, str], task: str, tfds_data_dir: str | None
) -> AcademicSet:
    source = TfdsSource(tfds_name=tfds_name, tfds_data_dir=tfds_data_dir, splits=splits)
    return AcademicSet(
        name=name,
        source=source,
        preprocessors=(functools.partial(nli_to_unified, task=task, source=name),),
        metadata={
            "task_type": "nli (symmetric)",
            "origin": f"tfds:{tfds_name}",
            "paper": "Gecko section 3.3: entailment as positive, contradiction as hard negative",
            "task": task,
        },
    )


def snli(
    *,
    task: str = SIMILARITY_TASK,
    tfds_name: str = SNLI_TFDS_NAME,
    tfds_data_dir: str | None = None,
) -> AcademicSet:
    """SNLI from TFDS as symmetric premise/entailment/contradiction examples."""
    return _nli_set(
        "snli", tfds_name, {"train": "train", "validation": "validation"}, task, tfds_data_dir
    )


def mnli(
    *,
    task: str = SIMILARITY_TASK,
    tfds_name: str = MNLI_TFDS_NAME,
    tfds_data_dir: str | None = None,
) -> AcademicSet:
    """MultiNLI from TFDS (validation = the matched dev set)."""
    return _nli_set(
        "mnli",
        tfds_name,
        {"train": "train", "validation": "validation_matched"},
        task,
        tfds_data_dir,
    )


# --- Local JSON readers -----------------------------------------------------------


def _json_records(path: str) -> Iterator[tuple[str, Any]]:
    """Yields ``(where, record)`` from a JSON array or a JSON-lines file.

    A line that is not valid JSON yields ``(where, BadRowError)`` so the caller counts it.
    """
    with fileio.open(readers.require_file(path, "file"), "r") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
        for index, record in enumerate(records):
            yield f"{path}[{index}]", record
        return
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028
        if not line.strip():
            continue
        try:
            yield f"{path}:{number}", json.loads(line)
        except json.JSONDecodeError as e:
            yield f"{path}:{number}", BadRowError(f"invalid JSON: {e.msg}")


def _convert_all(
    path: str, convert: Callable[[Any], list[UnifiedExample]], max_bad_fraction: float
) -> list[UnifiedExample]:
    counter = BadRowCounter(path, max_bad_fraction=max_bad_fraction)
    result = []
    for where, record in _json_records(path):
        try:
            if isinstance(record, BadRowError):
                raise record
            if not isinstance(record, dict):
                raise BadRowError(f"expected a JSON object, got {type(record).__name__}")
            result.extend(convert(record))
        except BadRowError as e:
            counter.record_bad(where, str(e))
            continue
        counter.record_good()
    counter.finish()
    return result


def _field(record: Mapping[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    if name not in record:
        raise BadRowError(f"missing field {name!r}")
    value = record[name]
    if not isinstance(value, kind):
        raise BadRowError(f"field {name!r} has type {type(value).__name__}")
    return value


def read_hotpotqa(
    path: str,
    *,
    task: str = QA_TASK,
    num_negatives: int = 1,
    source: str = "hotpotqa",
    max_bad_fraction: float = 0.01,
) -> list[UnifiedExample]:
    """Reads an official HotpotQA file (see the module docstring for the fields)."""

    def convert(record: Mapping[str, Any]) -> list[UnifiedExample]:
        question = _field(record, "question")
        paragraphs: dict[str, str] = {}
        for item in _field(record, "context", list):
            if not (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], str)
                and isinstance(item[1], list)
                and all(isinstance(s, str) for s in item[1])
            ):
                raise BadRowError("field 'context' must hold [title, [sentence, ...]] pairs")
            paragraphs.setdefault(item[0], "".join(item[1]).strip())
        supporting: list[str] = []
        for fact in _field(record, "supporting_facts", list):
            if not (isinstance(fact, list) and fact and isinstance(fact[0], str)):
                raise BadRowError("field 'supporting_facts' must hold [title, index] pairs")
            if fact[0] not in paragraphs:
                raise BadRowError(f"supporting title {fact[0]!r} is not in 'context'")
            if fact[0] not in supporting:
                supporting.append(fact[0])
        if not supporting:
            raise BadRowError("no supporting facts")
        distractors = [t for t in paragraphs if t not in supporting and paragraphs[t]][
            :num_negatives
        ]
        return [
            UnifiedExample(
                task=task,
                query=question,
                positive=paragraphs[title],
                positive_title=title,
                negatives=tuple(paragraphs[t] for t in distractors),
                negative_titles=tuple(distractors),
                source=source,
            )
            for title in supporting
        ]

    return _convert_all(path, convert, max_bad_fraction)


_FEVER_ESCAPES = {
    "-LRB-": "(",
    "-RRB-": ")",
    "-LSB-": "[",
    "-RSB-": "]",
    "-LCB-": "{",
    "-RCB-": "}",
    "-COLON-": ":",
}


def fever_title(page_id: str) -> str:
    """A FEVER wiki page id as a readable title.

    ``Nikolaj_-LRB-name-RRB-`` -> ``Nikolaj (name)``.
    """
    for escape, char in _FEVER_ESCAPES.items():
        page_id = page_id.replace(escape, char)
    return page_id.replace("_", " ")


def _fever_evidence(record: Mapping[str, Any]) -> dict[str, list[int]]:
    """Evidence page -> sentence indices, pages in first-mention order."""
    pages: dict[str, list[int]] = {}
    for evidence_set in _field(record, "evidence", list):
        if not isinstance(evidence_set, list):
            raise BadRowError("field 'evidence' must hold lists of evidence")
        for item in evidence_set:
            if not (isinstance(item, list) and len(item) == 4):
                raise BadRowError("evidence items must be [annotation, id, page, sentence]")
            page, sentence = item[2], item[3]
            if page is None:
                continue
            if not isinstance(page, str) or not isinstance(sentence, int):
                raise BadRowError("evidence page must be a string and sentence an int")
            indices = pages.setdefault(page, [])
            if sentence not in indices:
                indices.append(sentence)
    return pages


_PAGE_ID_PREFIX = '{"id": "'


def _read_fever_pages(pattern: str, wanted: set[str]) -> dict[str, tuple[str, dict[int, str]]]:
    """page id -> (intro text, sentence index -> sentence), for the wanted pages only."""
    files = fileio.glob(pattern)
    if not files:
        raise FileNotFoundError(f"no FEVER wiki-pages files match {pattern}")
    pages = {}
    for path in files:
        with fileio.open(path, "r") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                # The dump has 5.4M pages: skip unwanted ones without parsing them when
                # the line starts with a plain (escape-free) id.
                if line.startswith(_PAGE_ID_PREFIX):
                    end = line.find('"', len(_PAGE_ID_PREFIX))
                    raw_id = line[len(_PAGE_ID_PREFIX) : end]
                    if end > 0 and "\\" not in raw_id and raw_id not in wanted:
                        continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{number}: invalid JSON: {e.msg}") from None
                if not isinstance(record, dict) or record.get("id") not in wanted:
                    continue
                sentences = {}
                for entry in str(record.get("lines", "")).split("\n"):
                    parts = entry.split("\t")
                    if len(parts) >= 2 and parts[0].isdigit() and parts[1].strip():
                        sentences[int(parts[0])] = parts[1]
                pages[record["id"]] = (str(record.get("text", "")), sentences)
    return pages


def read_fever(
    claims_path: str,
    wiki_pages_pattern: str,
    *,
    task: str = FACT_TASK,
    positive_unit: str = "page",
    source: str = "fever",
    max_bad_fraction: float = 0.01,
) -> list[UnifiedExample]:
    """Reads official FEVER claims and resolves their evidence in the wiki-pages dump.

    Args:
      claims_path: the claims JSONL (e.g. ``train.jsonl``).
      wiki_pages_pattern: glob of the wiki-pages JSONL files (``wiki-pages/wiki-*.jsonl``).
      task: the task string.
      positive_unit: ``"page"`` (the page's intro text) or ``"sentence"`` (the claim's
        evidence sentences of that page, joined by spaces).
      source: the examples' ``source``.
      max_bad_fraction: malformed claims or unresolvable evidence tolerated.
    """
    if positive_unit not in ("page", "sentence"):
        raise ValueError(f"positive_unit must be 'page' or 'sentence', got {positive_unit!r}")
    claims = []
    counter = BadRowCounter(claims_path, max_bad_fraction=max_bad_fraction)
    for where, record in _json_records(claims_path):
        try:
            if isinstance(record, BadRowError):
                raise record
            if not isinstance(record, dict):
                raise BadRowError(f"expected a JSON object, got {type(record).__name__}")
            claim = _field(record, "claim")
            label = _field(record, "label")
            evidence = _fever_evidence(record) if label != "NOT ENOUGH INFO" else {}
        except BadRowError as e:
            counter.record_bad(where, str(e))
            continue
        claims.append((where, claim, evidence))
    pages = _read_fever_pages(wiki_pages_pattern, {p for _, _, ev in claims for p in ev})
    result = []
    for where, claim, evidence in claims:
        try:
            rows = []
            for page, indices in evidence.items():
                if page not in pages:
                    raise BadRowError(f"evidence page {page!r} is not in {wiki_pages_pattern}")
                text, sentences = pages[page]
                if positive_unit == "sentence":
                    text = " ".join(sentences[i] for i in indices if i in sentences)
                if text.strip():
                    rows.append(
                        UnifiedExample(
                            task=task,
                            query=claim,
                            positive=text,
                            positive_title=fever_title(page),
                            source=source,
                        )
                    )
        except BadRowError as e:
            counter.record_bad(where, str(e))
            continue
        result.extend(rows)
        counter.record_good()
    counter.finish()
    return result


MEDMCQA_QUERY_STYLES = ("question", "question_and_answer", "question_and_options")


def read_medmcqa(
    path: str,
    *,
    task: str = QA_TASK,
    query_style: str = "question",
    option_base: int = 1,
    source: str = "medmcqa",
    max_bad_fraction: float = 0.01,
) -> list[UnifiedExample]:
    """Reads an official MedMCQA file as question -> explanation examples.

    Args:
      path: the JSON-lines file (e.g. ``train.json``).
      task: the task string.
      query_style: ``"question"``; ``"question_and_answer"`` (question, a space, the
        correct option's text); ``"question_and_options"`` (question, then lines
        ``A. ...`` to ``D. ...``).
      option_base: the ``cop`` of option A (1 in the official release, 0 in some copies).
      source: the examples' ``source``.
      max_bad_fraction: malformed rows tolerated (rows without ``exp`` are not bad).
    """
    if query_style not in MEDMCQA_QUERY_STYLES:
        raise ValueError(f"query_style must be one of {MEDMCQA_QUERY_STYLES}, got {query_style!r}")
    skipped = 0

    def convert(record: Mapping[str, Any]) -> list[UnifiedExample]:
        nonlocal skipped
        question = _field(record, "question")
        explanation = record.get("exp")
        if explanation is None or (isinstance(explanation, str) and not explanation.strip()):
            skipped += 1
            return []
        if not isinstance(explanation, str):
            raise BadRowError(f"field 'exp' has type {type(explanation).__name__}")
        options = [_field(record, f"op{c}") for c in "abcd"] if query_style != "question" else []
        query = question
        if query_style == "question_and_answer":
            cop = _field(record, "cop", int)
            if not 0 <= cop - option_base < 4:
                raise BadRowError(f"field 'cop' is {cop}, not an option of 4")
            query = f"{question} {options[cop - option_base]}"
        elif query_style == "question_and_options":
            query = question + "".join(f"\n{c}. {o}" for c, o in zip("ABCD", options))
        return [UnifiedExample(task=task, query=query, positive=explanation, source=source)]

    result = _convert_all(path, convert, max_bad_fraction)
    if skipped:
        log.info("%s: skipped %d rows without an explanation", path, skipped)
    return result


def _local_set(
    name: str,
    paths: str | Mapping[str, str],
    read: Callable[[str], list[UnifiedExample]],
    origin: str,
    task: str,
) -> AcademicSet:
    """A retrieval set of the academic mixture read from local files by ``read``."""
    paths = {"train": paths} if isinstance(paths, str) else dict(paths)
    loaders = {split: functools.partial(read, path) for split, path in paths.items()}
    metadata = {"task_type": "retrieval", "origin": origin, "task": task, "paper": MIXTURE_PAPER}
    return AcademicSet(
        name=name,
        source=local_sets.examples_source(loaders),
        preprocessors=(),
        metadata={**metadata, "files": paths},
    )


def hotpotqa(
    paths: str | Mapping[str, str], *, task: str = QA_TASK, num_negatives: int = 1
) -> AcademicSet:
    """HotpotQA from local files (a path for ``train``, or split -> path)."""
    read = functools.partial(read_hotpotqa, task=task, num_negatives=num_negatives)
    return _local_set("hotpotqa", paths, read, origin="HotpotQA official JSON", task=task)


def fever(
    claims_paths: str | Mapping[str, str],
    wiki_pages_pattern: str,
    *,
    task: str = FACT_TASK,
    positive_unit: str = "page",
) -> AcademicSet:
    """FEVER from local claims files and the wiki-pages dump."""
    read = functools.partial(
        read_fever, wiki_pages_pattern=wiki_pages_pattern, task=task, positive_unit=positive_unit
    )
    return _local_set(
        "fever", claims_paths, read, origin="FEVER official JSONL + wiki-pages", task=task
    )


def medmcqa(
    paths: str | Mapping[str, str], *, task: str = QA_TASK, query_style: str = "question"
) -> AcademicSet:
    """MedMCQA from local files (a path for ``train``, or split -> path)."""
    read = functools.partial(read_medmcqa, task=task, query_style=query_style)
    return _local_set("medmcqa", paths, read, origin="MedMCQA official JSON lines", task=task)
