"""``bench/gpu_throughput.py``: its FLOP count against the real model, MFU, and the
summary of sides that finished, ran out of time part-way, or failed."""

import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import gpu_throughput as G


@pytest.mark.parametrize("name", sorted(G.MODELS))
def test_dense_flops_are_twice_the_layer_weights_per_token(name):
    size = G.MODELS[name]
    model = G.gecko_model(size, "float32", dropout=0.0)
    ids = np.zeros((1, 8), np.int32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), ids, ids)["params"]
    weights = sum(
        int(np.prod(leaf.shape))
        for path, leaf in jax.tree_util.tree_leaves_with_path(shapes)
        if "layer" in jax.tree_util.keystr(path) and "kernel" in jax.tree_util.keystr(path)
    )
    length = 128
    attention = size.layers * 4 * length**2 * size.hidden
    assert G.forward_flops_per_sequence(size, length) == 2 * weights * length + attention


def test_bert_base_forward_flops_match_the_usual_figure():
    # ~85M weights in the layers: 2 * 85M * 128 tokens + attention ~= 22.3 GFLOP.
    flops = G.forward_flops_per_sequence(G.MODELS["bert-base"], 128)
    assert flops == pytest.approx(22.35e9, rel=0.01)


def test_mfu_uses_the_device_peak_and_triples_training():
    encode = {"model": "bert-base", "task": "encode", "length": 128, "sequences_per_s": 10_000}
    train = dict(encode, task="train")
    assert G.mfu(encode, "cuda: NVIDIA H200") == pytest.approx(10_000 * 22.35e9 / 989e12, 0.01)
    assert G.mfu(train, "cuda: NVIDIA H200") == pytest.approx(3 * G.mfu(encode, "cuda: H200"))
    assert G.mfu(encode, "cpu: cpu") is None


def _result(model, task, rate):
    return {"model": model, "task": task, "batch": 8, "length": 128, "sequences_per_s": rate}


def test_summary_keeps_what_a_timed_out_side_finished():
    device = "cuda: NVIDIA H200"
    runs = [
        {
            "side": "gecko_jax",
            "precision": "bfloat16",
            "failed": "timed out after 165 s",
            "partial": {"device": device, "results": [_result("minilm", "encode", 300.0)]},
        },
        {
            "side": "sentence-transformers",
            "precision": "bfloat16",
            "device": device,
            "results": [_result("minilm", "encode", 200.0), _result("minilm", "train", 50.0)],
        },
        {"side": "gecko_jax", "precision": "float32", "failed": "exit code 1", "partial": {}},
    ]
    rows = {(r["precision"], r["model"], r["task"]): r for r in G.summarize(runs)}
    assert set(rows) == {("bfloat16", "minilm", "encode"), ("bfloat16", "minilm", "train")}
    encode = rows[("bfloat16", "minilm", "encode")]
    assert encode["ratio"] == 1.5
    assert encode["gecko_jax"]["mfu"] == pytest.approx(
        300 * G.forward_flops_per_sequence(G.MODELS["minilm"], 128) / 989e12
    )
    train = rows[("bfloat16", "minilm", "train")]
    assert "gecko_jax" not in train and "ratio" not in train
