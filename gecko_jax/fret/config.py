"""The FRet pipeline's settings: gin-configurable frozen dataclasses.

Every class is registered with gin under ``gecko_jax.fret``, so a gin file or a
``--gin.`` flag can set any field, e.g. ``GenerationConfig.max_attempts = 5`` or
``RankingConfig.negative = 'random'``. Sub-configs are built when their parent is,
so bindings apply to them too. Invalid values raise ``ValueError`` naming
``Class.field``.
"""

from __future__ import annotations

import dataclasses
import re

import gin

from gecko_jax import rows

RANKINGS = ("rrf", "ql", "rc")
BACKENDS = ("jax", "faiss")
QUERY_INPUT_FORMATS = ("gecko", "plain")
OUTPUT_FORMATS = rows.FILE_FORMATS
_RANK_NEGATIVE = re.compile(r"^rank:(\d+)$")


@gin.configurable(module="gecko_jax.fret")
@dataclasses.dataclass(frozen=True)
class TaskType:
    """One kind of task the LLM writes queries for.

    Attributes:
      name: the task type shown to the LLM (``"question answering"``).
      guidance: what a query of this type looks like (the prompt's ``{task_guidance}``).
      weight: relative sampling weight (all equal: uniform sampling).
    """

    name: str
    guidance: str = (
        "the query is one that a user with this task would issue, answered by the passage."
    )
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("TaskType.name must be non-empty")
        if not self.weight > 0:
            raise ValueError(f"TaskType {self.name!r}: weight must be > 0, got {self.weight}")


DEFAULT_TASK_TYPES = (
    TaskType("question answering", "the query is a natural question that the passage answers."),
    TaskType(
        "search result",
        "the query is a short web search query (a few words or a phrase) "
        "for which the passage is a relevant result.",
    ),
    TaskType(
        "fact checking",
        "the query is a claim, true or false, that the passage supports or refutes.",
    ),
    TaskType(
        "sentence similarity",
        "the query is a sentence that says the same thing as a sentence "
        "of the passage, in different words.",
    ),
)


@gin.configurable(module="gecko_jax.fret")
@dataclasses.dataclass(frozen=True)
class RelevanceLabel:
    """One graded label of relevance classification.

    Attributes:
      label: the label string the LLM answers with (``"3"``).
      value: its relevance value in the expected relevance ``sum value * p(label)``.
      description: what it means (listed in the prompt's ``{labels}``).
    """

    label: str
    value: float
    description: str


DEFAULT_LABELS = (
    RelevanceLabel("3", 3.0, "the passage perfectly answers the query"),
    RelevanceLabel("2", 2.0, "the passage answers the query, partly or with extra information"),
    RelevanceLabel("1", 1.0, "the passage is related to the query but does not answer it"),
    RelevanceLabel("0", 0.0, "the passage is irrelevant to the query"),
)


def _positive(cls: str, **values: float | int | None) -> None:
    for name, value in values.items():
        if value is not None and not value > 0:
            raise ValueError(f"{cls}.{name} must be > 0, got {value}")


def check_workers(index: int, count: int) -> None:
    """Checks worker ``index`` of ``count``.

    Raises:
      ValueError: ``count`` < 1, or ``index`` outside ``0..count-1`` (names the flags).
    """
    if count < 1:
        raise ValueError(f"--worker_count (FretConfig.worker_count) must be >= 1, got {count}")
    if not 0 <= index < count:
        raise ValueError(
            f"--worker_index (FretConfig.worker_index) must be in 0..{count - 1} "
            f"for --worker_count {count}, got {index}"
        )


