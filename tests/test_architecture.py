"""The import contracts in pyproject.toml hold, and each one fails when it is broken."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> list[dict]:
    with open(PYPROJECT, "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]["contracts"]


def _lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """Runs lint-imports with the project's contracts over the package under package_parent."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(PYPROJECT)],
        cwd=package_parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _module_file(package_parent: Path, module: str) -> Path:
    path = package_parent.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_contracts_are_kept() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout
    for contract in _contracts():
        assert f"{contract['name']} KEPT" in " ".join(done.stdout.split())


@pytest.mark.parametrize("contract", _contracts(), ids=lambda c: c["name"])
def test_a_forbidden_import_breaks_its_contract(contract: dict, tmp_path: Path) -> None:
    assert contract["type"] == "forbidden"
    shutil.copytree(ROOT / "gecko_jax", tmp_path / "gecko_jax")
    source = _module_file(tmp_path, contract["source_modules"][0])
    forbidden = contract["forbidden_modules"][0]
    source.write_text(source.read_text() + f"\nimport {forbidden}  # injected\n")

    done = _lint_imports(tmp_path)

    assert done.returncode != 0
    report = " ".join(done.stdout.split())
    assert f"{contract['name']} BROKEN" in report
    assert f"{contract['source_modules'][0]} is not allowed to import {forbidden}" in report
