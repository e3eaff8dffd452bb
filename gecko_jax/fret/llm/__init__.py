"""LLM clients for FRet behind one async interface (:class:`LLMClient`).

* ``base``: the interface, ``Usage``, ``Generation``, the errors.
* ``client``: what backends share: the cache, limits, retries, accounting.
* ``openai_compatible``: vLLM, llama.cpp, Ollama, TGI (``/v1/chat/completions``,
  ``/v1/completions``).
* ``vertex``: Gemini on Vertex AI (Google Gen AI SDK); ``vertex_batch``: Vertex batch
  prediction jobs; ``batching``: a client that sends each pipeline stage's calls as one
  such job, for corpus-scale runs.
* ``factory``: ``make_client("vertex:gemini-2.0-flash")`` and the other spec forms
  (``vertex-batch:gemini-2.0-flash`` with ``staging_dir=``).
* ``transport``, ``ratelimit``: concurrency bound, timeouts, retries with backoff, rate limits.
* ``cache``, ``pricing``: the SQLite call cache; token prices.
* ``parsing``: JSON objects and label distributions from model output.
* ``loopback``, ``httpserver``: a deterministic OpenAI-compatible server on 127.0.0.1
  (``--llm loopback`` dry runs).

Names are imported lazily, so ``import gecko_jax.fret.llm`` does not load the Gen AI SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BlockedOutputError": "base",
    "CredentialsError": "base",
    "Generation": "base",
    "GenerationSettings": "base",
    "LabelsNotFoundError": "base",
    "LLMClient": "base",
    "LLMError": "base",
    "LLMInputError": "base",
    "LLMUnavailableError": "base",
    "MalformedOutputError": "base",
    "NotSupportedError": "base",
    "Usage": "base",
    "CachingClient": "client",
    "SQLiteCache": "cache",
    "Prices": "pricing",
    "RetryPolicy": "transport",
    "RateLimiter": "ratelimit",
    "parse_json_object": "parsing",
    "label_distribution": "parsing",
    "OpenAICompatibleClient": "openai_compatible",
    "VertexClient": "vertex",
    "VertexBatchJob": "vertex_batch",
    "BatchRequest": "vertex_batch",
    "LogprobsRequest": "vertex_batch",
    "TopLogprobs": "vertex_batch",
    "VertexBatchClient": "batching",
    "make_client": "factory",
    "LoopbackServer": "loopback",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
