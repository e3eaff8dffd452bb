"""Any gecko_jax model as an encoder of the ``mteb`` package, and ``run_mteb``.

::

    from gecko_jax.eval.mteb_adapter import GeckoMtebModel, run_mteb

    model = GeckoMtebModel.from_checkpoint("all-MiniLM-L6-v2", dim=256)
    mteb.evaluate(model, mteb.get_tasks(["STSBenchmark"]), cache=mteb.ResultCache("results"))

    run_mteb("/tmp/my_model", tasks=["SciFact"], dims=[768, 256], output_dir="runs/mteb")

Each text gets Gecko's format for its task (:mod:`gecko_jax.eval.mteb_tasks`);
``task_prompts="none"`` embeds the texts as mteb gives them instead (plain
sentence-embedding models, whose published scores use no prompts).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from mteb import ResultCache, evaluate
from mteb.models import ModelMeta
from mteb.models.abs_encoder import AbsEncoder
from mteb.types import PromptType

from gecko_jax import formats
from gecko_jax.encoder import Encoder
from gecko_jax.eval.mteb_tasks import TaskStrings, is_symmetric, resolve_tasks

if TYPE_CHECKING:
    from mteb import AbsTask, TaskMetadata
    from torch.utils.data import DataLoader

logger = logging.getLogger(__name__)

GECKO, NO_PROMPTS = "gecko", "none"
PROMPT_STYLES = (GECKO, NO_PROMPTS)
# ModelMeta names must look like "organization/model".
DEFAULT_ORGANIZATION = "gecko_jax"
DEFAULT_BATCH_SIZE = 64


class DatasetUnavailableError(RuntimeError):
    """An MTEB task's dataset could not be loaded (no hub access and no local copy)."""


def count_parameters(params: Any) -> int:
    """Number of scalars in a parameter tree."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


def weights_fingerprint(params: Any) -> str:
    """A short hash of every parameter's name, shape, dtype and values.

    Used as the mteb revision, so results of retrained weights never mix with cached
    results of earlier weights under the same model name.
    """
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}:{array.dtype}:{array.shape};".encode())
        digest.update(array.view(np.uint8).reshape(-1))
    return digest.hexdigest()[:12]


def default_model_name(name_or_path: str | os.PathLike) -> str:
    """An ``organization/model`` name: ``gecko_jax/<directory or model name>``."""
    key = os.fspath(name_or_path)
    if os.path.isdir(key):
        return f"{DEFAULT_ORGANIZATION}/{os.path.basename(os.path.abspath(key))}"
    return key if "/" in key else f"{DEFAULT_ORGANIZATION}/{key}"


def checkpoint_date(name_or_path: str | os.PathLike) -> str | None:
    """``YYYY-MM-DD`` of a model directory's newest top-level file; None for a name."""
    key = os.fspath(name_or_path)
    if not os.path.isdir(key):
        return None
    times = [entry.stat().st_mtime for entry in os.scandir(key)]
    stamp = max(times) if times else os.stat(key).st_mtime
    return datetime.date.fromtimestamp(stamp).isoformat()


def build_model_meta(
    encoder: Encoder,
    name: str,
    dim: int | None = None,
    use_instructions: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> ModelMeta:
    """mteb's description of a gecko_jax model, derived from the loaded encoder.

    Args:
      encoder: the loaded model.
      name: ``organization/model``.
      dim: output size (default: the full embedding size).
      use_instructions: whether inputs carry task prompts.
      overrides: any further ``ModelMeta`` fields (``license``, ``languages``,
        ``release_date``, ``reference``, ``training_datasets``, ``loader_kwargs``, ...);
        ``revision`` defaults to :func:`weights_fingerprint`.

    Raises:
      pydantic.ValidationError: a field mteb rejects (e.g. a name without ``/``).
    """
    overrides = dict(overrides or {})
    if "revision" not in overrides:
        overrides["revision"] = weights_fingerprint(encoder.params)
    param_bytes = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(encoder.params))
    fields: dict[str, Any] = {
        "loader": load_mteb_model,
        "name": name,
        "release_date": None,
        "languages": ["eng-Latn"],
        "n_parameters": count_parameters(encoder.params),
        "memory_usage_mb": round(param_bytes / 2**20, 2),
        "max_tokens": encoder.max_length,
        "embed_dim": dim or encoder.embedding_dim,
        "license": "not specified",
        "open_weights": True,
        "public_training_code": None,
        "public_training_data": None,
        "framework": ["JAX"],
        "similarity_fn_name": "cosine",
        "use_instructions": use_instructions,
        "training_datasets": None,
        "modalities": ["text"],
        "model_type": ["dense"],
    }
    return ModelMeta(**{**fields, **overrides})


