"""A fresh install of gecko_jax from a wheel, used as a new user would use it.

1. builds a wheel (``pip wheel --no-deps``) from a copy of what the package is made of
   (``setup.py``, ``pyproject.toml``, ``README.md``, ``gecko_jax/``), so nothing else
   in the checkout can leak into it;
2. creates a virtual environment and installs the wheel there with ``--no-deps``; the
   dependencies come from this interpreter's site-packages through a ``.pth`` line
   (a plain path: the checkout's editable install there is not activated), so no
   network is needed and the run takes a minute or two, not an hour;
3. from an empty directory outside the checkout, with no ``--gin_search_paths``, runs
   ``gecko-train --gin_file=local/minilm_stsb.gin`` for a few steps on a tiny pairs file.

It fails (exit status 1) unless the run finishes, ``gecko_jax`` was imported from the
new environment, and no line of the run's output is at ERROR level. The verdict and the
times go to ``bench/results/fresh_install.json`` (``--output``).

    python bench/fresh_install.py [--steps 2] [--workdir DIR] [--keep] [--output NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common
import _provenance

REPO = _common.REPO
PACKAGE_SOURCES = ("setup.py", "pyproject.toml", "README.md", "gecko_jax")
# absl/glog lines (E1129 12:00:00.000 ...), Python logging's "ERROR:..." and the like.
ERROR_LINE = re.compile(r"^E\d{4} |\bERROR\b")
# A user's shell: none of the test or Makefile settings that hide log lines.
UNSET = ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLED_DEVICE_TYPES", "TF_ENABLE_ONEDNN_OPTS")


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


def _check(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def build_wheel(workdir: str) -> str:
    """Builds the wheel from a copy of the package sources; returns its path."""
    source = os.path.join(workdir, "source")
    os.makedirs(source)
    for name in PACKAGE_SOURCES:
        origin = os.path.join(REPO, name)
        if os.path.isdir(origin):
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(origin, os.path.join(source, name), ignore=ignore)
        else:
            shutil.copy(origin, source)
    wheels = os.path.join(workdir, "wheels")
    done = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--quiet", "--wheel-dir", wheels, source]
    )
    _check(done, "pip wheel")
    (wheel,) = os.listdir(wheels)
    return os.path.join(wheels, wheel)


def make_venv(workdir: str, wheel: str) -> str:
    """A venv holding the wheel, its dependencies read from this interpreter's; its path."""
    venv = os.path.join(workdir, "venv")
    _check(_run([sys.executable, "-m", "venv", "--without-pip", venv]), "python -m venv")
    python = os.path.join(venv, "bin", "python")
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    _check(purelib, "sysconfig")
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    with open(os.path.join(purelib.stdout.strip(), "dependencies.pth"), "w") as f:
        f.writelines(path + "\n" for path in sorted(dependencies))
    done = _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel]
    )
    _check(done, "pip install")
    return venv


def _user_environ() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**environ, "HF_HUB_OFFLINE": "1"}


def train_from_outside(workdir: str, venv: str, steps: int) -> subprocess.CompletedProcess:
    """Runs the installed ``gecko-train`` from an empty directory outside the checkout."""
    run_dir = os.path.join(workdir, "user")
    os.makedirs(run_dir)
    train_file = os.path.join(run_dir, "pairs.jsonl")
    with open(train_file, "w", encoding="utf-8") as f:
        for i in range(32):
            row = {"query": f"what is item {i}", "positive": f"item {i} is a thing numbered {i}"}
            f.write(json.dumps(row) + "\n")
    command = [
        os.path.join(venv, "bin", "gecko-train"),
        "--gin_file=local/minilm_stsb.gin",
        f"--gin.MODEL_DIR='{os.path.join(run_dir, 'model')}'",
        f"--gin.TRAIN_STEPS={steps}",
        f"--gin.TRAIN_FILE='{train_file}'",
        # Smaller than the recipe, to be quick (the warm-up shrinks to fit the run).
        "--gin.BATCH_SIZE=8",
        "--gin.train.query_length=16",
        "--gin.train.document_length=16",
    ]
    return _run(command, cwd=run_dir, env=_user_environ())


def imported_from(venv: str, run_dir: str) -> str:
    """Where the venv's ``gecko_jax`` is imported from."""
    python = os.path.join(venv, "bin", "python")
    done = _run([python, "-c", "import gecko_jax; print(gecko_jax.__file__)"], cwd=run_dir)
    _check(done, "import gecko_jax")
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Builds, installs and runs; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2, help="training steps (at least 2)")
    parser.add_argument("--workdir", default=None, help="default: a new temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--output", default="fresh_install", help="bench/results/<NAME>.json")
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="gecko_fresh_install_")
    os.makedirs(workdir, exist_ok=True)
    try:
        start = time.perf_counter()
        wheel = build_wheel(workdir)
        venv = make_venv(workdir, wheel)
        installed = time.perf_counter()
        done = train_from_outside(workdir, venv, args.steps)
        trained = time.perf_counter()
        location = imported_from(venv, os.path.join(workdir, "user"))
        print(f"wheel {os.path.basename(wheel)} built and installed in {installed - start:.0f} s")
        print(f"gecko-train ({args.steps} steps) ran in {trained - installed:.0f} s")
        print(f"gecko_jax imported from {location}")
        problems = []
        if done.returncode != 0:
            problems.append(f"gecko-train exited with {done.returncode}")
        if not location.startswith(os.path.realpath(venv)) and not location.startswith(venv):
            problems.append("gecko_jax was not imported from the new environment")
        errors = [line for line in done.stderr.splitlines() if ERROR_LINE.search(line)]
        if errors:
            problems.append("ERROR-level lines:\n" + "\n".join(errors))
        if f"step {args.steps}/{args.steps}" not in done.stderr:
            problems.append(f"no 'step {args.steps}/{args.steps}' progress line")
        path = _common.write_results(
            args.output,
            {
                **_provenance.record(None if argv is None else [__file__, *argv]),
                "ok": not problems,
                "problems": problems,
                "install_s": installed - start,
                "train_s": trained - installed,
                "steps": args.steps,
                "wheel": os.path.basename(wheel),
            },
        )
        print(f"results: {path}")
        if problems:
            print(done.stderr[-5000:], file=sys.stderr)
            print("\n".join(problems), file=sys.stderr)
            return 1
        print("ok: the installed gecko-train found its packaged gin files and trained")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
