"""``gecko-train``: train an embedding model, configured with gin as in T5X.

    gecko-train --gin_file=local/minilm_stsb.gin --gin.MODEL_DIR="'/tmp/stsb'" \\
        --gin.TRAIN_FILE="'/tmp/stsb_pairs.jsonl'"

Relative gin files are found in the current directory, ``--gin_search_paths``, then
the gin files shipped in the package; the run itself is :func:`gecko_jax.train.train`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gecko_jax import gin_utils
from gecko_jax.cli import flags, startup

LOG_FORMAT = "%(asctime)s %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = flags.command_parser(
        "gecko-train",
        "Train a gecko_jax embedding model. Every setting is a gin binding: start from a "
        "packaged file (runs/finetune.gin with a models/ file, or a local/ run) and override "
        "with --gin.NAME=VALUE.",
    )
    gin_utils.add_gin_flags(parser)
    return parser


def _log_progress_to_stderr() -> None:
    """The trainer's progress lines on stderr; other libraries' chatter at WARNING and up."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    log = logging.getLogger("gecko_jax.train")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``gecko-train``; returns the exit status (``argv`` None: ``sys.argv``)."""
    if argv is None:
        startup.prepare_process()
    parser = build_parser()
    args = parser.parse_args(gin_utils.rewrite_gin_args(sys.argv[1:] if argv is None else argv))

    from gecko_jax import train  # registers the configurables; heavy imports

    try:
        gin_utils.parse_gin(args.gin_file, args.gin_bindings, args.gin_search_paths)
    except (ValueError, OSError, SyntaxError) as e:  # each names the file or the binding
        parser.error(str(e))
    _log_progress_to_stderr()
    train.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
