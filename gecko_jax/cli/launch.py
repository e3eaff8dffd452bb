"""``gecko-launch``: run ``gecko-train`` on managed machines (Vertex AI custom jobs).

    gecko-launch vertex --project=my-project --region=us-central1 \\
        --machine_type=ct5lp-hightpu-4t --tpu_topology=4x4 --scheduling=spot \\
        --model_dir=gs://my-bucket/runs/ft1 \\
        --gin_file=runs/finetune.gin --gin_file=models/gecko_1b.gin \\
        --gin.TRAIN_STEPS=20000 --gin.MIXTURE_OR_TASK_NAME="'fret_ft'" --dry_run

The gin arguments reach the job's ``gecko-train`` unchanged; ``--dry_run`` prints the
job as JSON and creates nothing. The container image is built from this package with
``docker/train.Dockerfile`` (its header says how to build and push it).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gecko_jax import exit_codes
from gecko_jax.cli import errors, flags
from gecko_jax.launch import trainer_args

if TYPE_CHECKING:  # google-cloud-aiplatform is an extra; main() says so when it is missing
    from google.cloud import aiplatform_v1

    from gecko_jax.launch import vertex

PROG = "gecko-launch"


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _add_vertex_flags(parser: argparse.ArgumentParser) -> None:
    from gecko_jax.launch import vertex

    where = parser.add_argument_group("where")
    where.add_argument("--project", help="Google Cloud project (or $GOOGLE_CLOUD_PROJECT)")
    where.add_argument("--region", help="Vertex AI region, e.g. us-central1 ($GOOGLE_CLOUD_REGION)")
    where.add_argument(
        "--model_dir",
        help="gs:// output directory: the job's base output directory and gin MODEL_DIR "
        "(or give --gin.MODEL_DIR; the two must agree)",
    )
    machine = parser.add_argument_group("machine")
    machine.add_argument(
        "--machine_type",
        required=True,
        help="TPU (ct5lp-hightpu-4t, ct6e-standard-4t, ...) or GPU (a3-highgpu-8g, ...) type",
    )
    machine.add_argument(
        "--tpu_topology", help="TPU slice, e.g. 2x2, 2x4, 4x4 (default: one host's slice)"
    )
    machine.add_argument(
        "--accelerator_count", type=int, help="GPUs per replica (default: the machine's)"
    )
    machine.add_argument(
        "--replica_count",
        type=int,
        help="replicas (default: one per TPU host from the topology; one GPU machine)",
    )
    machine.add_argument(
        "--image",
        default=vertex.DEFAULT_IMAGE,
        help="container image with gecko-train; {project}, {region} and {kind} (tpu or "
        "gpu) are filled in",
    )
    job = parser.add_argument_group("job")
    job.add_argument("--display_name", help="job name (default: gecko-train-<model_dir name>)")
    job.add_argument(
        "--scheduling",
        choices=tuple(vertex.SCHEDULING_STRATEGIES),
        default="standard",
        help="on-demand VMs, Spot VMs, or flex-start (waits for capacity)",
    )
    job.add_argument("--max_wait", help="flex-start: longest wait for capacity, e.g. 2h, 1d")
    job.add_argument("--timeout", help="longest run time, e.g. 24h (default: Vertex AI's 7d)")
    job.add_argument(
        "--restart_job_on_worker_restart",
        type=_boolean,
        default=True,
        metavar="BOOL",
        help="restart every worker when one restarts (multi-host JAX needs it)",
    )
    job.add_argument("--service_account", help="e-mail of the service account the job runs as")
    job.add_argument("--network", help="VPC network, projects/NUMBER/global/networks/NAME")
    job.add_argument(
        "--tensorboard", help="Vertex AI TensorBoard, projects/P/locations/R/tensorboards/ID"
    )
    job.add_argument(
        "--labels", action="append", default=[], metavar="KEY=VALUE,...", help="job labels"
    )
    job.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="container variable"
    )
    job.add_argument("--dry_run", action="store_true", help="print the job as JSON; create none")
    gin = parser.add_argument_group("gecko-train's arguments (passed on unchanged)")
    gin.add_argument(
        "--gin_file",
        action="append",
        default=[],
        metavar="FILE",
        help="gin file packaged with gecko_jax (e.g. runs/finetune.gin) or on gs://",
    )
    gin.add_argument(
        "--gin_bindings",
        action="append",
        default=[],
        metavar="BINDING",
        help="gin binding; --gin.NAME=VALUE is short for --gin_bindings='NAME = VALUE'",
    )
    gin.add_argument(
        "--force_new_settings",
        action="store_true",
        help="let the run continue MODEL_DIR's checkpoints under changed settings",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command's subcommands and flags."""
    parser = flags.command_parser(PROG, __doc__.split("\n\n")[0].replace("``", ""))
    targets = parser.add_subparsers(dest="target", required=True, help="where to run")
    description = (
        "Create a Vertex AI custom job that runs gecko-train with the given gin arguments "
        "(or print it with --dry_run)."
    )
    _add_vertex_flags(
        targets.add_parser(
            "vertex",
            help=description,
            description=description,
            formatter_class=flags.HelpFormatter,
        )
    )
    return parser


