"""``gecko-train``: the trainer's command, started with huge-page malloc.

A thin launcher so that the re-exec of :mod:`gecko_jax.host_memory` happens before
JAX and TensorFlow are imported (seconds), not after; the command itself is
:func:`gecko_jax.train.console_entry`.
"""

from __future__ import annotations

from gecko_jax import host_memory


def main() -> None:
    """Runs ``gecko-train``."""
    host_memory.reexec_with_hugepage_malloc()
    from gecko_jax.train import console_entry

    console_entry()
