"""The package works installed from a wheel, from a directory outside the checkout.

``bench/fresh_install.py`` builds the wheel, installs it into a new virtual environment
(dependencies read from this one) and runs ``gecko-train --gin_file=local/minilm_stsb.gin``
for two steps from an empty directory, with no ``--gin_search_paths``; it fails if the
run fails, imports the checkout's ``gecko_jax`` or prints a line at ERROR level.
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_installs_and_trains_from_outside_the_checkout(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "fresh_install.py"), "--steps", "2"]
        + ["--workdir", str(tmp_path / "fresh")]
        # Its own results file: bench/results/fresh_install.json is the benchmark's record.
        + ["--output", str(tmp_path / "fresh_install")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-5000:]
    assert "gecko_jax imported from " + str(tmp_path / "fresh" / "venv") in done.stdout
    with open(tmp_path / "fresh_install.json", encoding="utf-8") as f:
        assert json.load(f)["ok"] is True
