"""A small HTTP/1.1 server on 127.0.0.1 with scripted faults, for fake LLM backends.

It runs an asyncio loop in a background thread, so a test (or a benchmark) keeps its
own thread and loop; keep-alive connections and a fixed ``latency_s`` per request cost
no thread each, so hundreds of requests can be in flight. Subclasses answer requests in
:meth:`ScriptedHTTPServer.handle`; tests queue :class:`Scripted` entries that replace
or disturb the next answers (error statuses, ``Retry-After``, delays beyond a client's
timeout, malformed model output, dropped connections, the server dying mid-run).

The request reader is hand-written (request line, headers, ``Content-Length`` body):
``http.server`` needs a thread per connection, and the few lines here keep the
benchmark's server side cheap. Chunked request bodies are not supported.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import http
import json
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any


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
      content: the route answers normally but with this text as the model's output.
    """

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False
    stop: bool = False
    content: str | None = None


@dataclasses.dataclass(frozen=True)
class Request:
    """A request the server received."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, list[str]] = dataclasses.field(default_factory=dict)  # parsed query string

    def json(self) -> Any:
        """The body as JSON (None if empty)."""
        return json.loads(self.body) if self.body else None


@dataclasses.dataclass(frozen=True)
class Response:
    """An answer: status, a JSON-serialisable or str body, extra headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def encode(self) -> bytes:
        if isinstance(self.body, str):
            payload, kind = self.body.encode("utf-8"), "text/plain; charset=utf-8"
        else:
            payload, kind = json.dumps(self.body).encode("utf-8"), "application/json"
        try:
            reason = http.HTTPStatus(self.status).phrase
        except ValueError:
            reason = "Status"
        head = [
            f"HTTP/1.1 {self.status} {reason}",
            f"Content-Type: {kind}",
            f"Content-Length: {len(payload)}",
        ]
        head += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


def error_response(status: int, message: str) -> Response:
    """An error in the shape both OpenAI-style and Google APIs use."""
    try:
        name = http.HTTPStatus(status).name
    except ValueError:
        name = "UNKNOWN"
    return Response(status, {"error": {"code": status, "message": message, "status": name}})


class ScriptedHTTPServer:
    """Serves HTTP on ``host:port`` (0: an ephemeral port) from a background thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Attributes:
      requests: every request received, in order.
      in_flight: requests being answered now; max_in_flight: the most at once.
    """

    def __init__(self, *, latency_s: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.latency_s = latency_s
        self.host, self.port = host, port
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: collections.deque[Scripted] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def handle(self, request: Request, content: str | None) -> Response:
        """The normal answer to ``request`` (``content``: a scripted model output)."""
        return error_response(404, f"no route for {request.method} {request.path}")

    def script(self, *entries: Scripted) -> None:
        """Queues entries; each applies to one of the next requests, in arrival order."""
        self._script.extend(entries)

    def start(self) -> ScriptedHTTPServer:
        """Starts serving; returns self."""
        if self._thread is not None:
            raise RuntimeError(f"server on {self.url} already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), daemon=True, name=f"{type(self).__name__}"
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise OSError(f"cannot serve on {self.host}:{self.port}: {failure[0]}") from failure[0]
        return self

    def stop(self) -> None:
        """Stops serving: open connections are dropped, new ones refused."""
        if self._thread is None or self._loop is None:
            return
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._halt)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> ScriptedHTTPServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, self.port, backlog=2048)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as e:
            failure.append(e)
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            self._halt()
            pending = [task for task in self._tasks if not task.done()]
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _halt(self) -> None:
        """Closes the listening socket and every connection; cancels open handlers."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        current = asyncio.current_task(self._loop)
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._requests_of(reader, writer)
        except asyncio.CancelledError:  # the server stopped; the connection just ends
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _requests_of(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answers the requests of one keep-alive connection until it ends."""
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ", 2)[:2]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if value:
                    headers[name.strip().lower()] = value.strip()
            try:
                body = await reader.readexactly(int(headers.get("content-length", "0")))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            path, _, query = target.partition("?")
            request = Request(method, path, headers, body, urllib.parse.parse_qs(query))
            if not await self._answer(request, writer):
                return
            if headers.get("connection", "").lower() == "close":
                return

    async def _answer(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answers one request; False when the connection must end."""
        self.requests.append(request)
        scripted = self._script.popleft() if self._script else None
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self.latency_s + (scripted.delay_s if scripted else 0.0)
            if delay > 0:
                await asyncio.sleep(delay)
            if scripted is not None and scripted.stop:
                self._halt()
                return False
            if scripted is not None and scripted.drop:
                writer.transport.abort()
                return False
            response = self._response(request, scripted)
        finally:
            self.in_flight -= 1
        try:
            writer.write(response.encode())
            await writer.drain()
        except ConnectionError:  # the client gave up (its timeout) while we slept
            return False
        return True

    def _response(self, request: Request, scripted: Scripted | None) -> Response:
        if scripted is not None and (scripted.body is not None or scripted.status != 200):
            base = (
                Response(scripted.status, scripted.body)
                if scripted.body is not None
                else error_response(scripted.status, f"scripted HTTP {scripted.status}")
            )
            return dataclasses.replace(base, headers=dict(scripted.headers))
        try:
            response = self.handle(request, scripted.content if scripted else None)
        except Exception as e:  # a bug in a fake route must reach the client, not kill the loop
            response = error_response(500, f"{type(e).__name__}: {e}")
        if scripted is not None and scripted.headers:
            response = dataclasses.replace(
                response, headers={**response.headers, **scripted.headers}
            )
        return response
