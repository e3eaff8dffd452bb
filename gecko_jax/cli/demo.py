"""``gecko-demo``: the README's first command, embedding a few sentences end to end."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

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


def main(argv: Sequence[str] | None = None) -> int:
    """Embeds the demo sentences with the packaged all-MiniLM-L6-v2 and prints similarities."""
    parser = argparse.ArgumentParser(prog="gecko-demo", description=main.__doc__)
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or directory")
    model = parser.parse_args(argv).model

    from gecko_jax.encoder import Encoder

    encoder = Encoder.load(model)
    embeddings = encoder.encode(list(SENTENCES))
    print(f"{model}: {embeddings.shape[1]}-d embeddings, cosine similarities:\n")
    print(similarity_table(SENTENCES, embeddings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
