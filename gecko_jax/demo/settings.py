"""How big each stage of a run is: the full demo or ``--quick`` (for tests)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """The sizes of one demo run; fixed per work directory.

    Attributes:
      mode: ``"full"`` or ``"quick"``.
      max_train, max_held_out: passages taken from each split (None: all).
      top_n: neighbours FRet mines and the LLM scores per query.
      pair_steps, pair_batch: pre-finetuning steps and batch size (title/passage pairs).
      fret_steps, fret_batch: fine-tuning steps and batch size (FRet rows).
      query_length, document_length: token lengths of training.
      eval_batch_size: encoding batch size of the evaluations.
      serve_warmup_length: gecko-serve compiles every padded shape up to this many tokens.
      export_platforms: platforms the SavedModel is compiled for.
      encode_max_length: token limit of the starting model in FRet and evaluation
        (None: the model's own).
    """

    mode: str
    max_train: int | None
    max_held_out: int | None
    top_n: int
    pair_steps: int
    pair_batch: int
    fret_steps: int
    fret_batch: int
    query_length: int
    document_length: int
    eval_batch_size: int = 32
    serve_warmup_length: int = 32
    export_platforms: str = "cpu"
    encode_max_length: int | None = None


FULL = DemoSettings(
    mode="full",
    max_train=None,
    max_held_out=None,
    top_n=10,
    pair_steps=40,
    pair_batch=32,
    fret_steps=40,
    fret_batch=32,
    query_length=32,
    document_length=160,
)
QUICK = DemoSettings(
    mode="quick",
    max_train=48,
    max_held_out=16,
    top_n=4,
    pair_steps=2,
    pair_batch=8,
    fret_steps=12,
    fret_batch=4,
    query_length=16,
    document_length=32,
    serve_warmup_length=8,
    encode_max_length=64,
)
