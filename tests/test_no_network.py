"""No module does network I/O at import, and loading + encoding stays offline."""

import os
import subprocess
import sys

# Runs in a fresh interpreter: sockets are refused before anything is imported.
SCRIPT = r"""
import socket, pkgutil, importlib
def refuse(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args!r}")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import gecko_jax
for module in pkgutil.walk_packages(gecko_jax.__path__, "gecko_jax."):
    importlib.import_module(module.name)
vectors = gecko_jax.Encoder.load("all-MiniLM-L6-v2").encode(["offline"])
print("ok", vectors.shape)
"""


def test_imports_and_encoding_make_no_network_calls() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ok (1, 384)" in done.stdout
