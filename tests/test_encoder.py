"""Encoder API on the real all-MiniLM-L6-v2: parity with sentence-transformers."""

import os

import numpy as np
import pytest
import scipy.stats
from sentence_transformers import SentenceTransformer

from gecko_jax import Encoder
from gecko_jax.models.hf_checkpoint import CheckpointError
from gecko_jax.readers import read_sts_benchmark
from gecko_jax.shapes import padded_batches
from tests.text_samples import varied_sentences


def test_matches_sentence_transformers_on_varied_sentences(
    encoder: Encoder, st_model: SentenceTransformer, eval_data_dir: str
) -> None:
    sentences = varied_sentences(eval_data_dir)
    assert len(sentences) >= 200
    ours = encoder.encode(sentences, batch_size=16)
    ref = st_model.encode(
        sentences, batch_size=16, convert_to_numpy=True, normalize_embeddings=True
    )
    assert ours.shape == ref.shape == (len(sentences), 384) and ours.dtype == np.float32
    cosines = np.sum(ours * ref, axis=1)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.9999, f"cosine {cosines[worst]:.6f} on {sentences[worst]!r:.80}"
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


def _sts_spearman(embed, pairs) -> float:
    a = embed([p.sentence1 for p in pairs])
    b = embed([p.sentence2 for p in pairs])
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return 100.0 * scipy.stats.spearmanr(cos, [p.score for p in pairs]).statistic


def test_sts_benchmark_spearman_equals_sentence_transformers(
    encoder: Encoder, st_model: SentenceTransformer, eval_data_dir: str
) -> None:
    pairs = read_sts_benchmark(os.path.join(eval_data_dir, "stsb", "sts-test.csv"))
    ours = _sts_spearman(lambda t: encoder.encode(t, batch_size=64), pairs)
    ref = _sts_spearman(lambda t: st_model.encode(t, batch_size=64, convert_to_numpy=True), pairs)
    print(f"\nSTS-B test Spearman x100: gecko_jax {ours:.3f}  sentence-transformers {ref:.3f}")
    assert abs(ours - ref) <= 0.05
    assert ours == pytest.approx(82.03, abs=0.1)  # the model's published STSBenchmark score


def test_matryoshka_dim_is_a_renormalised_prefix(encoder: Encoder) -> None:
    texts = ["a small test", "another sentence about cats"]
    full = encoder.encode(texts)
    small = encoder.encode(texts, dim=128)
    assert small.shape == (2, 128)
    np.testing.assert_allclose(
        small,
        full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True),
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match=r"dim=385 is outside 1\.\.384"):
        encoder.encode(texts, dim=385)


def test_task_formats_queries_and_documents(encoder: Encoder) -> None:
    query = encoder.encode(["who wrote hamlet"], task="question answering")
    manual = encoder.encode(["task: question answering | query: who wrote hamlet"])
    np.testing.assert_allclose(query, manual, atol=1e-6)
    doc = encoder.encode(
        ["Hamlet is a play."], task="question answering", kind="document", titles=["Hamlet"]
    )
    np.testing.assert_allclose(
        doc, encoder.encode(["title: Hamlet | text: Hamlet is a play."]), atol=1e-6
    )
    untitled = encoder.encode(["Hamlet is a play."], task="qa", kind="document")
    np.testing.assert_allclose(
        untitled, encoder.encode(["title: none | text: Hamlet is a play."]), atol=1e-6
    )
    with pytest.raises(ValueError, match="kind must be one of"):
        encoder.encode(["x"], kind="passage")


def test_order_is_kept_and_batches_do_not_matter(encoder: Encoder) -> None:
    texts = [
        "short",
        "a much longer sentence with many more words in it than the others",
        "",
        "mid length one",
    ]
    together = encoder.encode(texts, batch_size=2)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(together[i], encoder.encode([text])[0], atol=1e-5)