def _one_of(cls: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{cls}.{name} must be one of {choices}, got {value!r}")


@gin.configurable(module="gecko_jax.fret")
@dataclasses.dataclass(frozen=True)
class PromptConfig:
    """Which template files and relevance labels the LLM calls use.

    Attributes:
      generation_template: a packaged template name (``gecko_jax/fret/prompts/``) or a path.
      query_likelihood_template: the QL template (ends with ``{query}``).
      relevance_template: the RC template.
      relevance_labels: graded labels, listed in the RC prompt as ``label: description``.
      missing_title: written for ``{title}`` when a passage has none.
    """

    generation_template: str = "generate.txt"
    query_likelihood_template: str = "query_likelihood.txt"
    relevance_template: str = "relevance.txt"
    relevance_labels: tuple[RelevanceLabel, ...] = DEFAULT_LABELS
    missing_title: str = "none"

    def __post_init__(self) -> None:
        labels = [r.label for r in self.relevance_labels]
        if len(labels) < 2:
            raise ValueError(f"PromptConfig.relevance_labels needs at least 2 labels, got {labels}")
        if len(set(labels)) != len(labels) or not all(label.strip() for label in labels):
            raise ValueError(
                f"PromptConfig.relevance_labels must be distinct non-empty strings, got {labels}"
            )


@gin.configurable(module="gecko_jax.fret")
@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """Task sampling, the generation call and validation of its answer.

    Attributes:
      task_types: the task types sampled per seed passage (by weight).
      max_attempts: generation calls per passage (1 + re-asks) before it is given up.
      temperature: sampling temperature of the first attempt.
      reask_temperature: temperature of re-asks (each also with a new seed).
      max_output_tokens: output budget of one generation call.
      min_query_words, max_query_words: accepted query length in words.
      max_task_words: accepted task-description length in words.
      max_copy_overlap: a query whose copied share (see :func:`generate.copy_overlap`)
        exceeds this is rejected.
      copy_ngram: the n of the word n-grams used to measure copying.
    """

    task_types: tuple[TaskType, ...] = DEFAULT_TASK_TYPES
    max_attempts: int = 3
    temperature: float = 0.7
    reask_temperature: float = 1.0
    max_output_tokens: int = 256
    min_query_words: int = 2
    max_query_words: int = 64
    max_task_words: int = 40
    max_copy_overlap: float = 0.8
    copy_ngram: int = 3

    def __post_init__(self) -> None:
        if not self.task_types:
            raise ValueError("GenerationConfig.task_types must not be empty")
        names = [t.name for t in self.task_types]
        if len(set(names)) != len(names):
            raise ValueError(f"GenerationConfig.task_types has duplicate names: {names}")
        _positive(
            "GenerationConfig",
            max_attempts=self.max_attempts,
            max_output_tokens=self.max_output_tokens,
            min_query_words=self.min_query_words,
            max_task_words=self.max_task_words,
            copy_ngram=self.copy_ngram,
        )
        if self.max_query_words < self.min_query_words:
            raise ValueError(
                f"GenerationConfig.max_query_words ({self.max_query_words}) is below "
                f"min_query_words ({self.min_query_words})"
            )
        if not 0.0 < self.max_copy_overlap <= 1.0:
            raise ValueError(
                f"GenerationConfig.max_copy_overlap must be in (0, 1], got {self.max_copy_overlap}"
            )


@gin.configurable(module="gecko_jax.fret")
@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    """Mining neighbours of ``task + query`` among the corpus passages.

    Attributes:
      top_n: neighbours retrieved and scored per query (the paper's N = 20).
      backend: ``"jax"`` (exact, blocked, on the accelerator) or ``"faiss"``.
      block_size: passages per block of the jax backend (None: all at once up to 65,536).
      approximate: use ``jax.lax.approx_max_k`` on TPU (exact elsewhere).
      faiss_index: a faiss ``index_factory`` string for the faiss backend.
      input_format: ``"gecko"``: the encoder's ``task: ... | query: ...`` and
        ``title: ... | text: ...`` templates; ``"plain"``: ``"{task}: {query}"`` and
        ``"{title}. {text}"``.
      batch_size: encoder batch size.
      dim: Matryoshka embedding size used for retrieval (None: full).
    """

    top_n: int = 20
    backend: str = "jax"
    block_size: int | None = None
    approximate: bool = False
    faiss_index: str = "Flat"
    input_format: str = "gecko"
    batch_size: int = 64
    dim: int | None = None

    def __post_init__(self) -> None:
        _positive(
            "RetrievalConfig",
            top_n=self.top_n,
            block_size=self.block_size,
            batch_size=self.batch_size,
            dim=self.dim,
        )
        _one_of("RetrievalConfig", "backend", self.backend, BACKENDS)
        _one_of("RetrievalConfig", "input_format", self.input_format, QUERY_INPUT_FORMATS)
        if self.top_n < 2:
            raise ValueError(
                f"RetrievalConfig.top_n must be >= 2 (a positive and a negative), got {self.top_n}"
            )


@gin.configurable(module="gecko_jax.fret")
@dataclasses.dataclass(frozen=True)
class RankingConfig:
    """Scoring the neighbours and choosing the positive and the hard negative.

    Attributes:
      ranking: ``"rrf"`` (QL and RC fused), ``"ql"`` or ``"rc"`` alone.
      negative: ``"p_N"`` (the last-ranked neighbour), ``"random"`` (a seeded random
        non-top neighbour) or ``"rank:K"`` (the K-th ranked, K >= 2).
    """

    ranking: str = "rrf"
    negative: str = "p_N"

    def __post_init__(self) -> None:
        _one_of("RankingConfig", "ranking", self.ranking, RANKINGS)
        parse_negative(self.negative)


def parse_negative(spec: str) -> int | str:
    """``"p_N"`` / ``"random"`` as themselves, ``"rank:K"`` as the int K.

    Raises:
      ValueError: another string, or K < 2.
    """
    if spec in ("p_N", "random"):
        return spec
    match = _RANK_NEGATIVE.match(spec)
    if not match:
        raise ValueError(
            f"RankingConfig.negative must be 'p_N', 'random' or 'rank:K', got {spec!r}"
        )
    rank = int(match.group(1))
    if rank < 2:
        raise ValueError(f"RankingConfig.negative: rank:{rank} would be the positive; use K >= 2")
    return rank


@gin.configurable(module="gecko_jax.fret")
@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """Reading the passage corpus.

    Attributes:
      max_words: passages longer than this many words are truncated (the LLM context
        budget; None: no limit).
      max_chars: the same in characters, cut at a word boundary (None: no limit).
      max_passages: read at most this many passages (None: all).
      id_fields: fields tried for the passage id, in order.
      title_field, text_field: the title and text fields.
    """

    max_words: int | None = 400
    max_chars: int | None = None
    max_passages: int | None = None
    id_fields: tuple[str, ...] = ("_id", "id")
    title_field: str = "title"
    text_field: str = "text"

    def __post_init__(self) -> None:
        _positive(
            "CorpusConfig",
            max_words=self.max_words,
            max_chars=self.max_chars,
            max_passages=self.max_passages,
        )


@gin.configurable(module="gecko_jax.fret")
@dataclasses.dataclass(frozen=True)
class FretConfig:
    """One FRet run.

    Attributes:
      corpus: JSONL corpus file(s): a path, glob or comma-separated list, local or ``gs://``.
      output_dir: shards, markers, the summary and (by default) the LLM cache go here.
      llm: the client spec for ``gecko_jax.fret.llm.make_client``.
      embedder: the ``Encoder.load`` name or path used for mining.
      num_shards: split the seed passages into this many shards, or
      shard_size: into shards of this many passages (default 1,000 when neither is set).
      output_format: ``"jsonl"`` or ``"tfrecord"``.
      seed: seeds task sampling, LLM sampling and random negatives.
      cache: the LLM cache (SQLite) path; None: ``output_dir/llm_cache.sqlite``. Each
        machine of a multi-worker run needs its own local one.
      llm_concurrency: LLM requests in flight at once (None: the client's default; not
        for ``vertex-batch``, whose calls wait in batch jobs).
      batch_staging_dir: the jobs' inputs and outputs (``gs://bucket/path``); required by,
        and only for, ``llm="vertex-batch:MODEL"``.
      worker_index, worker_count: this process is worker ``worker_index`` of
        ``worker_count`` sharing ``output_dir``: it runs the pending shards ``s`` with
        ``s % worker_count == worker_index``. Not part of the run's pinned settings.
      progress: show tqdm progress bars.
    """

    corpus: str = ""
    output_dir: str = ""
    llm: str = ""
    embedder: str = "all-MiniLM-L6-v2"
    num_shards: int | None = None
    shard_size: int | None = None
    output_format: str = "jsonl"
    seed: int = 0
    cache: str | None = None
    llm_concurrency: int | None = None
    batch_staging_dir: str | None = None
    worker_index: int = 0
    worker_count: int = 1
    progress: bool = True
    corpus_options: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)
    prompts: PromptConfig = dataclasses.field(default_factory=PromptConfig)
    generation: GenerationConfig = dataclasses.field(default_factory=GenerationConfig)
    retrieval: RetrievalConfig = dataclasses.field(default_factory=RetrievalConfig)
    ranking: RankingConfig = dataclasses.field(default_factory=RankingConfig)

    def __post_init__(self) -> None:
        for name in ("corpus", "output_dir", "llm", "embedder"):
            if not getattr(self, name):
                raise ValueError(f"FretConfig.{name} must be set")
        if self.num_shards is not None and self.shard_size is not None:
            raise ValueError("set one of FretConfig.num_shards and FretConfig.shard_size, not both")
        _positive(
            "FretConfig",
            num_shards=self.num_shards,
            shard_size=self.shard_size,
            llm_concurrency=self.llm_concurrency,
        )
        _one_of("FretConfig", "output_format", self.output_format, OUTPUT_FORMATS)
        check_workers(self.worker_index, self.worker_count)
        batch = self.llm.startswith("vertex-batch:")
        if batch and not self.batch_staging_dir:
            raise ValueError(
                "--batch_staging_dir (FretConfig.batch_staging_dir) is required by "
                f"--llm {self.llm}: the batch jobs' inputs and outputs go there, e.g. gs://bucket/fret-batches"
            )
        if self.batch_staging_dir and not batch:
            raise ValueError(
                "--batch_staging_dir (FretConfig.batch_staging_dir) is only for "
                f"--llm vertex-batch:MODEL, not --llm {self.llm}"
            )
        if batch and self.llm_concurrency is not None:
            raise ValueError(
                "--llm_concurrency (FretConfig.llm_concurrency) does not apply to "
                "--llm vertex-batch: its calls wait in batch jobs"
            )
