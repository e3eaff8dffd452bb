"""The OpenAI embeddings format (``POST /v1/embeddings``).

Request: ``{"input": str | [str], "model", "dimensions", "encoding_format": "float" |
"base64"}``; response: ``{"object": "list", "data": [{"object": "embedding", "index",
"embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}``. Base64 is the
little-endian float32 bytes of each vector, as OpenAI's clients decode it.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
import pydantic

from gecko_jax.serve.errors import ServiceError
from gecko_jax.serve.service import Embedded
from gecko_jax.serve.vertex import validation_message


class EmbeddingsRequest(pydantic.BaseModel):
    """An OpenAI embeddings request (``input`` is checked by :func:`input_texts`)."""

    model_config = pydantic.ConfigDict(strict=True)

    input: Any
    model: str | None = None
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


def parse_request(body: bytes) -> EmbeddingsRequest:
    """Parses and validates a request body.

    Raises:
      ServiceError: malformed JSON or a field of the wrong type, naming the field.
    """
    try:
        return EmbeddingsRequest.model_validate_json(body)
    except pydantic.ValidationError as e:
        param = next((str(d["loc"][0]) for d in e.errors() if d["loc"]), None)
        raise ServiceError(400, validation_message(e), param) from None


def input_texts(value: Any) -> list[str]:
    """``input`` as a list of strings.

    Raises:
      ServiceError: token ids (this service takes text) or anything but strings.
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    if isinstance(value, list) and all(
        isinstance(item, int) or (isinstance(item, list) and all(isinstance(t, int) for t in item))
        for item in value
    ):
        raise ServiceError(
            400, "input as token ids is not supported: send a string or a list of strings", "input"
        )
    raise ServiceError(400, "input must be a string or a list of strings", "input")


def _base64(row: np.ndarray) -> str:
    return base64.b64encode(row.astype("<f4", copy=False).tobytes()).decode("ascii")


def embeddings_response(result: Embedded, model: str, encoding_format: str) -> dict[str, Any]:
    """The response body (float rows stay numpy: orjson writes them directly)."""
    encode = _base64 if encoding_format == "base64" else (lambda row: row)
    tokens = int(result.token_counts.sum())
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(row)}
            for i, row in enumerate(result.embeddings)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
