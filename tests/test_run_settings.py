"""Recorded run settings: flattening, the changes a rerun makes, and their description."""

import dataclasses

import pytest

from gecko_jax import run_settings


@dataclasses.dataclass(frozen=True)
class _Optimizer:
    learning_rate: float = 1e-3
    warmup_steps: int = 10


def test_flatten_names_nested_settings_with_dots_and_normalises_json() -> None:
    flat = run_settings.flatten(
        {"batch_size": 8, "optimizer": _Optimizer(), "mrl": (768, 256), "head": {}}
    )
    assert flat == {
        "batch_size": 8,
        "optimizer.learning_rate": 1e-3,
        "optimizer.warmup_steps": 10,
        "mrl": [768, 256],  # a tuple equals the list it reads back as
        "head": {},
    }


def test_changes_list_only_what_differs_and_skip_ignored_prefixes() -> None:
    recorded = {"batch_size": 8, "optimizer": _Optimizer(), "train_steps": 10, "seed": 0}
    current = {
        "batch_size": 4,
        "optimizer": _Optimizer(learning_rate=1e-2),
        "train_steps": 20,
        "dtype": "bfloat16",
    }
    found = run_settings.changes(recorded, current, ignore=["train_steps"])
    assert [str(c) for c in found] == [
        "batch_size: 8 -> 4",
        'dtype: (not set) -> "bfloat16"',
        "optimizer.learning_rate: 0.001 -> 0.01",
        "seed: 0 -> (not set)",
    ]
    only_current = run_settings.changes(recorded, current, current_keys_only=True)
    assert [c.key for c in only_current] == [
        "batch_size",
        "dtype",
        "optimizer.learning_rate",
        "train_steps",
    ]
    assert run_settings.changes(recorded, dict(recorded)) == []


def test_the_error_lists_changes_one_per_line_and_says_what_to_do() -> None:
    found = run_settings.changes({"a": 1, "b": 2}, {"a": 1, "b": 3})
    with pytest.raises(ValueError) as raised:
        raise run_settings.ChangedSettingsError("MODEL_DIR /x", found, "use a new MODEL_DIR")
    assert str(raised.value).splitlines() == [
        "MODEL_DIR /x was written with other settings; changed:",
        "  b: 2 -> 3",
        "use a new MODEL_DIR",
    ]
    many = run_settings.changes({f"k{i:02d}": i for i in range(25)}, {})
    assert run_settings.describe(many).splitlines()[-1] == "  ... and 5 more"
