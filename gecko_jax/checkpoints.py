"""orbax checkpoints of a training run: the train state plus the input position.

A step directory holds up to three items: ``state`` (the sharded train state, saved
asynchronously), ``data`` (JSON: the input pipeline's position, shared by every
process) and, for inputs with per-process state (tf.data iterators, rows held
back), ``host_data``: one file per process, ``process_{i}-of-{n}.npz``. Restoring
the latest step resumes all of them. :func:`restore_params` reads only the
parameters of a checkpoint into a new model (fine-tuning from pre-finetuning).

Why a file per process rather than bytes inside the JSON: a tf.data iterator's
state holds its shuffle and prefetch buffers (megabytes per task), and each host's
differs. The bytes are taken synchronously in :meth:`CheckpointManager.save`, while
the iterators stand at that step, and written in the background; orbax commits the
step directory only when every item is written, so input and train state of a step
appear together or not at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import future as ocp_future

from gecko_jax.data.iterator_state import (
    HOST_STATE_KEY,
    host_state_bytes,
    host_state_filename,
)

STATE_ITEM = "state"
DATA_ITEM = "data"
HOST_DATA_ITEM = "host_data"


class HostDataHandler(ocp.handlers.AsyncCheckpointHandler):
    """Saves each process's own input-state bytes to ``process_{i}-of-{n}.npz``.

    Every process writes its file (unlike JSON items, which only the primary
    host writes); restore reads the file of this process and fails clearly when
    the checkpoint was written by a different number of processes.
    """

    def _path(self, directory: epath.Path) -> epath.Path:
        return directory / host_state_filename(jax.process_index(), jax.process_count())

    async def async_save(self, directory: epath.Path, args: HostDataSave) -> list[Any]:
        """Writes in the background once orbax has created the item directory."""
        path, blob = self._path(directory), args.blob

        async def write() -> None:
            path.write_bytes(blob)

        return [ocp_future.CommitFutureAwaitingContractedSignals(write(), name="host_data_save")]

    def save(self, directory: epath.Path, args: HostDataSave) -> None:
        """Writes synchronously."""
        self._path(directory).write_bytes(args.blob)

    def restore(self, directory: epath.Path, args: HostDataRestore | None = None) -> bytes:
        """This process's bytes."""
        del args
        path = self._path(directory)
        if not path.exists():
            found = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
            raise FileNotFoundError(
                f"no input state for process {jax.process_index()} of {jax.process_count()} in "
                f"{directory} (found {found}); resume with the process count that saved it"
            )
        return path.read_bytes()


@ocp.args.register_with_handler(HostDataHandler, for_save=True)
@dataclasses.dataclass
class HostDataSave(ocp.args.CheckpointArgs):
    """This process's input-state bytes."""

    blob: bytes


@ocp.args.register_with_handler(HostDataHandler, for_restore=True)
@dataclasses.dataclass
class HostDataRestore(ocp.args.CheckpointArgs):
    """Restores this process's input-state bytes."""


