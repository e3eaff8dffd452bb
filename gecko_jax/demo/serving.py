"""Starts gecko-serve on a free loopback port, sends one request per API format, stops it."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any

from gecko_jax.demo import commands

HOST = "127.0.0.1"
SERVED_NAME = "gecko-demo"
VERTEX_INSTANCES = (
    {"content": "How do I read a JSON file in Python?", "task_type": "RETRIEVAL_QUERY"},
    {
        "title": "json.load",
        "content": "Deserialize a text or binary file containing a JSON document to a Python "
        "object.",
        "task_type": "RETRIEVAL_DOCUMENT",
    },
)
OPENAI_INPUT = ("sort a list in place", "list.sort() sorts the list in place.")


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, process: Any, timeout_s: float) -> None:
    """Polls ``url/health`` until it answers 200.

    Raises:
      commands.CommandFailed: the server exited first.
      TimeoutError: no 200 within ``timeout_s``.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        status = process.poll()
        if status is not None:
            raise commands.CommandFailed("gecko-serve", status)
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"gecko-serve at {url}: /health did not answer 200 in {timeout_s} s")
        time.sleep(0.5)


def send_requests(url: str) -> dict[str, Any]:
    """One Vertex AI predict request and one OpenAI embeddings request; their exchanges."""
    import httpx

    vertex_path = f"/v1/models/{SERVED_NAME}:predict"
    vertex_body = {"instances": list(VERTEX_INSTANCES)}
    openai_body = {"input": list(OPENAI_INPUT), "model": SERVED_NAME}
    exchanges = {}
    for name, path, body in (
        ("vertex", vertex_path, vertex_body),
        ("openai", "/v1/embeddings", openai_body),
    ):
        response = httpx.post(f"{url}{path}", json=body, timeout=120)
        response.raise_for_status()
        exchanges[name] = {"request": {"path": path, "body": body}, "response": response.json()}
    return exchanges


def serve_and_ask(model: str, warmup_length: int, startup_timeout_s: float = 600) -> dict:
    """Serves ``model`` with gecko-serve, sends the two requests, stops the server."""
    port = free_port()
    argv = commands.module_argv(
        "serve",
        "--model",
        model,
        "--served_model_name",
        SERVED_NAME,
        "--host",
        HOST,
        "--port",
        str(port),
        "--warmup_max_length",
        str(warmup_length),
        "--log_level",
        "warning",
    )
    process = commands.start(argv)
    try:
        url = f"http://{HOST}:{port}"
        wait_until_healthy(url, process, startup_timeout_s)
        return {"url": url, **send_requests(url)}
    finally:
        commands.stop(process, timeout_s=60)


def _vector(values: Sequence[float], shown: int) -> str:
    head = ", ".join(f"{v:.4f}" for v in values[:shown])
    return f"[{head}, ...] ({len(values)} values)"


def format_exchanges(exchanges: dict[str, Any], shown: int = 4) -> str:
    """The two requests and their responses, vectors cut to ``shown`` values."""
    import json

    lines = []
    vertex = exchanges["vertex"]
    lines.append(f"POST {exchanges['url']}{vertex['request']['path']}")
    lines.append(f"  {json.dumps(vertex['request']['body'])}")
    for prediction in vertex["response"]["predictions"]:
        embeddings = prediction["embeddings"]
        lines.append(
            f"  -> embeddings.values {_vector(embeddings['values'], shown)}, "
            f"statistics {json.dumps(embeddings.get('statistics', {}))}"
        )
    openai = exchanges["openai"]
    lines.append(f"POST {exchanges['url']}{openai['request']['path']}")
    lines.append(f"  {json.dumps(openai['request']['body'])}")
    for item in openai["response"]["data"]:
        lines.append(f"  -> data[{item['index']}].embedding {_vector(item['embedding'], shown)}")
    lines.append(f"  -> usage {json.dumps(openai['response'].get('usage', {}))}")
    return "\n".join(lines)
