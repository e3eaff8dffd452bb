"""``gecko-demo``: the Gecko recipe end to end on text installed with Python itself.

One module per job: :mod:`corpus` builds the titled passages and the held-out split,
:mod:`stages` runs resumable stages, :mod:`commands` runs the ``gecko-*`` commands as
child processes, :mod:`steps` holds what each stage does, :mod:`evaluation` scores a
model, :mod:`report` writes the before/after table and its PNG, :mod:`requests` talks
to the served model, and :mod:`settings` sizes a full or ``--quick`` run.
"""
