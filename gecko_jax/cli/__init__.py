"""The ``gecko-*`` commands, one module each, in one convention (:mod:`gecko_jax.cli.flags`).

``embed``, ``demo``, ``train``, ``fret`` and ``eval``; each console script starts with
:func:`gecko_jax.cli.startup.prepare_process`.
"""
