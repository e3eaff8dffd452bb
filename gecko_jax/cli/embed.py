"""``gecko-embed``: embed lines or JSONL records into ``.npy`` or JSONL."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from gecko_jax import fileio
from gecko_jax.cli import errors, flags, startup

INPUT_FORMATS = ("auto", "lines", "jsonl")


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = flags.command_parser(
        "gecko-embed",
        "Embed texts with a gecko_jax encoder. Input: one text per line, or "
        "JSONL records; output: .npy (float32 [n, dim]) or .jsonl (records + 'embedding').",
    )
    parser.add_argument("--model", default=flags.DEFAULT_MODEL, help="model name or directory")
    parser.add_argument("--input", required=True, help="input file; '-' reads stdin")
    parser.add_argument("--output", required=True, help="output .npy or .jsonl file")
    parser.add_argument(
        "--input_format",
        choices=INPUT_FORMATS,
        default="auto",
        help="'auto' picks jsonl for *.jsonl / *.json inputs",
    )
    parser.add_argument("--text_field", default="text", help="JSONL field holding the text")
    parser.add_argument("--title_field", default=None, help="JSONL field holding a title")
    parser.add_argument(
        "--task", default=None, help="Gecko task description, e.g. 'question answering'"
    )
    parser.add_argument(
        "--kind",
        choices=("query", "document"),
        default="query",
        help="which side's input format the texts take",
    )
    parser.add_argument("--dim", type=int, default=None, help="Matryoshka output dimension")
    parser.add_argument("--batch_size", type=int, default=32, help="encoding batch size")
    parser.add_argument(
        "--max_length", type=int, default=None, help="token limit (default: the model's)"
    )
    parser.add_argument(
        "--dtype", choices=("float32", "bfloat16"), default="float32", help="compute type"
    )
    parser.add_argument(
        "--encoding_errors",
        choices=("strict", "replace", "ignore"),
        default="strict",
        help="a line that is not UTF-8: an error naming it (strict), or decoded with U+FFFD "
        "replacements (replace) or without the bad bytes (ignore)",
    )
    return parser


def read_records(
    path: str, input_format: str, text_field: str, encoding_errors: str = "strict"
) -> list[dict[str, Any]]:
    """Reads the input as records holding ``text_field``.

    Lines are decoded one by one, so a line that is not UTF-8 is named exactly.

    Raises:
      OSError: an unreadable file (named).
      ValueError: a line that is not UTF-8 (with ``encoding_errors="strict"``), bad JSON
        or a missing/non-string field, naming the file and line.
    """
    if input_format == "auto":
        input_format = "jsonl" if path.endswith((".jsonl", ".json")) else "lines"
    try:
        handle = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as e:
        raise OSError(f"cannot read --input {path}: {e.strerror}") from None
    records = []
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8", errors=encoding_errors).rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{path}:{number}: not UTF-8 text at byte {e.start} of the line; is it a "
                    "binary file? --encoding_errors=replace reads it anyway"
                ) from None
            if input_format == "lines":
                records.append({text_field: line})
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: invalid JSON: {e.msg}") from None
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise ValueError(
                    f"{path}:{number}: expected an object with a string field "
                    f"{text_field!r} (set --text_field)"
                )
            records.append(record)
    return records


def write_output(path: str, records: list[dict[str, Any]], embeddings: np.ndarray) -> None:
    """Writes ``.npy`` or JSONL (each input record plus its ``embedding``), never leaving
    a half-written output behind."""
    if path.endswith(".npy"):
        with fileio.atomic_open(path, "wb") as f:
            np.save(f, embeddings)
    elif path.endswith((".jsonl", ".json")):
        with fileio.atomic_open(path, "w") as f:
            for record, row in zip(records, embeddings):
                f.write(
                    json.dumps({**record, "embedding": row.tolist()}, ensure_ascii=False) + "\n"
                )
    else:
        raise ValueError(f"--output must end in .npy or .jsonl, got {path}")


def _embed(args: argparse.Namespace) -> None:
    if not args.output.endswith((".npy", ".jsonl", ".json")):
        raise ValueError(f"--output must end in .npy or .jsonl, got {args.output}")
    records = read_records(args.input, args.input_format, args.text_field, args.encoding_errors)
    titles = None
    if args.title_field:
        titles = [r.get(args.title_field) for r in records]

    from gecko_jax.encoder import Encoder, check_output_dim  # heavy import after the flags

    if args.dim is not None:
        check_output_dim(args.model, args.dim, "--dim")  # before the weights load
    encoder = Encoder.load(args.model, dtype=args.dtype, max_length=args.max_length)
    embeddings = encoder.encode(
        [r[args.text_field] for r in records],
        task=args.task,
        kind=args.kind,
        dim=args.dim,
        batch_size=args.batch_size,
        titles=titles,
        show_progress=True,
    )
    write_output(args.output, records, embeddings)
    rows, dim = embeddings.shape
    print(f"gecko-embed: wrote {rows} x {dim} embeddings to {args.output}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command (``argv`` None: ``sys.argv``, as the console script)."""
    if argv is None:
        startup.prepare_process()
    return errors.run_command(
        build_parser(), _embed, argv, on_interrupt="nothing was written: --output is written whole"
    )


if __name__ == "__main__":
    sys.exit(main())