def _request(args: argparse.Namespace, trainer: list[str]) -> vertex.JobRequest:
    from gecko_jax.launch import vertex

    return vertex.JobRequest(
        project=args.project or os.environ.get("GOOGLE_CLOUD_PROJECT"),
        region=args.region or os.environ.get("GOOGLE_CLOUD_REGION"),
        machine_type=args.machine_type,
        trainer_args=trainer,
        model_dir=args.model_dir,
        tpu_topology=args.tpu_topology,
        accelerator_count=args.accelerator_count,
        replica_count=args.replica_count,
        image=args.image,
        display_name=args.display_name,
        scheduling=args.scheduling,
        max_wait=args.max_wait,
        timeout=args.timeout,
        restart_job_on_worker_restart=args.restart_job_on_worker_restart,
        service_account=args.service_account,
        network=args.network,
        tensorboard=args.tensorboard,
        labels=vertex.parse_key_values(args.labels, "--labels", split_commas=True),
        env=vertex.parse_key_values(args.env, "--env"),
    )


def _submit(job: aiplatform_v1.CustomJob, parent: str, region: str) -> str:
    """Creates the job; returns its resource name. Needs credentials and the network."""
    from google.cloud import aiplatform_v1

    client = aiplatform_v1.JobServiceClient(
        client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"}
    )
    return client.create_custom_job(parent=parent, custom_job=job).name


def _vertex(args: argparse.Namespace, trainer: list[str]) -> int:
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    from gecko_jax.launch import vertex

    request = _request(args, trainer)
    job = vertex.build_custom_job(request)  # every check; LaunchError is a user error
    if args.dry_run:
        print(vertex.job_json(job))
        return exit_codes.FINISHED
    try:
        name = _submit(job, vertex.job_parent(request), request.region or "")
    except (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError) as e:
        print(f"{PROG} vertex: Vertex AI did not create the job: {e}", file=sys.stderr)
        return exit_codes.FAILED
    print(name)
    job_id = name.rsplit("/", 1)[-1]
    print(
        f"https://console.cloud.google.com/vertex-ai/locations/{request.region}/training/"
        f"{job_id}/cpu?project={request.project}",
        file=sys.stderr,
    )
    return exit_codes.FINISHED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gecko-launch``; returns the exit status (``argv`` None: ``sys.argv``).

    gecko-train's flags are taken out of the line first and handed to the job as given.
    """
    try:
        from gecko_jax.launch import vertex  # noqa: F401
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("google"):
            raise
        print(
            f"{PROG}: error: needs google-cloud-aiplatform: pip install 'gecko_jax[vertex]'",
            file=sys.stderr,
        )
        return exit_codes.USAGE
    launcher, trainer = trainer_args.split_trainer_args(sys.argv[1:] if argv is None else argv)
    return errors.run_command(build_parser(), functools.partial(_vertex, trainer=trainer), launcher)


if __name__ == "__main__":
    sys.exit(main())
