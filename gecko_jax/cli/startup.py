"""What every ``gecko-*`` command does first, before JAX or TensorFlow is imported.

TensorFlow only reads input here (tf.data, tokenizers); JAX owns the accelerators.
Left alone, TensorFlow still probes for CUDA devices when it starts, and on a machine
without one logs ``failed call to cuInit ... CUDA error`` at ERROR level; its oneDNN
kernels log ``oneDNN supports DT_INT64 only on platforms with AVX-512`` at ERROR level on
CPUs without it. Neither is a failure. :data:`QUIET_ENVIRON` keeps TensorFlow on the CPU
and on its default Eigen kernels (its work here is strings and integer ids, not maths),
so neither is printed; a value the user set wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from gecko_jax import host_memory

QUIET_ENVIRON = {
    "TF_ENABLED_DEVICE_TYPES": "CPU",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "TF_CPP_MIN_LOG_LEVEL": "1",  # TensorFlow's C++ INFO lines (no CUDA driver found, ...)
}


def quiet_environ(environ: MutableMapping[str, str]) -> None:
    """Sets :data:`QUIET_ENVIRON`'s variables in ``environ`` where they are unset."""
    for name, value in QUIET_ENVIRON.items():
        environ.setdefault(name, value)


# XLA:CPU's code generator prefers 256-bit vectors even where AVX-512 is available. At
# 512 bits the exact-erf GELU of BERT-family models runs about twice as fast, and a packed
# MiniLM forward pass about 8% faster (2-core Xeon with AVX-512, bench/README "Serving");
# the embeddings differ from the 256-bit ones by ~1e-7.
VECTOR_WIDTH_OPTION = "xla_cpu_prefer_vector_width"
WIDE_VECTORS_FLAG = f"--{VECTOR_WIDTH_OPTION}=512"
CPUINFO = "/proc/cpuinfo"


def has_avx512(cpuinfo: str = CPUINFO) -> bool:
    """Whether the CPU reports AVX-512 (``avx512f``; False where it cannot be read)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            return any(line.startswith("flags") and "avx512f" in line.split() for line in f)
    except OSError:
        return False


def wide_cpu_vectors(environ: MutableMapping[str, str], cpuinfo: str = CPUINFO) -> None:
    """Adds :data:`WIDE_VECTORS_FLAG` to ``XLA_FLAGS`` on an AVX-512 CPU, unless the user
    set a vector width there already."""
    flags = environ.get("XLA_FLAGS", "")
    if VECTOR_WIDTH_OPTION in flags or not has_avx512(cpuinfo):
        return
    environ["XLA_FLAGS"] = f"{flags} {WIDE_VECTORS_FLAG}".strip()


def prepare_process() -> None:
    """Start-up of a console script: quiet TensorFlow, XLA:CPU's vector width, then
    huge-page malloc.

    Call it first, and only when the command owns the process (``main(argv=None)``):
    it sets environment variables and may re-execute the process
    (:func:`gecko_jax.host_memory.reexec_with_hugepage_malloc`).
    """
    quiet_environ(os.environ)
    wide_cpu_vectors(os.environ)
    host_memory.reexec_with_hugepage_malloc()
