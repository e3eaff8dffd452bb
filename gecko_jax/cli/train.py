"""``gecko-train``: train an embedding model, configured with gin as in T5X.

    gecko-train --gin_file=local/minilm_stsb.gin --gin.MODEL_DIR="'/tmp/stsb'" \\
        --gin.TRAIN_FILE="'/tmp/stsb_pairs.jsonl'"

Relative gin files are found in the current directory, ``--gin_search_paths``, then
the gin files shipped in the package; the run itself is :func:`gecko_jax.train.train`.
Exit status (:mod:`gecko_jax.exit_codes`): 0 finished, 75 preempted (SIGTERM) and 130
interrupted (Ctrl-C), both with a checkpoint the same command resumes from, 1 a failed
run (a non-finite loss), 2 a user error (flags, gin, files, rows, changed settings).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gecko_jax import gin_utils
from gecko_jax.cli import errors, flags, startup

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
    parser.add_argument(
        "--force_new_settings",
        action="store_true",
        help="continue MODEL_DIR's checkpoints although settings that shape the run "
        "(model, loss, optimizer, batch, lengths, input, seed) changed",
    )
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


def _train(args: argparse.Namespace) -> None:
    import gin

    from gecko_jax import train  # registers the configurables; heavy imports

    gin_utils.parse_gin(args.gin_file, args.gin_bindings, args.gin_search_paths)
    if args.force_new_settings:
        gin.bind_parameter("gecko_jax.train.force_new_settings", True)
    _log_progress_to_stderr()
    train.train()


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``gecko-train``; returns the exit status (``argv`` None: ``sys.argv``)."""
    if argv is None:
        startup.prepare_process()
    return errors.run_command(
        build_parser(),
        _train,
        gin_utils.rewrite_gin_args(sys.argv[1:] if argv is None else argv),
        user_errors=(SyntaxError,),  # a gin file's syntax error names the file and line
        on_interrupt="stopped without saving; rerun the same command to resume from "
        "MODEL_DIR's newest checkpoint, if any",
    )


if __name__ == "__main__":
    sys.exit(main())
