"""The ``gecko-train`` arguments a launched job runs with.

The launcher takes ``--gin_file``, ``--gin_bindings``, ``--gin.NAME=VALUE`` and
``--force_new_settings`` exactly as ``gecko-train`` does and hands them to the job's
container unchanged (quotes and spaces included: the container receives an argument
list, no shell parses it again). Before
anything is created it checks what it can here:

- each gin file is one the container will find: ``gecko-train`` looks in its working
  directory first, then in the gin files packaged with ``gecko_jax``. The job's image
  has the packaged files only, so a name that resolves to a file on this machine alone
  is refused, as is a name found nowhere; ``gs://`` paths are passed on unchecked.
- the output directory: the launcher's ``--model_dir`` and a ``MODEL_DIR`` binding must
  agree; the launcher adds ``--gin.MODEL_DIR`` when none is given, and command-line
  bindings override the gin files, so the job's output directory wins over any
  ``MODEL_DIR`` a gin file sets.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence

from gecko_jax import gin_utils
from gecko_jax.launch import LaunchError

# gecko-train's flags that take a value (--flag=VALUE or --flag VALUE), and its switches.
_VALUE_FLAGS = ("--gin_file", "--gin_bindings", "--gin_search_paths")
_SWITCHES = ("--force_new_settings",)
# Names whose binding sets where gecko-train writes (runs/*.gin bind the second to the first).
_OUTPUT_BINDINGS = ("MODEL_DIR", "train.model_dir")


def split_trainer_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Splits a command line into the launcher's own flags and ``gecko-train``'s.

    ``gecko-train``'s flags are ``--gin_file``, ``--gin_bindings``, ``--gin.NAME=VALUE``,
    ``--gin_search_paths`` (which :func:`check_trainer_args` refuses) and
    ``--force_new_settings``; they may come anywhere on the line.

    Returns:
      ``(launcher_args, trainer_args)``, each in its original order; the trainer's are
      kept token for token.
    """
    launcher: list[str] = []
    trainer: list[str] = []
    position = 0
    while position < len(argv):
        arg = argv[position]
        name = arg.split("=", 1)[0]
        if name in _VALUE_FLAGS and "=" not in arg:
            trainer.extend(argv[position : position + 2])  # the flag and its value
            position += 1
        elif name in (*_VALUE_FLAGS, *_SWITCHES) or (arg.startswith("--gin.") and "=" in arg):
            trainer.append(arg)
        else:
            launcher.append(arg)
        position += 1
    return launcher, trainer


def check_trainer_args(trainer_args: Sequence[str]) -> None:
    """Refuses what the job's ``gecko-train`` could not use.

    Raises:
      LaunchError: ``--gin_search_paths`` (the job's container has no such
        directories), or a ``--gin_file``/``--gin_bindings`` with no value.
    """
    for position, arg in enumerate(trainer_args):
        name = arg.split("=", 1)[0]
        if name == "--gin_search_paths":
            raise LaunchError(
                "--gin_search_paths: the job's container finds gin files in its working "
                "directory and the packaged gecko_jax/gin/ only; add the files there and "
                "rebuild the image"
            )
        if arg in _VALUE_FLAGS and position + 1 == len(trainer_args):
            raise LaunchError(f"{arg} needs a value")


def _flag_values(trainer_args: Sequence[str], flag: str) -> list[str]:
    """The values of ``flag`` in trainer arguments (after ``--gin.`` becomes a binding)."""
    args = gin_utils.rewrite_gin_args(trainer_args)
    values = []
    for position, arg in enumerate(args):
        if arg.startswith(f"{flag}="):
            values.append(arg[len(flag) + 1 :])
        elif arg == flag:
            values.append(args[position + 1])
    return values


def gin_files(trainer_args: Sequence[str]) -> list[str]:
    """The ``--gin_file`` names, in order."""
    return _flag_values(trainer_args, "--gin_file")


def check_gin_files(
    names: Sequence[str], cwd: str | None = None, packaged_dir: str = gin_utils.GIN_DIR
) -> None:
    """Checks that the job's container will find each gin file as this machine does.

    Args:
      names: ``--gin_file`` values.
      cwd: the directory gecko-train would look in first (default: the current one).
      packaged_dir: the gin files shipped with the package (and so in the image).

    Raises:
      LaunchError: a file found nowhere (the places are listed), or one found on this
        machine only.
    """
    cwd = os.getcwd() if cwd is None else cwd
    for name in names:
        if name.startswith("gs://"):
            continue
        local = name if os.path.isabs(name) else os.path.join(cwd, name)
        packaged = None if os.path.isabs(name) else os.path.join(packaged_dir, name)
        if os.path.isfile(local) and not (packaged and _same_file(local, packaged)):
            raise LaunchError(
                f"gin file {name!r} is on this machine only ({os.path.abspath(local)}): the "
                "job's container has the gin files packaged in its image; put it under "
                "gecko_jax/gin/ and rebuild the image, or pass a gs:// path"
            )
        if packaged is None or not os.path.isfile(packaged):
            raise LaunchError(
                f"gin file {name!r} not found in the current directory ({cwd}) or the "
                f"packaged gin files ({packaged_dir})"
            )


def _same_file(a: str, b: str) -> bool:
    return os.path.isfile(b) and os.path.samefile(a, b)


def _bound_output_dir(trainer_args: Sequence[str]) -> str | None:
    """The value of the last ``MODEL_DIR`` (or ``train.model_dir``) binding, if any."""
    found = None
    for binding in _flag_values(trainer_args, "--gin_bindings"):
        name, equals, value = binding.partition("=")
        if not equals or name.strip() not in _OUTPUT_BINDINGS:
            continue
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed = None
        if not isinstance(parsed, str):
            raise LaunchError(
                f"the binding {binding.strip()!r} needs a quoted string, e.g. "
                "--gin.MODEL_DIR=\"'gs://BUCKET/runs/NAME'\""
            )
        found = parsed
    return found


def with_output_dir(trainer_args: Sequence[str], model_dir: str | None) -> tuple[str, list[str]]:
    """The job's output directory, and trainer arguments that write there.

    Args:
      trainer_args: gecko-train's gin arguments.
      model_dir: the launcher's ``--model_dir`` (None: take the ``MODEL_DIR`` binding).

    Returns:
      ``(output_dir, trainer_args)``; ``--gin.MODEL_DIR`` is appended when the arguments
      bind none.

    Raises:
      LaunchError: no output directory, one not on ``gs://``, or a binding that
        disagrees with ``model_dir``.
    """
    bound = _bound_output_dir(trainer_args)
    if model_dir and bound and model_dir.rstrip("/") != bound.rstrip("/"):
        raise LaunchError(
            f"--model_dir={model_dir!r} and the MODEL_DIR binding {bound!r} disagree; give one"
        )
    output_dir = model_dir or bound
    if not output_dir:
        raise LaunchError("missing --model_dir=gs://BUCKET/PATH: the job's output directory")
    if not output_dir.startswith("gs://") or not output_dir[len("gs://") :].strip("/"):
        raise LaunchError(
            f"--model_dir={output_dir!r} is not on gs://: a Vertex AI job writes its "
            "checkpoints and TensorBoard events to Cloud Storage"
        )
    args = list(trainer_args)
    if bound is None:
        args.append(f"--gin.MODEL_DIR={output_dir!r}")
    return output_dir, args
