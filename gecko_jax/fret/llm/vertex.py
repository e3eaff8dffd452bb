"""Gemini on Vertex AI, through the Google Gen AI SDK (``google.genai``).

* ``generate``: ``models.generate_content`` (``json_mode``: ``responseMimeType``
  ``application/json``); the text of the first candidate's parts.
* ``label_probabilities``: one output token with ``responseLogprobs=true`` and
  ``logprobs=top_logprobs``; the first position of ``logprobsResult.topCandidates``.
* ``log_likelihood``: :class:`NotSupportedError`; Gemini returns log-probabilities of
  what it generates only, never of a given continuation (use an OpenAI-compatible
  server such as vLLM for query likelihood).

Project and location come from the arguments or ``$GOOGLE_CLOUD_PROJECT`` /
``$GOOGLE_CLOUD_LOCATION``; credentials from the arguments or application-default
credentials (``gcloud auth application-default login``, or
``$GOOGLE_APPLICATION_CREDENTIALS`` naming a service-account key). Token usage comes
from ``usageMetadata`` (thinking tokens are billed as output).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from gecko_jax.fret.llm.base import (
    BlockedOutputError,
    CredentialsError,
    GenerationSettings,
    LLMError,
    NotSupportedError,
)
from gecko_jax.fret.llm.client import CachingClient, CallResult
from gecko_jax.fret.llm.transport import error_for_status, parse_retry_after

T = TypeVar("T")

DEFAULT_LOCATION = "us-central1"
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
_FIX_CREDENTIALS = (
    "run `gcloud auth application-default login`, or set "
    "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
)


def resolve_project(project: str | None, location: str | None) -> tuple[str, str]:
    """Project and location from the arguments, else ``$GOOGLE_CLOUD_PROJECT`` /
    ``$GOOGLE_CLOUD_LOCATION`` (location default: us-central1).

    Raises:
      CredentialsError: no project anywhere.
    """
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise CredentialsError(
            "no Google Cloud project: pass project= (gin: "
            "VertexClient.project) or set GOOGLE_CLOUD_PROJECT"
        )
    return project, location or os.environ.get("GOOGLE_CLOUD_LOCATION") or DEFAULT_LOCATION


def default_credentials() -> Any:
    """Application-default credentials.

    Raises:
      CredentialsError: none found; the message says how to create them.
    """
    import google.auth
    import google.auth.exceptions

    try:
        credentials, _ = google.auth.default(scopes=list(_SCOPES))
    except google.auth.exceptions.DefaultCredentialsError as e:
        raise CredentialsError(
            f"no Google Cloud credentials found ({e}); {_FIX_CREDENTIALS}"
        ) from e
    return credentials


def make_genai_client(
    *,
    project: str,
    location: str,
    credentials: Any,
    base_url: str | None,
    api_version: str,
    timeout_s: float,
) -> Any:
    """A ``google.genai.Client`` for Vertex AI, its own retries off (ours run instead)."""
    from google import genai
    from google.genai import types

    http_options = types.HttpOptions(
        base_url=base_url, api_version=api_version, timeout=int(timeout_s * 1000)
    )
    return genai.Client(
        vertexai=True,
        project=project,
        location=location,
        credentials=credentials,
        http_options=http_options,
    )


async def call_vertex(model_id: str, call: Callable[[], Awaitable[T]]) -> T:
    """Awaits one SDK call, turning its errors into ours (transient for 408/429/5xx)."""
    import google.auth.exceptions
    from google.genai import errors

    try:
        return await call()
    except errors.APIError as e:
        response = getattr(e, "response", None)
        status = e.code or getattr(response, "status_code", 500)
        headers = getattr(response, "headers", None) or {}
        raise error_for_status(
            model_id,
            int(status),
            f"{e.status}: {e.message}",
            parse_retry_after(headers.get("retry-after")),
        ) from e
    except google.auth.exceptions.GoogleAuthError as e:
        raise CredentialsError(
            f"model {model_id!r}: Google Cloud credentials failed ({e}); {_FIX_CREDENTIALS}"
        ) from e


def request_config(
    settings: GenerationSettings,
    *,
    logprobs: int | None = None,
    safety_settings: Sequence[Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """A request's settings in REST (camelCase) form, flat as ``GenerateContentConfig``."""
    config: dict[str, Any] = {
        "temperature": settings.temperature,
        "maxOutputTokens": settings.max_output_tokens,
    }
    if settings.system:
        config["systemInstruction"] = {"parts": [{"text": settings.system}]}
    if settings.json_mode:
        config["responseMimeType"] = "application/json"
    if settings.seed is not None:
        config["seed"] = settings.seed
    if logprobs is not None:
        config["responseLogprobs"] = True
        config["logprobs"] = logprobs
    if safety_settings:
        config["safetySettings"] = [dict(setting) for setting in safety_settings]
    return config


