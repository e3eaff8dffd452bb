"""A small HTTP/1.1 server on 127.0.0.1, the base of the loopback LLM server.

It runs an asyncio loop in a background thread, so its user keeps its own thread and
loop; keep-alive connections and a fixed ``latency_s`` per request cost no thread each,
so hundreds of requests can be in flight. Subclasses answer requests in
:meth:`LocalHTTPServer.handle`, and may override :meth:`LocalHTTPServer.respond` to
change how an answer is given (delayed, or not at all).

The request reader is hand-written (request line, headers, ``Content-Length`` body):
``http.server`` needs a thread per connection, and the few lines here keep the
benchmark's server side cheap. Chunked request bodies are not supported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import json
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any


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


class LocalHTTPServer:
    """Serves HTTP on ``host:port`` (0: an ephemeral port) from a background thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
      latency_s: seconds every request waits before its answer.
      host, port: where to listen.
    """

    def __init__(self, *, latency_s: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.latency_s = latency_s
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def handle(self, request: Request) -> Response:
        """The answer to ``request`` (subclasses route it)."""
        return error_response(404, f"no route for {request.method} {request.path}")

    async def respond(self, request: Request) -> Response | None:
        """Waits ``latency_s``, then answers; None closes the connection without an answer."""
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        return self._handle_or_500(request)

    def _handle_or_500(self, request: Request) -> Response:
        try:
            return self.handle(request)
        except Exception as e:  # a bug in a route must reach the client, not kill the loop
            return error_response(500, f"{type(e).__name__}: {e}")

    def start(self) -> LocalHTTPServer:
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

    def __enter__(self) -> LocalHTTPServer:
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
        response = await self.respond(request)
        if response is None:
            writer.transport.abort()
            return False
        try:
            writer.write(response.encode())
            await writer.drain()
        except ConnectionError:  # the client gave up (its timeout) while we slept
            return False
        return True
