"""Reading request bodies under a size limit, and writing JSON bodies with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gecko_jax.serve.errors import ServiceError


class OrjsonResponse(Response):
    """A JSON response written by orjson, numpy arrays included.

    FastAPI's own ORJSONResponse is deprecated in favour of response models; the service
    builds plain dicts of numpy rows, which orjson serialises without a copy to lists.
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def read_json_body(request: Request, max_bytes: int) -> bytes:
    """The raw body of a JSON request.

    A missing Content-Type is taken as JSON; any other than JSON is refused.

    Raises:
      ServiceError: 415 for another content type, 413 for a body over ``max_bytes``.
    """
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise ServiceError(415, f"Content-Type must be application/json, got {content_type!r}")
    too_large = ServiceError(413, f"the request body is larger than the limit of {max_bytes} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
