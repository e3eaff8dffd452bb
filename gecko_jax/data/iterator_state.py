"""Per-process input state: what a resumable input saves beside the train state.

An input's ``get_state()`` returns a dict. Small values shared by every process (a
batch position, a seed) are JSON; each process's own state (its tf.data iterator
positions, rows held back for later batches) is bytes, under :data:`HOST_STATE_KEY`,
which :class:`gecko_jax.checkpoints.CheckpointManager` writes to one file per process.
The value there is either ``bytes`` or a :class:`HostStateSnapshot` whose bytes are
produced only when a checkpoint is actually written: serialising shuffle buffers is
too expensive to do on every training step.

This module imports TensorFlow only inside the functions that need it.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

HOST_STATE_KEY = "host_state"


@runtime_checkable
class HostStateSnapshot(Protocol):
    """A lazily serialised per-process input state."""

    def to_bytes(self) -> bytes:
        """The state as bytes (computed on first call)."""
        ...


def host_state_bytes(value: Any) -> bytes:
    """The bytes of a :data:`HOST_STATE_KEY` value (bytes or a snapshot)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, HostStateSnapshot):
        return value.to_bytes()
    raise TypeError(
        f"{HOST_STATE_KEY} must be bytes or have to_bytes(), got {type(value).__name__}"
    )


def host_state_filename(process_index: int, process_count: int) -> str:
    """The file one process's state is written to inside a checkpoint step."""
    return f"process_{process_index:05d}-of-{process_count:05d}.npz"


def pack_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Numeric/str arrays as one ``.npz`` blob (no pickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_arrays`."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def checkpointable(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with the options tf.data iterator checkpointing needs.

    tf.data refuses to checkpoint an iterator whose pipeline has "external state"
    (``tf.numpy_function``/``tf.py_function`` parsing, stateful ops) when
    ``experimental_external_state_policy`` is unset: TF 2.21's
    ``OwnedIterator._serialize_to_tensors`` then uses ``FAIL``. Our parsing
    functions are pure functions of their input, so ignoring that state is exact;
    an explicit choice made by the caller is kept.
    """
    import tensorflow as tf

    if dataset.options().experimental_external_state_policy is not None:
        return dataset
    options = tf.data.Options()
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return dataset.with_options(options)


def _checkpoint(iterators: Mapping[str, Any]) -> tf.train.Checkpoint:
    import tensorflow as tf

    # Object names must be identifiers; the caller validates which task is which.
    return tf.train.Checkpoint(**{f"iterator_{i}": it for i, it in enumerate(iterators.values())})


def save_iterators(iterators: Mapping[str, Any]) -> dict[str, bytes]:
    """The positions of tf.data iterators, as the files of a ``tf.train.Checkpoint``.

    This is the checkpoint T5X writes for its input (``tf.train.Checkpoint`` over
    the iterator: shuffle buffers, RNG states, file offsets), captured here in
    memory so it can be stored with the rest of this process's state.

    Args:
      iterators: name -> ``iter(dataset)``; the order identifies them on restore.

    Returns:
      File name -> contents.
    """
    with tempfile.TemporaryDirectory(prefix="gecko_input_") as tmp:
        _checkpoint(iterators).write(os.path.join(tmp, "iterators"))
        files = {}
        for name in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, name), "rb") as f:
                files[name] = f.read()
    return files


def restore_iterators(iterators: Mapping[str, Any], files: Mapping[str, bytes]) -> None:
    """Moves freshly built iterators to the positions :func:`save_iterators` captured.

    Raises:
      ValueError: the files are not such a checkpoint, or do not match the iterators.
    """
    if not any(name.endswith(".index") for name in files):
        raise ValueError(f"not a tf.data iterator checkpoint: files {sorted(files)}")
    with tempfile.TemporaryDirectory(prefix="gecko_input_") as tmp:
        for name, content in files.items():
            if os.path.basename(name) != name:
                raise ValueError(f"bad file name in an iterator checkpoint: {name!r}")
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(content)
        _checkpoint(iterators).read(os.path.join(tmp, "iterators")).assert_consumed()