def thinking_config(budget: int | None) -> dict[str, Any]:
    """The request settings of a thinking budget: ``thinkingConfig`` (None: the model's default).

    Gemini 2.5 models think before they answer, and their thinking counts against
    ``maxOutputTokens``: a relevance call allows one output token, so a 2.5 Flash model
    needs a budget of 0 to answer it at all.
    """
    return {} if budget is None else {"thinkingConfig": {"thinkingBudget": int(budget)}}


def thinking_key(budget: int | None) -> dict[str, Any]:
    """What a thinking budget adds to the cache key (nothing for the model's default,
    so keys made without one stay valid)."""
    return {} if budget is None else {"thinking_budget": int(budget)}


def check_thinking_budget(budget: int | None) -> None:
    """Raises ValueError unless ``budget`` is None, -1 (dynamic) or >= 0."""
    if budget is not None and budget < -1:
        raise ValueError(
            f"thinking_budget must be -1 (dynamic), 0 (off) or a token count, got {budget}"
        )


def top_logprobs_config(
    k: int, safety_settings: Sequence[Mapping[str, str]] | None = None
) -> dict[str, Any]:
    """The :func:`request_config` of a ``label_probabilities`` call: one output token, its
    top ``k`` candidates with their log-probabilities (online and batch alike)."""
    return request_config(
        GenerationSettings(max_output_tokens=1), logprobs=k, safety_settings=safety_settings
    )


def log_likelihood_unsupported(model_id: str) -> NotSupportedError:
    """The error ``log_likelihood`` raises for Gemini (online and batch alike)."""
    return NotSupportedError(
        f"model {model_id!r} on Vertex AI cannot score a given continuation "
        "(Gemini returns log-probabilities of its own output only); score query "
        "likelihood with an OpenAI-compatible server (e.g. vLLM) instead"
    )


