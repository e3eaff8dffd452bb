"""Where the local evaluation data lives (no imports beyond ``os``: tasks and evaluators share it).

There is no default inside or beside the installed package: the directory is given
(``--data_dir``, a ``data_dir`` argument or gin binding) or named by ``$GECKO_EVAL_DATA``.
"""

from __future__ import annotations

import os

EVAL_DATA_ENV = "GECKO_EVAL_DATA"


def eval_data_dir(data_dir: str | None = None) -> str:
    """``data_dir``, else ``$GECKO_EVAL_DATA``.

    Raises:
      FileNotFoundError: neither is set (the message names both).
    """
    root = data_dir or os.environ.get(EVAL_DATA_ENV)
    if not root:
        raise FileNotFoundError(
            "no evaluation-data directory: pass it with --data_dir (data_dir= in Python "
            f"or gin) or set the {EVAL_DATA_ENV} environment variable"
        )
    return root
