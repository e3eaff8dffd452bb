"""Where the local evaluation data lives (no imports beyond ``os``: tasks and evaluators share it)."""

from __future__ import annotations

import os

EVAL_DATA_ENV = "GECKO_EVAL_DATA"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_EVAL_DATA_DIR = os.path.normpath(os.path.join(_REPO_ROOT, "..", "shared", "data"))


def eval_data_dir(data_dir: str | None = None) -> str:
    """``data_dir``, else ``$GECKO_EVAL_DATA``, else ``../shared/data`` beside the repository."""
    return data_dir or os.environ.get(EVAL_DATA_ENV) or DEFAULT_EVAL_DATA_DIR
