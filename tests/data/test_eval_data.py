"""The evaluation-data directory: given, else $GECKO_EVAL_DATA, else a clear error."""

import pytest

from gecko_jax.data import eval_data


def test_given_directory_wins_over_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(eval_data.EVAL_DATA_ENV, "/from/env")
    assert eval_data.eval_data_dir("/given") == "/given"
    assert eval_data.eval_data_dir() == "/from/env"


def test_no_default_outside_the_package(monkeypatch) -> None:
    monkeypatch.delenv(eval_data.EVAL_DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=r"--data_dir.*GECKO_EVAL_DATA"):
        eval_data.eval_data_dir()
    monkeypatch.setenv(eval_data.EVAL_DATA_ENV, "")
    with pytest.raises(FileNotFoundError, match="GECKO_EVAL_DATA"):
        eval_data.eval_data_dir()
