"""``gecko-export``: a trained model as a TF SavedModel or a sentence-transformers folder."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gecko_jax.cli import errors, flags, startup

FORMATS = ("saved_model", "sentence_transformers")
PLATFORMS = ("cpu", "cuda", "tpu")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL_DIR",
        help="a gecko-train model directory, a Hugging Face directory or a model name "
        f"(e.g. {flags.DEFAULT_MODEL})",
    )
    parser.add_argument("out", metavar="OUT", help="where the export goes")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    parser.add_argument(
        "--checkpoint",
        choices=("latest", "best"),
        default="latest",
        help="of a model directory: the newest checkpoint or the best evaluated one",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")


def build_parser() -> argparse.ArgumentParser:
    """The command's flags: one subcommand per format."""
    parser = flags.command_parser(
        "gecko-export",
        "Export a model for serving: a TF SavedModel (TF Serving, Vertex AI, gecko-serve) "
        "or a sentence-transformers folder (SentenceTransformer, text-embeddings-inference).",
    )
    formats = parser.add_subparsers(
        dest="format", required=True, metavar="FORMAT", help="the export format"
    )
    saved = formats.add_parser(
        "saved_model",
        help="TF SavedModel with the tokenizer inside, as OUT/<version>/",
        description="A TF SavedModel (jax2tf) taking raw strings, written as OUT/<version>/.",
        formatter_class=flags.HelpFormatter,
    )
    _add_common(saved)
    saved.add_argument("--version", type=int, default=1, help="TF Serving model version")
    saved.add_argument(
        "--dim",
        type=int,
        default=None,
        help="Matryoshka size serving_default returns (default: the full embedding)",
    )
    saved.add_argument(
        "--serialization_version",
        type=int,
        default=9,
        help="jax.export calling-convention version of the module: 9 runs on TensorFlow "
        ">= 2.16, 10 needs TensorFlow / TF Serving >= 2.21",
    )
    saved.add_argument(
        "--platforms",
        default=",".join(PLATFORMS),
        help="comma-separated platforms the module is compiled for (cpu, cuda, rocm, tpu)",
    )
    st = formats.add_parser(
        "sentence_transformers",
        help="a folder SentenceTransformer(OUT) loads without gecko_jax",
        description="A sentence-transformers folder (BERT family and T5 encoders).",
        formatter_class=flags.HelpFormatter,
    )
    _add_common(st)
    st.add_argument(
        "--task",
        default=None,
        help="Gecko task whose input formats become the 'query'/'document' prompts "
        "(default: no prompts, texts as they are)",
    )
    return parser


def _export(args: argparse.Namespace) -> None:
    # The exporters report each stage (conversion, writing, warm-up) through logging.
    logging.basicConfig(level=logging.INFO, format="gecko-export: %(message)s")
    # Heavy imports after the flags are parsed.
    from gecko_jax.export import saved_model
    from gecko_jax.export.source import load_source

    if args.format == "saved_model":  # the flags are checked before the model loads
        platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
        saved_model.check_options(args.version, platforms, args.serialization_version)
    source = load_source(args.model, step=args.step, checkpoint=args.checkpoint)
    if args.format == "saved_model":
        written = saved_model.export_saved_model(
            source,
            args.out,
            version=args.version,
            overwrite=args.overwrite,
            platforms=platforms,
            serialization_version=args.serialization_version,
            default_dim=args.dim,
        )
    else:
        from gecko_jax.export.sentence_transformers import export_sentence_transformers

        written = export_sentence_transformers(
            source, args.out, overwrite=args.overwrite, task=args.task
        )
    print(f"gecko-export: wrote {args.format} export to {written}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command (``argv`` None: ``sys.argv``, as the console script)."""
    if argv is None:
        startup.prepare_process()
    return errors.run_command(
        build_parser(),
        _export,
        argv,
        on_interrupt="nothing was written: an export is written aside and moved into place whole",
    )


if __name__ == "__main__":
    sys.exit(main())
