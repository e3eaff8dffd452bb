"""The settings that shape a ``gecko-train`` run, recorded in ``MODEL_DIR`` and checked on
resume.

A rerun of a ``MODEL_DIR`` that has checkpoints continues those steps, so it must train
the same model the same way: a change to the model, loss, optimizer, batch, lengths,
input or seed is refused before any compute (``--force_new_settings`` continues anyway
and keeps the earlier record beside the new one). How long the run is, how often it logs,
saves and evaluates, its mesh and its GradCache chunk may change: they are logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from gecko_jax import fileio, run_settings
from gecko_jax import model_dir as model_dir_lib

log = logging.getLogger("gecko_jax.train")

SETTINGS_FILE = "run_settings.json"
CONFIG_FILE = "config.gin"
# Safe to change on resume: the run's length, cadence, layout and evaluation.
RESUMABLE = (
    "train_steps",
    "optimizer.total_steps",
    "grad_cache_chunk_size",
    "mesh_shape",
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "eval_every",
    "evaluators",
    "eval_data_dir",
    "eval_dims",
    "best_metric",
    "keep_best",
)
# train()'s arguments that are not settings of the run.
_NOT_SETTINGS = ("model_dir", "task_registrations", "force_new_settings")


def from_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The run's settings from ``gecko_jax.train.train``'s arguments.

    The train config's loss and optimizer become top-level groups, so a changed
    learning rate reads ``optimizer.learning_rate``.
    """
    settings = {k: v for k, v in arguments.items() if k not in _NOT_SETTINGS}
    config = settings.pop("train_config", None)
    if config is not None:
        settings.update(
            loss=config.loss,
            optimizer=config.optimizer,
            learnable_temperature=config.learnable_temperature,
            max_logit_scale=config.max_logit_scale,
            grad_cache_chunk_size=config.grad_cache_chunk_size,
            train_config_seed=config.seed,
        )
    return run_settings.flatten(settings)


def check_and_record(model_dir: str, settings: Mapping[str, Any], force: bool = False) -> None:
    """Refuses a resumed run with other settings; records the settings of this one.

    Raises:
      run_settings.ChangedSettingsError: ``MODEL_DIR`` has checkpoints trained with
        other settings (lists each changed key, old and new) and ``force`` is off.
    """
    path = fileio.join(model_dir, SETTINGS_FILE)
    step = model_dir_lib.newest_step(fileio.join(model_dir, model_dir_lib.CHECKPOINT_SUBDIR))
    if step is not None and fileio.exists(path):
        with fileio.open(path) as f:
            recorded = json.load(f)
        changed = run_settings.changes(recorded, settings, ignore=RESUMABLE)
        if changed and not force:
            raise run_settings.ChangedSettingsError(
                f"MODEL_DIR {model_dir} (checkpoint of step {step})",
                changed,
                "rerun with the recorded settings to resume, use a new MODEL_DIR, or pass "
                "--force_new_settings to continue these checkpoints with the new ones",
            )
        if changed:
            _keep_earlier_record(model_dir, step)
            log.warning(
                "continuing step %d with new settings:\n%s", step, run_settings.describe(changed)
            )
        allowed = [c for c in run_settings.changes(recorded, settings) if c not in changed]
        if allowed:
            log.info("changed on resume:\n%s", run_settings.describe(allowed))
    fileio.makedirs(model_dir)
    with fileio.atomic_open(path) as f:
        f.write(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def _keep_earlier_record(model_dir: str, step: int) -> None:
    """Copies the settings and gin config that describe steps up to ``step`` aside."""
    for name in (SETTINGS_FILE, CONFIG_FILE):
        source = fileio.join(model_dir, name)
        if fileio.exists(source):
            stem, ext = name.rsplit(".", 1)
            with fileio.open(source) as f:
                text = f.read()
            with fileio.atomic_open(fileio.join(model_dir, f"{stem}.to_step_{step}.{ext}")) as f:
                f.write(text)
