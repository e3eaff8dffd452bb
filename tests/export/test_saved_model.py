"""SavedModel export: parity with Encoder.encode in a process without JAX, and bad input.

Each exported model is loaded once, in one subprocess (tests/export/load_saved_model.py)
that blocks JAX and runs every call; the tests compare its outputs with the JAX encoder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from gecko_jax import Encoder, formats, shapes
from gecko_jax.embedding_math import matryoshka_truncate
from gecko_jax.export import saved_model, tf_inputs, warmup
from gecko_jax.export.source import ExportError, ExportSource, load_source
from gecko_jax.model_dir import ModelSpec, write_spec
from gecko_jax.models.dual_encoder import HeadConfig
from tests.model_dirs import write_model_dir
from tests.sentencepiece_models import write_tiny_t5
from tests.text_samples import HARD_CASES, long_text, varied_sentences

LOADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "load_saved_model.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(LOADER)))
TASK = "Given a query, find a passage that has the answer to the query"
BATCH_SIZES = (1, 7, 64)
MIN_COSINE = 0.9999
# Rows of the no-task call (one 64-row batch; the task-formatted calls cover all texts).
PLAIN_ROWS = 64
INFO_KEYS = {
    "format_version",
    "source",
    "init_from",
    "step",
    "checkpoint_dir",
    "vocabulary",
    "max_length",
    "embedding_dim",
    "default_dim",
    "matryoshka_dims",
    "pad_id",
    "query_template",
    "document_template",
    "missing_title",
    "jax_version",
    "tensorflow_version",
    "serialization_version",
    "platforms",
    "signatures",
}


@dataclasses.dataclass
class Run:
    """One exported model, its reference encoder and the subprocess outputs."""

    export_dir: str
    source: ExportSource
    texts: list[str]
    titles: list[str]
    dim: int
    got: dict[str, np.ndarray]
    expected: np.ndarray | None = None

    @property
    def encoder(self) -> Encoder:
        return self.source.encoder


def _rows(texts: list[str], titles: list[str]) -> dict[str, list[str]]:
    """Each text as a query and as a titled document, interleaved (kinds mix per batch)."""
    rows: dict[str, list[str]] = {"text": [], "task": [], "title": [], "kind": []}
    for text, title in zip(texts, titles):
        for kind, row_title in (("query", ""), ("document", title)):
            rows["text"].append(text)
            rows["task"].append(TASK)
            rows["title"].append(row_title)
            rows["kind"].append(kind)
    return rows


def _calls(run_texts: list[str], titles: list[str], encoder: Encoder, dim: int) -> list[dict]:
    rows = _rows(run_texts, titles)
    plain = {
        "text": run_texts[:PLAIN_ROWS],
        "task": [""] * PLAIN_ROWS,
        "title": titles[:PLAIN_ROWS],
        "kind": ["query", "document"] * (PLAIN_ROWS // 2),
    }
    few = run_texts[:12] + [long_text(1000)]
    tokenized = encoder.tokenize(few, task=TASK, kind="query")
    width = max(len(t) for t in tokenized.token_ids)
    ids = [t.tolist() + [encoder.vocabulary.pad_id] * (width - len(t)) for t in tokenized.token_ids]
    mask = [[1] * len(t) + [0] * (width - len(t)) for t in tokenized.token_ids]
    one = {"text": ["a"], "task": [""], "title": [""]}
    too_long = [[1] * (encoder.max_length + 1)]
    calls = [
        {"name": f"rows_b{b}", "signature": "serving_default", "inputs": rows, "batch_size": b}
        for b in BATCH_SIZES
    ]
    calls += [
        {"name": "plain", "signature": "serving_default", "inputs": plain, "batch_size": 64},
        {
            "name": "dim",
            "signature": "serving_dim",
            "inputs": {**rows, "dim": dim},
            "batch_size": 64,
        },
        {
            "name": "tokenize",
            "signature": "tokenize",
            "inputs": {
                "text": few,
                "task": [TASK] * len(few),
                "title": [""] * len(few),
                "kind": ["query"] * len(few),
            },
        },
        {
            "name": "embed_tokens",
            "signature": "embed_tokens",
            "inputs": {"token_ids": ids, "attention_mask": mask},
        },
        {
            "name": "bad_kind",
            "signature": "serving_default",
            "error": True,
            "inputs": {**one, "kind": ["passage"]},
        },
        {
            "name": "short_task",
            "signature": "serving_default",
            "error": True,
            "inputs": {"text": ["a", "b"], "task": [""], "title": ["", ""], "kind": ["query"] * 2},
        },
        {
            "name": "dim_zero",
            "signature": "serving_dim",
            "error": True,
            "inputs": {**one, "kind": ["query"], "dim": 0},
        },
        {
            "name": "dim_too_big",
            "signature": "serving_dim",
            "error": True,
            "inputs": {**one, "kind": ["query"], "dim": encoder.embedding_dim + 1},
        },
        {
            "name": "too_many_tokens",
            "signature": "embed_tokens",
            "error": True,
            "inputs": {"token_ids": too_long, "attention_mask": too_long},
        },
    ]
    return calls


def _export_and_run(
    source: ExportSource, out: str, texts: list[str], dim: int, delete: tuple[str, ...] = ()
) -> Run:
    export_dir = saved_model.export_saved_model(source, out)
    # The export must not need the source files: delete them before loading it.
    for path in delete:
        shutil.rmtree(path)
    titles = ["" if i % 3 == 0 else f"Document {i}" for i in range(len(texts))]
    calls_path = os.path.join(out, "calls.json")
    with open(calls_path, "w", encoding="utf-8") as f:
        json.dump(_calls(texts, titles, source.encoder, dim), f)
    result = os.path.join(out, "result.npz")
    subprocess.run(
        [sys.executable, LOADER, export_dir, calls_path, result],
        check=True,
        cwd=REPO,
        timeout=600,
    )
    with np.load(result) as data:
        got = {key: data[key] for key in data.files}
    return Run(export_dir, source, texts, titles, dim, got)


@pytest.fixture(scope="module")
def sentences(eval_data_dir: str) -> list[str]:
    # 200 sentences, the four long ones last: as 400 query/document rows the long ones
    # share the last 64-row call with only 8 others, so few rows pad to max_length.
    texts = varied_sentences(eval_data_dir, n_sts=200 - len(HARD_CASES) - 4)
    assert len(texts) == 200 and texts[-1] == long_text(1000)
    return texts


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory: pytest.TempPathFactory, sentences: list[str]) -> Run:
    source = load_source("all-MiniLM-L6-v2")
    return _export_and_run(source, str(tmp_path_factory.mktemp("minilm_export")), sentences, 64)


@pytest.fixture(scope="module")
def t5_run(tmp_path_factory: pytest.TempPathFactory, sentences: list[str]) -> Run:
    """A T5-encoder model directory with a projection and Matryoshka sizes, deleted after
    the export (with the T5 checkpoint it was built from) so the load cannot read it."""
    base = tmp_path_factory.mktemp("t5_base")
    write_tiny_t5(base)
    model_dir = tmp_path_factory.mktemp("t5_model")
    write_model_dir(
        model_dir,
        str(base),
        head=HeadConfig(projection_dim=16),
        max_length=48,
        matryoshka_dims=(16, 8),
    )
    source = load_source(str(model_dir))
    out = str(tmp_path_factory.mktemp("t5_export"))
    return _export_and_run(source, out, sentences, 8, delete=(str(base), str(model_dir)))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _expected_rows(run: Run) -> np.ndarray:
    """Encoder.encode of every text as a query and as a document, interleaved as sent."""
    if run.expected is None:
        enc = run.encoder
        queries = enc.encode(run.texts, task=TASK, kind="query", batch_size=64)
        documents = enc.encode(
            run.texts, task=TASK, kind="document", titles=run.titles, batch_size=64
        )
        run.expected = np.stack([queries, documents], axis=1).reshape(-1, queries.shape[1])
    return run.expected


@pytest.fixture(params=["minilm", "t5"])
def run(request: pytest.FixtureRequest) -> Run:
    return request.getfixturevalue(f"{request.param}_run")


def test_embeddings_match_encoder_at_every_batch_size(run: Run) -> None:
    assert not run.got["jax_imported"]
    expected = _expected_rows(run)
    for b in BATCH_SIZES:
        got = run.got[f"rows_b{b}/embedding"]
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert _cosines(got, expected).min() >= MIN_COSINE, f"batch size {b}"
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # Without a task the text goes in unchanged, whatever the kind.
    plain = run.encoder.encode(run.texts[:PLAIN_ROWS])
    assert _cosines(run.got["plain/embedding"], plain).min() >= MIN_COSINE


def test_matryoshka_dimension_is_renormalised(run: Run) -> None:
    got = run.got["dim/embedding"]
    # encode(dim=d) is the full embedding's first d values renormalised.
    expected = matryoshka_truncate(_expected_rows(run), run.dim)
    assert got.shape == (2 * len(run.texts), run.dim)
    assert _cosines(got, expected).min() >= MIN_COSINE
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_token_counts_and_truncation_match_tokenize(run: Run) -> None:
    enc = run.encoder
    q = enc.tokenize(run.texts, task=TASK, kind="query")
    d = enc.tokenize(run.texts, task=TASK, kind="document", titles=run.titles)
    counts = np.stack([q.token_counts, d.token_counts], axis=1).reshape(-1)
    truncated = np.stack([q.truncated, d.truncated], axis=1).reshape(-1)
    for b in BATCH_SIZES:
        np.testing.assert_array_equal(run.got[f"rows_b{b}/token_count"], counts)
        np.testing.assert_array_equal(run.got[f"rows_b{b}/truncated"], truncated)
    # The over-long inputs are cut to exactly max_length and flagged.
    longest = run.texts.index(long_text(1000))
    assert run.got["rows_b7/truncated"][2 * longest : 2 * longest + 2].all()
    assert (run.got["rows_b7/token_count"][2 * longest : 2 * longest + 2] == enc.max_length).all()
    assert not truncated.all()


def test_tokenize_and_embed_tokens_signatures(run: Run) -> None:
    enc = run.encoder
    few = run.texts[:12] + [long_text(1000)]
    tokenized = enc.tokenize(few, task=TASK, kind="query")
    ids = run.got["tokenize/token_ids"]
    assert ids.dtype == np.int32 and ids.shape == (len(few), enc.max_length)
    for row, expected in zip(ids, tokenized.token_ids):
        np.testing.assert_array_equal(row[: len(expected)], expected)
        assert (row[len(expected) :] == enc.vocabulary.pad_id).all()
    np.testing.assert_array_equal(run.got["tokenize/token_count"], tokenized.token_counts)
    np.testing.assert_array_equal(run.got["tokenize/truncated"], tokenized.truncated)
    expected = enc.encode(few, task=TASK, kind="query")
    assert _cosines(run.got["embed_tokens/embedding"], expected).min() >= MIN_COSINE


def test_bad_requests_are_invalid_argument(run: Run) -> None:
    for name in ("bad_kind", "short_task", "dim_zero", "dim_too_big", "too_many_tokens"):
        assert str(run.got[f"{name}/error"]) == "InvalidArgumentError", name


def test_warmup_requests_replay(run: Run) -> None:
    for i, size in enumerate(warmup.WARMUP_BATCH_SIZES):
        embedding = run.got[f"warmup/{i}/embedding"]
        assert embedding.shape == (size, run.encoder.embedding_dim)
        np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def test_layout_and_model_info(run: Run) -> None:
    files = set(os.listdir(run.export_dir))
    assert {"saved_model.pb", "variables", "assets", "assets.extra", "model-info.txt"} <= files
    with open(os.path.join(run.export_dir, "assets.extra", "gecko_model_info.json")) as f:
        info = json.load(f)
    assert set(info) == INFO_KEYS
    enc, source = run.encoder, run.source
    assert info["format_version"] == 1
    assert info["source"] == source.name_or_path and info["step"] == source.step
    assert info["max_length"] == enc.max_length
    assert info["embedding_dim"] == enc.embedding_dim
    assert info["matryoshka_dims"] == list(source.matryoshka_dims)
    assert info["pad_id"] == enc.vocabulary.pad_id
    assert info["query_template"] == enc.input_format.query_template
    assert info["platforms"] == ["cpu", "cuda", "tpu"]
    assert info["signatures"] == list(saved_model.SIGNATURES)
    assert info["serialization_version"] == saved_model.DEFAULT_SERIALIZATION_VERSION == 9
    assert os.path.isfile(os.path.join(run.export_dir, "assets", info["vocabulary"]["file"]))
    text = open(os.path.join(run.export_dir, "model-info.txt")).read()
    assert f"max_length: {enc.max_length}\n" in text
    assert f"serialization_version: {info['serialization_version']}\n" in text
    if info["vocabulary"]["kind"] == "wordpiece":
        # The tokenizer's tables are in the graph, not a path to the source's vocab.txt
        # (a SentencePiece model proto carries its training path as a note: skipped).
        graph = open(os.path.join(run.export_dir, "saved_model.pb"), "rb").read()
        assert source.base_dir.encode() not in graph


def test_t5_model_directory_facts(t5_run: Run) -> None:
    with open(os.path.join(t5_run.export_dir, "assets.extra", "gecko_model_info.json")) as f:
        info = json.load(f)
    assert info["step"] == 7 and info["checkpoint_dir"] == t5_run.source.checkpoint_dir
    assert info["init_from"] == t5_run.source.init_from
    assert info["matryoshka_dims"] == [16, 8] and info["embedding_dim"] == 16
    assert info["vocabulary"] == {"file": "spiece.model", "kind": "sentencepiece"}


# Bad input, on a small random BERT.


@pytest.fixture(scope="module")
def tiny_source(tiny_model_dir: str) -> ExportSource:
    return load_source(tiny_model_dir)


def test_model_directory_without_checkpoint(tmp_path, tiny_model_dir: str) -> None:
    model_dir = tmp_path / "no_checkpoint"
    model_dir.mkdir()
    write_spec(
        str(model_dir), ModelSpec(init_from=tiny_model_dir, head=HeadConfig(), max_length=32)
    )
    with pytest.raises(ExportError, match=re.escape(str(model_dir))):
        load_source(str(model_dir))


@pytest.mark.parametrize("version", [0, -1, True, 1.5, "2"])
def test_bad_version_is_refused(tmp_path, tiny_source: ExportSource, version) -> None:
    with pytest.raises(ExportError, match="--version"):
        saved_model.export_saved_model(tiny_source, str(tmp_path), version=version)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("version", [8, 11, "9"])
def test_bad_serialization_version_is_refused(tmp_path, tiny_source: ExportSource, version) -> None:
    with pytest.raises(ExportError, match=r"--serialization_version must be in 9\.\.10"):
        saved_model.export_saved_model(tiny_source, str(tmp_path), serialization_version=version)
    assert os.listdir(tmp_path) == []


def test_bad_platforms_and_warmup_texts_are_refused(tmp_path, tiny_source: ExportSource) -> None:
    with pytest.raises(ExportError, match="--platforms: gpu"):
        saved_model.export_saved_model(tiny_source, str(tmp_path), platforms=("cpu", "gpu"))
    with pytest.raises(ExportError, match="warm-up"):
        saved_model.export_saved_model(tiny_source, str(tmp_path), warmup_texts=[])
    assert os.listdir(tmp_path) == []


def test_existing_output_needs_overwrite(tmp_path, tiny_source: ExportSource) -> None:
    old = tmp_path / "3"
    old.mkdir()
    (old / "stale.txt").write_text("old export")
    with pytest.raises(ExportError, match=re.escape(f"{old} already exists") + ".*--overwrite"):
        saved_model.export_saved_model(tiny_source, str(tmp_path), version=3)
    assert os.listdir(old) == ["stale.txt"]
    written = saved_model.export_saved_model(tiny_source, str(tmp_path), version=3, overwrite=True)
    assert written == str(old)
    assert not (old / "stale.txt").exists() and (old / "saved_model.pb").is_file()
    assert os.listdir(tmp_path) == ["3"]


def test_failure_mid_export_leaves_nothing(tmp_path, tiny_source, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(warmup, "write_warmup_requests", broken)
    with pytest.raises(OSError, match="disk full"):
        saved_model.export_saved_model(tiny_source, str(tmp_path), version=2)
    assert os.listdir(tmp_path) == []


# The in-graph input ops on their own.


@pytest.mark.parametrize(
    "input_format",
    [
        formats.InputFormat(),
        formats.InputFormat("{{{task}}} asks: {text}", "{text} ({title}) {{x}}", "n/a"),
    ],
)
def test_format_texts_matches_apply_format(input_format: formats.InputFormat) -> None:
    rows = [
        ("Où est la gare ?", "", "", "query"),
        ("plain document", "", "A title", "document"),
        ("what is jax", "question answering", "", "query"),
        ("JAX is a library.", "question answering", "", "document"),
        ("JAX is a library.", "question answering", "JAX | docs", "document"),
    ]
    text, task, title, kind = (tf.constant(list(column)) for column in zip(*rows))
    got = tf_inputs.format_texts(text, task, title, kind, input_format).numpy()
    for (t, tk, ti, k), formatted in zip(rows, got):
        titles = [ti] if k == "document" else None
        expected = formats.apply_format([t], k, tk or None, titles, input_format)[0]
        assert formatted.decode() == expected


@pytest.mark.parametrize("template", ["{text!r} {task}", "{task:>10} {text}", "{query}: {text}"])
def test_templates_beyond_plain_fields_are_refused(template: str) -> None:
    with pytest.raises(ExportError, match="input template"):
        tf_inputs.template_parts(template, ("task", "text"))


@pytest.mark.parametrize("rows", [1, 3, 64, 65, 130])
def test_bucketed_model_inputs(rows: int) -> None:
    lengths = [(7 * i) % 30 + 1 for i in range(rows)]
    ids = tf.ragged.constant([[5] * n for n in lengths], dtype=tf.int32)
    token_ids, mask = tf_inputs.bucketed_model_inputs(ids, pad_id=0, max_length=30)
    padded_rows = shapes.batch_bucket(rows, 64) if rows <= 64 else -(-rows // 64) * 64
    assert token_ids.shape == mask.shape == (padded_rows, shapes.length_bucket(max(lengths), 30))
    np.testing.assert_array_equal(mask.numpy().sum(axis=1)[:rows], lengths)
    assert mask.numpy()[rows:].sum() == 0 and (token_ids.numpy() * (1 - mask.numpy())).sum() == 0
