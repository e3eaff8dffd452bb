"""Starting ``gecko-train`` on managed machines: Vertex AI custom jobs.

The modules here build job specifications only; they import nothing of the model, the
data pipeline or the trainer, so a job can be checked (``--dry_run``) on any machine.
"""


class LaunchError(ValueError):
    """A job request that cannot run; the message names the flag, file or value at fault."""
