"""Huge-page malloc for the command-line entry points: when, how, and that it works."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from gecko_jax import host_memory as H

GLIBC = (2, 36)


@pytest.mark.parametrize(
    "environ, platform_name, glibc, thp, expected",
    [
        ({}, "linux", GLIBC, "madvise", True),
        ({}, "linux", GLIBC, "always", True),
        ({}, "linux", GLIBC, "never", False),
        ({}, "linux", GLIBC, None, False),
        ({}, "linux", (2, 34), "madvise", False),
        ({}, "linux", None, "madvise", False),  # musl or unknown C library
        ({}, "darwin", GLIBC, "madvise", False),
        (
            {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"},
            "linux",
            GLIBC,
            "madvise",
            False,
        ),  # the user's choice
        ({"GLIBC_TUNABLES": "glibc.malloc.check=0"}, "linux", GLIBC, "madvise", True),
        ({H.OPT_OUT_ENV: "0"}, "linux", GLIBC, "madvise", False),
        ({H.OPT_OUT_ENV: "off"}, "linux", GLIBC, "madvise", False),
        ({H.OPT_OUT_ENV: "1"}, "linux", GLIBC, "madvise", True),
    ],
)
def test_should_reexec(environ, platform_name, glibc, thp, expected):
    assert H.should_reexec(environ, platform_name, glibc, thp) is expected


def test_tunables_keep_the_users_own():
    assert H.tunables_with_hugepages(None) == "glibc.malloc.hugetlb=1"
    assert (
        H.tunables_with_hugepages("glibc.malloc.check=0")
        == "glibc.malloc.check=0:glibc.malloc.hugetlb=1"
    )


def test_thp_mode_reads_the_bracketed_choice(tmp_path):
    setting = tmp_path / "enabled"
    setting.write_text("always [madvise] never\n")
    assert H._thp_mode(str(setting)) == "madvise"
    assert H._thp_mode(str(tmp_path / "missing")) is None


def _machine_supports_it() -> bool:
    environ = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", H.OPT_OUT_ENV)}
    return H.should_reexec(environ, sys.platform, H._glibc_version(), H._thp_mode())


def _child_env(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", H.OPT_OUT_ENV)}
    return {**environ, **extra}


REEXEC_PROBE = textwrap.dedent("""
    import os, sys
    print("start", os.getpid(), flush=True)
    from gecko_jax import host_memory
    host_memory.reexec_with_hugepage_malloc()
    print("run", os.getpid(), os.environ.get("GLIBC_TUNABLES"), sys.argv[1:], flush=True)
""")


def test_reexec_keeps_pid_arguments_and_other_tunables():
    done = subprocess.run(
        [sys.executable, "-c", REEXEC_PROBE, "--flag", "two words"],
        capture_output=True,
        text=True,
        check=True,
        env=_child_env(GLIBC_TUNABLES="glibc.malloc.check=0"),
    )
    lines = done.stdout.splitlines()
    starts = [line.split()[1] for line in lines if line.startswith("start")]
    run = [line for line in lines if line.startswith("run")]
    assert len(run) == 1
    pid = run[0].split()[1]
    assert run[0].endswith("['--flag', 'two words']")
    if _machine_supports_it():
        assert starts == [pid, pid]  # executed twice, one process
        assert "glibc.malloc.check=0:glibc.malloc.hugetlb=1" in run[0]
    else:
        assert starts == [pid] and "glibc.malloc.check=0 " in run[0]


def test_opt_out_runs_once():
    done = subprocess.run(
        [sys.executable, "-c", REEXEC_PROBE],
        capture_output=True,
        text=True,
        check=True,
        env=_child_env(**{H.OPT_OUT_ENV: "0"}),
    )
    assert done.stdout.count("start") == 1 and " None []" in done.stdout


# Plain malloc through ctypes, as XLA allocates (numpy asks for huge pages by itself).
FAULT_PROBE = textwrap.dedent("""
    import ctypes, resource
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):  # 64 MiB buffers, freed and allocated again, as XLA's temporaries are
        buffer = libc.malloc(64 << 20)
        ctypes.memset(buffer, 1, 64 << 20)
        libc.free(buffer)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(**extra: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", FAULT_PROBE],
        capture_output=True,
        text=True,
        check=True,
        env=_child_env(**extra),
    )
    return int(done.stdout.split()[-1])


def test_the_commands_set_the_tunable_exactly_where_it_cuts_page_faults():
    """Runs on every machine: where the commands would re-execute, the tunable must cut
    the faults of large buffers; where they would not, it must not help either."""
    plain = _faults()
    huge = _faults(GLIBC_TUNABLES=H.TUNABLE)
    assert plain >= 8 * (64 << 20) // 4096 * 0.9  # every 4 KiB page of every buffer, each time
    if _machine_supports_it():
        assert huge * 5 < plain  # 2 MiB pages (30x fewer faults here; margin for fragmentation)
    else:  # THP off in the kernel, or a glibc that ignores the tunable
        assert huge * 5 >= plain
