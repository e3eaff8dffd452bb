"""What the end-to-end FRet tests share: a small SciFact run's settings and its rows."""

import glob
import json
import os
import shutil

from gecko_jax.fret import pipeline
from gecko_jax.fret.config import CorpusConfig, FretConfig, RetrievalConfig

PASSAGES, SHARDS, TOP_N, MAX_WORDS = 30, 3, 5, 64


def fret_config(corpus_path, server, output_dir, **overrides) -> FretConfig:
    """30 SciFact passages in 3 shards, top 5, against a loopback ``server`` (None: the
    overrides name the ``llm``)."""
    settings = {
        "corpus": corpus_path,
        "output_dir": str(output_dir),
        "num_shards": SHARDS,
        "progress": False,
        "corpus_options": CorpusConfig(max_passages=PASSAGES, max_words=MAX_WORDS),
        "retrieval": RetrievalConfig(top_n=TOP_N, batch_size=32),
    }
    if server is not None:
        settings["llm"] = f"openai:{server.base_url}#loopback"
    return FretConfig(**{**settings, **overrides})


def reuse_embeddings(reference_dir, output_dir):
    """Copies the reference run's corpus embeddings (a restarted run reuses them the same way)."""
    os.makedirs(output_dir, exist_ok=True)
    for name in (pipeline.EMBEDDINGS, pipeline.EMBEDDINGS + ".json"):
        shutil.copy(os.path.join(reference_dir, name), os.path.join(output_dir, name))


def read_rows(output_dir, extension="jsonl"):
    """Every row of the output directory, in shard order."""
    rows = []
    for path in sorted(glob.glob(os.path.join(output_dir, f"fret-*.{extension}"))):
        with open(path, encoding="utf-8") as f:
            rows += [json.loads(line) for line in f]
    return rows
