"""Task-type sampling, validation of the LLM's answer, re-asks counted by reason."""

import asyncio
import collections
import json

import pytest

from gecko_jax.fret import generate
from gecko_jax.fret.config import DEFAULT_TASK_TYPES, GenerationConfig, TaskType
from gecko_jax.fret.corpus import Passage
from gecko_jax.fret.generate import Rejected, copy_overlap, validate
from gecko_jax.fret.llm.base import BlockedOutputError, Generation, LLMInputError
from gecko_jax.fret.templates import Prompts

PASSAGE = (
    "Regular aerobic exercise lowers resting blood pressure by about five mmHg in adults "
    "with hypertension, according to a meta-analysis of many trials."
)


def _answer(
    task: str = "Given a claim, find evidence", query: str = "does jogging help hypertension"
) -> str:
    return json.dumps({"task": task, "query": query})


def test_task_type_sampling_is_deterministic_and_uniform():
    ids = [f"doc{i}" for i in range(4000)]
    first = [generate.sample_task_type(i, 7, DEFAULT_TASK_TYPES).name for i in ids]
    again = [generate.sample_task_type(i, 7, DEFAULT_TASK_TYPES).name for i in ids]
    assert first == again
    counts = collections.Counter(first)
    assert set(counts) == {t.name for t in DEFAULT_TASK_TYPES}
    assert all(900 <= c <= 1100 for c in counts.values()), counts  # 1000 expected, sd ~27
    other_seed = [generate.sample_task_type(i, 8, DEFAULT_TASK_TYPES).name for i in ids]
    assert 0.6 < sum(a != b for a, b in zip(first, other_seed)) / len(ids) < 0.9  # 0.75 expected


def test_task_type_sampling_follows_weights():
    types = (TaskType("heavy", weight=3.0), TaskType("light", weight=1.0))
    counts = collections.Counter(
        generate.sample_task_type(f"p{i}", 0, types).name for i in range(4000)
    )
    assert 2850 <= counts["heavy"] <= 3150  # 3000 expected, sd ~27


def test_copy_overlap_counts_words_inside_shared_trigrams():
    # Query trigrams (the cat sat) and (cat sat on) occur in the passage: words 0..3 of 7.
    assert copy_overlap("the cat sat on the mat today", "The cat sat on a mat.") == pytest.approx(
        4 / 7
    )
    assert copy_overlap("cat sat", "the cat sat") == 0.0  # shorter than a trigram
    assert copy_overlap("blood pressure exercise trials", PASSAGE) == 0.0
    assert copy_overlap("Lowers resting blood pressure!", PASSAGE) == 1.0
    assert copy_overlap("mat cat", "cat mat", n=1) == 1.0


def test_validate_accepts_and_normalises_whitespace():
    text = (
        '```json\n{"task": " Given a claim,\\n find evidence ", "query": "does  jogging help"}\n```'
    )
    assert validate(text, PASSAGE) == ("Given a claim, find evidence", "does jogging help")


@pytest.mark.parametrize(
    "text, reason",
    [
        ("not json at all", "invalid_json"),
        ('["task", "query"]', "invalid_json"),
        ('{"query": "does jogging help"}', "bad_task"),
        ('{"task": "t", "query": "   "}', "bad_query"),
        ('{"task": "t", "query": 42}', "bad_query"),
        (_answer(task=" ".join(["word"] * 41)), "task_too_long"),
        (_answer(query="hypertension"), "query_too_short"),
        (_answer(query=" ".join(["why"] * 65)), "query_too_long"),
        (_answer(query="Blood pressure BY about five"), "query_copied"),
        (
            _answer(query="exercise lowers resting blood pressure in adults with hypertension"),
            "query_overlap",
        ),
    ],
)
def test_validate_rejects_with_a_reason(text, reason):
    with pytest.raises(Rejected) as info:
        validate(text, PASSAGE)
    assert info.value.reason == reason
    assert reason in generate.REJECT_REASONS


def test_overlap_threshold_is_configurable():
    # 4 of 6 words lie in shared trigrams ("lowers resting blood pressure"): 0.67.
    query = "why lowers resting blood pressure daily"
    assert (
        validate(_answer(query=query), PASSAGE, GenerationConfig(max_copy_overlap=0.7))[1] == query
    )
    with pytest.raises(Rejected, match="query_overlap: 0.67"):
        validate(_answer(query=query), PASSAGE, GenerationConfig(max_copy_overlap=0.6))


class ScriptedClient:
    """Answers generate() calls from a script (texts or exceptions) and records them."""

    model_id = "scripted"

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    async def generate(self, prompt, **kwargs):
        self.calls.append((prompt, kwargs))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return Generation(item, 10, 5)


def _generate(script, config=None):
    client = ScriptedClient(script)
    rejects = collections.Counter()
    passage = Passage("p1", PASSAGE, "Exercise")
    task_type = DEFAULT_TASK_TYPES[2]
    result = asyncio.run(
        generate.generate_one(
            client, Prompts(), passage, task_type, config or GenerationConfig(), 3, rejects
        )
    )
    return result, rejects, client.calls


def test_reasks_after_rejects_with_new_seeds_and_temperature():
    result, rejects, calls = _generate(
        [
            "{oops",
            _answer(query="blood pressure by about five"),
            BlockedOutputError("blocked"),
            _answer(),
        ],
        GenerationConfig(max_attempts=4),
    )
    assert result == generate.Generated(
        "Given a claim, find evidence", "does jogging help hypertension", "fact checking", 4
    )
    assert rejects == {"invalid_json": 1, "query_copied": 1, "llm_blocked": 1}
    seeds = [kwargs["seed"] for _, kwargs in calls]
    base = generate.stable_seed(3, "generate", "p1") % (2**31 - 4)
    assert seeds == [base, base + 1, base + 2, base + 3]
    assert [kwargs["temperature"] for _, kwargs in calls] == [0.7, 1.0, 1.0, 1.0]
    assert all(kwargs["json_mode"] and kwargs["max_output_tokens"] == 256 for _, kwargs in calls)
    assert len({prompt for prompt, _ in calls}) == 1
    assert "Passage: " + PASSAGE in calls[0][0] and "Task type: fact checking" in calls[0][0]


def test_gives_up_after_max_attempts():
    result, rejects, calls = _generate(["x", "y", "z"], GenerationConfig(max_attempts=3))
    assert result is None
    assert rejects == {"invalid_json": 3}
    assert len(calls) == 3


def test_input_error_gives_up_at_once():
    result, rejects, calls = _generate([LLMInputError("HTTP 400"), _answer()])
    assert result is None
    assert rejects == {"llm_input_error": 1}
    assert len(calls) == 1
