"""Every ``gecko-*`` command: one convention, a working ``--help``, a quiet start."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable

import pytest

from gecko_jax.cli import (
    demo,
    embed,
    export,
    flags,
    fret,
    fret_mine,
    launch,
    serve,
    startup,
    train,
)
from gecko_jax.cli import eval as eval_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMANDS = (
    "gecko-embed",
    "gecko-demo",
    "gecko-train",
    "gecko-fret",
    "gecko-eval",
    "gecko-export",
    "gecko-serve",
    "gecko-launch",
)
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "gecko-embed": embed.build_parser,
    "gecko-demo": demo.build_parser,
    "gecko-train": train.build_parser,
    "gecko-fret": fret.build_parser,
    "gecko-eval": eval_cli.build_parser,
    "gecko-export": export.build_parser,
    "gecko-serve": serve.build_parser,
    "gecko-launch": launch.build_parser,
}
# Subcommands dispatched on their first word, with parsers of their own.
SUBCOMMAND_PARSERS: dict[str, tuple[Callable[[], argparse.ArgumentParser], ...]] = {
    "gecko-fret": (fret_mine.build_parser,),
}
# absl/glog lines (E1129 12:00:00.000 ...), Python logging's "ERROR:..." and the like.
ERROR_LINE = re.compile(r"^E\d{4} |\bERROR\b")


def _script(name: str) -> str:
    """The installed console script (beside this interpreter)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def _user_environ() -> dict[str, str]:
    """The test process's environment without the settings that hide log lines."""
    hidden = startup.QUIET_ENVIRON.keys() | {"TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH"}
    environ = {k: v for k, v in os.environ.items() if k not in hidden}
    return {**environ, "HF_HUB_OFFLINE": "1"}


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if ERROR_LINE.search(line)]


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_subparsers(sub))
    return found


def test_every_console_script_is_a_cli_module() -> None:
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        declared = set(re.findall(r'"(gecko-[a-z]+)=([a-z_.]+:[a-z_]+)"', f.read()))
    assert declared == {
        (name, f"gecko_jax.cli.{name.removeprefix('gecko-')}:main") for name in COMMANDS
    }


@pytest.mark.parametrize("name", COMMANDS)
def test_parsers_share_the_convention(name: str) -> None:
    parsers = _subparsers(PARSERS[name]())
    parsers += [build() for build in SUBCOMMAND_PARSERS.get(name, ())]
    for parser in parsers:
        assert parser.prog.startswith(name)
        assert parser.formatter_class is flags.HelpFormatter
        assert parser.description
        for action in parser._actions:
            assert action.help, f"{parser.prog} {action.dest}: no help"
            for option in action.option_strings:
                assert re.fullmatch(r"-h|--[a-z0-9]+(_[a-z0-9]+)*", option), option
        text = parser.format_help()
        for action in parser._actions:  # each shown default is the flag's own value
            if action.option_strings and flags._shows_default(action.default):
                if not action.required:
                    assert f"(default: {flags.format_default(action.default)})" in " ".join(
                        text.split()
                    ), action.dest


