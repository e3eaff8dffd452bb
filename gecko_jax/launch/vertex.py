"""Vertex AI custom jobs that run ``gecko-train``: the job specification, built offline.

:func:`build_custom_job` turns a :class:`JobRequest` into an ``aiplatform_v1.CustomJob``
and checks it first; nothing here reaches the network or reads credentials. The job:

- one worker pool of the requested machine: a TPU slice gets one replica per host (the
  whole slice runs one JAX program); a GPU job with several replicas gets Vertex AI's
  primary pool of one replica and a second pool with the rest;
- each replica runs the container image's ``gecko-train`` with the gin arguments given;
- ``base_output_directory`` is the run's ``MODEL_DIR``. Vertex AI then sets
  ``AIP_MODEL_DIR`` (``MODEL_DIR/model/``), ``AIP_CHECKPOINT_DIR``
  (``MODEL_DIR/checkpoints/``, where gecko-train's orbax checkpoints go) and
  ``AIP_TENSORBOARD_LOG_DIR`` (``MODEL_DIR/logs/``, the folder a ``tensorboard``
  resource streams from) in the container. The trainer is told ``MODEL_DIR`` by a gin
  binding (see :mod:`gecko_jax.launch.trainer_args`), not by these variables;
- scheduling: standard (on demand), spot or flex-start (Dynamic Workload Scheduler,
  waiting up to ``max_wait`` for capacity), a timeout, and
  ``restart_job_on_worker_restart``.

Preemption: ``gecko-train`` saves a checkpoint when it receives SIGTERM and exits 75.
When Vertex AI replaces a preempted or restarted VM it starts the container again with
the same arguments, and gecko-train resumes from the newest complete checkpoint in
``MODEL_DIR``. With ``restart_job_on_worker_restart`` every worker restarts together,
which a multi-host JAX program needs (a lone restarted host would wait for its peers
forever). A job that ends with exit 75 anyway (e.g. at its timeout) is resumed by
submitting it again with the same ``MODEL_DIR``; exits 1 and 2 are faults no restart
mends.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from collections.abc import Mapping, Sequence

from google.cloud.aiplatform_v1 import types as aip

from gecko_jax.launch import LaunchError, machines, trainer_args

# Artifact Registry path the image is pushed to (docker/train.Dockerfile); {kind} is
# "tpu" or "gpu", the two builds of that Dockerfile.
DEFAULT_IMAGE = "{region}-docker.pkg.dev/{project}/gecko/train:{kind}"
TRAIN_COMMAND = ("gecko-train",)

SCHEDULING_STRATEGIES: dict[str, aip.Scheduling.Strategy] = {
    "standard": aip.Scheduling.Strategy.STANDARD,
    "spot": aip.Scheduling.Strategy.SPOT,
    "flex-start": aip.Scheduling.Strategy.FLEX_START,
}

_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")
_TENSORBOARD = re.compile(r"projects/[^/]+/locations/([^/]+)/tensorboards/[^/]+")
_NETWORK = re.compile(r"projects/[^/]+/global/networks/[^/]+")
# Google Cloud label rules: lowercase letters, digits, '_' and '-'; keys start with a letter.
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """What a user asks for; :func:`build_custom_job` checks and completes it.

    Attributes:
      project: Google Cloud project id.
      region: Vertex AI region (``us-central1``), not a zone.
      machine_type: a type in :mod:`gecko_jax.launch.machines`.
      trainer_args: gecko-train's ``--gin_file`` / ``--gin.NAME=VALUE`` arguments.
      model_dir: ``gs://`` output directory (None: the ``MODEL_DIR`` binding's).
      tpu_topology: TPU slice shape (None: the machine's one-host slice).
      accelerator_count: GPUs per replica (None: all of the machine's).
      replica_count: replicas (None: one per TPU host, or one GPU machine).
      image: container image; ``{project}``, ``{region}`` and ``{kind}`` are filled in.
      display_name: job name in the console (None: ``gecko-train-`` + the run's folder).
      scheduling: ``standard``, ``spot`` or ``flex-start``.
      max_wait: flex-start only: how long to wait for capacity (``2h``, ``30m``, ``1d``).
      timeout: longest run time, same form (None: Vertex AI's default of 7 days).
      restart_job_on_worker_restart: restart every worker when one restarts.
      service_account: e-mail of the account the job runs as.
      network: VPC peering network, ``projects/NUMBER/global/networks/NAME``.
      tensorboard: ``projects/P/locations/REGION/tensorboards/ID`` to stream logs to.
      labels: job labels.
      env: environment variables for the container.
    """

    project: str | None
    region: str | None
    machine_type: str
    trainer_args: Sequence[str]
    model_dir: str | None = None
    tpu_topology: str | None = None
    accelerator_count: int | None = None
    replica_count: int | None = None
    image: str = DEFAULT_IMAGE
    display_name: str | None = None
    scheduling: str = "standard"
    max_wait: str | None = None
    timeout: str | None = None
    restart_job_on_worker_restart: bool = True
    service_account: str | None = None
    network: str | None = None
    tensorboard: str | None = None
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)


def parse_duration(text: str, flag: str) -> datetime.timedelta:
    """``1d``, ``2h30m``, ``90m``, ``3600s`` or ``3600`` (seconds) as a timedelta."""
    text = text.strip()
    match = _DURATION.fullmatch(f"{text}s" if text.isdigit() else text)
    if not text or match is None:
        raise LaunchError(f"{flag}={text!r} is not a duration such as 2h30m, 90m, 1d or 3600s")
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    duration = datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if duration <= datetime.timedelta(0):
        raise LaunchError(f"{flag}={text!r} must be longer than zero")
    return duration


def parse_key_values(items: Sequence[str], flag: str, split_commas: bool = False) -> dict[str, str]:
    """``["a=1", "b=2"]`` (with ``split_commas``, also ``["a=1,b=2"]``) as a dict."""
    pairs: dict[str, str] = {}
    for item in items:
        for part in filter(None, item.split(",") if split_commas else [item]):
            key, equals, value = part.partition("=")
            if not equals or not key:
                raise LaunchError(f"{flag}={part!r} is not KEY=VALUE")
            pairs[key] = value
    return pairs


def job_parent(request: JobRequest) -> str:
    """The resource the job is created under: ``projects/P/locations/R``."""
    return f"projects/{request.project}/locations/{request.region}"


def build_custom_job(request: JobRequest) -> aip.CustomJob:
    """The ``CustomJob`` for a request, after every check that needs no network.

    Raises:
      LaunchError: the first problem found (missing project or region, unknown machine
        or topology, bad GPU count, output directory not on ``gs://``, a gin file the
        container will not find, a malformed duration, label, network or TensorBoard).
    """
    _check_location(request.project, request.region)
    machine = machines.resolve(
        request.machine_type,
        tpu_topology=request.tpu_topology,
        accelerator_count=request.accelerator_count,
        replica_count=request.replica_count,
    )
    trainer_args.check_trainer_args(request.trainer_args)
    trainer_args.check_gin_files(trainer_args.gin_files(request.trainer_args))
    output_dir, args = trainer_args.with_output_dir(request.trainer_args, request.model_dir)
    container = aip.ContainerSpec(
        image_uri=_image(request, machine),
        command=list(TRAIN_COMMAND),
        args=args,
        env=[aip.EnvVar(name=name, value=value) for name, value in request.env.items()],
    )
    spec = aip.CustomJobSpec(
        worker_pool_specs=_worker_pools(machine, container),
        base_output_directory=aip.GcsDestination(output_uri_prefix=output_dir),
        scheduling=_scheduling(request),
    )
    if request.service_account:
        if "@" not in request.service_account:
            raise LaunchError(f"--service_account={request.service_account!r} is no e-mail")
        spec.service_account = request.service_account
    if request.network:
        if not _NETWORK.fullmatch(request.network):
            raise LaunchError(
                f"--network={request.network!r} is not projects/NUMBER/global/networks/NAME"
            )
        spec.network = request.network
    if request.tensorboard:
        spec.tensorboard = _checked_tensorboard(request)
    return aip.CustomJob(
        display_name=request.display_name or _default_display_name(output_dir),
        job_spec=spec,
        labels=_checked_labels(request.labels),
    )


def job_json(job: aip.CustomJob) -> str:
    """The job as the REST API's JSON (camelCase fields, enum names, defaults left out)."""
    return aip.CustomJob.to_json(
        job, use_integers_for_enums=False, always_print_fields_with_no_presence=False
    )


def _check_location(project: str | None, region: str | None) -> None:
    if not project:
        raise LaunchError("missing --project (or set GOOGLE_CLOUD_PROJECT)")
    if any(c.isspace() or c == "/" for c in project):
        raise LaunchError(f"--project={project!r} is not a project id")
    if not region:
        raise LaunchError("missing --region, e.g. us-central1 (or set GOOGLE_CLOUD_REGION)")
    if _ZONE.fullmatch(region):
        raise LaunchError(f"--region={region!r} is a zone; give its region, e.g. {region[:-2]}")
    if not _REGION.fullmatch(region):
        raise LaunchError(f"--region={region!r} is not a region such as us-central1")


def _image(request: JobRequest, machine: machines.WorkerMachine) -> str:
    kind = "tpu" if machine.is_tpu else "gpu"
    try:
        return request.image.format(project=request.project, region=request.region, kind=kind)
    except (KeyError, IndexError, ValueError) as e:
        raise LaunchError(
            f"--image={request.image!r}: only {{project}}, {{region}} and {{kind}} are filled in"
        ) from e


def _worker_pools(
    machine: machines.WorkerMachine, container: aip.ContainerSpec
) -> list[aip.WorkerPoolSpec]:
    machine_spec = aip.MachineSpec(machine_type=machine.machine_type)
    if machine.is_tpu:
        machine_spec.tpu_topology = machine.tpu_topology
    else:
        machine_spec.accelerator_type = machine.accelerator_type
        machine_spec.accelerator_count = machine.accelerator_count

    def pool(replicas: int) -> aip.WorkerPoolSpec:
        return aip.WorkerPoolSpec(
            machine_spec=machine_spec, replica_count=replicas, container_spec=container
        )

    # Vertex AI runs a multi-host TPU slice as one pool; other multi-replica jobs have
    # a primary pool of one replica, then the workers.
    if machine.is_tpu or machine.replica_count == 1:
        return [pool(machine.replica_count)]
    return [pool(1), pool(machine.replica_count - 1)]


def _scheduling(request: JobRequest) -> aip.Scheduling:
    if request.scheduling not in SCHEDULING_STRATEGIES:
        raise LaunchError(
            f"--scheduling={request.scheduling!r}; known: {', '.join(SCHEDULING_STRATEGIES)}"
        )
    scheduling = aip.Scheduling(
        strategy=SCHEDULING_STRATEGIES[request.scheduling],
        restart_job_on_worker_restart=request.restart_job_on_worker_restart,
    )
    if request.timeout:
        scheduling.timeout = parse_duration(request.timeout, "--timeout")
    if request.max_wait:
        if request.scheduling != "flex-start":
            raise LaunchError("--max_wait is for --scheduling=flex-start only")
        scheduling.max_wait_duration = parse_duration(request.max_wait, "--max_wait")
    return scheduling


def _checked_tensorboard(request: JobRequest) -> str:
    match = _TENSORBOARD.fullmatch(request.tensorboard or "")
    if match is None:
        raise LaunchError(
            f"--tensorboard={request.tensorboard!r} is not "
            "projects/PROJECT/locations/REGION/tensorboards/ID"
        )
    if match.group(1) != request.region:
        raise LaunchError(
            f"--tensorboard is in {match.group(1)}, the job in {request.region}: "
            "Vertex AI needs both in one region"
        )
    if not request.service_account:
        raise LaunchError(
            "--tensorboard needs --service_account: Vertex AI uploads the logs as that account"
        )
    return match.group(0)


def _checked_labels(labels: Mapping[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            raise LaunchError(
                f"--labels: {key}={value} breaks the label rules (lowercase letters, digits, "
                "'_' and '-'; keys start with a letter; at most 63 characters)"
            )
    return dict(labels)


def _default_display_name(output_dir: str) -> str:
    return f"gecko-train-{os.path.basename(output_dir.rstrip('/'))}"[:128]
