"""gecko-train end to end on CPU: gin errors, resume after kill -9, SIGINT and SIGTERM,
a changed rerun refused, NaN stop, with the documented exit codes."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    rows = [
        {
            "query": f"what is item {i}",
            "positive": f"item {i} is a thing numbered {i}",
            "negative": f"item {i + 1} is another thing",
        }
        for i in range(64)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _command(model_dir: str, tiny_model_dir: str, pairs_file: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gecko_jax.cli.train",
        "--gin_file=runs/finetune.gin",
        "--gin_file=inputs/pairs_file.gin",
        f"--gin.MODEL_DIR='{model_dir}'",
        "--gin.TRAIN_STEPS=24",
        f"--gin.TRAIN_FILE='{pairs_file}'",
        "--gin.BATCH_SIZE=8",
        f"--gin.train.init_from='{tiny_model_dir}'",
        "--gin.train.query_length=12",
        "--gin.train.document_length=16",
        "--gin.train.checkpoint_every=4",
        "--gin.train.log_every=1",
        "--gin.gecko_jax.OptimizerConfig.learning_rate=1e-3",
        "--gin.gecko_jax.OptimizerConfig.warmup_steps=2",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    }


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, capture_output=True, text=True, env=_env(), cwd=REPO, check=False
    )


def _final_loss(output: str) -> float:
    lines = [line for line in output.splitlines() if "step 24/24" in line]
    assert lines, output[-3000:]
    return float(lines[-1].split("loss ")[1].split()[0])


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, tiny_model_dir: str, pairs_file: str) -> tuple[str, float]:
    """An uninterrupted run: its MODEL_DIR and final loss."""
    model_dir = str(tmp_path_factory.mktemp("straight") / "run")
    done = _run(_command(model_dir, tiny_model_dir, pairs_file))
    assert done.returncode == 0, done.stderr[-3000:]  # a run that ends normally exits 0
    assert "Traceback" not in done.stderr
    return model_dir, _final_loss(done.stderr)


def test_killed_run_resumes_to_the_same_final_loss(
    tmp_path, tiny_model_dir: str, pairs_file: str, straight_run: tuple[str, float]
) -> None:
    reference = straight_run[1]
    model_dir = str(tmp_path / "killed")
    command = _command(model_dir, tiny_model_dir, pairs_file)
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env(), cwd=REPO
    )
    for line in process.stderr:  # wait until a checkpoint past step 8 is surely written
        if "step 10/24" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL
    steps = sorted(
        int(d) for d in os.listdir(os.path.join(model_dir, "checkpoints")) if d.isdigit()
    )
    assert steps and max(steps) < 24
    resumed = _run(command)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stderr
    assert _final_loss(resumed.stderr) == pytest.approx(reference, abs=1e-5)
    with open(os.path.join(model_dir, "config.gin")) as f:
        resolved = f.read()  # the resolved config is kept
    assert "BATCH_SIZE = 8" in resolved and "train.batch_size = %BATCH_SIZE" in resolved


@pytest.mark.parametrize(
    "binding, message",
    [
        ("--gin.train.batch_sise=8", "batch_sise"),  # unknown parameter
        ("--gin.trian.batch_size=8", "trian"),  # typo in the configurable
        ("--gin_file=runs/nonexistent.gin", "nonexistent.gin"),  # missing file
    ],
)
def test_bad_gin_fails_before_compute(
    tmp_path, tiny_model_dir: str, pairs_file: str, binding: str, message: str
) -> None:
    model_dir = tmp_path / "run"
    done = _run(_command(str(model_dir), tiny_model_dir, pairs_file, binding))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not model_dir.exists()  # nothing ran


def test_missing_required_macro_is_named(tmp_path, pairs_file: str) -> None:
    done = _run(
        [
            sys.executable,
            "-m",
            "gecko_jax.cli.train",
            "--gin_file=runs/finetune.gin",
            "--gin_file=inputs/pairs_file.gin",
            "--gin_file=models/minilm_l6.gin",
            "--gin.TRAIN_STEPS=3",
            f"--gin.TRAIN_FILE='{pairs_file}'",
        ]
    )
    assert done.returncode != 0
    assert "MODEL_DIR" in done.stderr or "model_dir" in done.stderr


def test_batch_not_divisible_by_data_axis(tmp_path, tiny_model_dir: str, pairs_file: str) -> None:
    done = _run(_command(str(tmp_path / "run"), tiny_model_dir, pairs_file, "--gin.BATCH_SIZE=6"))
    assert done.returncode != 0
    assert "global batch size 6 is not divisible by the data axis size 4" in done.stderr


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(
    tmp_path, tiny_model_dir: str, pairs_file: str
) -> None:
    model_dir = str(tmp_path / "nan")
    done = _run(
        _command(
            model_dir,
            tiny_model_dir,
            pairs_file,
            "--gin.gecko_jax.OptimizerConfig.learning_rate=1e38",
            "--gin.gecko_jax.OptimizerConfig.clip_grad_norm=None",
            "--gin.train.checkpoint_every=1",
        )
    )
    assert done.returncode == 1  # failed by its own fault: a launcher must not restart it
    assert "Traceback" not in done.stderr
    found = re.search(r"loss is (nan|inf|-inf) at step (\d+)", done.stderr)
    assert found, done.stderr[-3000:]
    bad_step = int(found.group(2))
    steps = sorted(
        int(d) for d in os.listdir(os.path.join(model_dir, "checkpoints")) if d.isdigit()
    )
    assert steps and max(steps) == bad_step - 1


def _checkpoint_steps(model_dir: str) -> list[int]:
    return sorted(int(d) for d in os.listdir(os.path.join(model_dir, "checkpoints")) if d.isdigit())


@pytest.mark.parametrize(
    "signum, exit_code, message",
    [
        (signal.SIGINT, 130, "interrupted at step"),
        (signal.SIGTERM, 75, "preempted (SIGTERM) at step"),
    ],
)
def test_a_signal_saves_the_step_exits_with_its_code_then_resumes(
    tmp_path,
    tiny_model_dir: str,
    pairs_file: str,
    straight_run: tuple[str, float],
    signum: int,
    exit_code: int,
    message: str,
) -> None:
    model_dir = str(tmp_path / "stopped")
    command = _command(model_dir, tiny_model_dir, pairs_file, "--gin.train.checkpoint_every=100")
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env(), cwd=REPO
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "step 6/24" in line:
            process.send_signal(signum)
            break
    stderr = "".join(seen) + process.stderr.read()
    assert process.wait() == exit_code, stderr[-3000:]
    assert "Traceback" not in stderr
    found = re.search(
        rf"gecko-train: {re.escape(message)} (\d+); checkpoint saved in \S+; rerun", stderr
    )
    assert found, stderr[-3000:]
    stopped_at = int(found.group(1))
    # Saved at the step it stopped at, although no periodic save was due.
    assert 6 <= stopped_at < 24 and max(_checkpoint_steps(model_dir)) == stopped_at
    assert not [n for n in os.listdir(os.path.join(model_dir, "checkpoints")) if "tmp" in n]
    resumed = _run(command)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {stopped_at}" in resumed.stderr
    assert _final_loss(resumed.stderr) == pytest.approx(straight_run[1], abs=1e-5)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(model_dir))


def test_a_rerun_with_changed_settings_is_refused_naming_them(
    tmp_path, tiny_model_dir: str, pairs_file: str, straight_run: tuple[str, float]
) -> None:
    model_dir = str(tmp_path / "rerun")
    shutil.copytree(straight_run[0], model_dir)
    steps = _checkpoint_steps(model_dir)
    command = [
        c.replace(straight_run[0], model_dir)
        for c in _command(model_dir, tiny_model_dir, pairs_file)
    ]
    changed = _run(
        [
            *command,
            "--gin.BATCH_SIZE=4",
            "--gin.gecko_jax.OptimizerConfig.learning_rate=1e-2",
        ]
    )
    assert changed.returncode == 2, changed.stderr[-3000:]
    assert "Traceback" not in changed.stderr and "loading" not in changed.stderr  # no compute
    listed = [line.strip() for line in changed.stderr.splitlines() if line.startswith("  ")]
    assert listed == ["batch_size: 8 -> 4", "optimizer.learning_rate: 0.001 -> 0.01"]
    assert "--force_new_settings" in changed.stderr and _checkpoint_steps(model_dir) == steps

    longer = _run([c.replace("TRAIN_STEPS=24", "TRAIN_STEPS=26") for c in command])
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert "resumed from step 24" in longer.stderr and "train_steps: 24 -> 26" in longer.stderr
    assert max(_checkpoint_steps(model_dir)) == 26


def test_init_checkpoint_loads_the_backbone_into_a_new_head(
    tmp_path, tiny_model_dir: str, pairs_file: str
) -> None:
    import jax

    from gecko_jax.checkpoints import restore_params

    first = str(tmp_path / "prefinetune")
    assert _run(_command(first, tiny_model_dir, pairs_file, "--gin.TRAIN_STEPS=4")).returncode == 0
    second = str(tmp_path / "finetune")
    done = _run(
        _command(
            second,
            tiny_model_dir,
            pairs_file,
            "--gin.TRAIN_STEPS=3",
            f"--gin.train.init_checkpoint='{first}/checkpoints'",
            "--gin.train.head=@gecko_jax.HeadConfig()",
            "--gin.gecko_jax.HeadConfig.projection_dim=16",
            "--gin.gecko_jax.OptimizerConfig.learning_rate=1e-30",
        )
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "backbone initialised from" in done.stderr
    kernel = ("backbone", "layer_0", "intermediate", "dense", "kernel")

    def read(model_dir: str, with_projection: bool) -> dict:
        target = {
            "backbone": {
                "layer_0": {
                    "intermediate": {"dense": {"kernel": jax.ShapeDtypeStruct((32, 64), "float32")}}
                }
            }
        }
        if with_projection:
            target["projection"] = {"dense": {"kernel": jax.ShapeDtypeStruct((32, 16), "float32")}}
        return restore_params(os.path.join(model_dir, "checkpoints"), target)

    before, after = read(first, False), read(second, True)

    def get(tree: dict) -> np.ndarray:
        return tree[kernel[0]][kernel[1]][kernel[2]][kernel[3]][kernel[4]]

    np.testing.assert_allclose(get(after), get(before), atol=1e-6)
    assert after["projection"]["dense"]["kernel"].shape == (32, 16)
    _loads_as_an_encoder(second, tiny_model_dir, after["projection"]["dense"]["kernel"])


def _loads_as_an_encoder(model_dir: str, tiny_model_dir: str, projection: np.ndarray) -> None:
    """The model directory loads through Encoder.load with the trained weights and head."""
    import jax

    from gecko_jax.checkpoints import restore_params
    from gecko_jax.encoder import Encoder
    from gecko_jax.model_dir import read_spec

    spec = read_spec(model_dir)
    assert (spec.init_from, spec.head.projection_dim, spec.max_length) == (tiny_model_dir, 16, 64)
    encoder = Encoder.load(model_dir)
    assert encoder.embedding_dim == 16
    texts = ["what is item 3", "item 3 is a thing numbered 3"]
    got = encoder.encode(texts)
    shapes = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), encoder.params
    )
    trained = restore_params(os.path.join(model_dir, "checkpoints"), shapes)
    fresh = Encoder(encoder.model, trained, encoder.vocabulary, encoder.max_length).encode(texts)
    np.testing.assert_allclose(got, fresh, atol=1e-6)
    np.testing.assert_array_equal(
        np.asarray(encoder.params["projection"]["dense"]["kernel"]), projection
    )
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_trains_from_a_registered_mixture_and_resumes(
    tmp_path, tiny_model_dir: str, eval_data_dir: str
) -> None:
    """gin/local/minilm_mixture.gin: STS-B train and Banking77 train registered from
    the evaluation data, one dataset per batch, with the input position checkpointed."""
    model_dir = tmp_path / "mix"
    command = [
        sys.executable,
        "-m",
        "gecko_jax.cli.train",
        "--gin_file=local/minilm_mixture.gin",
        f"--gin.MODEL_DIR='{model_dir}'",
        "--gin.TRAIN_STEPS=6",
        "--gin.BATCH_SIZE=8",
        f"--gin.train.init_from='{tiny_model_dir}'",
        "--gin.train.query_length=24",
        "--gin.train.document_length=24",
        "--gin.train.checkpoint_every=3",
        "--gin.train.log_every=1",
        "--gin.gecko_jax.OptimizerConfig.warmup_steps=2",
        f"--gin.gecko_jax.register_default_tasks.data_dir='{eval_data_dir}'",
    ]
    first = _run(command)
    assert first.returncode == 0, first.stderr[-3000:]
    losses = [float(m) for m in re.findall(r"step \d+/6  loss (\S+)", first.stderr)]
    assert len(losses) == 6 and all(np.isfinite(losses)), first.stderr[-3000:]
    with open(model_dir / "checkpoints" / "6" / "data" / "metadata", encoding="utf-8") as f:
        data_state = json.load(f)
    assert data_state["kind"] == "one_dataset_per_batch" and data_state["position"] == 6
    assert data_state["probabilities"] == {"banking77_train": 0.5, "stsb_train": 0.5}
    assert (model_dir / "checkpoints" / "6" / "host_data" / "process_00000-of-00001.npz").exists()

    resumed = _run([c.replace("TRAIN_STEPS=6", "TRAIN_STEPS=8") for c in command])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step 6" in resumed.stderr
    assert re.search(r"step 8/8  loss \S+", resumed.stderr)
    with open(model_dir / "checkpoints" / "8" / "data" / "metadata", encoding="utf-8") as f:
        assert json.load(f)["position"] == 8


def test_in_training_evaluation_keeps_the_best_checkpoint(
    tmp_path, tiny_model_dir: str, pairs_file: str, eval_data_dir: str
) -> None:
    from gecko_jax.encoder import Encoder
    from gecko_jax.eval.evaluators import build_evaluator

    model_dir = str(tmp_path / "evaluated")
    done = _run(
        _command(
            model_dir,
            tiny_model_dir,
            pairs_file,
            "--gin.TRAIN_STEPS=6",
            "--gin.train.eval_every=2",
            "--gin.train.evaluators=['stsb:dev']",
            f"--gin.train.eval_data_dir='{eval_data_dir}'",
            "--gin.train.eval_dims=[32, 16]",
            "--gin.train.best_metric='stsb_dev/spearman'",
            "--gin.train.keep_best=1",
            "--gin.gecko_jax.OptimizerConfig.learning_rate=3e-3",
        )
    )
    assert done.returncode == 0, done.stderr[-3000:]
    logged = {
        int(step): float(value)
        for step, value in re.findall(
            r"eval at step (\d+): .*?stsb_dev/spearman (\S+)", done.stderr
        )
    }
    assert sorted(logged) == [2, 4, 6], done.stderr[-3000:]
    assert re.search(r"eval at step 2: .*stsb_dev/spearman@16 \S+", done.stderr)
    best = max(logged, key=logged.get)
    with open(os.path.join(model_dir, "best_checkpoints", "best.json"), encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["best_step"] == best and summary["kept_steps"] == [best]
    encoder = Encoder.load(model_dir, checkpoint="best")
    scores = build_evaluator("stsb", eval_data_dir, "dev").evaluate(encoder)
    assert abs(scores[32]["spearman"] - logged[best]) < 0.01


def test_mesh_shape_takes_an_optional_replica_axis():
    from gecko_jax.train import make_mesh_from_shape

    assert dict(make_mesh_from_shape((-1, 1)).shape) == {"replica": 1, "data": 8, "model": 1}
    assert dict(make_mesh_from_shape((2, -1, 2)).shape) == {"replica": 2, "data": 2, "model": 2}
    with pytest.raises(
        ValueError, match=r"train.mesh_shape must be \(data, model\) or \(replica, data, model\)"
    ):
        make_mesh_from_shape((8,))


def test_throughput_counts_from_the_end_of_the_first_step_and_the_progress_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gecko_jax import train_loop

    clock = iter([100.0, 105.0, 107.0])  # start, end of the first step, the report at step 13
    monkeypatch.setattr(train_loop.time, "perf_counter", lambda: next(clock))
    meter = train_loop.Throughput(step=10, batch_size=8)
    meter.count(11, tokens=999)  # the first step compiles: neither its time nor its tokens count
    meter.count(12, tokens=100)
    meter.count(13, tokens=60)
    rates = meter.rates(13)
    assert rates == {"examples_per_second": 2 * 8 / 2.0, "tokens_per_second": 160 / 2.0}
    metrics = {"loss": 0.5, "accuracy": 0.25, **rates}
    assert (
        train_loop.progress_line(13, 20, metrics, eta_s=3725.0)
        == "step 13/20  loss 0.5000  acc 0.250  8.0 examples/s  80 tokens/s  ETA 01:02:05"
    )
    assert train_loop.progress_line(13, 20, metrics, eta_s=1e12).endswith("ETA --")
