"""A real uvicorn server on 127.0.0.1 in a thread, for the service tests."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import uvicorn


class ThreadedServer:
    """Runs an ASGI app with uvicorn on a free loopback port until the context exits."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()


def wait_healthy(url: str, timeout: float = 120.0) -> None:
    """Polls ``/health`` until it answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(f"{url}/health").status_code
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"/health still {status} after {timeout} s")
        time.sleep(0.05)


def every_task_type(encoder: Any, texts: list[str], dim: int | None = None) -> tuple[list, Any]:
    """One Vertex instance per default task type and ``encoder``'s embeddings of them.

    Returns:
      ``(instances, expected)``: the request's instances (documents titled) and a
      ``[len(instances), dim or D]`` array of ``Encoder.encode`` with the mapped task and
      side.
    """
    import numpy as np

    from gecko_jax.serve.vertex import DEFAULT_TASK_TYPES

    instances, expected = [], []
    for i, (name, mapping) in enumerate(DEFAULT_TASK_TYPES.items()):
        text = texts[i % len(texts)]
        title = "Planets" if mapping.kind == "document" else None
        instances.append({"content": text, "task_type": name, "title": title})
        titles = [title] if mapping.kind == "document" else None
        expected.append(
            encoder.encode([text], task=mapping.task, kind=mapping.kind, dim=dim, titles=titles)
        )
    return instances, np.concatenate(expected)
