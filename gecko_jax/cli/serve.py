"""``gecko-serve``: an HTTP embedding service in the Vertex AI and OpenAI formats."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from gecko_jax.cli import errors, flags, startup

DEFAULT_PORT = 8080


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The command's flags; the Vertex AI variables (``AIP_*``) in ``environ`` set defaults."""
    env = os.environ if environ is None else environ
    parser = flags.command_parser(
        "gecko-serve",
        "Serve a gecko_jax model over HTTP: Vertex AI text-embeddings "
        "(POST /v1/models/{model}:predict) and OpenAI (POST /v1/embeddings) formats, "
        "with dynamic batching, /health and /metrics.",
    )
    parser.add_argument(
        "--model",
        default=flags.DEFAULT_MODEL,
        help="packaged model name, gecko-train model directory, Hugging Face directory, or "
        "exported SavedModel (a directory with saved_model.pb or numeric versions of it)",
    )
    parser.add_argument(
        "--served_model_name",
        default=None,
        help="name reported to clients (default: the --model directory's name)",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument(
        "--port",
        type=int,
        default=int(env.get("AIP_HTTP_PORT") or DEFAULT_PORT),
        help="port to listen on; $AIP_HTTP_PORT sets the default",
    )
    parser.add_argument(
        "--predict_route",
        default=env.get("AIP_PREDICT_ROUTE"),
        help="extra Vertex predict route, as $AIP_PREDICT_ROUTE sets it",
    )
    parser.add_argument(
        "--health_route",
        default=env.get("AIP_HEALTH_ROUTE"),
        help="extra health route, as $AIP_HEALTH_ROUTE sets it",
    )
    parser.add_argument(
        "--task_types",
        default=None,
        help='JSON file overriding the Vertex task-type table: {"TASK_TYPE": '
        '{"task": "gecko task string" or null, "kind": "query" or "document"}}',
    )
    parser.add_argument(
        "--openai_task_type",
        default=None,
        help="Vertex task type whose task string the OpenAI route uses (default: texts unchanged)",
    )
    parser.add_argument(
        "--max_instances", type=_positive_int, default=250, help="most texts per request"
    )
    parser.add_argument(
        "--max_request_tokens", type=_positive_int, default=20_000, help="most tokens per request"
    )
    parser.add_argument(
        "--max_body_bytes", type=_positive_int, default=4 << 20, help="largest request body"
    )
    parser.add_argument(
        "--max_batch_tokens",
        type=_positive_int,
        default=16_384,
        help="token budget of what the model takes at once (bucketed text lengths, summed)",
    )
    parser.add_argument(
        "--max_batch_size",
        type=_positive_int,
        default=256,
        help="most texts the model takes at once (sorted by length, run in forward passes of "
        "--model_batch_size)",
    )
    parser.add_argument(
        "--model_batch_size",
        type=_positive_int,
        default=32,
        help="rows of one forward pass (a JAX model packs several texts a row: a pass holds "
        "64 x this many tokens)",
    )
    parser.add_argument(
        "--warmup_max_length",
        type=_positive_int,
        default=128,
        help="every forward-pass shape of texts up to this many tokens compiles before "
        "/health is 200",
    )
    parser.add_argument(
        "--opentelemetry",
        action="store_true",
        help="FastAPI's native OpenTelemetry spans and metrics (needs a configured provider)",
    )
    parser.add_argument(
        "--tokenizer_threads", type=_positive_int, default=2, help="threads tokenizing requests"
    )
    parser.add_argument(
        "--max_length",
        type=int,
        default=None,
        help="token limit (JAX models; default: the model's)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="compute type (JAX models)",
    )
    parser.add_argument(
        "--timeout_graceful_shutdown",
        type=int,
        default=30,
        help="seconds to finish in-flight requests after SIGTERM",
    )
    parser.add_argument(
        "--log_level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log level; access logs are JSON lines at info",
    )
    return parser


def _check_model(model: str) -> None:
    """Refuses a ``--model`` that names nothing servable before the server starts.

    Raises:
      ValueError: neither a model or SavedModel directory nor a packaged model name.
    """
    from gecko_jax.serve import backends

    try:
        backends.check_model_source(model)
    except backends.ModelSourceError as e:
        raise ValueError(f"--model {e}") from None
    if not os.path.isdir(os.path.expanduser(model)):
        from gecko_jax.models.named import NAMED_MODELS

        if model not in NAMED_MODELS:
            raise ValueError(
                f"--model {model!r} is neither a model directory nor a packaged model name "
                f"({', '.join(sorted(NAMED_MODELS))})"
            )


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command (``argv`` None: ``sys.argv``, as the console script)."""
    if argv is None:
        startup.prepare_process()
    return errors.run_command(build_parser(), _serve, argv)


def _serve(args: argparse.Namespace) -> None:
    from gecko_jax.serve import backends, vertex
    from gecko_jax.serve.app import ServeConfig, create_app
    from gecko_jax.serve.service import Limits

    # A bad --model, --task_types or --openai_task_type is refused before the server starts.
    _check_model(args.model)
    task_types = vertex.load_task_types(args.task_types)
    openai_task_type = args.openai_task_type and args.openai_task_type.upper()
    config = ServeConfig(
        model_name=args.served_model_name
        or os.path.basename(os.path.normpath(os.path.expanduser(args.model))),
        task_types=task_types,
        openai_task_type=openai_task_type,
        limits=Limits(args.max_instances, args.max_request_tokens),
        max_body_bytes=args.max_body_bytes,
        max_batch_tokens=args.max_batch_tokens,
        max_batch_size=args.max_batch_size,
        model_batch_size=args.model_batch_size,
        warmup_max_length=args.warmup_max_length,
        predict_routes=[args.predict_route] if args.predict_route else [],
        health_routes=[args.health_route] if args.health_route else [],
        tokenizer_threads=args.tokenizer_threads,
        opentelemetry=args.opentelemetry,
    )

    import uvicorn

    _configure_logging(args.log_level)
    load_errors: list[BaseException] = []
    server: uvicorn.Server | None = None

    def stop_on_load_error(error: BaseException) -> None:
        load_errors.append(error)
        if server is not None:
            server.should_exit = True

    app = create_app(
        lambda: backends.load_backend(
            args.model, args.model_batch_size, dtype=args.dtype, max_length=args.max_length
        ),
        config,
        on_load_error=stop_on_load_error,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            access_log=False,  # the app writes JSON access lines
            log_level=args.log_level,
            timeout_graceful_shutdown=args.timeout_graceful_shutdown,
        )
    )
    server.run()
    if load_errors:
        error = str(load_errors[0]).splitlines()[0] if str(load_errors[0]) else ""
        raise ValueError(
            f"cannot serve --model {args.model}: {type(load_errors[0]).__name__}: {error}"
        )


if __name__ == "__main__":
    sys.exit(main())
