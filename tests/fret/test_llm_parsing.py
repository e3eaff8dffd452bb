"""Value types, output parsing, label distributions, prices and the SQLite cache."""

import math
import threading

import pytest

from gecko_jax.fret.llm.base import LabelsNotFoundError, MalformedOutputError, Usage
from gecko_jax.fret.llm.cache import SQLiteCache, cache_key
from gecko_jax.fret.llm.parsing import label_distribution, parse_json_object
from gecko_jax.fret.llm.pricing import BATCH_DISCOUNT, Prices, prices_for
from tests.fret.cache_counts import call_counts


def test_usage_add_returns_a_new_sum():
    a = Usage(requests=1, prompt_tokens=10, cost_usd=0.5)
    b = a.add(Usage(requests=2, output_tokens=3, retries=1), cache_hits=4, cost_usd=0.25)
    assert a == Usage(requests=1, prompt_tokens=10, cost_usd=0.5)
    assert b == Usage(
        requests=3, cache_hits=4, prompt_tokens=10, output_tokens=3, cost_usd=0.75, retries=1
    )
    with pytest.raises(TypeError, match="tokens"):
        a.add(tokens=1)


@pytest.mark.parametrize(
    "text",
    [
        '{"task": "t", "query": "q"}',
        '```json\n{"task": "t", "query": "q"}\n```',
        'Sure! Here it is: {"task": "t", "query": "q"} Hope this helps.',
    ],
)
def test_parse_json_object_accepts_fences_and_prose(text):
    assert parse_json_object(text) == {"task": "t", "query": "q"}


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"task": "t", "query": ', "not valid JSON"),
        ("no braces at all", "holds no JSON object"),
        ('["a list"] {', "not valid JSON"),
    ],
)
def test_parse_json_object_errors_quote_the_text(text, message):
    with pytest.raises(MalformedOutputError, match=message) as info:
        parse_json_object(text)
    assert repr(text)[:20] in str(info.value)


def test_label_distribution_sums_token_variants_and_renormalises():
    candidates = [
        (" Yes", math.log(0.6)),
        ("Yes", math.log(0.1)),
        (" No", math.log(0.2)),
        (" Maybe", math.log(0.05)),
    ]
    assert label_distribution(candidates, ["Yes", "No"]) == pytest.approx(
        {"Yes": 0.7 / 0.9, "No": 0.2 / 0.9}, rel=1e-12
    )


def test_label_distribution_matches_first_token_prefix_and_skips_ambiguous_ones():
    labels = ["Highly relevant", "Not relevant", "Notable"]
    # " High" names one label; " Not" is a prefix of two labels and equals neither: skipped.
    candidates = [(" High", math.log(0.3)), (" Not", math.log(0.5)), ("Notable", math.log(0.1))]
    assert label_distribution(candidates, labels) == pytest.approx(
        {"Highly relevant": 0.75, "Not relevant": 0.0, "Notable": 0.25}, rel=1e-12
    )


def test_label_distribution_when_no_label_is_present():
    candidates = [(" Perhaps", -0.1), (" Unsure", -2.0)]
    with pytest.raises(LabelsNotFoundError, match=r"'Perhaps'|Perhaps"):
        label_distribution(candidates, ["3", "2", "1", "0"])
    assert label_distribution(candidates, ["a", "b"], missing="uniform") == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="distinct"):
        label_distribution(candidates, ["a", "a"])


def test_prices_longest_prefix_overrides_and_batch_discount():
    assert prices_for("gemini-2.0-flash-001") == Prices(0.15, 0.60)
    assert prices_for("publishers/google/models/gemini-2.0-flash-lite-001") == Prices(0.075, 0.30)
    assert prices_for("Qwen/Qwen2.5-7B-Instruct") == Prices(0.0, 0.0)
    assert prices_for("my-model", {"my": Prices(1.0, 2.0)}) == Prices(1.0, 2.0)
    assert prices_for("gemini-2.0-flash", Prices(3.0, 4.0)) == Prices(3.0, 4.0)
    assert Prices(2.0, 8.0).cost(1_000_000, 500_000) == 6.0
    assert Prices(2.0, 8.0).scaled(BATCH_DISCOUNT) == Prices(1.0, 4.0)


def test_cache_key_ignores_parameter_order_and_sees_every_field():
    base = cache_key("m", "generate", "p", {"a": 1, "b": 2})
    assert base == cache_key("m", "generate", "p", {"b": 2, "a": 1})
    assert len(base) == 64
    others = {
        cache_key("m2", "generate", "p", {"a": 1, "b": 2}),
        cache_key("m", "log_likelihood", "p", {"a": 1, "b": 2}),
        cache_key("m", "generate", "p2", {"a": 1, "b": 2}),
        cache_key("m", "generate", "p", {"a": 1, "b": 3}),
    }
    assert base not in others and len(others) == 4


def test_sqlite_cache_persists_counts_calls_and_uses_wal(tmp_path):
    path = tmp_path / "sub" / "cache.sqlite"
    cache = SQLiteCache(path)
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache.put("k1", {"value": "x", "n": [1, 2]}, model="m", method="generate")
    cache.put("k1", {"value": "y"}, model="m", method="generate")
    cache.put("k2", 1.5, model="m", method="log_likelihood")
    cache.close()
    reopened = SQLiteCache(path)
    assert reopened.get("k1") == {"value": "y"}
    assert reopened.get("k2") == 1.5 and reopened.get("k3") is None
    assert call_counts(reopened) == {"k1": 2, "k2": 1} and len(reopened) == 2


def test_sqlite_cache_is_safe_from_threads(tmp_path):
    cache = SQLiteCache(tmp_path / "cache.sqlite")

    def write(worker: int) -> None:
        for i in range(50):
            cache.put(f"{worker}-{i}", i, model="m", method="generate")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 200 and set(call_counts(cache).values()) == {1}
