"""FRet's output rows: a seed passage's query, ranked neighbours and chosen pair.

The row schema and its JSONL / TFRecord encodings are :mod:`gecko_jax.rows`
(:class:`~gecko_jax.rows.FretRow`), which the data side reads with; this module fills
a row from the pipeline's results and writes a shard's rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from gecko_jax.fret.corpus import Passage
from gecko_jax.fret.generate import Generated
from gecko_jax.fret.rank import Ranked
from gecko_jax.rows import FRET_SOURCE, FretRow, UnifiedExample, write_fret_rows


def build_row(
    seed: Passage,
    generated: Generated,
    ranked: Ranked,
    passages: Sequence[Passage],
    llm_model: str,
    embedder: str,
) -> FretRow:
    """The row of one seed passage's query, its ranked neighbours and chosen pair."""
    positive = passages[ranked.candidates[ranked.positive].index]
    negative = passages[ranked.candidates[ranked.negative].index]
    example = UnifiedExample(
        task=generated.task,
        query=generated.query,
        positive=positive.text,
        positive_title=positive.title,
        negatives=(negative.text,),
        negative_titles=(negative.title,),
        symmetric=False,
        source=FRET_SOURCE,
    )
    return FretRow(
        example,
        task_type=generated.task_type,
        seed_id=seed.id,
        positive_id=positive.id,
        negative_ids=(negative.id,),
        scores=tuple(c.as_record() for c in ranked.candidates),
        llm_model=llm_model,
        embedder=embedder,
    )


def write_rows(rows: Sequence[FretRow], path: str, file_format: str) -> int:
    """Writes rows as JSONL or TFRecord (local or ``gs://``); returns the count."""
    return write_fret_rows(rows, path, file_format)
