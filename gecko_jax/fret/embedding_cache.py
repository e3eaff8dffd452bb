"""Corpus embeddings saved in a run's output directory and reused by a rerun.

``passage_embeddings.npy`` holds the ``[N, d]`` embeddings; ``passage_embeddings.npy.json``
holds the fingerprint of what they were computed from (every passage's id, title and
text, the embedder and the text format). A rerun whose fingerprint matches reads them
instead of embedding the corpus again; any change recomputes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from gecko_jax import fileio
from gecko_jax.fret import shards
from gecko_jax.fret.corpus import Passage

EMBEDDINGS = "passage_embeddings.npy"


def fingerprint(passages: Iterable[Passage], settings: tuple[Any, ...]) -> str:
    """SHA-256 of ``repr(settings)`` and every passage's id, title and text, in order."""
    digest = hashlib.sha256(repr(settings).encode("utf-8"))
    for p in passages:
        digest.update(f"{p.id}\x1f{p.title}\x1f{p.text}\x1e".encode())
    return digest.hexdigest()


def cached_embeddings(
    output_dir: str, key: str, compute: Callable[[], np.ndarray], tmp_tag: str = ""
) -> np.ndarray:
    """The embeddings saved in ``output_dir`` under fingerprint ``key``, else ``compute()``'s.

    Computed embeddings are saved (atomically, ``tmp_tag`` in the temporary names) with
    their fingerprint for the next run.
    """
    path = fileio.join(output_dir, EMBEDDINGS)
    meta_path = path + ".json"
    if fileio.exists(meta_path) and fileio.exists(path):
        if shards.read_json(meta_path).get("fingerprint") == key:
            with fileio.open(path, "rb") as f:
                return np.load(f)
    embeddings = compute()
    with fileio.atomic_open(path, "wb", tmp_tag + shards.TMP_SUFFIX) as f:
        np.save(f, embeddings)
    shards.write_json(meta_path, {"fingerprint": key, "shape": list(embeddings.shape)}, tmp_tag)
    return embeddings
