"""The interface every LLM client implements, its value types and its errors.

The FRet stages (generation, query-likelihood and relevance scoring) talk to an LLM only
through :class:`LLMClient`; which backend answers (Vertex AI Gemini, an OpenAI-compatible
server, the loopback server) is a matter of configuration (:func:`make_client`).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Usage:
    """What a client has spent so far.

    Attributes:
      requests: calls the backend answered (cache hits and failed calls excluded).
      cache_hits: calls answered from the on-disk cache (or by an identical call in flight).
      prompt_tokens: input tokens the backend billed.
      output_tokens: output tokens the backend billed (thinking tokens included).
      cost_usd: ``prompt_tokens`` and ``output_tokens`` at the client's prices.
      retries: attempts beyond the first (429, 5xx, timeouts, dropped connections).
    """

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0

    def add(self, other: Usage | None = None, **increments: Any) -> Usage:
        """Returns a new Usage: this one plus ``other`` and/or per-field increments."""
        names = [field.name for field in dataclasses.fields(self)]
        unknown = set(increments) - set(names)
        if unknown:
            raise TypeError(f"Usage has no field(s) {sorted(unknown)}")
        return Usage(
            **{
                name: getattr(self, name)
                + (getattr(other, name) if other else 0)
                + increments.get(name, 0)
                for name in names
            }
        )


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """The settings of one ``generate`` call (see :meth:`LLMClient.generate`).

    Attributes:
      system: a system instruction, or None.
      json_mode: ask the backend for a JSON object.
      temperature: sampling temperature (0: greedy).
      max_output_tokens: the most tokens to generate.
      seed: a sampling seed, for backends that take one.
    """

    system: str | None = None
    json_mode: bool = False
    temperature: float = 0.0
    max_output_tokens: int = 512
    seed: int | None = None

    def __post_init__(self) -> None:
        # The settings are part of cache keys: 1 and 1.0 must make the same key.
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "max_output_tokens", int(self.max_output_tokens))

    def cache_params(self) -> dict[str, Any]:
        """The settings as a call's parameters in the cache key (online and batch alike)."""
        return dataclasses.asdict(self)


_DEFAULT_SETTINGS = GenerationSettings()


@dataclasses.dataclass(frozen=True)
class Generation:
    """A generated text and the tokens it cost (``cached``: served from the cache)."""

    text: str
    prompt_tokens: int
    output_tokens: int
    cached: bool = False


class LLMError(RuntimeError):
    """Base of every error an LLM client raises."""


class LLMInputError(LLMError):
    """The backend rejected the request (HTTP 4xx other than 408/429); never retried."""


class LLMUnavailableError(LLMError):
    """The backend kept failing (429, 5xx, timeouts, connection errors) until retries ran out."""


class NotSupportedError(LLMError):
    """The backend cannot do this, e.g. Gemini scoring a given continuation."""


class CredentialsError(LLMError):
    """No usable credentials; the message names the variable or command that fixes it."""


class MalformedOutputError(LLMError, ValueError):
    """The model answered, but not in the requested form (e.g. not a JSON object)."""


class LabelsNotFoundError(MalformedOutputError):
    """None of the candidate labels is among the model's most likely first tokens."""


class BlockedOutputError(LLMError):
    """The model returned no text (blocked by a safety filter, or an empty candidate)."""


class LLMClient(abc.ABC):
    """An LLM behind three async calls; implementations are safe to call concurrently.

    Attributes:
      model_id: the model's name on its backend, e.g. ``gemini-2.0-flash``.
    """

    model_id: str

    @property
    @abc.abstractmethod
    def usage(self) -> Usage:
        """Requests, cache hits, tokens, cost and retries accumulated by this client."""

    async def generate(
        self,
        prompt: str,
        *,
        system: str | None = _DEFAULT_SETTINGS.system,
        json_mode: bool = _DEFAULT_SETTINGS.json_mode,
        temperature: float = _DEFAULT_SETTINGS.temperature,
        max_output_tokens: int = _DEFAULT_SETTINGS.max_output_tokens,
        seed: int | None = _DEFAULT_SETTINGS.seed,
    ) -> Generation:
        """Generates a reply to ``prompt`` (the arguments: :class:`GenerationSettings`)."""
        settings = GenerationSettings(system, json_mode, temperature, max_output_tokens, seed)
        return await self._generate(prompt, settings)

    @abc.abstractmethod
    async def _generate(self, prompt: str, settings: GenerationSettings) -> Generation:
        """:meth:`generate`, its settings gathered."""

    @abc.abstractmethod
    async def log_likelihood(self, prompt: str, continuation: str) -> float:
        """Sum of log P(continuation tokens | prompt), natural log.

        Raises:
          NotSupportedError: the backend returns no log-probabilities of given text.
        """

    @abc.abstractmethod
    async def label_probabilities(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        """Probability of each label as the answer to ``prompt``, judged by its first
        token and renormalised over ``labels`` (the values sum to 1)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Releases connections (and anything the client started)."""

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
