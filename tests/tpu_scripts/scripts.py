"""Running tpu_scripts/ in a subprocess, and a fake ``gcloud`` that records what it is asked.

The fake stands in for the Cloud TPU API and the workers: ``queued-resources describe``
answers from a list of states, ``tpu-vm ssh`` runs a launch's remote command locally (one
``bash -c`` per worker, each with its own home directory) where a fake ``gecko-train``
records its arguments and exits with the code the test chose; every other call is only
recorded.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "tpu_scripts"

# gcloud / tpu_scripts settings a caller's environment might carry into a test.
_SCRUBBED = (
    "PROJECT",
    "ZONE",
    "TPU_NAME",
    "ACCELERATOR_TYPE",
    "BUCKET",
    "GECKO_REPO_URL",
    "GECKO_COMMIT",
    "TPU_EXTRA_ZONES",
    "CLOUDSDK_CORE_PROJECT",
    "CLOUDSDK_COMPUTE_ZONE",
    "DRY_RUN",
)


def script_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any project, zone or bucket defaults."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(extra)
    return env


def run_script(
    name: str,
    args: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Runs ``tpu_scripts/<name>`` with ``args``; output captured as text."""
    return subprocess.run(
        [str(SCRIPTS / name), *args],
        cwd=cwd,
        env=env if env is not None else script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def remote_trainer_args(command: str) -> list[str]:
    """gecko-train's argv inside a launch's remote command (its first invocation)."""
    words = shlex.split(command)
    start = words.index("gecko-train") + 1
    end = start
    while not (words[end].startswith("2>&1") or words[end].startswith(">")):
        end += 1
    return words[start:end]


_FAKE_GCLOUD = r"""#!/usr/bin/env bash
# A fake gcloud for tests: records each call, answers describe from a list of states,
# runs launch commands locally as the workers would.
set -u
fake=$FAKE_DIR
echo "gcloud $*" >>"$fake/calls.log"
case "$*" in
  *"queued-resources describe"*)
    state=$(head -n 1 "$fake/states")
    if [ "$(wc -l <"$fake/states")" -gt 1 ]; then sed -i 1d "$fake/states"; fi
    # A preemption arrives while the trainer runs.
    if [ "$state" = PREEMPTED ]; then
      for _ in $(seq 100); do [ -e "$fake/trainer_started" ] && break; sleep 0.05; done
    fi
    echo "$state"
    ;;
  *"queued-resources delete"*)
    : >"$fake/released"  # the old slice's processes end with it
    ;;
  *"tpu-vm ssh"*)
    command=""
    for arg in "$@"; do
      case $arg in --command=*) command=${arg#--command=} ;; esac
    done
    case $command in *GECKO_EXIT*) ;; *) exit 0 ;; esac
    code=$(head -n 1 "$fake/codes")
    sed -i 1d "$fake/codes"
    rm -f "$fake/released" "$fake/trainer_started"
    pids=()
    for ((w = 0; w < FAKE_WORKERS; w++)); do
      mkdir -p "$fake/home-$w/gecko_run"
      HOME="$fake/home-$w" TPU_WORKER_ID=$w FAKE_TRAINER_CODE=$code bash -c "$command" &
      pids+=($!)
    done
    rc=0
    for pid in "${pids[@]}"; do
      wait "$pid" || { status=$?; [ "$rc" = 0 ] && rc=$status; }
    done
    exit "$rc"
    ;;
esac
exit 0
"""

_FAKE_GECKO_TRAIN = r"""#!/usr/bin/env bash
# A fake gecko-train: worker 0 records its arguments; every worker exits with the code the
# test chose ('hang': runs until its slice is deleted, then exits as preempted).
set -u
fake=$FAKE_DIR
if [ "$TPU_WORKER_ID" = 0 ]; then
  run=$(find "$fake" -maxdepth 1 -name 'trainer_args.*' | wc -l)
  printf '%s\0' "$@" >"$fake/trainer_args.$run"
  echo "gecko-train run $run" >>"$fake/calls.log"
  : >"$fake/trainer_started"
fi
echo "step 1: loss 0.25"
if [ "$FAKE_TRAINER_CODE" = hang ]; then
  for _ in $(seq 200); do [ -e "$fake/released" ] && exit 75; sleep 0.05; done
  exit 75
fi
exit "$FAKE_TRAINER_CODE"
"""

_FAKE_GSUTIL = r"""#!/usr/bin/env bash
echo "gsutil $*" >>"$FAKE_DIR/calls.log"
"""


class FakeCloud:
    """A directory with fake ``gcloud``, ``gsutil`` and ``gecko-train`` first on PATH."""

    def __init__(self, root: Path, *, states: Sequence[str], codes: Sequence[str], workers: int):
        self.root = root
        bin_dir = root / "bin"
        bin_dir.mkdir(parents=True)
        for name, text in (
            ("gcloud", _FAKE_GCLOUD),
            ("gsutil", _FAKE_GSUTIL),
            ("gecko-train", _FAKE_GECKO_TRAIN),
        ):
            path = bin_dir / name
            path.write_text(textwrap.dedent(text))
            path.chmod(0o755)
        (root / "states").write_text("".join(f"{s}\n" for s in states))
        (root / "codes").write_text("".join(f"{c}\n" for c in codes))
        (root / "calls.log").write_text("")
        self.env = script_env(
            PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            FAKE_DIR=str(root),
            FAKE_WORKERS=str(workers),
            TMPDIR=str(root),
        )

    def calls(self) -> list[str]:
        """Every recorded call, in order."""
        return (self.root / "calls.log").read_text().splitlines()

    def trainer_runs(self) -> list[list[str]]:
        """gecko-train's arguments on worker 0, one list per launch."""
        runs = sorted(self.root.glob("trainer_args.*"), key=lambda p: int(p.suffix[1:]))
        return [p.read_bytes().decode().split("\0")[:-1] for p in runs]
