"""``gecko-launch vertex``: the exact Vertex AI job, and clear errors before any is created."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys

import pytest

from gecko_jax import gin_utils
from gecko_jax.cli import launch
from gecko_jax.launch import LaunchError, machines, trainer_args, vertex

# gecko-train's arguments as a user types them; the shell has already removed its quotes.
GIN_ARGS = [
    "--gin_file=runs/finetune.gin",
    "--gin_file",
    "models/gecko_1b.gin",
    "--gin.MIXTURE_OR_TASK_NAME='fret ft'",
    '--gin_bindings=train.note = "it\'s a \\"test\\""',
    "--gin.TRAIN_STEPS=20000",
    "--force_new_settings",
]
TPU_FLAGS = [
    "vertex",
    "--project=gecko-test",
    "--region=us-central1",
    "--machine_type=ct5lp-hightpu-4t",
    "--tpu_topology=4x4",
    "--scheduling=spot",
    "--model_dir=gs://gecko-bucket/runs/ft1",
    "--labels=team=search,run=ft1",
]
TPU_JOB = {
    "displayName": "gecko-train-ft1",
    "labels": {"team": "search", "run": "ft1"},
    "jobSpec": {
        "workerPoolSpecs": [
            {
                "machineSpec": {"machineType": "ct5lp-hightpu-4t", "tpuTopology": "4x4"},
                "replicaCount": "4",  # int64 fields are strings in the REST API's JSON
                "containerSpec": {
                    "imageUri": "us-central1-docker.pkg.dev/gecko-test/gecko/train:tpu",
                    "command": ["gecko-train"],
                    "args": [*GIN_ARGS, "--gin.MODEL_DIR='gs://gecko-bucket/runs/ft1'"],
                },
            }
        ],
        "scheduling": {"strategy": "SPOT", "restartJobOnWorkerRestart": True},
        "baseOutputDirectory": {"outputUriPrefix": "gs://gecko-bucket/runs/ft1"},
    },
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No project or region from the caller's environment; an empty working directory."""
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("GOOGLE_CLOUD_REGION", raising=False)
    monkeypatch.chdir(tmp_path)


