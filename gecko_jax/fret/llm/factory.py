"""``make_client``: an :class:`LLMClient` from a one-line spec (the ``--llm`` flag)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gecko_jax.fret.llm.base import LLMClient
from gecko_jax.fret.llm.openai_compatible import OpenAICompatibleClient
from gecko_jax.fret.llm.transport import RetryPolicy

SPEC_FORMS = (
    "openai:<base_url>#<model>  e.g. openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct",
    "vertex:<model>             e.g. vertex:gemini-2.0-flash (project and location from "
    "keyword arguments or GOOGLE_CLOUD_PROJECT / GOOGLE_CLOUD_LOCATION)",
    "vertex-batch:<model>       e.g. vertex-batch:gemini-2.0-flash with "
    "staging_dir=gs://bucket/path: "
    "each pipeline stage as one Vertex batch prediction job, at batch prices",
    "loopback[:<latency_s>]     a deterministic server on 127.0.0.1 started for the client",
    '{"kind": "openai"|"vertex"|"vertex-batch"|"loopback", ...constructor arguments}',
)
_LOOPBACK_SERVER_ARGS = ("latency_s", "rc_labels", "model")


class _LoopbackClient(OpenAICompatibleClient):
    """An OpenAI-compatible client that owns the loopback server it talks to."""

    def __init__(self, server: Any, **options: Any) -> None:
        self.server = server
        super().__init__(server.base_url, server.model, **options)

    async def _close(self) -> None:
        await super()._close()
        self.server.stop()


def _parse(spec: str) -> dict[str, Any]:
    if spec.lstrip().startswith("{"):
        try:
            options = json.loads(spec)
        except json.JSONDecodeError as e:
            raise ValueError(f"LLM spec {spec!r}: invalid JSON ({e.msg})") from None
        if not isinstance(options, dict):
            raise ValueError(f"LLM spec {spec!r}: expected a JSON object")
        return options
    kind, _, rest = spec.partition(":")
    if kind == "openai":
        base_url, _, model = rest.partition("#")
        if not base_url or not model:
            raise ValueError(f"LLM spec {spec!r}: expected openai:<base_url>#<model>")
        return {"kind": "openai", "base_url": base_url, "model": model}
    if kind in ("vertex", "vertex-batch"):
        if not rest:
            raise ValueError(f"LLM spec {spec!r}: expected {kind}:<model>")
        return {"kind": kind, "model": rest}
    if kind == "loopback":
        try:
            return {"kind": "loopback", **({"latency_s": float(rest)} if rest else {})}
        except ValueError:
            raise ValueError(f"LLM spec {spec!r}: expected loopback:<latency_s>") from None
    raise ValueError(f"unknown LLM spec {spec!r}; the forms are:\n  " + "\n  ".join(SPEC_FORMS))


def make_client(spec: str | Mapping[str, Any], **kwargs: Any) -> LLMClient:
    """Builds the client a spec names.

    Args:
      spec: one of :data:`SPEC_FORMS`.
      **kwargs: constructor arguments (``cache=``, ``max_concurrency=``, ``prices=``,
        ``project=``, ``staging_dir=`` for vertex-batch, ...), over those of a dict spec.
        For ``loopback``, ``latency_s``, ``rc_labels`` and ``model`` configure the server.

    Raises:
      ValueError: a malformed spec, naming the accepted forms; vertex-batch without
        ``staging_dir``.
    """
    options = {**(_parse(spec) if isinstance(spec, str) else dict(spec)), **kwargs}
    if isinstance(options.get("retry"), Mapping):  # a JSON spec's {"retry": {...}}
        options["retry"] = RetryPolicy(**options["retry"])
    kind = options.pop("kind", None)
    if kind == "openai":
        return OpenAICompatibleClient(options.pop("base_url"), options.pop("model"), **options)
    if kind == "vertex":
        from gecko_jax.fret.llm.vertex import VertexClient

        return VertexClient(options.pop("model"), **options)
    if kind == "vertex-batch":
        from gecko_jax.fret.llm.batching import VertexBatchClient

        if not options.get("staging_dir"):
            raise ValueError(
                "vertex-batch needs a staging directory for the jobs' inputs and outputs: "
                "staging_dir=gs://bucket/path (gecko-fret: --batch_staging_dir)"
            )
        return VertexBatchClient(options.pop("model"), **options)
    if kind == "loopback":
        from gecko_jax.fret.llm.loopback import LoopbackServer

        server_args = {name: options.pop(name) for name in _LOOPBACK_SERVER_ARGS if name in options}
        server = LoopbackServer(**server_args).start()
        try:
            return _LoopbackClient(server, **options)
        except BaseException:
            server.stop()
            raise
    raise ValueError(
        f"LLM spec {dict(spec) if not isinstance(spec, str) else spec!r}: "
        f"unknown kind {kind!r}; the forms are:\n  " + "\n  ".join(SPEC_FORMS)
    )