@pytest.mark.parametrize("name", COMMANDS)
def test_help_of_the_installed_command(name: str) -> None:
    done = subprocess.run(
        [_script(name), "--help"], capture_output=True, text=True, env=_user_environ()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {name} [-h]")
    assert "-h, --help" in done.stdout and "show this help message and exit" in done.stdout
    assert not _error_lines(done.stderr), done.stderr


def test_help_formatter_shows_real_defaults_only() -> None:
    parser = flags.command_parser("gecko-x", "A command.")
    parser.add_argument("--size", type=int, default=0, help="a size")
    parser.add_argument("--names", default=("a", "b"), help="names")
    parser.add_argument("--unset", default=None, help="unset")
    parser.add_argument("--switch", action="store_true", help="a switch")
    parser.add_argument("--needed", required=True, default="x", help="needed")
    parser.add_argument("--rate", default="5%", help="a rate")
    text = " ".join(parser.format_help().split())
    assert "a size (default: 0)" in text and "names (default: a,b)" in text
    assert "a rate (default: 5%)" in text
    assert "unset (default" not in text and "a switch (default" not in text
    assert "needed (default" not in text


@pytest.mark.parametrize(
    ("flags", "cpu_flags", "expected"),
    [
        (None, "fpu sse avx2 avx512f avx512bw", startup.WIDE_VECTORS_FLAG),
        (
            "--xla_dump_to=/tmp/x",
            "avx2 avx512f",
            f"--xla_dump_to=/tmp/x {startup.WIDE_VECTORS_FLAG}",
        ),
        ("--xla_cpu_prefer_vector_width=256", "avx512f", "--xla_cpu_prefer_vector_width=256"),
        (None, "fpu sse avx2 fma", None),
    ],
    ids=["avx512", "kept-flags", "user-width", "no-avx512"],
)
def test_wide_cpu_vectors_only_on_avx512(
    tmp_path, flags: str | None, cpu_flags: str, expected: str | None
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {cpu_flags}\n\nprocessor\t: 1\n")
    environ = {} if flags is None else {"XLA_FLAGS": flags}
    startup.wide_cpu_vectors(environ, str(cpuinfo))
    assert environ.get("XLA_FLAGS") == expected
    startup.wide_cpu_vectors(environ, str(cpuinfo))  # a re-executed process adds nothing
    assert environ.get("XLA_FLAGS") == expected
    assert not startup.has_avx512(str(tmp_path / "missing"))


def test_quiet_environ_keeps_what_the_user_set() -> None:
    environ = {"TF_ENABLE_ONEDNN_OPTS": "1"}
    startup.quiet_environ(environ)
    assert environ == {
        "TF_ENABLE_ONEDNN_OPTS": "1",
        "TF_ENABLED_DEVICE_TYPES": "CPU",
        "TF_CPP_MIN_LOG_LEVEL": "1",
    }


def test_train_names_a_bad_gin_file_and_binding(capsys) -> None:  # type: ignore[no-untyped-def]
    assert train.main(["--gin_file=runs/nonexistent.gin"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gecko-train: error: gin file 'runs/nonexistent.gin' not found")


def _readme_smoke_test() -> str:
    """The bash block README marks as the smoke test."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    after = readme.split("<!-- smoke-test:", 1)[1]
    return after.split("```bash\n", 1)[1].split("```", 1)[0]


def test_readme_smoke_test_trains_as_written_from_outside_the_checkout(tmp_path) -> None:
    """README's 3-step run of the shipped gin files (warm-up 10, clamped), with the packaged
    model, where a user runs it: it trains, saves, and prints no error line. Only /tmp/
    is moved into this test's directory."""
    script = _readme_smoke_test().replace("/tmp/", f"{tmp_path}/")
    assert "--gin.TRAIN_STEPS=3" in script and "local/minilm_stsb.gin" in script
    bin_dir = os.path.dirname(sys.executable)
    environ = {
        **_user_environ(),
        "JAX_PLATFORMS": "cpu",
        "GECKO_EVAL_DATA": os.path.join(REPO, "tests", "fixtures", "eval_data"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environ,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step 3/3" in done.stderr and "warming up over" in done.stderr
    assert os.path.isdir(tmp_path / "minilm_smoke" / "checkpoints" / "3")
    assert not _error_lines(done.stdout + done.stderr), done.stderr[-3000:]


def test_demo_quick_help_names_its_work_directory() -> None:
    """gecko-demo's run itself (--quick, end to end, no ERROR line) is tests/cli/test_demo.py's."""
    done = subprocess.run(
        [_script("gecko-demo"), "--help"], capture_output=True, text=True, env=_user_environ()
    )
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout and "--workdir" in done.stdout
    assert not _error_lines(done.stderr), done.stderr
