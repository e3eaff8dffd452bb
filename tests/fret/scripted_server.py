"""Fault injection for the local test servers: scripted statuses, delays, drops and stops.

A test queues :class:`Scripted` entries on a :class:`ScriptedServer`; each replaces or
disturbs the answer to one of the next requests (an error status, ``Retry-After``, a delay
beyond a client's timeout, malformed model output, a dropped connection, the server dying
mid-run). The server also records every request and the most requests in flight at once.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Mapping
from typing import Any

from gecko_jax.fret.llm.httpserver import LocalHTTPServer, Request, Response, error_response
from gecko_jax.fret.llm.loopback import LoopbackServer


@dataclasses.dataclass(frozen=True)
class Scripted:
    """What the server does with the next request, instead of answering normally.

    Attributes:
      status: the HTTP status to answer with.
      body: the answer's body (JSON-serialisable, or str). None: the route's normal
        answer for status 200, an ``{"error": {...}}`` body otherwise.
      headers: extra response headers, e.g. ``{"Retry-After": "1"}``.
      delay_s: extra seconds before answering (beyond a client's timeout: a hang).
      drop: close the connection without answering.
      stop: stop the whole server (every connection dropped, no new ones accepted).
      content: the route answers normally but with this text as the model's output
        (read by the route as :attr:`ScriptedServer.scripted_content`).
    """

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False
    stop: bool = False
    content: str | None = None


class ScriptedServer(LocalHTTPServer):
    """A :class:`LocalHTTPServer` that follows a script and records what it received.

    Attributes:
      requests: every request received, in order.
      in_flight: requests being answered now; max_in_flight: the most at once.
      scripted_content: the scripted model output of the request being answered, or None.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.scripted_content: str | None = None
        self._script: collections.deque[Scripted] = collections.deque()

    def script(self, *entries: Scripted) -> None:
        """Queues entries; each applies to one of the next requests, in arrival order."""
        self._script.extend(entries)

    async def respond(self, request: Request) -> Response | None:
        self.requests.append(request)
        scripted = self._script.popleft() if self._script else None
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if scripted is None:
                return await super().respond(request)
            delay = self.latency_s + scripted.delay_s
            if delay > 0:
                await asyncio.sleep(delay)
            if scripted.stop:
                self._halt()
                return None
            if scripted.drop:
                return None
            return self._scripted_response(request, scripted)
        finally:
            self.in_flight -= 1

    def _scripted_response(self, request: Request, scripted: Scripted) -> Response:
        if scripted.body is not None or scripted.status != 200:
            base = (
                Response(scripted.status, scripted.body)
                if scripted.body is not None
                else error_response(scripted.status, f"scripted HTTP {scripted.status}")
            )
            return dataclasses.replace(base, headers=dict(scripted.headers))
        self.scripted_content = scripted.content
        try:
            response = self._handle_or_500(request)
        finally:
            self.scripted_content = None
        if scripted.headers:
            response = dataclasses.replace(
                response, headers={**response.headers, **scripted.headers}
            )
        return response


class ScriptedLoopbackServer(ScriptedServer, LoopbackServer):
    """The loopback server, following a script (``content`` replaces its chat answers)."""

    def chat_answer(self, prompt: str) -> str:
        if self.scripted_content is not None:
            return self.scripted_content
        return super().chat_answer(prompt)