class GeckoMtebModel(AbsEncoder):
    """A gecko_jax :class:`Encoder` behind mteb's encoder interface.

    Texts are formatted with Gecko's task string for each MTEB task (see
    :class:`~gecko_jax.eval.mteb_tasks.TaskStrings`): queries (and every text of a
    symmetric task) as ``task: {task} | query: {text}``, documents as
    ``title: {title} | text: {text}`` with the document's title, or ``none``.

    Attributes:
      encoder: the wrapped model.
      dim: Matryoshka output size, or None for the full embedding.
      batch_size: default sequences per device batch (mteb's ``batch_size`` wins).
      task_strings: MTEB task -> Gecko task string.
      task_prompts: ``"gecko"`` (format as above) or ``"none"`` (texts as mteb gives
        them, documents as ``title + " " + text``).
      mteb_model_meta: the model's ``ModelMeta``.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        name: str = f"{DEFAULT_ORGANIZATION}/model",
        dim: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        task_strings: TaskStrings | None = None,
        task_prompts: str = GECKO,
        meta_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        if dim is not None and not 1 <= dim <= encoder.embedding_dim:
            raise ValueError(
                f"dim={dim} is outside 1..{encoder.embedding_dim}, "
                f"the embedding size of model {name!r}"
            )
        if task_prompts not in PROMPT_STYLES:
            raise ValueError(f"task_prompts must be one of {PROMPT_STYLES}, got {task_prompts!r}")
        self.encoder = encoder
        self.dim = dim
        self.batch_size = batch_size
        self.task_strings = task_strings or TaskStrings()
        self.task_prompts = task_prompts
        # Results of another prompt style or task-string table must not share a cache entry.
        experiment: dict[str, Any] = {}
        if task_prompts != GECKO:
            experiment["task_prompts"] = task_prompts
        elif self.task_strings != TaskStrings():
            experiment["task_strings"] = dataclasses.asdict(self.task_strings)
        self.mteb_model_meta = build_model_meta(
            encoder,
            name,
            dim,
            use_instructions=task_prompts == GECKO,
            overrides={"experiment_kwargs": experiment or None, **(meta_overrides or {})},
        )

    @classmethod
    def from_checkpoint(
        cls,
        name_or_path: str | os.PathLike,
        dim: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        name: str | None = None,
        task_strings: TaskStrings | None = None,
        task_prompts: str = GECKO,
        meta_overrides: Mapping[str, Any] | None = None,
    ) -> GeckoMtebModel:
        """Loads a model with ``Encoder.load(name_or_path)`` and wraps it.

        Args:
          name_or_path: a registered model name or a model directory.
          dim: Matryoshka output size (default: full).
          batch_size: sequences per device batch.
          name: ``organization/model`` for mteb (default: :func:`default_model_name`).
          task_strings: task-string table (default: the paper's).
          task_prompts: ``"gecko"`` or ``"none"``.
          meta_overrides: extra ``ModelMeta`` fields.

        Raises:
          gecko_jax.models.hf_checkpoint.CheckpointError: unusable checkpoint.
          ValueError: ``dim`` larger than the model's embedding size.
        """
        overrides = {
            "release_date": checkpoint_date(name_or_path),
            "loader_kwargs": {
                "checkpoint": os.fspath(name_or_path),
                "dim": dim,
                "task_prompts": task_prompts,
            },
            **(meta_overrides or {}),
        }
        return cls(
            Encoder.load(name_or_path),
            name=name or default_model_name(name_or_path),
            dim=dim,
            batch_size=batch_size,
            task_strings=task_strings,
            task_prompts=task_prompts,
            meta_overrides=overrides,
        )

    def gecko_task(self, task_metadata: TaskMetadata) -> str | None:
        """The task string texts of this task are formatted with (None: no prompts)."""
        return self.task_strings.for_task(task_metadata) if self.task_prompts == GECKO else None

    def encode(
        self,
        inputs: DataLoader[Any],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embeds mteb's batches of texts.

        Args:
          inputs: mteb's data loader; batches carry ``text`` and, for corpora,
            ``body`` and ``title``.
          task_metadata: the task being evaluated (picks the task string).
          hf_split: split being evaluated (unused).
          hf_subset: subset being evaluated (unused).
          prompt_type: ``query``, ``document`` or None (symmetric use).
          **kwargs: mteb's encode options; ``batch_size`` and ``show_progress_bar`` are used.

        Returns:
          ``[n, dim]`` float32, L2-normalised.
        """
        symmetric = is_symmetric(task_metadata)
        kind = (
            formats.DOCUMENT
            if prompt_type == PromptType.document and not symmetric
            else formats.QUERY
        )
        task = self.gecko_task(task_metadata)
        texts, titles = _collect_texts(inputs, task_metadata.name, split_titles=task is not None)
        logger.debug("%s: %d %s texts, task %r", task_metadata.name, len(texts), kind, task)
        return self.encoder.encode(
            texts,
            task=task,
            kind=kind,
            dim=self.dim,
            batch_size=kwargs.get("batch_size") or self.batch_size,
            titles=titles if kind == formats.DOCUMENT and task is not None else None,
            show_progress=kwargs.get("show_progress_bar"),
        )


def _collect_texts(
    inputs: Iterable[Mapping[str, Any]], task_name: str, split_titles: bool
) -> tuple[list[str], list[str | None]]:
    """All texts of a data loader, with titles split off corpus entries when asked.

    mteb joins a corpus entry's title and text into ``text`` and keeps the parts in
    ``title`` and ``body``; Gecko's document format wants them apart.
    """
    texts: list[str] = []
    titles: list[str | None] = []
    for batch in inputs:
        if "text" not in batch:
            raise ValueError(
                f"task {task_name}: gecko_jax embeds text only, got columns {sorted(batch)}"
            )
        if split_titles and "body" in batch:
            texts.extend(batch["body"])
            titles.extend(
                title or None for title in batch.get("title", [None] * len(batch["body"]))
            )
        else:
            texts.extend(batch["text"])
            titles.extend([None] * len(batch["text"]))
    return texts, titles


def load_mteb_model(
    model_name: str,
    revision: str | None = None,
    *,
    checkpoint: str,
    dim: int | None = None,
    embed_dim: int | None = None,
    task_strings: TaskStrings | Mapping[str, Any] | None = None,
    device: str | None = None,
    **kwargs: Any,
) -> GeckoMtebModel:
    """``ModelMeta.loader``: lets ``ModelMeta.load_model()`` rebuild the adapter.

    ``embed_dim`` is mteb's name for ``dim``; ``task_strings`` may come back from the
    meta's ``experiment_kwargs`` as a dict; ``revision`` and ``device`` are mteb's (the
    weights are whatever ``checkpoint`` holds; JAX picks the device).
    """
    if isinstance(task_strings, Mapping):
        task_strings = TaskStrings(**task_strings)
    return GeckoMtebModel.from_checkpoint(
        checkpoint, dim=embed_dim or dim, name=model_name, task_strings=task_strings, **kwargs
    )


def run_mteb(
    checkpoint: str,
    tasks: Sequence[str] | None = (),
    benchmark: str | None = None,
    output_dir: str = "results",
    dims: Sequence[int] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overwrite: bool = False,
    *,
    task_prompts: str = GECKO,
    task_strings: TaskStrings | None = None,
    model_name: str | None = None,
) -> list[str]:
    """Evaluates a model on MTEB tasks and writes mteb's result files.

    Results go to ``output_dir/results/<model name>/<weights fingerprint>/<task>.json``
    (mteb's layout). Reruns skip what is already there (mteb's ``only-missing``) unless
    ``overwrite``. Each requested dimension is a separate model, its name suffixed
    ``-dim<d>``.

    Args:
      checkpoint: a registered model name or a model directory.
      tasks: MTEB task names.
      benchmark: an MTEB benchmark name (its tasks are added to ``tasks``).
      output_dir: root of mteb's result cache.
      dims: Matryoshka dimensions to evaluate (default: the full size only).
      batch_size: sequences per device batch.
      overwrite: re-evaluate tasks that already have results.
      task_prompts: ``"gecko"`` (Gecko's task formats) or ``"none"``.
      task_strings: task-string table (default: the paper's).
      model_name: ``organization/model`` (default: :func:`default_model_name`).

    Returns:
      Paths of the result files, one per task and dimension.

    Raises:
      UnknownNameError: an unknown task or benchmark (lists close matches).
      ValueError: a dimension larger than the model's embedding size.
      DatasetUnavailableError: a task's dataset is neither cached nor downloadable.
    """
    task_objects = resolve_tasks(tasks, benchmark)
    encoder = Encoder.load(checkpoint)
    base_name = model_name or default_model_name(checkpoint)
    overrides = {
        "release_date": checkpoint_date(checkpoint),
        "revision": weights_fingerprint(encoder.params),
    }
    models = [
        GeckoMtebModel(
            encoder,
            name=f"{base_name}-dim{dim}" if dim else base_name,
            dim=dim,
            batch_size=batch_size,
            task_strings=task_strings,
            task_prompts=task_prompts,
            meta_overrides={
                **overrides,
                "loader_kwargs": {
                    "checkpoint": checkpoint,
                    "dim": dim,
                    "task_prompts": task_prompts,
                },
            },
        )
        for dim in (dims or [None])
    ]
    cache = ResultCache(cache_path=output_dir)
    paths = []
    for model in models:
        for task in task_objects:
            evaluate_task(model, task, cache, batch_size=batch_size, overwrite=overwrite)
            paths.append(
                os.fspath(cache.get_task_result_path(task.metadata.name, model.mteb_model_meta))
            )
    return paths


def evaluate_task(
    model: GeckoMtebModel,
    task: AbsTask,
    cache: ResultCache,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overwrite: bool = False,
) -> Any:
    """Runs one task through ``mteb.evaluate``, saving into ``cache``; returns mteb's ModelResult.

    Raises:
      DatasetUnavailableError: the task's dataset could not be loaded.
    """
    try:
        return evaluate(
            model,
            task,
            cache=cache,
            overwrite_strategy="always" if overwrite else "only-missing",
            encode_kwargs={"batch_size": batch_size},
            co2_tracker=False,
            public_only=False,
        )
    except Exception as e:
        if task.data_loaded or not _is_hub_error(e):
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
        reason = (
            "HF_HUB_OFFLINE is set"
            if offline
            else "the Hugging Face hub is unreachable "
            "(set HF_HUB_OFFLINE=1 to fail at once instead of retrying)"
        )
        raise DatasetUnavailableError(
            f"MTEB task {task.metadata.name}: dataset {task.metadata.dataset.get('path')!r} "
            f"is not in the local Hugging Face cache and {reason}; download it where the hub is "
            f"reachable (HF_HOME / HF_DATASETS_CACHE) or load the task's data yourself. Cause: {e}"
        ) from e


def _is_hub_error(error: BaseException) -> bool:
    """Whether an exception (or one in its chain) comes from datasets / huggingface_hub / HTTP."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        module = type(error).__module__
        if module.split(".")[0] in ("datasets", "huggingface_hub", "requests", "httpx", "urllib3"):
            return True
        if isinstance(error, (ConnectionError, TimeoutError)):
            return True
        error = error.__cause__ or error.__context__
    return False
