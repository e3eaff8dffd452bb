"""orbax checkpoints: save/restore with shardings, keep-N, input position, params only."""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gecko_jax.checkpoints import (
    HOST_DATA_ITEM,
    CheckpointManager,
    restore_params,
)
from gecko_jax.data.iterator_state import HOST_STATE_KEY
from tests.restore_targets import abstract_like


class State(flax.struct.PyTreeNode):
    step: jax.Array
    params: dict
    opt_state: dict


def _state(mesh: Mesh, value: float) -> State:
    sharded = NamedSharding(mesh, P(None, "model"))
    replicated = NamedSharding(mesh, P())
    return State(
        step=jax.device_put(jnp.int32(int(value)), replicated),
        params={
            "backbone": {"w": jax.device_put(jnp.full((4, 8), value), sharded)},
            "projection": {"k": jax.device_put(jnp.full((8, 2), -value), replicated)},
        },
        opt_state={"mu": jax.device_put(jnp.full((4, 8), 2 * value), sharded)},
    )


@pytest.fixture()
def mesh() -> Mesh:
    return Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))


def test_roundtrip_keeps_values_shardings_and_position(tmp_path, mesh: Mesh) -> None:
    manager = CheckpointManager(tmp_path, save_interval_steps=2, max_to_keep=2)
    for step in range(1, 7):
        manager.save(step, _state(mesh, float(step)), {"epoch": 0, "offset": step * 16})
    manager.wait()
    assert manager.all_steps() == [4, 6]  # multiples of 2, the newest 2 kept
    target = abstract_like(_state(mesh, 0.0))
    state, data = manager.restore(target)
    assert data == {"epoch": 0, "offset": 96}
    np.testing.assert_array_equal(state.params["backbone"]["w"], np.full((4, 8), 6.0))
    assert state.params["backbone"]["w"].sharding == target.params["backbone"]["w"].sharding
    assert int(state.step) == 6
    older, _ = manager.restore(target, step=4)
    np.testing.assert_array_equal(older.opt_state["mu"], np.full((4, 8), 8.0))
    manager.close()


def test_forced_save_off_interval_and_missing_checkpoint(tmp_path, mesh: Mesh) -> None:
    manager = CheckpointManager(tmp_path, save_interval_steps=100)
    assert manager.latest_step() is None
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        manager.restore(abstract_like(_state(mesh, 0.0)))
    saved = {
        step: manager.save(step, _state(mesh, 1.0), {"offset": step}) for step in (7, 8, 200, 250)
    }
    assert saved == {7: True, 8: False, 200: True, 250: False}  # the first save, then multiples
    assert manager.save(251, _state(mesh, 7.0), {"offset": 1}, force=True)
    manager.close()
    assert CheckpointManager(tmp_path).all_steps() == [7, 200, 251]


def test_restore_params_reads_only_the_requested_subtree(tmp_path, mesh: Mesh) -> None:
    manager = CheckpointManager(tmp_path, save_interval_steps=1)
    manager.save(3, _state(mesh, 3.0), {})
    manager.close()
    target = {
        "backbone": {
            "w": jax.ShapeDtypeStruct(
                (4, 8), jnp.float32, sharding=NamedSharding(mesh, P("data", None))
            )
        }
    }
    params = restore_params(tmp_path, target)
    assert set(params) == {"backbone"}
    np.testing.assert_array_equal(params["backbone"]["w"], np.full((4, 8), 3.0))
    assert params["backbone"]["w"].sharding == target["backbone"]["w"].sharding


class _Snapshot:
    """A lazy per-process input state that counts its serialisations."""

    def __init__(self, step: int, calls: list[int]) -> None:
        self.step, self.calls = step, calls

    def to_bytes(self) -> bytes:
        self.calls.append(self.step)
        return f"input state at {self.step}".encode()


@pytest.mark.parametrize("async_save", [True, False])
def test_per_process_input_state_is_serialised_only_when_due_and_restored(
    tmp_path, mesh: Mesh, async_save: bool
) -> None:
    manager = CheckpointManager(tmp_path, save_interval_steps=3, async_save=async_save)
    calls: list[int] = []
    for step in range(1, 8):
        manager.save(
            step,
            _state(mesh, float(step)),
            {"position": step, HOST_STATE_KEY: _Snapshot(step, calls)},
        )
    manager.close()
    assert calls == [1, 3, 6]  # due steps only: the other snapshots are never serialised
    assert (tmp_path / "6" / HOST_DATA_ITEM / "process_00000-of-00001.npz").read_bytes() == (
        b"input state at 6"
    )
    fresh = CheckpointManager(tmp_path)
    state, data = fresh.restore(abstract_like(_state(mesh, 0.0)))
    assert int(state.step) == 6
    assert data == {"position": 6, HOST_STATE_KEY: b"input state at 6"}
    _, older = fresh.restore(abstract_like(_state(mesh, 0.0)), step=3)
    assert older[HOST_STATE_KEY] == b"input state at 3"
    fresh.close()


def test_json_only_inputs_restore_without_host_state(tmp_path, mesh: Mesh) -> None:
    manager = CheckpointManager(tmp_path, save_interval_steps=1)
    manager.save(1, _state(mesh, 1.0), {"epoch": 0, "offset": 8, "seed": 0})
    manager.close()
    assert not (tmp_path / "1" / HOST_DATA_ITEM).exists()
    _, data = CheckpointManager(tmp_path).restore(abstract_like(_state(mesh, 0.0)))
    assert data == {"epoch": 0, "offset": 8, "seed": 0}


def test_input_state_of_another_process_count_fails_clearly(tmp_path, mesh: Mesh) -> None:
    manager = CheckpointManager(tmp_path, save_interval_steps=1)
    manager.save(1, _state(mesh, 1.0), {HOST_STATE_KEY: b"host 0"})
    manager.close()
    item = tmp_path / "1" / HOST_DATA_ITEM
    (item / "process_00000-of-00001.npz").rename(item / "process_00000-of-00002.npz")
    with pytest.raises(FileNotFoundError, match=r"process 0 of 1 .*process_00000-of-00002.npz"):
        CheckpointManager(tmp_path).restore(abstract_like(_state(mesh, 0.0)))
