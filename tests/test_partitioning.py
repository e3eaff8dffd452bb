"""Meshes, logical-to-mesh shardings, batch sharding and the multi-host guard."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as PS

from gecko_jax import partitioning as P
from gecko_jax.models.bert import BertConfig
from gecko_jax.models.dual_encoder import DualEncoder, HeadConfig
from tests.test_trainer import BERT

TINY = DualEncoder(BERT, HeadConfig(projection_dim=8))


def _boxed_params(model: DualEncoder = TINY) -> dict:
    ids = jnp.ones((1, 4), jnp.int32)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), ids, ids > 0))["params"]


@pytest.mark.parametrize("shape", [(8, 1), (4, 2), (2, 4)])
def test_make_mesh_shapes(shape: tuple[int, int]) -> None:
    mesh = P.make_mesh(*shape)
    assert mesh.axis_names == ("replica", "data", "model")
    assert dict(mesh.shape) == {"replica": 1, "data": shape[0], "model": shape[1]}
    assert P.data_axis_size(mesh) == shape[0]
    assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in jax.devices())


def test_make_mesh_fills_in_minus_one_and_takes_devices() -> None:
    assert dict(P.make_mesh().shape) == {"replica": 1, "data": 8, "model": 1}
    assert dict(P.make_mesh(model=2).shape) == {"replica": 1, "data": 4, "model": 2}
    assert dict(P.make_mesh(2, -1).shape) == {"replica": 1, "data": 2, "model": 4}
    assert dict(P.make_mesh(model=2, replica=2).shape) == {"replica": 2, "data": 2, "model": 2}
    one = P.make_mesh(1, 1, devices=jax.devices()[:1])
    assert one.devices.size == 1


@pytest.mark.parametrize(
    "shape, message",
    [
        ((3, 2), r"mesh shape \(replica=1, data=3, model=2\) needs 6 devices, but there are 8"),
        ((16, 1), r"needs 16 devices, but there are 8"),
        ((-1, 3), r"8 devices cannot be split into a mesh with an axis of size 3"),
        ((-1, -1), r"At most one of the mesh sizes"),
    ],
)
def test_make_mesh_rejects_bad_shapes(shape: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        P.make_mesh(*shape)


def test_param_shardings_put_wide_dims_on_model_and_replicate_embed() -> None:
    mesh = P.make_mesh(2, 4)
    shardings = P.logical_to_mesh_shardings(_boxed_params(), mesh, P.STANDARD_LOGICAL_AXIS_RULES)
    backbone = shardings["backbone"]
    layer = backbone["layer_0"]
    specs = {
        "word_embeddings (vocab, embed)": (
            backbone["word_embeddings"]["embedding"],
            PS("model", None),
        ),
        "position_embeddings (-, embed)": (
            backbone["position_embeddings"]["embedding"],
            PS(None, None),
        ),
        "intermediate (embed, mlp)": (layer["intermediate"]["dense"]["kernel"], PS(None, "model")),
        "intermediate bias (mlp)": (layer["intermediate"]["dense"]["bias"], PS("model")),
        "output (mlp, embed)": (layer["output"]["dense"]["kernel"], PS("model", None)),
        "query (embed, heads, kv)": (
            layer["attention"]["query"]["dense"]["kernel"],
            PS(None, "model", None),
        ),
        "out (heads, kv, embed)": (
            layer["attention"]["out"]["dense"]["kernel"],
            PS("model", None, None),
        ),
        "norm scale (embed)": (layer["output_norm"]["scale"], PS(None)),
        "projection (embed, -)": (shardings["projection"]["dense"]["kernel"], PS(None, None)),
    }
    for name, (sharding, expected) in specs.items():
        assert sharding.mesh is mesh, name
        assert sharding.spec == expected, name
    # No parameter dimension is ever split over 'data'.
    for sharding in jax.tree_util.tree_leaves(shardings):
        assert "data" not in jax.tree_util.tree_leaves(tuple(sharding.spec))

    # Materialised with these shardings, each device holds 1/4 of the mlp columns.
    init = jax.jit(
        lambda: nn.unbox(
            TINY.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 4), bool))[
                "params"
            ]
        ),
        out_shardings=shardings,
    )
    kernel = init()["backbone"]["layer_0"]["intermediate"]["dense"]["kernel"]
    assert kernel.shape == (16, 32)
    assert {s.data.shape for s in kernel.addressable_shards} == {(16, 8)}


def test_indivisible_parameter_dims_name_the_parameter() -> None:
    two_heads = DualEncoder(BertConfig(**{**BERT.__dict__, "num_attention_heads": 2}))
    with pytest.raises(
        ValueError,
        match=r"\['backbone'\]\['layer_0'\]\['attention'\]\['key'\].*"
        r"dimension 0 of shape \(2, 8\) does not split over mesh "
        r"axes \('model',\) \(4 devices\)",
    ):
        P.logical_to_mesh_shardings(_boxed_params(two_heads), P.make_mesh(2, 4))


def test_logical_to_mesh_shardings_accepts_spec_trees() -> None:
    mesh = P.make_mesh(4, 2)
    specs = {"a": PS("embed", "mlp"), "b": PS("batch", "length")}
    shardings = P.logical_to_mesh_shardings(specs, mesh, P.logical_axis_rules())
    assert shardings["a"].spec == PS(None, "model")
    assert shardings["b"].spec == PS(("replica", "data"), None)


def test_batch_sharding_splits_the_leading_dim() -> None:
    mesh = P.make_mesh(4, 2)
    x = jax.device_put(np.arange(16 * 3).reshape(16, 3), P.batch_sharding(mesh))
    assert {s.data.shape for s in x.addressable_shards} == {(4, 3)}
    P.check_batch_divisible(16, mesh)
    with pytest.raises(
        ValueError, match="global batch size 10 is not divisible by the data axis size 4"
    ):
        P.check_batch_divisible(10, mesh)


def test_replica_axis_splits_examples_and_replicates_weights() -> None:
    mesh = P.make_mesh(2, 2, replica=2)
    assert P.data_axis_size(mesh) == 4
    x = jax.device_put(np.arange(16 * 3).reshape(16, 3), P.batch_sharding(mesh))
    shards = {(s.device.id, s.index[0].start) for s in x.addressable_shards}
    assert {start for _, start in shards} == {0, 4, 8, 12}
    replica_of = {d.id: r for r in range(2) for d in mesh.devices[r].flat}
    # Rows 0-7 live on replica 0, rows 8-15 on replica 1.
    assert {replica_of[device] for device, start in shards if start < 8} == {0}
    shardings = P.logical_to_mesh_shardings(_boxed_params(), mesh, P.STANDARD_LOGICAL_AXIS_RULES)
    for sharding in jax.tree_util.tree_leaves(shardings):
        assert "replica" not in jax.tree_util.tree_leaves(tuple(sharding.spec))
    with pytest.raises(
        ValueError, match="global batch size 6 is not divisible by the data axis size 4"
    ):
        P.check_batch_divisible(6, mesh)


def test_replica_axis_errors() -> None:
    with pytest.raises(ValueError, match="8 devices cannot be split into 3 replicas"):
        P.make_mesh(replica=3)

    class SliceDevice:
        def __init__(self, index: int) -> None:
            self.id, self.slice_index = index, index // 4

    with pytest.raises(ValueError, match=r"the devices span 2 slices: give replica=2 \(got 1\)"):
        P.make_mesh(devices=[SliceDevice(i) for i in range(8)])


def test_host_local_batch_to_global_on_one_process() -> None:
    mesh = P.make_mesh(8, 1)
    batch = {
        "query_tokens": np.arange(16 * 5).reshape(16, 5),
        "negative_mask": np.ones((16, 2), bool),
    }
    out = P.host_local_batch_to_global(batch, mesh)
    for key, value in batch.items():
        assert out[key].sharding == P.batch_sharding(mesh)
        np.testing.assert_array_equal(np.asarray(out[key]), value)


def test_initialize_distributed_only_on_multi_process_launches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))

    for single_host in ({}, {"TPU_WORKER_HOSTNAMES": "localhost"}, {"SLURM_NTASKS": "1"}):
        assert P.initialize_distributed(env=single_host) is False
    assert calls == []

    assert P.initialize_distributed(env={"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}) is True
    assert P.initialize_distributed(env={"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3"}) is True
    assert P.initialize_distributed(
        env={}, coordinator_address="h:1", num_processes=2, process_id=0
    )
    assert calls == [{}, {}, {"coordinator_address": "h:1", "num_processes": 2, "process_id": 0}]


def test_a_vertex_cluster_spec_gives_the_coordinator_and_this_replicas_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    spec = {
        "cluster": {"workerpool0": ["w0:2222"], "workerpool1": ["w1:2222", "w2:2222"]},
        "task": {"type": "workerpool1", "index": 1},
        "environment": "cloud",
    }
    env = {"CLUSTER_SPEC": json.dumps(spec)}
    assert P.vertex_cluster_args(env) == {
        "coordinator_address": "w0:2222",
        "num_processes": 3,
        "process_id": 2,
    }
    single = {"cluster": {"workerpool0": ["w0:2222"]}, "task": {"type": "workerpool0", "index": 0}}
    assert P.vertex_cluster_args({"CLUSTER_SPEC": json.dumps(single)}) == {}
    assert P.vertex_cluster_args({**env, "TPU_WORKER_HOSTNAMES": "t0,t1"}) == {}
    with pytest.raises(ValueError, match="CLUSTER_SPEC is not a Vertex AI cluster spec"):
        P.vertex_cluster_args({"CLUSTER_SPEC": '{"cluster": {}}'})
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    assert P.initialize_distributed(env=env) is True
    assert calls == [P.vertex_cluster_args(env)]
