"""``gecko-eval``: local Matryoshka sweeps, side-by-side comparisons, MTEB runs.

    gecko-eval local --model all-MiniLM-L6-v2 --tasks stsb,scifact --dims 32,64,128,256,384 \\
        --data_dir $GECKO_EVAL_DATA --output_dir runs/minilm_eval
    gecko-eval compare runs/minilm_eval/report.json /tmp/my_model --tasks stsb --output_dir runs/cmp
    gecko-eval mteb --model /tmp/my_model --tasks STSBenchmark --output_dir runs/mteb

``local`` and ``compare`` resume: tasks already evaluated in the output directory are
not evaluated again unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gecko_jax.cli import errors, flags, startup
from gecko_jax.data.eval_data import EVAL_DATA_ENV

if TYPE_CHECKING:
    from gecko_jax.encoder import Encoder
    from gecko_jax.eval.base import Evaluator
    from gecko_jax.eval.report import Report

DEFAULT_TASKS = ("stsb", "scifact", "banking77", "amazon_counterfactual_en")
PROMPT_STYLES = ("none", "gecko")
COMPARE_SUBDIR = "compare"  # compare's default output, beside its first entry


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return names


def _dims(value: str) -> list[int]:
    try:
        dims = [int(v) for v in _names(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None
    if any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"dimensions must be positive, got {value!r}")
    return dims


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch_size", type=int, default=32, help="encoding batch size")
    parser.add_argument(
        "--max_length", type=int, default=None, help="token limit (default: the model's)"
    )
    parser.add_argument(
        "--dtype", choices=("float32", "bfloat16"), default="float32", help="compute type"
    )


def _add_local_flags(parser: argparse.ArgumentParser, tasks_default: Sequence[str] | None) -> None:
    parser.add_argument(
        "--tasks",
        type=_names,
        default=tasks_default,
        help="comma-separated local sets"
        + ("" if tasks_default else f" (default: {flags.format_default(DEFAULT_TASKS)})"),
    )
    parser.add_argument(
        "--data_dir",
        default=None,
        help=f"evaluation-data directory (default: ${EVAL_DATA_ENV})",
    )
    parser.add_argument("--split", default="test", help="evaluation split of every task")
    parser.add_argument(
        "--task_prompts",
        choices=PROMPT_STYLES,
        default="none",
        help="'gecko': Gecko's 'task: ... | query: ...' inputs with each set's task",
    )
    parser.add_argument(
        "--full_train",
        action="store_true",
        help="classification: fit on the whole train split instead of MTEB's undersampling",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="re-evaluate tasks already in the output dir"
    )
    _add_model_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    """The command's subcommands and flags."""
    parser = flags.command_parser("gecko-eval", __doc__.split("\n\n")[0].replace("``", ""))
    commands = parser.add_subparsers(dest="command", required=True, help="what to run")

    def add_command(name: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=description, description=description, formatter_class=flags.HelpFormatter
        )

    local = add_command("local", "Matryoshka sweep of one model on local sets")
    local.add_argument("--model", required=True, help="model name or directory")
    local.add_argument(
        "--dims", type=_dims, default=None, help="dimensions (default: the model's full size)"
    )
    local.add_argument("--output_dir", required=True, help="where report.{json,md,png} go")
    _add_local_flags(local, list(DEFAULT_TASKS))

    compare = add_command("compare", "side-by-side table of reports and/or models")
    compare.add_argument(
        "entries",
        nargs="+",
        help="report.json files, directories holding one, model names or model directories",
    )
    compare.add_argument(
        "--dim", type=int, default=None, help="compare at this dimension (default: full size)"
    )
    compare.add_argument(
        "--dims", type=_dims, default=None, help="dimensions evaluated for model entries"
    )
    compare.add_argument(
        "--output_dir",
        default=None,
        help="where compare.{json,md,png} (and model entries' sweeps) go (default: "
        f"'{COMPARE_SUBDIR}' beside the first report, or in the first model directory)",
    )
    _add_local_flags(compare, None)

    mteb = add_command("mteb", "run MTEB tasks or a benchmark through the mteb package")
    mteb.add_argument("--model", required=True, help="model name or directory")
    mteb.add_argument("--tasks", type=_names, default=None, help="comma-separated MTEB task names")
    mteb.add_argument(
        "--benchmark", default=None, help="an MTEB benchmark name, e.g. 'MTEB(eng, v2)'"
    )
    mteb.add_argument(
        "--dims", type=_dims, default=None, help="Matryoshka dimensions (default: full size)"
    )
    mteb.add_argument("--output_dir", required=True, help="where mteb writes its results")
    mteb.add_argument(
        "--batch_size", type=int, default=None, help="encoding batch size (default: the adapter's)"
    )
    mteb.add_argument(
        "--task_prompts",
        choices=PROMPT_STYLES,
        default="gecko",
        help="'gecko': Gecko's task formats with each MTEB task's task string",
    )
    mteb.add_argument(
        "--overwrite", action="store_true", help="re-evaluate tasks that already have results"
    )
    return parser