def _dry_run(argv: list[str], capsys) -> dict:  # type: ignore[no-untyped-def]
    status = launch.main([*argv, "--dry_run"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert err == ""
    return json.loads(out)


def test_tpu_job_spec() -> None:
    _, gin_args = trainer_args.split_trainer_args(GIN_ARGS)
    job = vertex.build_custom_job(
        vertex.JobRequest(
            project="gecko-test",
            region="us-central1",
            machine_type="ct5lp-hightpu-4t",
            tpu_topology="4x4",
            trainer_args=gin_args,
            model_dir="gs://gecko-bucket/runs/ft1",
            scheduling="spot",
            labels={"team": "search", "run": "ft1"},
        )
    )
    assert json.loads(vertex.job_json(job)) == TPU_JOB
    pool = job.job_spec.worker_pool_specs[0]
    assert pool.replica_count == 4 and pool.machine_spec.accelerator_count == 0
    assert vertex.job_parent(
        vertex.JobRequest("gecko-test", "us-central1", "ct5lp-hightpu-4t", ())
    ) == ("projects/gecko-test/locations/us-central1")


def test_gpu_job_spec() -> None:
    job = vertex.build_custom_job(
        vertex.JobRequest(
            project="gecko-test",
            region="europe-west4",
            machine_type="a3-highgpu-8g",
            accelerator_count=8,
            trainer_args=["--gin_file=runs/finetune.gin", "--gin.MODEL_DIR='gs://b/gpu run'"],
            image="europe-docker.pkg.dev/gecko-test/gecko/train:gpu-v2",
            display_name="h100 trial",
            scheduling="flex-start",
            max_wait="2h30m",
            timeout="1d",
            restart_job_on_worker_restart=False,
            service_account="trainer@gecko-test.iam.gserviceaccount.com",
            tensorboard="projects/gecko-test/locations/europe-west4/tensorboards/42",
            env={"XLA_FLAGS": "--xla_gpu_enable_latency_hiding_scheduler=true"},
        )
    )
    assert json.loads(vertex.job_json(job)) == {
        "displayName": "h100 trial",
        "jobSpec": {
            "workerPoolSpecs": [
                {
                    "machineSpec": {
                        "machineType": "a3-highgpu-8g",
                        "acceleratorType": "NVIDIA_H100_80GB",
                        "acceleratorCount": 8,
                    },
                    "replicaCount": "1",
                    "containerSpec": {
                        "imageUri": "europe-docker.pkg.dev/gecko-test/gecko/train:gpu-v2",
                        "command": ["gecko-train"],
                        # The binding names the output directory: nothing is added.
                        "args": [
                            "--gin_file=runs/finetune.gin",
                            "--gin.MODEL_DIR='gs://b/gpu run'",
                        ],
                        "env": [
                            {
                                "name": "XLA_FLAGS",
                                "value": "--xla_gpu_enable_latency_hiding_scheduler=true",
                            }
                        ],
                    },
                }
            ],
            "scheduling": {
                "timeout": "86400s",
                "strategy": "FLEX_START",
                "maxWaitDuration": "9000s",
            },
            "serviceAccount": "trainer@gecko-test.iam.gserviceaccount.com",
            "baseOutputDirectory": {"outputUriPrefix": "gs://b/gpu run"},
            "tensorboard": "projects/gecko-test/locations/europe-west4/tensorboards/42",
        },
    }
    scheduling = job.job_spec.scheduling
    assert scheduling.max_wait_duration == datetime.timedelta(hours=2, minutes=30)
    assert not scheduling.restart_job_on_worker_restart


def test_dry_run_prints_the_job(capsys) -> None:  # type: ignore[no-untyped-def]
    assert _dry_run([*TPU_FLAGS, *GIN_ARGS], capsys) == TPU_JOB


def test_gin_arguments_may_come_first_and_project_from_the_environment(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "gecko-test")
    flags = [flag for flag in TPU_FLAGS if not flag.startswith("--project")]
    assert _dry_run([GIN_ARGS[0], *flags, *GIN_ARGS[1:]], capsys) == TPU_JOB


def test_multi_replica_gpu_job_has_a_primary_pool(capsys) -> None:  # type: ignore[no-untyped-def]
    job = _dry_run(
        [
            "vertex",
            "--project=gecko-test",
            "--region=us-central1",
            "--machine_type=a2-highgpu-8g",
            "--replica_count=3",
            "--model_dir=gs://b/r",
            "--gin_file=runs/finetune.gin",
        ],
        capsys,
    )
    pools = job["jobSpec"]["workerPoolSpecs"]
    assert [pool["replicaCount"] for pool in pools] == ["1", "2"]
    assert (
        pools[0]["machineSpec"]
        == pools[1]["machineSpec"]
        == {
            "machineType": "a2-highgpu-8g",
            "acceleratorType": "NVIDIA_TESLA_A100",
            "acceleratorCount": 8,
        }
    )
    assert job["jobSpec"]["scheduling"] == {
        "strategy": "STANDARD",
        "restartJobOnWorkerRestart": True,
    }


@pytest.mark.parametrize(
    ("machine_type", "topology", "hosts"),
    [
        ("ct5lp-hightpu-1t", None, 1),
        ("ct5lp-hightpu-4t", None, 1),
        ("ct5lp-hightpu-4t", "2x4", 2),
        ("ct5lp-hightpu-8t", "2x4", 1),
        ("ct5lp-hightpu-4t", "16x16", 64),
        ("ct6e-standard-4t", "8x8", 16),
    ],
)
def test_tpu_replicas_follow_from_the_topology(
    machine_type: str, topology: str | None, hosts: int
) -> None:
    machine = machines.resolve(machine_type, tpu_topology=topology)
    assert machine.replica_count == hosts
    assert machine.tpu_topology == (topology or machines.TPU_MACHINES[machine_type].topologies[0])


def test_gin_files_resolve_as_the_container_resolves_them(tmp_path) -> None:
    trainer_args.check_gin_files(["runs/finetune.gin", "gs://b/extra.gin"], cwd=str(tmp_path))
    # Run from inside the packaged directory, the file found first is the packaged one.
    trainer_args.check_gin_files(["runs/finetune.gin"], cwd=gin_utils.GIN_DIR)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "finetune.gin").write_text("MODEL_DIR = 'x'\n")
    with pytest.raises(LaunchError, match="'runs/finetune.gin' is on this machine only"):
        trainer_args.check_gin_files(["runs/finetune.gin"], cwd=str(tmp_path))


BASE = ["vertex", "--project=gecko-test", "--region=us-central1", "--model_dir=gs://b/r"]
TPU = [*BASE, "--machine_type=ct5lp-hightpu-4t"]
GIN = ["--gin_file=runs/finetune.gin"]


@pytest.mark.parametrize(
    ("argv", "culprits"),
    [
        (
            [*BASE, "--machine_type=ct5lp-hightpu-3t", *GIN],
            ["--machine_type='ct5lp-hightpu-3t'", "ct5lp-hightpu-4t", "a3-highgpu-8g"],
        ),
        ([*TPU, "--tpu_topology=3x3", *GIN], ["--tpu_topology='3x3'", "2x4, 4x4, 4x8"]),
        ([*TPU, "--tpu_topology=4x4", "--replica_count=2", *GIN], ["--replica_count=2", "4 host"]),
        (
            [*BASE, "--machine_type=a3-highgpu-8g", "--accelerator_count=4", *GIN],
            ["--accelerator_count=4", "a3-highgpu-8g", "8 x NVIDIA_H100_80GB"],
        ),
        (
            [*TPU[:3], "--machine_type=ct5lp-hightpu-4t", "--model_dir=/tmp/run", *GIN],
            ["/tmp/run", "gs://"],
        ),
        ([*TPU[:3], "--machine_type=ct5lp-hightpu-4t", *GIN], ["--model_dir"]),
        ([*TPU, "--gin.MODEL_DIR='gs://b/other'", *GIN], ["gs://b/other", "disagree"]),
        ([*TPU, "--gin.MODEL_DIR=gs://b/r", *GIN], ["MODEL_DIR = gs://b/r", "quoted"]),
        (["vertex", "--region=us-central1", *TPU[3:], *GIN], ["--project"]),
        (["vertex", "--project=p", *TPU[3:], *GIN], ["--region"]),
        (
            ["vertex", "--project=p", "--region=us-central1-a", *TPU[3:], *GIN],
            ["zone", "us-central1"],
        ),
        ([*TPU, "--gin_file=runs/nonexistent.gin"], ["'runs/nonexistent.gin' not found"]),
        ([*TPU, "--gin_search_paths=/tmp/gin", *GIN], ["--gin_search_paths"]),
        ([*TPU, "--max_wait=2h", *GIN], ["--max_wait", "flex-start"]),
        ([*TPU, "--scheduling=flex-start", "--max_wait=soon", *GIN], ["--max_wait='soon'"]),
        (
            [*TPU, "--tensorboard=projects/p/locations/us-central1/tensorboards/1", *GIN],
            ["--service_account"],
        ),
        ([*TPU, "--labels=Team=x", *GIN], ["Team=x"]),
        ([*TPU, "--image={project}/{zone}:x", *GIN], ["--image"]),
    ],
)
def test_bad_input_is_one_line_before_anything_is_created(
    argv: list[str], culprits: list[str], capsys
) -> None:  # type: ignore[no-untyped-def]
    assert launch.main([*argv, "--dry_run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.startswith("gecko-launch: error: ") and err.count("\n") == 1, err
    for culprit in culprits:
        assert culprit in err, err


def test_local_gin_file_is_refused(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "mine.gin").write_text("TRAIN_STEPS = 1\n")
    assert launch.main([*TPU, "--gin_file=mine.gin", "--dry_run"]) == 2
    err = capsys.readouterr().err
    assert "'mine.gin' is on this machine only" in err and str(tmp_path / "mine.gin") in err


def test_installed_command_exits_2_without_a_traceback(tmp_path) -> None:
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "gecko-launch"), *TPU, "--tpu_topology=9x9"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "GOOGLE_CLOUD_PROJECT"},
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("gecko-launch: error: --tpu_topology='9x9'")
    assert "Traceback" not in done.stderr
