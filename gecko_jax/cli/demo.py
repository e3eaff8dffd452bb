"""``gecko-demo``: the Gecko recipe end to end, from a raw corpus to a served model.

    gecko-demo                       # about 15 minutes on 2 CPU cores
    gecko-demo --llm vertex:gemini-2.0-flash --workdir /tmp/demo
    gecko-demo --quick --workdir /tmp/demo_quick     # a small pass, for tests

On text installed with Python itself (the language reference and standard-library
docstrings), it builds a passage corpus with a held-out split, runs FRet, pre-finetunes
all-MiniLM-L6-v2 on title/passage pairs and fine-tunes it on the FRet rows (gecko-train),
evaluates the start and the result, exports the result (gecko-export), serves it
(gecko-serve) and sends it one Vertex AI and one OpenAI request. Without an LLM
(``--llm`` or ``GECKO_LLM``) FRet runs on the built-in deterministic stand-in
(``--llm loopback``), and every output says so. A rerun skips the finished stages;
Ctrl-C keeps them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gecko_jax.cli import errors, flags, startup

LLM_ENV = "GECKO_LLM"


def default_workdir(quick: bool) -> str:
    """``$XDG_CACHE_HOME/gecko_jax/demo`` (``~/.cache`` without it); ``demo_quick`` for --quick."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "gecko_jax", "demo_quick" if quick else "demo")


def workdir_of(args: argparse.Namespace) -> str:
    """The run's work directory, absolute."""
    return os.path.abspath(os.path.expanduser(args.workdir or default_workdir(args.quick)))


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = flags.command_parser(
        "gecko-demo",
        "Run the Gecko recipe end to end on Python's own documentation: corpus, FRet, "
        "pre-finetuning and fine-tuning of all-MiniLM-L6-v2, evaluation before and after, "
        "export and serving. A rerun resumes; Ctrl-C keeps what is finished.",
    )
    parser.add_argument(
        "--workdir",
        default=None,
        help="where the run writes (default: ~/.cache/gecko_jax/demo, or demo_quick with "
        "--quick; $XDG_CACHE_HOME replaces ~/.cache)",
    )
    parser.add_argument(
        "--llm",
        default=None,
        help=f"FRet's LLM, as gecko-fret --llm takes it, e.g. vertex:gemini-2.0-flash or "
        f"openai:http://127.0.0.1:8000/v1#MODEL (default: ${LLM_ENV}, else loopback, the "
        "built-in deterministic stand-in)",
    )
    parser.add_argument(
        "--eval_data",
        default=None,
        help="a folder laid out like the evaluation data (stsb/, scifact/, banking77/): "
        "also score STS-B, SciFact and Banking77 test (default: $GECKO_EVAL_DATA, if set)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="shrink every stage (a small pass, for tests)"
    )
    return parser


def _llm(args: argparse.Namespace) -> str:
    spec = args.llm or os.environ.get(LLM_ENV, "").strip()
    if spec:
        return spec
    print(
        "gecko-demo: no LLM configured, so FRet runs on the built-in deterministic stand-in "
        "(--llm loopback: real pipeline, keyword-heuristic labels); configure one with --llm "
        f"or ${LLM_ENV}, e.g. vertex:gemini-2.0-flash or openai:http://127.0.0.1:8000/v1#MODEL",
        file=sys.stderr,
        flush=True,
    )
    return "loopback"


def _demo(args: argparse.Namespace) -> None:
    from gecko_jax.demo import report, serving, settings, stages, steps

    workdir = workdir_of(args)
    mode = settings.QUICK if args.quick else settings.FULL
    print(f"gecko-demo: work directory {workdir} ({mode.mode} run)", flush=True)
    llm = _llm(args)
    paths = steps.Paths(workdir)
    steps.check_run_file(paths, mode.mode, llm)
    eval_data = args.eval_data or os.environ.get("GECKO_EVAL_DATA") or None
    demo = steps.Demo(paths, mode, llm, eval_data)
    stages.StageRunner(workdir, demo.stages()).run()

    start = steps.read_json(paths.start_scores)
    result = steps.read_json(paths.result_scores)
    print()
    print(report.format_table(start, result, demo.label))
    print(
        f"\nThe fine-tuned model served by gecko-serve (SavedModel export), FRet LLM: {demo.label}:"
    )
    print(serving.format_exchanges(steps.read_json(paths.requests)))
    print(f"\nWhere everything is (FRet LLM: {demo.label}):")
    width = max(len(name) for name, _ in demo.where())
    for name, path in demo.where():
        print(f"  {name:<{width}}  {path}")


def _kept(args: argparse.Namespace) -> str:
    from gecko_jax.demo import stages

    workdir = workdir_of(args)
    finished = ", ".join(stages.finished_names(workdir)) or "none"
    return (
        f"finished stages kept in {workdir}: {finished}; rerun the same command to resume "
        "(a training run resumes from its last checkpoint)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the demo; returns the exit status (``argv`` None: ``sys.argv``)."""
    if argv is None:
        startup.prepare_process()
    return errors.run_command(build_parser(), _demo, argv, on_interrupt=_kept)


if __name__ == "__main__":
    sys.exit(main())