def _model_id(name_or_path: str) -> str:
    """What reports record as the model: a directory's absolute path, else the name."""
    return os.path.abspath(name_or_path) if os.path.isdir(name_or_path) else name_or_path


def _evaluators(args: argparse.Namespace) -> list[Evaluator]:
    from gecko_jax.eval import evaluators

    built = []
    for name in args.tasks or DEFAULT_TASKS:
        options = {"batch_size": args.batch_size}
        if args.task_prompts == "gecko":
            options["task"] = evaluators.spec(name).gecko_task
        if args.full_train and "samples_per_label" in evaluators.options_of(name):
            options["samples_per_label"] = None
        built.append(evaluators.build_evaluator(name, args.data_dir, args.split, **options))
    return built


def _sweep(
    model: str, output_dir: str, dims: Sequence[int] | None, args: argparse.Namespace
) -> Report:
    from gecko_jax.eval.report import run_sweep

    def load() -> Encoder:
        from gecko_jax.encoder import Encoder

        return Encoder.load(model, dtype=args.dtype, max_length=args.max_length)

    return run_sweep(
        load,
        _evaluators(args),
        output_dir,
        model=_model_id(model),
        dims=dims,
        overwrite=args.overwrite,
    )


def _local(args: argparse.Namespace) -> None:
    from gecko_jax.eval.report import REPORT_JSON, REPORT_MD, REPORT_PNG, main_table

    report = _sweep(args.model, args.output_dir, args.dims, args)
    print(main_table(report))
    for name in (REPORT_JSON, REPORT_MD, REPORT_PNG):
        print(os.path.join(args.output_dir, name))


def _is_report(entry: str) -> bool:
    from gecko_jax.eval.report import REPORT_JSON

    return entry.endswith(".json") or os.path.isfile(os.path.join(entry, REPORT_JSON))


def compare_output_dir(entries: Sequence[str]) -> str:
    """compare's default output directory: beside the first report entry, else inside the
    first entry that is a model directory; never the current directory.

    Raises:
      ValueError: the entries are model names only (asks for --output_dir).
    """
    for entry in entries:
        if _is_report(entry):
            report_dir = os.path.dirname(entry) if entry.endswith(".json") else entry
            return os.path.join(os.path.abspath(report_dir), COMPARE_SUBDIR)
    for entry in entries:
        if os.path.isdir(entry):
            return os.path.join(os.path.abspath(entry), "eval", COMPARE_SUBDIR)
    raise ValueError("compare: no entry is a report or a model directory; give --output_dir")


def _compare(args: argparse.Namespace) -> None:
    from gecko_jax.eval.compare import compare_reports, write_comparison
    from gecko_jax.eval.report import load_report

    if args.output_dir is None:
        args.output_dir = compare_output_dir(args.entries)

    entries = []
    for entry in args.entries:
        if _is_report(entry):
            entries.append((entry, load_report(entry)))
            continue
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", entry).strip("_")
        entries.append(
            (entry, _sweep(entry, os.path.join(args.output_dir, "models", slug), args.dims, args))
        )
    comparison = compare_reports(entries, args.tasks, args.dim)
    paths = write_comparison(comparison, args.output_dir)
    print(comparison.table())
    for path in paths.values():
        print(path)


def _mteb(args: argparse.Namespace) -> None:
    from gecko_jax.eval.mteb_adapter import DatasetUnavailableError, run_mteb
    from gecko_jax.eval.mteb_tasks import UnknownNameError

    options = {"batch_size": args.batch_size} if args.batch_size else {}
    try:
        paths = run_mteb(
            checkpoint=args.model,
            tasks=args.tasks,
            benchmark=args.benchmark,
            output_dir=args.output_dir,
            dims=args.dims,
            overwrite=args.overwrite,
            task_prompts=args.task_prompts,
            **options,
        )
    except (UnknownNameError, DatasetUnavailableError) as e:
        raise ValueError(e.args[0] if e.args else str(e)) from e
    for path in paths:
        print(path)


COMMANDS = {"local": _local, "compare": _compare, "mteb": _mteb}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gecko-eval``; returns the exit status.

    With ``argv`` None (the console script) the process is prepared first
    (:func:`gecko_jax.cli.startup.prepare_process`).
    """
    if argv is None:
        startup.prepare_process()

    def run(args: argparse.Namespace) -> None:
        COMMANDS[args.command](args)

    return errors.run_command(
        build_parser(),
        run,
        argv,
        on_interrupt=lambda args: (
            "tasks already evaluated are kept in "
            f"{args.output_dir or 'the output directory'}; rerun the same command to resume"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
