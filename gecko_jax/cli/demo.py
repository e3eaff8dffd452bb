"""``gecko-demo``: the README's first command, embedding a few sentences end to end."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from gecko_jax.cli import flags, startup

SENTENCES = (
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar.",
    "The stock market fell sharply on Monday.",
    "Shares dropped steeply at the start of the week.",
    "How do I reset my bank card PIN?",
)


def similarity_table(sentences: Sequence[str], embeddings: np.ndarray) -> str:
    """Formats the cosine similarity matrix of L2-normalised embeddings."""
    scores = embeddings @ embeddings.T
    lines = ["     " + " ".join(f"{f'[{j}]':>5}" for j in range(len(sentences)))]
    for i, row in enumerate(scores):
        lines.append(f"[{i}]  " + " ".join(f"{s:5.2f}" for s in row))
    lines.append("")
    lines.extend(f"[{i}] {s}" for i, s in enumerate(sentences))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = flags.command_parser(
        "gecko-demo",
        "Embed a few sentences and print their cosine similarities: the first command to "
        "run after installing.",
    )
    parser.add_argument("--model", default=flags.DEFAULT_MODEL, help="model name or directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Embeds the demo sentences and prints similarities; returns the exit status."""
    if argv is None:
        startup.prepare_process()
    model = build_parser().parse_args(argv).model

    from gecko_jax.encoder import Encoder

    encoder = Encoder.load(model)
    embeddings = encoder.encode(list(SENTENCES))
    print(f"{model}: {embeddings.shape[1]}-d embeddings, cosine similarities:\n")
    print(similarity_table(SENTENCES, embeddings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
