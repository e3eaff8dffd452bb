"""``gecko-train``: the gin-configured training entry point.

    gecko-train --gin_file=runs/finetune.gin --gin_file=models/minilm_l6.gin \\
        --gin.MODEL_DIR="'/tmp/run'" --gin.TRAIN_STEPS=1000 --gin.MIXTURE_OR_TASK_NAME="'fret'"

A run resumes from the newest checkpoint in ``MODEL_DIR`` (state and input
position) when its settings are those recorded there (:mod:`gecko_jax.train_settings`);
SIGINT and SIGTERM (TPU preemption) save and stop; a non-finite loss stops the run
with its step number and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import gin
import jax

from gecko_jax import fileio, partitioning, train_settings
from gecko_jax import model_dir as model_dir_lib
from gecko_jax.checkpoints import CheckpointManager, restore_params
from gecko_jax.data import fret_tasks, pipeline, tasks
from gecko_jax.data.pairs import PairBatches, read_pair_rows
from gecko_jax.formats import InputFormat
from gecko_jax.losses import ContrastiveLossConfig
from gecko_jax.models import t5x_checkpoint, t5x_model
from gecko_jax.models.dual_encoder import HeadConfig
from gecko_jax.optimizers import OptimizerConfig
from gecko_jax.pretrained import load_pretrained
from gecko_jax.train_loop import TrainSetup, train_loop
from gecko_jax.trainer import TrainConfig, Trainer

log = logging.getLogger("gecko_jax.train")

for _cls in (ContrastiveLossConfig, OptimizerConfig, HeadConfig, TrainConfig, InputFormat):
    gin.external_configurable(_cls, module="gecko_jax")
for _fn in (
    tasks.register_default_tasks,
    tasks.register_pair_corpus,
    tasks.register_classification_task,
    tasks.register_beir_task,
    tasks.register_sts_task,
    fret_tasks.register_fret_tasks,
    pipeline.register_mixture,
    t5x_model.t5x_pretrained,
):
    gin.external_configurable(_fn, module="gecko_jax")


def _restore_or_init(
    trainer: Trainer,
    checkpoints: CheckpointManager,
    batches: Any,
    pretrained_params: Any,
    init_checkpoint: str | None,
    seed: int,
) -> Any:
    """Resumes this run's newest checkpoint, or builds the initial train state."""
    if checkpoints.latest_step() is not None:
        state, data_state = checkpoints.restore(trainer.abstract_state())
        batches.set_state(data_state)
        log.info("resumed from step %d", int(state.step))
        return state
    init_params = pretrained_params
    if init_checkpoint:
        # A backbone from elsewhere, a fresh head and optimizer: a T5X checkpoint (T5 v1.1,
        # GTR, Sentence-T5), or pre-finetuning's gecko-train checkpoints.
        backbone = trainer.abstract_state().params["backbone"]
        if t5x_checkpoint.is_t5x_checkpoint(init_checkpoint):
            init_params = {"backbone": t5x_checkpoint.load_t5x_backbone(init_checkpoint, backbone)}
        else:
            init_params = restore_params(init_checkpoint, {"backbone": backbone})
        log.info("backbone initialised from %s", init_checkpoint)
    position = batches.get_state()
    example = next(batches)
    batches.set_state(position)
    return trainer.init_state(jax.random.PRNGKey(seed), init_params, example)


def _build_input(
    train_file: str | None,
    mixture_or_task_name: str | None,
    vocabulary: Any,
    batch_size: int,
    lengths: dict[str, int],
    seed: int,
) -> Any:
    """A pairs-file input or a mixture's; exactly one of the two must be named."""
    if (train_file is None) == (mixture_or_task_name is None):
        raise ValueError(
            "set exactly one of train.train_file and train.mixture_or_task_name "
            f"(got {train_file!r} and {mixture_or_task_name!r})"
        )
    if train_file is not None:
        return PairBatches(
            read_pair_rows(train_file),
            vocabulary,
            batch_size,
            lengths["query"],
            lengths["positive"],
            seed=seed,
        )
    shard_info = None
    if jax.process_count() > 1:
        import seqio

        shard_info = seqio.ShardInfo(jax.process_index(), jax.process_count())
    return pipeline.mixture_input(
        mixture_or_task_name, vocabulary, lengths, batch_size, seed=seed, shard_info=shard_info
    )


