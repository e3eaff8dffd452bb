"""QL/RC scoring, ranks, reciprocal rank fusion and the choice of positive and negative."""

import asyncio
import collections

import pytest

from gecko_jax.fret import rank
from gecko_jax.fret.config import DEFAULT_LABELS, RankingConfig, RelevanceLabel
from gecko_jax.fret.corpus import Passage
from gecko_jax.fret.llm.base import LabelsNotFoundError, NotSupportedError
from gecko_jax.fret.templates import Prompts

# Four neighbours in retrieval order, with hand-picked scores:
#   QL = [-10, -3, -7, -5]  -> r_QL = [4, 1, 3, 2]
#   RC = [1.0, 2.5, 2.9, 0.4] -> r_RC = [3, 2, 1, 4]
#   R  = [1/4 + 1/3, 1 + 1/2, 1/3 + 1, 1/2 + 1/4] = [0.5833, 1.5, 1.3333, 0.75]
#   final order: 1, 2, 3, 0 -> positive 1, p_N negative 0.
QL = [-10.0, -3.0, -7.0, -5.0]
RC = [1.0, 2.5, 2.9, 0.4]
IDS = ["a", "b", "c", "d"]


def _rank(ql=QL, rc=RC, **config):
    return rank.rank_candidates(
        [10, 11, 12, 13], IDS, [0.9, 0.8, 0.7, 0.6], ql, rc, RankingConfig(**config), 0
    )


def test_ranks_break_ties_by_position_and_put_missing_last():
    assert rank.ranks([0.5, 0.9, 0.5, None, 0.9]) == [3, 1, 4, 5, 2]
    assert rank.ranks([]) == []


def test_rrf_values_and_choices():
    ranked = _rank()
    assert [c.rank_ql for c in ranked.candidates] == [4, 1, 3, 2]
    assert [c.rank_rc for c in ranked.candidates] == [3, 2, 1, 4]
    assert [c.rrf for c in ranked.candidates] == pytest.approx([7 / 12, 1.5, 4 / 3, 0.75])
    assert [c.rank for c in ranked.candidates] == [4, 1, 2, 3]
    assert (ranked.positive, ranked.negative) == (1, 0)
    assert ranked.candidates[0].as_record() == {
        "id": "a",
        "retrieval": 0.9,
        "ql": -10.0,
        "rc": 1.0,
        "rank_ql": 4,
        "rank_rc": 3,
        "rrf": 1 / 4 + 1 / 3,
        "rank": 4,
    }


@pytest.mark.parametrize(
    "negative, expected", [("p_N", 0), ("rank:2", 2), ("rank:3", 3), ("rank:4", 0)]
)
def test_negative_by_rank(negative, expected):
    assert _rank(negative=negative).negative == expected


def test_rank_beyond_the_neighbours_is_an_error():
    with pytest.raises(ValueError, match="rank:5 but only 4 neighbours"):
        _rank(negative="rank:5")


def test_equal_fused_scores_keep_retrieval_order():
    # r_QL = [1, 2], r_RC = [2, 1]: R = 1.5 for both; the first retrieved wins.
    ranked = rank.rank_candidates(
        [0, 1], ["x", "y"], [0.5, 0.4], [-1.0, -2.0], [0.0, 1.0], RankingConfig(), 0
    )
    assert [c.rrf for c in ranked.candidates] == [1.5, 1.5]
    assert (ranked.positive, ranked.negative) == (0, 1)


@pytest.mark.parametrize("ranking, positive, negative", [("ql", 1, 0), ("rc", 2, 3)])
def test_single_rankers(ranking, positive, negative):
    ranked = _rank(
        ql=QL if ranking == "ql" else None, rc=RC if ranking == "rc" else None, ranking=ranking
    )
    assert (ranked.positive, ranked.negative) == (positive, negative)
    used = [c.rank_ql if ranking == "ql" else c.rank_rc for c in ranked.candidates]
    assert [c.rrf for c in ranked.candidates] == pytest.approx([1 / r for r in used])


def test_random_negative_is_seeded_and_never_the_positive():
    config = RankingConfig(negative="random")
    picks = [
        rank.rank_candidates([0, 1, 2, 3], IDS, [0.0] * 4, QL, RC, config, seed).negative
        for seed in range(200)
    ]
    assert set(picks) == {0, 2, 3}  # every non-top neighbour, never the positive (1)
    again = [
        rank.rank_candidates([0, 1, 2, 3], IDS, [0.0] * 4, QL, RC, config, seed).negative
        for seed in range(200)
    ]
    assert picks == again


