"""TF Serving warm-up requests: ``assets.extra/tf_serving_warmup_requests``.

TF Serving replays these PredictionLog records when it loads a model version, so the
XLA programs for the common batch shapes are compiled before the first real request.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from gecko_jax import formats
from gecko_jax.export.source import ExportError

WARMUP_FILE = "tf_serving_warmup_requests"
# One request per batch size; each compiles the bucketed shape it pads to.
WARMUP_BATCH_SIZES = (1, 8, 32)
DEFAULT_WARMUP_TEXTS = (
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "how to bake sourdough bread at home",
    "A short guide to feeding a starter, shaping the loaf and baking it in a hot oven.",
)
WARMUP_TASK = "search result"


def check_warmup_texts(texts: Sequence[str] | None) -> tuple[str, ...]:
    """The warm-up texts to use (the defaults for None).

    Raises:
      ExportError: an empty list or a non-string entry.
    """
    if texts is None:
        return DEFAULT_WARMUP_TEXTS
    if isinstance(texts, str):
        texts = [texts]
    texts = tuple(texts)
    if not texts:
        raise ExportError("warm-up texts: the list is empty")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ExportError(f"warm-up texts[{i}] is {type(text).__name__}, expected str")
    return texts


def warmup_requests(
    texts: Sequence[str], model_name: str, signature_name: str = "serving_default"
) -> list[prediction_log_pb2.PredictionLog]:
    """Predict requests for ``signature_name``, one per size in :data:`WARMUP_BATCH_SIZES`.

    Rows cycle through ``texts`` and alternate query and document sides, with and
    without a task, so every formatting branch runs.
    """
    logs = []
    for size in WARMUP_BATCH_SIZES:
        rows = list(itertools.islice(itertools.cycle(texts), size))
        inputs = {
            "text": rows,
            "task": [WARMUP_TASK if i % 4 < 2 else "" for i in range(size)],
            "title": ["" if i % 3 else "Warm-up" for i in range(size)],
            "kind": [formats.KINDS[i % 2] for i in range(size)],
        }
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
        )
        for key, values in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(values, dtype=tf.string))
        logs.append(
            prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
        )
    return logs


def write_warmup_requests(export_dir: str, logs: Sequence[prediction_log_pb2.PredictionLog]) -> str:
    """Writes ``logs`` as a TFRecord file under ``export_dir/assets.extra``; returns its path."""
    extra = os.path.join(export_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path
