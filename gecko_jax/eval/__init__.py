"""Evaluation: fast local evaluators, Matryoshka sweeps and reports, the mteb adapter.

Local evaluators score an encoder on the offline sets of the evaluation-data directory
with MTEB's protocols, at several Matryoshka dimensions from one encoding pass::

    from gecko_jax import Encoder
    from gecko_jax.eval import build_evaluator

    evaluator = build_evaluator("stsb", split="dev")
    evaluator.evaluate(Encoder.load("all-MiniLM-L6-v2"), dims=[64, 384])
    # {64: {"spearman": ..., "pearson": ...}, 384: {...}}

:func:`gecko_jax.eval.report.run_sweep` writes ``report.json``, ``report.md`` and a plot;
``gecko-eval`` (:mod:`gecko_jax.cli.eval`) runs it from the shell.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KNOWN_EVALUATORS", "Evaluator", "build_evaluator"]


def __getattr__(name: str) -> Any:
    # Lazy: importing a sibling (e.g. the mteb adapter) must not load scikit-learn or the readers.
    if name in ("KNOWN_EVALUATORS", "build_evaluator"):
        from gecko_jax.eval import evaluators

        return getattr(evaluators, name)
    if name == "Evaluator":
        from gecko_jax.eval.base import Evaluator

        return Evaluator
    raise AttributeError(f"module 'gecko_jax.eval' has no attribute {name!r}")
