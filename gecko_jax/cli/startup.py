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


def prepare_process() -> None:
    """Start-up of a console script: quiet TensorFlow, then huge-page malloc.

    Call it first, and only when the command owns the process (``main(argv=None)``):
    it sets environment variables and may re-execute the process
    (:func:`gecko_jax.host_memory.reexec_with_hugepage_malloc`).
    """
    quiet_environ(os.environ)
    host_memory.reexec_with_hugepage_malloc()
