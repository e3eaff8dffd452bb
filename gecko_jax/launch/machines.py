"""The Vertex AI training machines a ``gecko-train`` job can ask for.

Cloud TPU machines come as a machine type plus a slice topology; the number of hosts
(Vertex AI replicas) follows from the two. GPU machines of the accelerator-optimized
families have a fixed number of GPUs. The tables list the types Vertex AI documents for
custom training ("Configure compute resources for custom training"); which of them a
region offers, and the quota for them, differ per project and region.
"""

from __future__ import annotations

import dataclasses
import math

from gecko_jax.launch import LaunchError


@dataclasses.dataclass(frozen=True)
class TpuMachine:
    """A TPU VM type: ``chips_per_host`` chips on each host, the slices Vertex AI offers."""

    generation: str
    chips_per_host: int
    topologies: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class GpuMachine:
    """A GPU VM type: its GPUs (an ``aiplatform_v1.AcceleratorType`` name) and their count."""

    accelerator_type: str
    accelerator_count: int


# A slice of ct5lp-hightpu-4t or ct6e-standard-4t hosts spans several VMs (4 chips each).
_MULTI_HOST = ("2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16")

TPU_MACHINES: dict[str, TpuMachine] = {
    "ct5lp-hightpu-1t": TpuMachine("v5e", 1, ("1x1",)),
    "ct5lp-hightpu-4t": TpuMachine("v5e", 4, _MULTI_HOST),
    "ct5lp-hightpu-8t": TpuMachine("v5e", 8, ("2x4",)),
    "ct6e-standard-1t": TpuMachine("v6e", 1, ("1x1",)),
    "ct6e-standard-4t": TpuMachine("v6e", 4, _MULTI_HOST),
    "ct6e-standard-8t": TpuMachine("v6e", 8, ("2x4",)),
}


def _gpu_family(prefix: str, accelerator: str, counts: dict[str, int]) -> dict[str, GpuMachine]:
    return {f"{prefix}-{suffix}": GpuMachine(accelerator, n) for suffix, n in counts.items()}


GPU_MACHINES: dict[str, GpuMachine] = {
    **_gpu_family("a2-highgpu", "NVIDIA_TESLA_A100", {"1g": 1, "2g": 2, "4g": 4, "8g": 8}),
    **_gpu_family("a2-megagpu", "NVIDIA_TESLA_A100", {"16g": 16}),
    **_gpu_family("a2-ultragpu", "NVIDIA_A100_80GB", {"1g": 1, "2g": 2, "4g": 4, "8g": 8}),
    **_gpu_family("a3-highgpu", "NVIDIA_H100_80GB", {"1g": 1, "2g": 2, "4g": 4, "8g": 8}),
    **_gpu_family("a3-megagpu", "NVIDIA_H100_MEGA_80GB", {"8g": 8}),
    **_gpu_family("a3-ultragpu", "NVIDIA_H200_141GB", {"8g": 8}),
    **_gpu_family(
        "g2-standard",
        "NVIDIA_L4",
        {"4": 1, "8": 1, "12": 1, "16": 1, "24": 2, "32": 1, "48": 4, "96": 8},
    ),
}


@dataclasses.dataclass(frozen=True)
class WorkerMachine:
    """What every replica of a job runs on, and how many replicas there are."""

    machine_type: str
    replica_count: int
    accelerator_type: str | None = None
    accelerator_count: int = 0
    tpu_topology: str | None = None

    @property
    def is_tpu(self) -> bool:
        return self.tpu_topology is not None


def known_machine_types() -> list[str]:
    """Every machine type this module knows, TPUs first."""
    return [*TPU_MACHINES, *GPU_MACHINES]


def topology_chips(topology: str) -> int:
    """Chips in a slice topology such as ``4x4`` (16) or ``2x2x1`` (4)."""
    return math.prod(int(side) for side in topology.split("x"))


def resolve(
    machine_type: str,
    *,
    tpu_topology: str | None = None,
    accelerator_count: int | None = None,
    replica_count: int | None = None,
) -> WorkerMachine:
    """The worker machine for a request, checked against the tables above.

    Args:
      machine_type: a key of :data:`TPU_MACHINES` or :data:`GPU_MACHINES`.
      tpu_topology: TPU slice shape; None takes the machine's one-host slice.
      accelerator_count: GPUs per replica; None takes the machine's count.
      replica_count: replicas; None takes one for GPUs, the slice's hosts for TPUs.

    Raises:
      LaunchError: an unknown machine type or topology (the known ones are listed), a GPU
        count the machine does not have, or a replica count that disagrees with the slice.
    """
    if machine_type in TPU_MACHINES:
        return _resolve_tpu(machine_type, tpu_topology, accelerator_count, replica_count)
    if machine_type in GPU_MACHINES:
        return _resolve_gpu(machine_type, tpu_topology, accelerator_count, replica_count)
    raise LaunchError(
        f"--machine_type={machine_type!r} is not a known Vertex AI training machine; known: "
        + ", ".join(known_machine_types())
    )


def _resolve_tpu(
    machine_type: str,
    topology: str | None,
    accelerator_count: int | None,
    replica_count: int | None,
) -> WorkerMachine:
    machine = TPU_MACHINES[machine_type]
    topology = topology or machine.topologies[0]
    if topology not in machine.topologies:
        raise LaunchError(
            f"--tpu_topology={topology!r} is not offered for {machine_type} ({machine.generation});"
            f" known: {', '.join(machine.topologies)}"
        )
    if accelerator_count is not None:
        raise LaunchError(
            f"--accelerator_count is for GPU machines; {machine_type}'s chips follow from"
            " --tpu_topology"
        )
    hosts = topology_chips(topology) // machine.chips_per_host
    if replica_count is not None and replica_count != hosts:
        raise LaunchError(
            f"--replica_count={replica_count} disagrees with --tpu_topology={topology}: a"
            f" {topology} slice of {machine_type} runs on {hosts} host(s); leave the flag out"
        )
    return WorkerMachine(machine_type, hosts, tpu_topology=topology)


def _resolve_gpu(
    machine_type: str,
    topology: str | None,
    accelerator_count: int | None,
    replica_count: int | None,
) -> WorkerMachine:
    machine = GPU_MACHINES[machine_type]
    if topology is not None:
        raise LaunchError(f"--tpu_topology is for TPU machines; {machine_type} is a GPU machine")
    if accelerator_count is not None and accelerator_count != machine.accelerator_count:
        raise LaunchError(
            f"--accelerator_count={accelerator_count} is not valid for {machine_type}: it has"
            f" {machine.accelerator_count} x {machine.accelerator_type}"
        )
    replicas = 1 if replica_count is None else replica_count
    if replicas < 1:
        raise LaunchError(f"--replica_count={replicas}: a job needs at least one replica")
    return WorkerMachine(
        machine_type,
        replicas,
        accelerator_type=machine.accelerator_type,
        accelerator_count=machine.accelerator_count,
    )
