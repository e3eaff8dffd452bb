"""Tiny evaluation-data directories in the layout of tests/fixtures/eval_data (see its README)."""

from __future__ import annotations

import csv
import json
import os

# BEIR toy set: (id, title, text) and (id, text); qrels name one unknown query and one
# unknown document.
CORPUS = [("d1", "T1", "x1"), ("d2", "T2", "x2"), ("d3", "T3", "x3"), ("d4", "T4", "x4")]
QUERIES = [("q1", "first"), ("q2", "second"), ("q3", "third")]
QRELS = [("q1", "d2", 1), ("q2", "d4", 1), ("q2", "d3", 1), ("qX", "d1", 1), ("q1", "d9", 1)]
# Document and query vectors: q1 ranks d1, d2, d3, d4; q2 ranks d4, then d1, d2, d3 (ties,
# by index).
VECTORS = {
    "T1 x1": [1.0, 0.0, 0.0],
    "T2 x2": [0.8, 0.6, 0.0],
    "T3 x3": [0.0, 1.0, 0.0],
    "T4 x4": [0.0, 0.0, 1.0],
    "first": [1.0, 0.0, 0.0],
    "second": [0.0, 0.0, 1.0],
    "third": [0.0, 1.0, 0.0],
}

STS_ROWS = [  # genre, file, year, id, score, sentence1, sentence2
    (
        "main-captions",
        "MSRvid",
        "2012test",
        "0001",
        "5.000",
        "A man plays a guitar.",
        "A man is playing a guitar.",
    ),
    (
        "main-captions",
        "MSRvid",
        "2012test",
        "0002",
        "0.200",
        "A cat sleeps.",
        "Stocks fell sharply on Monday.",
    ),
    (
        "main-captions",
        "MSRvid",
        "2012test",
        "0003",
        "3.800",
        "A woman slices an onion.",
        "A woman is cutting an onion.",
    ),
    (
        "main-news",
        "headlines",
        "2013",
        "0004",
        "1.000",
        "The bank raised rates.",
        "A dog runs in a park.",
    ),
]

BANKING_TRAIN = [
    ("I still have not received my new card", "card_arrival"),
    ("When will my card arrive?", "card_arrival"),
    ("My card has not come in the mail yet", "card_arrival"),
    ("How do I top up my account?", "top_up"),
    ("Can I add money with a bank transfer?", "top_up"),
    ("What are the ways to top up?", "top_up"),
]
BANKING_TEST = [
    ("Where is my card? It has not arrived", "card_arrival"),
    ("How can I top up using my card?", "top_up"),
    ("Is there a fee to add money to my account?", "top_up"),
]


def write_beir(root: str) -> str:
    """Writes the BEIR toy set into ``root/scifact`` and returns that directory."""
    path = os.path.join(root, "scifact")
    os.makedirs(os.path.join(path, "qrels"), exist_ok=True)
    with open(os.path.join(path, "corpus.jsonl"), "w") as f:
        f.writelines(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in CORPUS)
    with open(os.path.join(path, "queries.jsonl"), "w") as f:
        f.writelines(json.dumps({"_id": i, "text": x, "metadata": {}}) + "\n" for i, x in QUERIES)
    with open(os.path.join(path, "qrels", "test.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS)
    return path


def write_data_dir(root: str) -> str:
    """Writes stsb/sts-test.csv, scifact/ and banking77/{train,test}.csv under ``root``."""
    write_beir(root)
    os.makedirs(os.path.join(root, "stsb"), exist_ok=True)
    with open(os.path.join(root, "stsb", "sts-test.csv"), "w") as f:
        f.writelines("\t".join(row) + "\n" for row in STS_ROWS)
    os.makedirs(os.path.join(root, "banking77"), exist_ok=True)
    for split, rows in (("train", BANKING_TRAIN), ("test", BANKING_TEST)):
        with open(os.path.join(root, "banking77", f"{split}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "category"])
            writer.writerows(rows)
    return root
