"""A client for OpenAI-compatible servers: vLLM, llama.cpp's server, Ollama, TGI.

* ``generate``: ``POST {base_url}/chat/completions`` (``json_mode`` sends
  ``response_format: {"type": "json_object"}``).
* ``log_likelihood``: ``POST {base_url}/completions`` with the prompt and continuation
  concatenated, ``echo=true``, ``logprobs=1``, ``max_tokens=1``; the log-probabilities
  of the tokens that start inside the continuation (``text_offset >= len(prompt)``,
  or straddle its start) are summed. The first token of the text has no
  log-probability (null); it only counts if the prompt is empty, as 0. Needs a server
  that returns prompt log-probabilities with ``echo`` (vLLM does; llama.cpp's and
  Ollama's OpenAI endpoints do not: :class:`NotSupportedError`).
* ``label_probabilities``: ``POST {base_url}/completions`` with ``max_tokens=1`` and
  ``logprobs=top_logprobs``; the first position's top log-probabilities are matched
  to the labels (:func:`~gecko_jax.fret.llm.parsing.label_distribution`).
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from gecko_jax.fret.llm.base import GenerationSettings, LLMInputError, NotSupportedError
from gecko_jax.fret.llm.client import CachingClient, CallResult
from gecko_jax.fret.llm.transport import (
    ShardedHTTPClient,
    TransientError,
    error_for_status,
    parse_retry_after,
)


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)[:300]


class OpenAICompatibleClient(CachingClient):
    """An OpenAI-compatible server's model.

    Args:
      base_url: the API root, ending in ``/v1`` as in the OpenAI SDK, e.g.
        ``http://127.0.0.1:8000/v1``.
      model: the served model's name (``GET {base_url}/models`` lists them).
      api_key: sent as a bearer token; default ``$OPENAI_API_KEY``, none if unset.
      echo_max_tokens: ``max_tokens`` of the echo request of ``log_likelihood``
        (1 works everywhere; 0 saves a token on servers that accept it).
      http_client: an ``httpx.AsyncClient`` to use instead of a new one.
      **options: see :class:`~gecko_jax.fret.llm.client.CachingClient` (cache,
        max_concurrency, timeout_s, retry, rate limits, prices, top_logprobs, ...).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        echo_max_tokens: int = 1,
        http_client: httpx.AsyncClient | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, **options)
        self.base_url = base_url.rstrip("/")
        self.echo_max_tokens = echo_max_tokens
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_http = http_client is None
        # The runner enforces the timeout; httpx's own is a looser backstop.
        self._http: httpx.AsyncClient | ShardedHTTPClient = http_client or ShardedHTTPClient(
            self.runner.max_concurrency,
            headers=headers,
            timeout=httpx.Timeout(self.runner.timeout_s + 5.0),
        )
        # Absolute URLs parsed once: httpx re-parses and merges a relative one per request.
        self._urls = {
            path: httpx.URL(self.base_url + path) for path in ("/chat/completions", "/completions")
        }

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._http.post(self._urls[path], json=body)
        if response.status_code >= 400:
            detail = _error_detail(response)
            if response.status_code == 404 and "model" in detail.lower():
                raise LLMInputError(
                    f"model {self.model_id!r} is not served at {self.base_url} (HTTP 404: "
                    f"{detail}); GET {self.base_url}/models lists the served names"
                )
            raise error_for_status(
                self.model_id,
                response.status_code,
                f"POST {self.base_url}{path}: {detail}",
                parse_retry_after(response.headers.get("retry-after")),
            )
        try:
            body = response.json()
            if not isinstance(body, dict) or not body.get("choices"):
                raise ValueError("no 'choices'")
        except ValueError as e:
            raise TransientError(
                f"model {self.model_id!r}: POST {self.base_url}{path}: "
                f"unreadable answer ({e}): {response.text[:200]!r}"
            ) from e
        return body

    @staticmethod
    def _tokens(body: dict[str, Any], key: str) -> int:
        return int((body.get("usage") or {}).get(key) or 0)

    async def _generate_once(self, prompt: str, settings: GenerationSettings) -> CallResult:
        system = [{"role": "system", "content": settings.system}] if settings.system else []
        request: dict[str, Any] = {
            "model": self.model_id,
            "messages": [*system, {"role": "user", "content": prompt}],
            "temperature": settings.temperature,
            "max_tokens": settings.max_output_tokens,
        }
        if settings.seed is not None:
            request["seed"] = settings.seed
        if settings.json_mode:
            request["response_format"] = {"type": "json_object"}
        body = await self._post("/chat/completions", request)
        text = (body["choices"][0].get("message") or {}).get("content") or ""
        return CallResult(
            text, self._tokens(body, "prompt_tokens"), self._tokens(body, "completion_tokens")
        )

    async def _completion_logprobs(
        self, request: dict[str, Any], what: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """POSTs a /completions request; returns the body and its first choice's logprobs."""
        body = await self._post(
            "/completions", {"model": self.model_id, "temperature": 0.0, **request}
        )
        logprobs = body["choices"][0].get("logprobs")
        if not logprobs:
            raise NotSupportedError(
                f"{self.base_url} returned no logprobs for {what} with model {self.model_id!r}; "
                "the server must support /v1/completions logprobs (vLLM does)"
            )
        return body, logprobs

    async def _log_likelihood_once(self, prompt: str, continuation: str) -> CallResult:
        text = prompt + continuation
        body, logprobs = await self._completion_logprobs(
            {"prompt": text, "echo": True, "logprobs": 1, "max_tokens": self.echo_max_tokens},
            "echo=true (prompt log-probabilities)",
        )
        offsets = logprobs.get("text_offset")
        values = logprobs.get("token_logprobs")
        tokens = logprobs.get("tokens")
        if not offsets or values is None or tokens is None:
            raise NotSupportedError(
                f"{self.base_url} returned no text_offset/token_logprobs for echo=true with "
                f"model {self.model_id!r}; log_likelihood needs prompt log-probabilities"
            )
        start, end = len(prompt), len(text)
        total, counted = 0.0, 0
        for offset, token, value in zip(offsets, tokens, values):
            if offset < end and offset + len(token) > start:
                total += value or 0.0
                counted += 1
        if counted == 0:
            raise LLMInputError(
                f"model {self.model_id!r}: no token of the continuation "
                f"{continuation!r} in the echoed text"
            )
        return CallResult(
            total, self._tokens(body, "prompt_tokens"), self._tokens(body, "completion_tokens")
        )

    async def _top_logprobs_once(self, prompt: str, k: int) -> CallResult:
        body, logprobs = await self._completion_logprobs(
            {"prompt": prompt, "max_tokens": 1, "logprobs": k}, "the first answer token"
        )
        top = logprobs.get("top_logprobs") or [None]
        if not top[0]:
            raise NotSupportedError(
                f"{self.base_url} returned no top_logprobs for model {self.model_id!r}"
            )
        pairs = sorted(top[0].items(), key=lambda pair: -pair[1])
        return CallResult(
            [[token, float(value)] for token, value in pairs],
            self._tokens(body, "prompt_tokens"),
            self._tokens(body, "completion_tokens"),
        )

    async def _close(self) -> None:
        if self._owns_http:
            await self._http.aclose()