@gin.configurable(module="gecko_jax")
def train(
    model_dir: str = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    init_from: str = gin.REQUIRED,
    train_file: str | None = None,
    mixture_or_task_name: str | None = None,
    task_registrations: Sequence[Any] = (),
    num_negatives: int = 0,
    init_checkpoint: str | None = None,
    head: HeadConfig | None = None,
    dtype: str = "float32",
    dropout_rate: float | None = None,
    query_length: int = 64,
    document_length: int = 256,
    train_config: TrainConfig | None = None,
    mesh_shape: tuple[int, ...] = (-1, 1),
    checkpoint_every: int = 1000,
    keep_checkpoints: int = 3,
    log_every: int = 50,
    seed: int = 0,
    eval_every: int = 0,
    evaluators: Sequence[str] = (),
    eval_data_dir: str | None = None,
    eval_dims: Sequence[int] | None = None,
    best_metric: str | None = None,
    keep_best: int = 1,
    force_new_settings: bool = False,
) -> dict[str, float]:
    """Trains a dual encoder and returns the last step's metrics.

    Args:
      model_dir: checkpoints, TensorBoard events (``$AIP_TENSORBOARD_LOG_DIR`` instead,
        when a Vertex AI job sets it) and the resolved config go here.
      train_steps: total optimizer steps (a resumed run counts from its checkpoint).
      batch_size: global batch size (the in-batch negative pool).
      init_from: pre-trained model name or directory (architecture, vocabulary and,
        unless ``init_checkpoint`` is set, the backbone weights).
      init_checkpoint: a gecko-train checkpoint directory (``MODEL_DIR/checkpoints``,
        e.g. pre-finetuning's) or a T5X checkpoint (``checkpoint_N`` directory or legacy
        file, local or ``gs://``) whose backbone initialises this run; ignored once this
        run has checkpoints of its own.
      train_file: pairs JSONL (``query``, ``positive``[, ``negative``, ``task``]);
        give this or ``mixture_or_task_name``.
      mixture_or_task_name: a registered seqio mixture or task, read one dataset
        per batch (:mod:`gecko_jax.data.pipeline`).
      task_registrations: evaluated before the input is built, so gin can register
        tasks and mixtures: ``train.task_registrations = [@gecko_jax.register_default_tasks()]``.
      num_negatives: hard negatives per example from a mixture (0: none).
      head: pooling/projection (default: the checkpoint's own).
      dtype: activation dtype; parameters stay float32.
      dropout_rate: overrides the checkpoint's dropout.
      query_length, document_length: token lengths of the two sides.
      train_config: loss, optimizer, temperature and GradCache settings (default:
        ``TrainConfig()``).
      mesh_shape: ``(data, model)`` or ``(replica, data, model)`` (multi-slice: replica =
        slices); -1 in data or model takes the remaining devices.
      checkpoint_every: steps between checkpoints.
      keep_checkpoints: newest checkpoints kept.
      log_every: steps between console/TensorBoard metric logs.
      seed: parameter-initialisation, dropout and input-order seed.
      eval_every: steps between in-training evaluations (0: none).
      evaluators: local evaluators as ``name[:split]`` (``gecko_jax.eval``), e.g.
        ``['stsb:dev']``; logged to TensorBoard as ``eval/...``.
      eval_data_dir: their data directory (default ``$GECKO_EVAL_DATA``).
      eval_dims: Matryoshka dimensions to evaluate (default: full).
      best_metric: ``{evaluator}_{split}/{metric}`` (e.g. ``stsb_dev/spearman``): keep the
        ``keep_best`` best parameter checkpoints in ``MODEL_DIR/best_checkpoints``.
      keep_best: how many best checkpoints to keep.
      force_new_settings: continue ``MODEL_DIR``'s checkpoints even though settings
        that shape the run changed (default: refuse, naming them).

    Raises:
      gecko_jax.run_settings.ChangedSettingsError: see ``force_new_settings``.
      gecko_jax.train_loop.TrainingStopped: SIGINT or SIGTERM; the checkpoint is saved.
    """
    # Every argument but the directory and the flags is a setting of the run.
    settings = train_settings.from_arguments(locals())
    partitioning.initialize_distributed()
    del task_registrations  # gin has called them by now
    if mixture_or_task_name is not None:
        settings["mixture_rates"] = pipeline.tasks_and_rates(mixture_or_task_name)
    setup = setup_train_loop(
        model_dir=model_dir,
        train_steps=train_steps,
        batch_size=batch_size,
        init_from=init_from,
        train_file=train_file,
        mixture_or_task_name=mixture_or_task_name,
        num_negatives=num_negatives,
        init_checkpoint=init_checkpoint,
        head=head,
        dtype=dtype,
        dropout_rate=dropout_rate,
        query_length=query_length,
        document_length=document_length,
        train_config=train_config or TrainConfig(),
        mesh_shape=mesh_shape,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        log_every=log_every,
        seed=seed,
        eval_every=eval_every,
        evaluators=evaluators,
        eval_data_dir=eval_data_dir,
        eval_dims=eval_dims,
        best_metric=best_metric,
        keep_best=keep_best,
        settings=settings,
        force_new_settings=force_new_settings,
    )
    return train_loop(setup)