class CheckpointManager:
    """Periodic, keep-N, asynchronous checkpoints of ``(train state, input position)``.

    Args:
      directory: where step directories go (local path or ``gs://``).
      save_interval_steps: periodic saves happen on multiples of this.
      max_to_keep: newest checkpoints kept (older ones are deleted).
      async_save: write in a background thread while training continues.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        save_interval_steps: int = 1000,
        max_to_keep: int = 3,
        async_save: bool = True,
    ) -> None:
        if save_interval_steps < 1:
            raise ValueError(f"save_interval_steps must be positive, got {save_interval_steps}")
        self.directory = os.fspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_interval_steps=save_interval_steps,
                max_to_keep=max_to_keep,
                enable_async_checkpointing=async_save,
            ),
            item_names=(STATE_ITEM, DATA_ITEM, HOST_DATA_ITEM),
        )

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the checkpoints on disk."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, data_state: dict[str, Any], force: bool = False) -> bool:
        """Saves when ``step`` is due (or ``force``); returns whether it saved.

        Args:
          step: the training step.
          state: the train state.
          data_state: the input's ``get_state()``: JSON values, plus optionally this
            process's state under ``HOST_STATE_KEY`` (bytes or a lazy snapshot,
            serialised only when the step is due).
          force: save even if the step is not due.
        """
        if not force and not self._manager.should_save(step):
            return False
        shared = {k: v for k, v in data_state.items() if k != HOST_STATE_KEY}
        items = {
            STATE_ITEM: ocp.args.StandardSave(state),
            DATA_ITEM: ocp.args.JsonSave(shared),
        }
        if HOST_STATE_KEY in data_state:
            items[HOST_DATA_ITEM] = HostDataSave(host_state_bytes(data_state[HOST_STATE_KEY]))
        return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores ``(state, data_state)`` of ``step`` (default: the latest).

        ``data_state`` is what ``save`` got, with this process's bytes under
        ``HOST_STATE_KEY`` if there were any: pass it to the input's ``set_state``.

        Args:
          abstract_state: the state's structure with ``jax.ShapeDtypeStruct`` leaves
            carrying the target shardings (``jax.eval_shape`` + shardings).
          step: which checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        items = {
            STATE_ITEM: ocp.args.StandardRestore(abstract_state),
            DATA_ITEM: ocp.args.JsonRestore(),
        }
        has_host_data = (epath.Path(self.directory) / str(step) / HOST_DATA_ITEM).exists()
        if has_host_data:
            items[HOST_DATA_ITEM] = HostDataRestore()
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        data_state = dict(restored[DATA_ITEM])
        if has_host_data:
            data_state[HOST_STATE_KEY] = restored[HOST_DATA_ITEM]
        return restored[STATE_ITEM], data_state

    def wait(self) -> None:
        """Blocks until background saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases resources."""
        self._manager.wait_until_finished()
        self._manager.close()


BEST_SUMMARY = "best.json"


def best_step(directory: str | os.PathLike) -> int:
    """The best step recorded in a :class:`BestCheckpoints` directory.

    Raises:
      FileNotFoundError: the directory has no ``best.json``.
    """
    path = epath.Path(os.fspath(directory)) / BEST_SUMMARY
    if not path.exists():
        raise FileNotFoundError(f"no {BEST_SUMMARY} in {directory}: no best checkpoint was kept")
    return int(json.loads(path.read_text())["best_step"])


class BestCheckpoints:
    """The ``max_to_keep`` parameter checkpoints with the best value of one metric.

    Orbax's best-N policy (``best_fn``/``best_mode``) over checkpoints that hold
    ``{"params": ...}`` under the state item, so :func:`restore_params` (and
    ``Encoder.load(model_dir, checkpoint="best")``) read them like training ones. The
    metrics are stored with each step, so a resumed run keeps ranking against them.

    Args:
      directory: where the best checkpoints go (apart from the resumable ones).
      metric: the key of the metrics dict to rank by.
      max_to_keep: how many of the best to keep.
      mode: ``"max"`` (higher is better) or ``"min"``.
    """

    def __init__(
        self, directory: str | os.PathLike, metric: str, max_to_keep: int = 1, mode: str = "max"
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be positive, got {max_to_keep}")
        self.directory, self.metric = os.fspath(directory), metric
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                best_fn=lambda metrics: float(metrics[metric]),
                best_mode=mode,
                keep_checkpoints_without_metrics=False,
                enable_async_checkpointing=False,
            ),
            item_names=(STATE_ITEM,),
        )

    def save(self, step: int, params: Any, metrics: dict[str, float]) -> bool:
        """Saves ``params`` at ``step`` if ``metrics`` rank among the best.

        Raises:
          KeyError: ``metrics`` lacks the ranking metric (the message lists the keys).
        """
        if self.metric not in metrics:
            raise KeyError(
                f"best-checkpoint metric {self.metric!r} is not among the evaluation "
                f"metrics {sorted(metrics)}"
            )
        args = ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave({"params": params})})
        saved = self._manager.save(step, args=args, metrics=dict(metrics), force=True)
        self._manager.wait_until_finished()
        if jax.process_index() == 0:
            summary = {
                "metric": self.metric,
                "best_step": self.best_step(),
                "kept_steps": self.all_steps(),
            }
            (epath.Path(self.directory) / BEST_SUMMARY).write_text(
                json.dumps(summary, indent=2) + "\n"
            )
        return saved

    def best_step(self) -> int | None:
        """The step of the best checkpoint so far."""
        return self._manager.best_step()

    def all_steps(self) -> list[int]:
        """Steps of the kept checkpoints."""
        return sorted(self._manager.all_steps())

    def close(self) -> None:
        """Finishes pending saves and releases resources."""
        self._manager.wait_until_finished()
        self._manager.close()


def restore_params(
    directory: str | os.PathLike,
    abstract_params: Any,
    step: int | None = None,
    params_path: tuple[str, ...] = ("params",),
) -> Any:
    """Reads only the parameters of a training checkpoint.

    Args:
      directory: a checkpoint directory written by :class:`CheckpointManager`.
      abstract_params: target structure (ShapeDtypeStructs with shardings) of the
        sub-tree to read, e.g. ``{"backbone": ...}`` of a new model: other entries of
        the checkpoint (optimizer state, a projection the new model lacks) are skipped.
      step: which checkpoint (default: the latest).
      params_path: where the parameters sit inside the saved state.

    Returns:
      The restored parameter sub-tree.
    """
    manager = ocp.CheckpointManager(os.fspath(directory), item_names=(STATE_ITEM, DATA_ITEM))
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    target: Any = abstract_params
    for key in reversed(params_path):
        target = {key: target}
    restore_args = jax.tree_util.tree_map(
        lambda x: (
            ocp.ArrayRestoreArgs(sharding=x.sharding, global_shape=x.shape, dtype=x.dtype)
            if getattr(x, "sharding", None) is not None
            else ocp.RestoreArgs()
        ),
        target,
    )
    path = os.path.join(os.fspath(directory), str(step), STATE_ITEM)
    restored = ocp.PyTreeCheckpointer().restore(
        path,
        args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True),
    )
    manager.close()
    for key in params_path:
        restored = restored[key]
    return restored