def test_few_compiled_shapes(encoder: Encoder, eval_data_dir: str) -> None:
    pairs = read_sts_benchmark(os.path.join(eval_data_dir, "stsb", "sts-dev.csv"))
    texts = [p.sentence1 for p in pairs]
    token_ids = encoder.vocabulary.tokenize(texts, encoder.max_length)
    shapes = {b.token_ids.shape for b in padded_batches(token_ids, 32, encoder.max_length)}
    batches = -(-len(texts) // 32)
    assert len(shapes) <= 12 < batches, (len(shapes), batches)
    before = encoder._embed._cache_size()
    encoder.encode(texts, batch_size=32)
    compiled = encoder._embed._cache_size()
    assert compiled - before <= len(shapes)
    encoder.encode(texts, batch_size=32)
    assert encoder._embed._cache_size() == compiled  # a second pass compiles nothing


def test_tokenize_then_embed_equals_encode(encoder: Encoder) -> None:
    texts = ["a short query", "word " * 600, "another text about science"]
    tokenized = encoder.tokenize(
        texts, task="search result", kind="document", titles=["T", None, "S"]
    )
    assert tokenized.truncated.tolist() == [False, True, False]
    assert tokenized.token_counts[1] == encoder.max_length == 256
    assert tokenized.token_ids[0][0] == 101 and tokenized.token_ids[1][-1] == 102
    # title: t | text: a short query -> [CLS] title : t | text : a short query [SEP]
    assert tokenized.token_counts[0] == 11
    direct = encoder.encode(texts, task="search result", kind="document", titles=["T", None, "S"])
    np.testing.assert_allclose(encoder.embed_token_ids(tokenized.token_ids), direct, atol=1e-6)
    half = encoder.embed_token_ids(tokenized.token_ids, dim=64)
    np.testing.assert_allclose(
        half, direct[:, :64] / np.linalg.norm(direct[:, :64], axis=1, keepdims=True), atol=1e-6
    )
    assert encoder.embed_token_ids([]).shape == (0, 384)
    with pytest.raises(ValueError, match="dim=385"):
        encoder.embed_token_ids(tokenized.token_ids, dim=385)


def test_bad_inputs_get_clear_errors(encoder: Encoder) -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        encoder.encode(["fine", 3])
    with pytest.raises(TypeError, match="texts must be a string or a sequence"):
        encoder.encode(42)
    assert encoder.encode([]).shape == (0, 384)
    assert encoder.encode("single string").shape == (1, 384)
    empty = encoder.encode(["", "   "])
    assert np.isfinite(empty).all()
    np.testing.assert_allclose(np.linalg.norm(empty, axis=1), 1.0, rtol=1e-5)


def test_load_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="neither a model directory nor a known model name"):
        Encoder.load(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="No config.json"):
        Encoder.load(tmp_path)


def test_packed_rows_match_sentence_transformers(
    encoder: Encoder, st_model: SentenceTransformer, eval_data_dir: str
) -> None:
    sentences = varied_sentences(eval_data_dir)  # hard cases and over-long texts too
    ref = st_model.encode(
        sentences, batch_size=16, convert_to_numpy=True, normalize_embeddings=True
    )
    token_ids = encoder.tokenize(sentences).token_ids
    for pass_tokens in (2048, 256):  # 256: passes of one row at the longest texts' 256
        packed = encoder.embed_packed(token_ids, pass_tokens=pass_tokens)
        assert packed.shape == (len(sentences), 384) and packed.dtype == np.float32
        cosines = np.sum(packed * ref, axis=1)
        worst = int(np.argmin(cosines))
        assert cosines.min() >= 0.9999, f"cosine {cosines[worst]:.6f} on {sentences[worst]!r:.80}"
    short = token_ids[:40]  # rows of 64 tokens shared by several sentences
    np.testing.assert_allclose(
        encoder.embed_packed(short), encoder.embed_token_ids(short), atol=2e-6
    )
    assert encoder.embed_packed([]).shape == (0, 384)
