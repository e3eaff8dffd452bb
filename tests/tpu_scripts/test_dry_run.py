"""Every script under DRY_RUN=1 prints exactly the commands of the golden files.

Regenerate the goldens with ``UPDATE_GOLDEN=1`` and read the diff before committing it.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from tests.tpu_scripts.scripts import remote_trainer_args, run_script, script_env

GOLDEN = Path(__file__).parent / "golden"

PROJECT = ["--project=gecko-proj"]
V4 = [*PROJECT, "--zone=us-central2-b", "--name=gecko-v4"]
V5E = [*PROJECT, "--zone=us-west4-a", "--name=gecko-v5e"]
REPO = ["--repo_url=https://github.com/example/gecko_jax.git", "--commit=3f2a9c1d"]
LOCAL_GIN = "configs/gecko 1b v4.gin"  # a local gin file, with spaces in its name
TRAIN_V4 = [
    "--gin_file=runs/finetune.gin",
    "--gin_file=models/gecko_1b.gin",
    f"--gin_file={LOCAL_GIN}",
    "--gin.MODEL_DIR='gs://gecko-bkt/runs/v4 run 1'",
    '--gin.MIXTURE_OR_TASK_NAME="fret_ft"',
    "--gin.TRAIN_STEPS=20000",
    "--gin_bindings=train.mesh_shape = (-1, 1)",
    '--gin.RUN_NOTE="it\'s $HOME and `date`"',  # nothing in it may expand on a worker
]
TRAIN_V5E = [
    "--gin_file=runs/finetune.gin",
    "--gin_file=models/gecko_1b.gin",
    "--gin.MODEL_DIR='gs://gecko-bkt/runs/v5e'",
    "--gin.TRAIN_STEPS=20000",
]
TRAIN_MULTISLICE = [*TRAIN_V5E, "--gin.train.mesh_shape=(2, -1, 1)"]

CASES: dict[str, tuple[str, list[str]]] = {
    "create_v4_64_spot": (
        "create.sh",
        [*V4, "--accelerator_type=v4-64", "--spot", "--valid_until_duration=6h"],
    ),
    "create_v5e_64_reserved": (
        "create.sh",
        [*V5E, "--accelerator_type=v5litepod-64", "--reserved"],
    ),
    "create_v6e_multislice": (
        "create.sh",
        [
            *PROJECT,
            "--zone=us-east5-b",
            "--name=gecko-v6e",
            "--accelerator_type=v6e-256",
            "--node_count=4",
            "--spot",
        ],
    ),
    "create_v5p_8": (
        "create.sh",
        [
            *PROJECT,
            "--zone=us-east5-a",
            "--name=gecko-v5p",
            "--accelerator_type=v5p-8",
            "--no_wait",
        ],
    ),
    "setup_v4_64": (
        "setup.sh",
        [*V4, *REPO, "--gin_file=runs/finetune.gin", f"--gin_file={LOCAL_GIN}"],
    ),
    "setup_v5e_multislice_gin_from": (
        "setup.sh",
        [*V5E, "--node_count=2", *REPO, "--gin_from=gs://gecko-bkt/gin/"],
    ),
    "setup_clean_only": ("setup.sh", [*V4, "--clean_only"]),
    "launch_v4_64": (
        "launch.sh",
        [*V4, "--accelerator_type=v4-64", "--bucket=gs://gecko-bkt", "--", *TRAIN_V4],
    ),
    "launch_v5e_64": (
        "launch.sh",
        [
            *V5E,
            "--accelerator_type=v5litepod-64",
            "--bucket=gecko-bkt",
            "--attempt=2",
            "--",
            *TRAIN_V5E,
        ],
    ),
    "launch_v5e_multislice": (
        "launch.sh",
        [
            *V5E,
            "--accelerator_type=v5litepod-64",
            "--node_count=2",
            "--bucket=gs://gecko-bkt",
            "--",
            *TRAIN_MULTISLICE,
        ],
    ),
    "launch_v5e_multislice_coordinator": (
        "launch.sh",
        [
            *V5E,
            "--accelerator_type=v5litepod-64",
            "--node_count=2",
            "--bucket=gs://gecko-bkt",
            "--coordinator_address=10.130.0.5",
            "--megascale_port=9090",
            "--",
            *TRAIN_MULTISLICE,
        ],
    ),
    "status_processes": ("status.sh", [*V4, "--processes"]),
    "tail_worker_3_follow": ("tail.sh", [*V4, "--worker=3", "--lines=50", "--follow"]),
    "tail_gcs": ("tail.sh", [*V4, "--gcs", "--bucket=gs://gecko-bkt", "--worker=5", "--attempt=1"]),
    "stop": ("stop.sh", V4),
    "stop_force_multislice": ("stop.sh", [*V5E, "--node_count=2", "--force"]),
    "delete": ("delete.sh", V4),
    "run_resilient_v4_64": (
        "run_resilient.sh",
        [
            *V4,
            "--accelerator_type=v4-64",
            "--spot",
            "--bucket=gs://gecko-bkt",
            *REPO,
            "--max_restarts=5",
            "--poll_interval=0",
            "--",
            *TRAIN_V4,
        ],
    ),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding the local gin file the cases name."""
    path = tmp_path_factory.mktemp("run")
    (path / LOCAL_GIN).parent.mkdir(parents=True)
    (path / LOCAL_GIN).write_text("train.batch_size = 1024\n")
    return path


