"""Pairs JSONL input: formatting, token ids, negatives, resumable position, errors."""

import json

import numpy as np
import pytest

from gecko_jax.data.pairs import PairBatches, read_pair_rows, text_id
from gecko_jax.data.vocabularies import vocabulary_from_dir


@pytest.fixture(scope="module")
def vocab(minilm_dir: str):
    return vocabulary_from_dir(minilm_dir)


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _rows(n: int) -> list[dict]:
    rows = [{"query": f"question {i}", "positive": f"answer number {i}"} for i in range(n)]
    rows[0].update(negative=["wrong one", "wrong two", "wrong three"])
    rows[1].update(negative="single wrong")
    rows[2].update(task="question answering", positive_title="Title")
    return rows


def test_rows_are_formatted_when_they_carry_a_task(tmp_path) -> None:
    rows = read_pair_rows(_write(tmp_path / "p.jsonl", _rows(4)))
    assert rows[0].negatives == ("wrong one", "wrong two", "wrong three")
    assert rows[1].negatives == ("single wrong",)
    assert rows[2].query == "task: question answering | query: question 2"
    assert rows[2].positive == "title: Title | text: answer number 2"
    assert rows[3].query == "question 3" and rows[3].negatives == ()


def test_batches_hold_real_token_ids_and_negative_masks(tmp_path, vocab) -> None:
    rows = read_pair_rows(_write(tmp_path / "p.jsonl", _rows(8)))
    batches = PairBatches(rows, vocab, batch_size=8, query_length=8, document_length=6, seed=0)
    assert batches.num_negatives == 3
    batch = next(batches)
    assert batch["query_tokens"].shape == (8, 8) and batch["negative_tokens"].shape == (8, 3, 6)
    order = [
        int(np.flatnonzero(batch["positive_ids"] == text_id(f"answer number {i}"))[0])
        if i != 2
        else None
        for i in range(8)
    ]
    first = order[0]
    # "question 0" -> [CLS] question 0 [SEP] then padding, as the HF tokenizer gives.
    np.testing.assert_array_equal(batch["query_tokens"][first], [101, 3160, 1014, 102, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch["negative_mask"][first], [True, True, True])
    np.testing.assert_array_equal(batch["negative_tokens"][first, 0], [101, 3308, 2028, 102, 0, 0])
    np.testing.assert_array_equal(batch["negative_mask"][order[1]], [True, False, False])
    assert batch["negative_tokens"][order[3]].sum() == 0
    # Truncated to document_length with [SEP] kept last, like HF truncation.
    long_row = batch["positive_tokens"][order[5]]
    np.testing.assert_array_equal(long_row, [101, 3437, 2193, 1019, 102, 0])


def test_resume_continues_exactly_without_replay(tmp_path, vocab) -> None:
    rows = read_pair_rows(_write(tmp_path / "p.jsonl", _rows(20)))

    def make() -> PairBatches:
        return PairBatches(rows, vocab, batch_size=6, query_length=8, document_length=8, seed=3)

    straight = [
        next(b) for b in [make()] for _ in range(8)
    ]  # crosses epoch boundaries (3 per epoch)
    first = make()
    head = [next(first) for _ in range(4)]
    state = json.loads(json.dumps(first.get_state()))  # as saved in a checkpoint
    resumed = make()
    resumed.set_state(state)
    tail = [next(resumed) for _ in range(4)]
    for a, b in zip(straight, head + tail):
        np.testing.assert_array_equal(a["query_tokens"], b["query_tokens"])
    seen = np.concatenate([b["positive_ids"] for b in straight[:3]])
    assert len(set(seen.tolist())) == 18  # one epoch: no row twice
    other_seed = PairBatches(rows, vocab, batch_size=6, query_length=8, document_length=8, seed=4)
    with pytest.raises(ValueError, match="checkpointed input seed 3 differs"):
        other_seed.set_state(state)


def test_bad_files_name_file_and_line(tmp_path, vocab) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_pair_rows(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "positive": "p"}\n{"query": "q"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing string field 'positive'"):
        read_pair_rows(bad)
    bad.write_text('{"query": "q", "positive": "p", "negative": [1]}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: 'negative' must be a string or a list"):
        read_pair_rows(bad)
    bad.write_text('{"query": "q", "positive": "p"}\n')
    with pytest.raises(ValueError, match="only 1 training rows for a batch of 4"):
        PairBatches(read_pair_rows(bad), vocab, batch_size=4)


def test_bad_rows_within_the_tolerance_are_skipped_and_counted(tmp_path, caplog) -> None:
    rows = [json.dumps({"query": f"q{i}", "positive": f"p{i}"}) for i in range(198)]
    rows.insert(50, json.dumps({"query": "  ", "positive": "p"}))  # empty query: a bad row
    path = tmp_path / "pairs.jsonl"
    path.write_bytes("\n".join(rows).encode() + b"\n\xff\xfe not utf-8\n")
    with caplog.at_level("WARNING"):
        read = read_pair_rows(path)
    assert len(read) == 198
    assert f"{path}:51: empty 'query'" in caplog.text
    assert f"{path}:200: not UTF-8 text" in caplog.text
    assert "skipped 2 bad rows of 200" in caplog.text
    path.write_text('{"query": "q", "positive": ""}\n' + "\n".join(rows[:20]) + "\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl:1: empty 'positive'"):
        read_pair_rows(path)  # 1 of 21 bad: over 1%