def setup_train_loop(
    *,
    model_dir: str,
    train_steps: int,
    batch_size: int,
    init_from: str,
    train_file: str | None,
    mixture_or_task_name: str | None,
    num_negatives: int,
    init_checkpoint: str | None,
    head: HeadConfig | None,
    dtype: str,
    dropout_rate: float | None,
    query_length: int,
    document_length: int,
    train_config: TrainConfig,
    mesh_shape: Sequence[int],
    checkpoint_every: int,
    keep_checkpoints: int,
    log_every: int,
    seed: int,
    eval_every: int,
    evaluators: Sequence[str],
    eval_data_dir: str | None,
    eval_dims: Sequence[int] | None,
    best_metric: str | None,
    keep_best: int,
    settings: dict[str, Any] | None = None,
    force_new_settings: bool = False,
) -> TrainSetup:
    """Builds a run: mesh, model directory, model, input, trainer, checkpoints, the state
    (resumed or initial), evaluation and metric writer. Arguments as :func:`train`'s;
    ``settings`` (:func:`gecko_jax.train_settings.from_arguments`) are checked against
    ``MODEL_DIR``'s before anything loads."""
    mesh = make_mesh_from_shape(mesh_shape)
    partitioning.check_batch_divisible(batch_size, mesh)
    if fileio.exists(model_dir) and not _is_dir(model_dir):
        raise ValueError(f"train.model_dir {model_dir} is a file, not a directory")
    if jax.process_index() == 0:
        train_settings.check_and_record(model_dir, settings or {}, force=force_new_settings)
        with fileio.atomic_open(fileio.join(model_dir, train_settings.CONFIG_FILE)) as f:
            f.write(gin.config_str())

    log.info("loading %s", init_from)
    pretrained = load_pretrained(init_from, dtype=dtype, head=head, dropout_rate=dropout_rate)
    if jax.process_index() == 0:
        model_dir_lib.write_spec(
            model_dir,
            model_dir_lib.ModelSpec(
                init_from=init_from,
                head=pretrained.model.head,
                max_length=pretrained.max_length,
                matryoshka_dims=train_config.loss.mrl_dims,
            ),
        )
    for name, length in (("query_length", query_length), ("document_length", document_length)):
        if length > pretrained.max_length:
            raise ValueError(
                f"train.{name}={length} exceeds the model's limit of {pretrained.max_length} tokens"
            )
    log.info("reading the input")
    batches = _build_input(
        train_file,
        mixture_or_task_name,
        pretrained.vocabulary,
        batch_size,
        {
            "query": query_length,
            "positive": document_length,
            "negative": document_length,
            "num_negatives": num_negatives,
        },
        seed,
    )
    log.info("building the train state; the first step compiles the train step")
    trainer = Trainer(pretrained.model, mesh, partitioning.logical_axis_rules(), train_config)
    checkpoints = CheckpointManager(
        os.path.join(model_dir, "checkpoints"), checkpoint_every, keep_checkpoints
    )
    state = _restore_or_init(
        trainer, checkpoints, batches, pretrained.params, init_checkpoint, seed
    )
    evaluation = None
    if eval_every or evaluators or best_metric:
        from gecko_jax.train_eval import InTrainingEval  # reads evaluation data; only when asked

        evaluation = InTrainingEval.build(
            evaluators,
            eval_every,
            model_dir=model_dir,
            data_dir=eval_data_dir,
            dims=eval_dims,
            best_metric=best_metric,
            keep_best=keep_best,
        )

    from clu import metric_writers  # imports TensorBoard; kept off the module import path

    # A Vertex AI job with a TensorBoard instance streams from the directory it names.
    log_dir = os.environ.get("AIP_TENSORBOARD_LOG_DIR") or model_dir
    writer = metric_writers.create_default_writer(log_dir, just_logging=jax.process_index() > 0)
    return TrainSetup(
        trainer=trainer,
        state=state,
        batches=batches,
        checkpoints=checkpoints,
        writer=writer,
        pretrained=pretrained,
        train_steps=train_steps,
        batch_size=batch_size,
        log_every=log_every,
        evaluation=evaluation,
    )


def _is_dir(path: str) -> bool:
    if fileio.is_url(path):
        return True  # object stores have no files in the way of a directory
    return os.path.isdir(path)


def make_mesh_from_shape(mesh_shape: Sequence[int]) -> Any:
    """The mesh of ``train.mesh_shape``: ``(data, model)`` or ``(replica, data, model)``.

    Raises:
      ValueError: another length (names the binding).
    """
    if len(mesh_shape) == 2:
        return partitioning.make_mesh(*mesh_shape)
    if len(mesh_shape) == 3:
        replica, data, model = mesh_shape
        return partitioning.make_mesh(data, model, replica=replica)
    raise ValueError(
        f"train.mesh_shape must be (data, model) or (replica, data, model), got {tuple(mesh_shape)}"
    )