def rest_request(prompt: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The REST ``GenerateContentRequest`` of ``prompt`` with a :func:`request_config`."""
    config = dict(config)
    request: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    for field in ("systemInstruction", "safetySettings"):
        if field in config:
            request[field] = config.pop(field)
    request["generationConfig"] = config
    return request


def response_tokens(response: Mapping[str, Any]) -> tuple[int, int]:
    """(prompt tokens, output tokens incl. thinking) from a response's ``usageMetadata``."""
    usage = response.get("usageMetadata") or {}
    return (
        int(usage.get("promptTokenCount") or 0),
        int(usage.get("candidatesTokenCount") or 0) + int(usage.get("thoughtsTokenCount") or 0),
    )


def response_text(model_id: str, response: Mapping[str, Any]) -> str:
    """The text of a REST ``GenerateContentResponse``'s first candidate.

    Raises:
      BlockedOutputError: no candidate or no text (a safety block, say).
    """
    candidates = response.get("candidates") or []
    parts = ((candidates[0].get("content") or {}).get("parts") or []) if candidates else []
    texts = [part["text"] for part in parts if part.get("text") and not part.get("thought")]
    if not texts:
        feedback = response.get("promptFeedback") or {}
        reason = (candidates[0].get("finishReason") if candidates else None) or feedback.get(
            "blockReason", "no candidates"
        )
        raise BlockedOutputError(f"model {model_id!r} returned no text (reason: {reason})")
    return "".join(texts)


def response_top_candidates(model_id: str, response: Mapping[str, Any]) -> list[list[Any]]:
    """``[[token, logprob], ...]`` of the first output position."""
    candidates = response.get("candidates") or [{}]
    top = (candidates[0].get("logprobsResult") or {}).get("topCandidates") or []
    if not top:
        thoughts = int((response.get("usageMetadata") or {}).get("thoughtsTokenCount") or 0)
        if candidates[0].get("finishReason") == "MAX_TOKENS" and thoughts:
            raise LLMError(
                f"model {model_id!r} spent the one-token relevance answer on {thoughts} "
                "thinking tokens: give the client thinking_budget=0 (gecko-fret: --llm "
                f'\'{{"kind": "vertex", "model": "{model_id}", "thinking_budget": 0}}\')'
            )
        raise LLMError(
            f"model {model_id!r} returned no logprobsResult.topCandidates "
            "(does the model support responseLogprobs?)"
        )
    return [
        [item.get("token", ""), float(item.get("logProbability", float("-inf")))]
        for item in top[0].get("candidates") or []
    ]


class VertexSession:
    """A Gen AI SDK client for Vertex AI and the settings every request to it carries;
    :class:`VertexClient` and batch jobs each hold one.

    Args:
      project: Google Cloud project; default ``$GOOGLE_CLOUD_PROJECT``.
      location: region; default ``$GOOGLE_CLOUD_LOCATION`` or us-central1.
      credentials: ``google.auth`` credentials; default application-default ones.
      base_url: the API endpoint (default: the SDK's regional endpoint).
      api_version: the REST version in request paths.
      safety_settings: ``[{"category": ..., "threshold": ...}]`` sent with every request
        (None: the service's defaults). ``"threshold": "BLOCK_ONLY_HIGH"`` for each harm
        category keeps synthetic queries about medicine, crime or history in a web corpus
        from being refused.
      thinking_budget: thinking tokens per request (0: off, -1: dynamic; None: the model's
        default). Gemini 2.5 Flash needs 0 for relevance classification (one output token).
        Part of the cache key when set.
      timeout_s: limit on one API call, in seconds.

    Raises:
      ValueError: a bad ``thinking_budget``.
      CredentialsError: no project, or no credentials.
    """

    def __init__(
        self,
        *,
        project: str | None = None,
        location: str | None = None,
        credentials: Any = None,
        base_url: str | None = None,
        api_version: str = "v1",
        safety_settings: Sequence[Mapping[str, str]] | None = None,
        thinking_budget: int | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        check_thinking_budget(thinking_budget)
        self.project, self.location = resolve_project(project, location)
        self.safety_settings = list(safety_settings) if safety_settings else None
        self.thinking_budget = thinking_budget
        self.client = make_genai_client(
            project=self.project,
            location=self.location,
            credentials=credentials if credentials is not None else default_credentials(),
            base_url=base_url,
            api_version=api_version,
            timeout_s=timeout_s,
        )

    def key_extras(self) -> dict[str, Any]:
        """What the session's settings add to a call's cache key (see :func:`thinking_key`)."""
        return thinking_key(self.thinking_budget)

    def with_thinking(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A :func:`request_config` with the session's thinking budget added."""
        return {**config, **thinking_config(self.thinking_budget)}

    async def aclose(self) -> None:
        """Closes the SDK's connections."""
        await self.client.aio.aclose()
        self.client.close()


# The arguments a client or a batch job passes through to its VertexSession.
SESSION_ARGS = tuple(
    name for name in inspect.signature(VertexSession).parameters if name != "timeout_s"
)


class VertexClient(CachingClient):
    """A Gemini model on Vertex AI.

    Args:
      model: e.g. ``gemini-2.0-flash``.
      **options: :class:`VertexSession`'s (project, location, credentials, base_url,
        api_version, safety_settings, thinking_budget) and
        :class:`~gecko_jax.fret.llm.client.CachingClient`'s (cache, max_concurrency,
        timeout_s, retry, rate limits, prices, top_logprobs, ...).

    Raises:
      ValueError: a bad ``thinking_budget``.
      CredentialsError: no project, or no credentials.
    """

    def __init__(self, model: str = "gemini-2.0-flash", **options: Any) -> None:
        session_options = {name: options.pop(name) for name in SESSION_ARGS if name in options}
        check_thinking_budget(session_options.get("thinking_budget"))  # before opening a cache
        super().__init__(model, **options)
        self.session = VertexSession(**session_options, timeout_s=self.runner.timeout_s)
        self.key_extras = self.session.key_extras()

    async def _request(self, prompt: str, config: dict[str, Any]) -> dict[str, Any]:
        from google.genai import types

        sdk_config = types.GenerateContentConfig.model_validate(self.session.with_thinking(config))
        response = await call_vertex(
            self.model_id,
            lambda: self.session.client.aio.models.generate_content(
                model=self.model_id, contents=prompt, config=sdk_config
            ),
        )
        return response.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def _generate_once(self, prompt: str, settings: GenerationSettings) -> CallResult:
        response = await self._request(
            prompt, request_config(settings, safety_settings=self.session.safety_settings)
        )
        return CallResult(response_text(self.model_id, response), *response_tokens(response))

    async def log_likelihood(self, prompt: str, continuation: str) -> float:
        raise log_likelihood_unsupported(self.model_id)

    async def _top_logprobs_once(self, prompt: str, k: int) -> CallResult:
        response = await self._request(prompt, top_logprobs_config(k, self.session.safety_settings))
        return CallResult(
            response_top_candidates(self.model_id, response), *response_tokens(response)
        )

    async def _close(self) -> None:
        await self.session.aclose()
