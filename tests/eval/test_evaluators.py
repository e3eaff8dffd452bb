"""The registry of named local sets: what each name reads, and its errors."""

import os
import re

import pytest

from gecko_jax.eval import KNOWN_EVALUATORS, build_evaluator
from gecko_jax.eval.evaluators import options_of, spec


def test_named_sets_read_their_files(eval_data_dir: str) -> None:
    stsb = build_evaluator("stsb", eval_data_dir)
    assert (stsb.name, stsb.main_metric, len(stsb.pairs)) == ("stsb_test", "spearman", 1379)
    scifact = build_evaluator("scifact", eval_data_dir, batch_size=8)
    assert (scifact.name, scifact.main_metric, scifact.batch_size) == (
        "scifact_test",
        "ndcg_at_10",
        8,
    )
    assert (len(scifact.data.doc_ids), len(scifact.data.query_ids), scifact.data.skipped_qrels) == (
        5183,
        300,
        0,
    )
    banking = build_evaluator("banking77", eval_data_dir)
    assert (len(banking.train), len(banking.test), banking.samples_per_label) == (10003, 3080, 8)
    assert len({label for _, label in banking.train}) == 77
    amazon = build_evaluator(
        "amazon_counterfactual_en", eval_data_dir, "validation", samples_per_label=None
    )
    assert (amazon.name, len(amazon.train), len(amazon.test), amazon.samples_per_label) == (
        "amazon_counterfactual_en_dev",
        4018,
        335,
        None,
    )
    assert build_evaluator("amazon_counterfactual_en", eval_data_dir).samples_per_label == 32
    clustering = build_evaluator("banking77_clustering", eval_data_dir, task="classification")
    assert (clustering.name, clustering.main_metric, len(clustering.items), clustering.task) == (
        "banking77_clustering_test",
        "v_measure",
        3080,
        "classification",
    )


def test_unknown_names_splits_and_options_list_the_valid_ones(eval_data_dir: str) -> None:
    with pytest.raises(
        ValueError, match="unknown evaluator 'mteb_sts'; known: " + ", ".join(KNOWN_EVALUATORS)
    ):
        build_evaluator("mteb_sts", eval_data_dir)
    with pytest.raises(ValueError, match="evaluator 'banking77' has no split 'dev'; splits: test"):
        build_evaluator("banking77", eval_data_dir, "dev")
    with pytest.raises(
        ValueError,
        match=r"evaluator 'stsb' has no option\(s\) \['samples_per_label'\]; "
        "options: batch_size, task",
    ):
        build_evaluator("stsb", eval_data_dir, samples_per_label=8)
    assert "samples_per_label" in options_of("banking77")
    assert spec("scifact").gecko_task == "fact checking"


def test_missing_data_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = os.path.join(str(tmp_path), "absent")
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"evaluation data directory not found: {missing}")
    ):
        build_evaluator("stsb", missing)
    train_csv = os.path.join(str(tmp_path), "banking77", "train.csv")
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"labelled text file not found: {train_csv}")
    ):
        build_evaluator("banking77", str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"BEIR dataset directory not found: {tmp_path}/scifact")
    ):
        build_evaluator("scifact", str(tmp_path))
