"""The preemption watcher and launch.sh against a fake gcloud that runs the workers' command.

The fake's ``tpu-vm ssh`` runs the launch's real remote command once per worker, where a
fake gecko-train records its arguments and exits with the code a test chose.
"""

from __future__ import annotations

from pathlib import Path

from tests.tpu_scripts.scripts import FakeCloud, run_script

MODEL_DIR = "--gin.MODEL_DIR='gs://gecko-bkt/runs/resilient run'"
TRAIN_ARGS = [
    "--gin_file=runs/finetune.gin",
    "--gin_file=models/gecko_1b.gin",
    MODEL_DIR,
    '--gin.MIXTURE_OR_TASK_NAME="fret_ft"',
    '--gin.RUN_NOTE="it\'s $HOME and `date`"',
]
SLICE = [
    "--project=gecko-proj",
    "--zone=us-central2-b",
    "--name=gecko-v4",
    "--accelerator_type=v4-32",  # four hosts
    "--spot",
    "--bucket=gs://gecko-bkt",
    "--repo_url=https://github.com/example/gecko_jax.git",
    "--commit=3f2a9c1d",
    "--poll_interval=0",
]
WORKERS = 4


def _resilient(tmp_path: Path, states: list[str], codes: list[str], *extra: str):
    fake = FakeCloud(tmp_path / "fake", states=states, codes=codes, workers=WORKERS)
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = run_script(
        "run_resilient.sh", [*SLICE, *extra, "--", *TRAIN_ARGS], cwd=workdir, env=fake.env
    )
    return fake, result


def _events(calls: list[str]) -> list[str]:
    """The calls that matter for the order: trainer runs, delete, create, setup."""
    events = []
    for call in calls:
        if call.startswith("gecko-train run"):
            events.append("train")
        elif "queued-resources delete" in call:
            events.append("delete")
        elif "queued-resources create" in call:
            events.append("create")
        elif "tpu-vm ssh" in call and "pip install" in call:
            events.append("setup")
    return events


def test_preempted_slice_is_recreated_and_the_same_command_relaunched(tmp_path: Path) -> None:
    fake, result = _resilient(tmp_path, ["READY", "PREEMPTED", "READY"], ["hang", "0"])

    assert result.returncode == 0, result.stderr
    assert _events(fake.calls()) == ["train", "delete", "create", "setup", "train"]
    first, second = fake.trainer_runs()
    assert first == second == TRAIN_ARGS  # the same MODEL_DIR, quoting intact
    assert "PREEMPTED" in result.stderr and "re-creating 'gecko-v4'" in result.stderr
    calls = fake.calls()
    delete = next(c for c in calls if "queued-resources delete" in c)
    assert "--force" in delete and "--async" not in delete  # waits: the name is reused
    create = next(c for c in calls if "queued-resources create" in c)
    assert "--accelerator-type=v4-32 --runtime-version=tpu-ubuntu2204-base" in create
    assert "--spot" in create
    # The relaunch writes its logs under the next attempt, one file per worker.
    copies = [c for c in calls if c.startswith("gsutil -q cp") and "attempt-1/" in c]
    assert sorted(c.rsplit("/", 1)[1] for c in copies) == [
        f"slice-0-worker-{w}.log" for w in range(WORKERS)
    ]
    # Worker 0's output reaches the terminal.
    assert "step 1: loss 0.25" in result.stdout


def test_trainer_exit_75_restarts(tmp_path: Path) -> None:
    fake, result = _resilient(tmp_path, ["READY"], ["75", "0"])

    assert result.returncode == 0, result.stderr
    assert _events(fake.calls()) == ["train", "delete", "create", "setup", "train"]
    assert fake.trainer_runs() == [TRAIN_ARGS, TRAIN_ARGS]


def test_restarts_are_bounded(tmp_path: Path) -> None:
    fake, result = _resilient(tmp_path, ["READY"], ["75", "75"], "--max_restarts=1")

    assert result.returncode == 75
    assert _events(fake.calls()) == ["train", "delete", "create", "setup", "train"]
    assert "giving up (--max_restarts=1)" in result.stderr


def test_trainer_failure_is_not_restarted(tmp_path: Path) -> None:
    fake, result = _resilient(tmp_path, ["READY"], ["1"])

    assert result.returncode == 1
    assert _events(fake.calls()) == ["train"]
    assert "gecko-train exited with code 1" in result.stderr
    assert "of slice 0" in result.stderr  # names the failing worker
    assert "failed by its own fault (exit 1): not restarting" in result.stderr


def test_launch_fails_fast_naming_the_worker(tmp_path: Path) -> None:
    fake = FakeCloud(tmp_path / "fake", states=["READY"], codes=["2"], workers=1)
    workdir = tmp_path / "work"
    workdir.mkdir()
    args = [*SLICE[:4], "--bucket=gs://gecko-bkt", "--", *TRAIN_ARGS]
    result = run_script("launch.sh", args, cwd=workdir, env=fake.env)

    # One of four workers reported: the launch stops the others instead of waiting.
    assert result.returncode == 2
    assert "worker 0 of slice 0: gecko-train exited with code 2" in result.stderr
    stops = [c for c in fake.calls() if "pkill -TERM" in c]
    assert len(stops) == 1 and "--worker=all" in stops[0]
    log = (workdir / "tpu_logs" / "gecko-v4" / "attempt-0.log").read_text()
    assert "step 1: loss 0.25" in log and "GECKO_EXIT slice=0 worker=0 code=2" in log