@pytest.fixture(scope="module")
def printed(workdir: Path) -> dict[str, list[str]]:
    """Each case's DRY_RUN output, one command a line."""
    out = {}
    for case, (script, args) in CASES.items():
        result = run_script(script, args, cwd=workdir, env=script_env(DRY_RUN="1"))
        assert result.returncode == 0, f"{case}: {result.stderr}"
        out[case] = result.stdout.splitlines()
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_golden(case: str, printed: dict[str, list[str]]) -> None:
    golden = GOLDEN / f"{case}.txt"
    text = "".join(line + "\n" for line in printed[case])
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden}: run with UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text()


def _commands(lines: list[str]) -> list[list[str]]:
    return [shlex.split(line) for line in lines if not line.startswith("#")]


def _flag(words: list[str], name: str) -> str | None:
    values = [w.split("=", 1)[1] for w in words if w.startswith(f"{name}=")]
    return values[-1] if values else None


def test_every_worker_command_is_for_all_workers(printed: dict[str, list[str]]) -> None:
    for case, lines in printed.items():
        for words in _commands(lines):
            if words[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"] and not case.startswith(
                "tail"
            ):
                assert "--worker=all" in words, (case, words)
            if words[0] == "gcloud":
                assert _flag(words, "--project") == "gecko-proj", (case, words)
                assert _flag(words, "--zone") in {
                    "us-central2-b",
                    "us-west4-a",
                    "us-east5-b",
                    "us-east5-a",
                }, (case, words)


def test_gin_arguments_reach_gecko_train_unchanged(printed: dict[str, list[str]]) -> None:
    for case, expected in (
        ("launch_v4_64", TRAIN_V4),
        ("launch_v5e_64", TRAIN_V5E),
        ("run_resilient_v4_64", TRAIN_V4),
    ):
        launches = [
            w
            for w in _commands(printed[case])
            if "tpu-vm" in w and any("GECKO_EXIT" in x for x in w)
        ]
        assert launches, case
        for words in launches:
            command = _flag(words, "--command")
            assert command is not None
            assert remote_trainer_args(command) == expected, case


def test_create_propagates_type_runtime_and_node_count(printed: dict[str, list[str]]) -> None:
    expected = {
        "create_v4_64_spot": ("v4-64", "tpu-ubuntu2204-base", None),
        "create_v5e_64_reserved": ("v5litepod-64", "v2-alpha-tpuv5-lite", None),
        "create_v6e_multislice": ("v6e-256", "v2-alpha-tpuv6e", "4"),
        "create_v5p_8": ("v5p-8", "v2-alpha-tpuv5", None),
    }
    for case, (accelerator, runtime, node_count) in expected.items():
        create = _commands(printed[case])[0]
        assert create[:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"]
        assert _flag(create, "--accelerator-type") == accelerator
        assert _flag(create, "--runtime-version") == runtime
        assert _flag(create, "--node-count") == node_count
        assert (_flag(create, "--node-prefix") is None) == (node_count is None)
        assert (_flag(create, "--node-id") is None) == (node_count is not None)


def test_multislice_launch_sets_megascale_per_slice(printed: dict[str, list[str]]) -> None:
    commands = _commands(printed["launch_v5e_multislice_coordinator"])
    assert [w[5] for w in commands] == ["gecko-v5e-0", "gecko-v5e-1"]
    for slice_id, words in enumerate(commands):
        command = _flag(words, "--command") or ""
        assert (
            'MEGASCALE_COORDINATOR_ADDRESS="${MEGASCALE_COORDINATOR_ADDRESS:-10.130.0.5}"'
            in command
        )
        assert 'MEGASCALE_NUM_SLICES="${MEGASCALE_NUM_SLICES:-2}"' in command
        assert f'MEGASCALE_SLICE_ID="${{MEGASCALE_SLICE_ID:-{slice_id}}}"' in command
        assert 'MEGASCALE_PORT="${MEGASCALE_PORT:-9090}"' in command


def test_help(workdir: Path) -> None:
    for script in sorted({s for s, _ in CASES.values()}):
        result = run_script(script, ["--help"], cwd=workdir)
        assert result.returncode == 0, script
        assert result.stdout.startswith(f"Usage: {script}"), script
