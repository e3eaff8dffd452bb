"""Fixtures of the end-to-end FRet tests: the loopback LLM, MiniLM, SciFact, a reference run."""

import os

import pytest

from gecko_jax.fret import pipeline

from .pipeline_helpers import fret_config, read_rows


@pytest.fixture(scope="session")
def server():
    """The loopback LLM server (test modules with their own fake server override this)."""
    from gecko_jax.fret.llm.loopback import LoopbackServer

    with LoopbackServer() as loopback:
        yield loopback


@pytest.fixture(scope="session")
def encoder(minilm_dir):
    """The packaged all-MiniLM-L6-v2, loaded once for every end-to-end test."""
    from gecko_jax.encoder import Encoder

    return Encoder.load(minilm_dir)


@pytest.fixture(scope="session")
def corpus_path(eval_data_dir):
    return os.path.join(eval_data_dir, "scifact", "corpus.jsonl")


@pytest.fixture(scope="session")
def reference(corpus_path, server, encoder, tmp_path_factory):
    """One single-worker run: its output directory, summary and rows."""
    output_dir = tmp_path_factory.mktemp("reference")
    summary = pipeline.run(
        fret_config(corpus_path, server, output_dir), encoder=encoder, echo=False
    )
    return output_dir, summary, read_rows(output_dir)
