"""orbax checkpoints: save/restore with shardings, keep-N, input position, params only."""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gecko_jax.checkpoints import CheckpointManager, abstract_like, restore_params


class State(flax.struct.PyTreeNode):
    step: jax.Array
    params: dict
    opt_state: dict


def _state(mesh: Mesh, value: float) -> State:
    sharded = NamedSharding(mesh, P(None, "model"))
    replicated = NamedSharding(mesh, P())
    return State(
        step=jax.device_put(jnp.int32(int(value)), replicated),
        params={"backbone": {"w": jax.device_put(jnp.full((4, 8), value), sharded)},
                "projection": {"k": jax.device_put(jnp.full((8, 2), -value), replicated)}},
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
    saved = {step: manager.save(step, _state(mesh, 1.0), {"offset": step}) for step in (7, 8, 200, 250)}
    assert saved == {7: True, 8: False, 200: True, 250: False}  # the first save, then multiples
    assert manager.save(251, _state(mesh, 7.0), {"offset": 1}, force=True)
    manager.close()
    assert CheckpointManager(tmp_path).all_steps() == [7, 200, 251]


def test_restore_params_reads_only_the_requested_subtree(tmp_path, mesh: Mesh) -> None:
    manager = CheckpointManager(tmp_path, save_interval_steps=1)
    manager.save(3, _state(mesh, 3.0), {})
    manager.close()
    target = {"backbone": {"w": jax.ShapeDtypeStruct((4, 8), jnp.float32,
                                                     sharding=NamedSharding(mesh, P("data", None)))}}
    params = restore_params(tmp_path, target)
    assert set(params) == {"backbone"}
    np.testing.assert_array_equal(params["backbone"]["w"], np.full((4, 8), 3.0))
    assert params["backbone"]["w"].sharding == target["backbone"]["w"].sharding
