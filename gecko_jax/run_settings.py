"""The settings that shape a run, kept in its output directory so that a changed rerun
is refused before any compute, naming only what changed.

Settings are compared flattened to dotted keys (``optimizer.learning_rate``) after a
JSON round trip, so tuples and lists, or a nested dict's key order, never count as a
change.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

# What a changed rerun prints, at most; the rest is counted.
MAX_LISTED = 20


@dataclasses.dataclass(frozen=True)
class Change:
    """One setting that differs from the recorded run."""

    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {_shown(self.old)} -> {_shown(self.new)}"


_MISSING = "(not set)"


def _shown(value: Any) -> str:
    return value if value is _MISSING else json.dumps(value)


def flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings and dataclasses as one level of dotted keys, JSON-normalised."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.loads(json.dumps(value, default=str))
    return flat


def changes(
    recorded: Mapping[str, Any],
    current: Mapping[str, Any],
    ignore: Iterable[str] = (),
    current_keys_only: bool = False,
) -> list[Change]:
    """The keys whose values differ, sorted.

    Args:
      recorded: the settings on record.
      current: this run's.
      ignore: keys (or prefixes of dotted keys) not compared.
      current_keys_only: compare only ``current``'s keys (the record may hold facts
        learnt during the run, such as the model an LLM reported).
    """
    old, new = flatten(recorded), flatten(current)
    skipped = tuple(ignore)
    keys = new.keys() if current_keys_only else old.keys() | new.keys()
    return [
        Change(key, old.get(key, _MISSING), new.get(key, _MISSING))
        for key in sorted(keys)
        if not _under(key, skipped) and old.get(key, _MISSING) != new.get(key, _MISSING)
    ]


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def describe(found: list[Change], indent: str = "  ") -> str:
    """The changes as lines ``key: old -> new``."""
    lines = [f"{indent}{change}" for change in found[:MAX_LISTED]]
    if len(found) > MAX_LISTED:
        lines.append(f"{indent}... and {len(found) - MAX_LISTED} more")
    return "\n".join(lines)


class ChangedSettingsError(ValueError):
    """A rerun with settings other than those recorded in its output directory."""

    def __init__(self, where: str, found: list[Change], remedy: str) -> None:
        super().__init__(
            f"{where} was written with other settings; changed:\n{describe(found)}\n{remedy}"
        )
        self.changes = found
