"""orbax checkpoints of a training run: the train state plus the input position.

A step directory holds two items: ``state`` (the sharded train state, saved
asynchronously) and ``data`` (JSON: the input pipeline's position). Restoring the
latest step resumes both. :func:`restore_params` reads only the parameters of a
checkpoint into a new model (fine-tuning from pre-finetuning).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

STATE_ITEM = "state"
DATA_ITEM = "data"


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
            item_names=(STATE_ITEM, DATA_ITEM),
        )

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the checkpoints on disk."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, data_state: dict[str, Any], force: bool = False) -> bool:
        """Saves when ``step`` is due (or ``force``); returns whether it saved."""
        return self._manager.save(
            step,
            args=ocp.args.Composite(**{
                STATE_ITEM: ocp.args.StandardSave(state),
                DATA_ITEM: ocp.args.JsonSave(data_state),
            }),
            force=force,
        )

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores ``(state, data_state)`` of ``step`` (default: the latest).

        Args:
          abstract_state: the state's structure with ``jax.ShapeDtypeStruct`` leaves
            carrying the target shardings (``jax.eval_shape`` + shardings).
          step: which checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(**{
                STATE_ITEM: ocp.args.StandardRestore(abstract_state),
                DATA_ITEM: ocp.args.JsonRestore(),
            }),
        )
        return restored[STATE_ITEM], dict(restored[DATA_ITEM])

    def wait(self) -> None:
        """Blocks until background saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases resources."""
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a tree of arrays."""
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
    )


def restore_params(
    directory: str | os.PathLike, abstract_params: Any, step: int | None = None,
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
        lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding, global_shape=x.shape, dtype=x.dtype)
        if getattr(x, "sharding", None) is not None else ocp.RestoreArgs(),
        target,
    )
    path = os.path.join(os.fspath(directory), str(step), STATE_ITEM)
    restored = ocp.PyTreeCheckpointer().restore(
        path, args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True)
    )
    manager.close()
    for key in params_path:
        restored = restored[key]
    return restored
