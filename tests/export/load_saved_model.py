"""Runs an exported SavedModel the way a serving runtime would: TensorFlow only, no JAX.

Usage: ``python load_saved_model.py EXPORT_DIR CALLS_JSON OUT_NPZ``

``CALLS_JSON`` is a list of calls ``{"name", "signature", "inputs": {key: list},
"batch_size", "error": bool}``; each call's inputs are cut into ``batch_size`` rows and
its outputs concatenated into ``OUT_NPZ`` as ``{name}/{output}``. A call with
``"error": true`` stores the exception's class name as ``{name}/error`` instead.
The warm-up requests are replayed too (``warmup/{i}/{output}``), and ``jax_imported``
says whether JAX was ever imported (JAX is blocked, as if it were not installed).
"""

import importlib.abc
import json
import sys


class _NoJax(importlib.abc.MetaPathFinder):
    """Makes ``import jax`` fail as on a machine without JAX (TensorFlow tries it)."""

    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name.split(".")[0] in ("jax", "jaxlib"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoJax())

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402, F401  (registers the tokenizer ops)
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402

_DTYPES = {"dim": tf.int32, "token_ids": tf.int32, "attention_mask": tf.int32}


def _run(signature, call: dict) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    inputs = call["inputs"]
    rows = len(inputs["token_ids" if "token_ids" in inputs else "text"])
    size = call.get("batch_size") or rows
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, rows, size):
        args = {
            key: tf.constant(
                value if key == "dim" else value[start : start + size],
                _DTYPES.get(key, tf.string),
            )
            for key, value in inputs.items()
        }
        for key, value in signature(**args).items():
            parts.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(values) for key, values in parts.items()}


def _replay_warmup(export_dir: str, model) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    path = f"{export_dir}/assets.extra/tf_serving_warmup_requests"
    results = {}
    for i, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        signature = model.signatures[request.model_spec.signature_name]
        args = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        for key, value in signature(**args).items():
            results[f"warmup/{i}/{key}"] = value.numpy()
    return results


def main(export_dir: str, calls_path: str, out_path: str) -> None:
    model = tf.saved_model.load(export_dir)
    with open(calls_path, encoding="utf-8") as f:
        calls = json.load(f)
    results: dict[str, np.ndarray] = {}
    for call in calls:
        signature = model.signatures[call["signature"]]
        if call.get("error"):
            try:
                _run(signature, call)
                results[f"{call['name']}/error"] = np.array("none")
            except Exception as e:  # the class name is the result
                results[f"{call['name']}/error"] = np.array(type(e).__name__)
            continue
        for key, value in _run(signature, call).items():
            results[f"{call['name']}/{key}"] = value
    results.update(_replay_warmup(export_dir, model))
    results["jax_imported"] = np.array(any(m.split(".")[0] == "jax" for m in sys.modules))
    np.savez(out_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:4])