def test_expected_relevance():
    probabilities = {"3": 0.5, "2": 0.25, "1": 0.125, "0": 0.125}
    assert rank.expected_relevance(probabilities, DEFAULT_LABELS) == 2.125
    # Renormalised over the labels: (3 * 0.2 + 0 * 0.2) / 0.4.
    assert rank.expected_relevance({"3": 0.2, "0": 0.2, "x": 0.6}, DEFAULT_LABELS) == pytest.approx(
        1.5
    )
    yes_no = (RelevanceLabel("Yes", 1.0, ""), RelevanceLabel("No", 0.0, ""))
    assert rank.expected_relevance({"Yes": 0.8, "No": 0.2}, yes_no) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="no probability"):
        rank.expected_relevance({"x": 1.0}, yes_no)


class ScoringClient:
    """QL and RC answers looked up by passage text; records the prompts it saw."""

    model_id = "scoring"

    def __init__(self, ql, rc, ql_error=None):
        self.ql, self.rc, self.ql_error = ql, rc, ql_error
        self.ql_calls, self.rc_calls = [], []

    @staticmethod
    def _passage(prompt):
        return next(
            line[len("Passage: ") :] for line in prompt.splitlines() if line.startswith("Passage: ")
        )

    async def log_likelihood(self, prompt, continuation):
        if self.ql_error:
            raise self.ql_error
        self.ql_calls.append((prompt, continuation))
        return self.ql[self._passage(prompt)]

    async def label_probabilities(self, prompt, labels):
        self.rc_calls.append((prompt, tuple(labels)))
        value = self.rc[self._passage(prompt)]
        if value is None:
            raise LabelsNotFoundError("no label among the top tokens")
        return value


PASSAGES = [Passage(i, f"text of {i}") for i in IDS]
# RC probabilities giving expected relevance 1.0, 2.5, 2.9, 0.4 (as RC above).
PROBS = {
    "text of a": {"3": 0.0, "2": 0.0, "1": 1.0, "0": 0.0},
    "text of b": {"3": 0.5, "2": 0.5, "1": 0.0, "0": 0.0},
    "text of c": {"3": 0.9, "2": 0.1, "1": 0.0, "0": 0.0},
    "text of d": {"3": 0.0, "2": 0.0, "1": 0.4, "0": 0.6},
}
QUERY = rank.Query("a", "find the text", "which text", (0, 1, 2, 3), (0.9, 0.8, 0.7, 0.6))


def _rank_queries(client, ranking="rrf"):
    failures = collections.Counter()
    ranked = asyncio.run(
        rank.rank_queries(
            client,
            Prompts(),
            PASSAGES,
            [QUERY],
            RankingConfig(ranking=ranking),
            0,
            failures,
            progress=False,
        )
    )
    return ranked, failures


def test_rank_queries_scores_every_neighbour_with_both_prompts():
    client = ScoringClient(dict(zip([p.text for p in PASSAGES], QL)), PROBS)
    [ranked], failures = _rank_queries(client)
    assert [c.ql for c in ranked.candidates] == QL
    assert [c.rc for c in ranked.candidates] == pytest.approx(RC)
    assert (ranked.positive, ranked.negative) == (1, 0)
    assert not failures
    assert sorted(continuation for _, continuation in client.ql_calls) == [" which text"] * 4
    assert all(labels == ("3", "2", "1", "0") for _, labels in client.rc_calls)
    assert all("Query: which text" in prompt for prompt, _ in client.rc_calls)


def test_missing_rc_label_ranks_last_and_is_counted():
    client = ScoringClient(dict(zip([p.text for p in PASSAGES], QL)), {**PROBS, "text of c": None})
    [ranked], failures = _rank_queries(client, "rc")
    assert [c.rc for c in ranked.candidates][2] is None
    assert [c.rank_rc for c in ranked.candidates] == [2, 1, 4, 3]
    assert failures == {"rc_labels_not_found": 1}


@pytest.mark.parametrize("ranking", ["rrf", "ql"])
def test_ql_unsupported_asks_for_rc(ranking):
    client = ScoringClient(
        {}, PROBS, ql_error=NotSupportedError("Gemini returns no prompt log-probabilities")
    )
    with pytest.raises(
        rank.RankingUnsupportedError,
        match=f"--ranking {ranking} needs query likelihood.*use --ranking rc",
    ):
        _rank_queries(client, ranking)
    [ranked], _ = _rank_queries(client, "rc")
    assert ranked.positive == 2
