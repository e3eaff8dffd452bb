"""A local stand-in for Vertex AI: ``generateContent`` and batch prediction jobs.

It speaks the REST shapes the Gen AI SDK uses (``/{version}/projects/P/locations/L/...``):
``batchPredictionJobs`` create (POST), get (GET ``.../batchPredictionJobs/ID``) and list
(GET ``.../batchPredictionJobs``, honouring a ``filter=display_name="..."`` and paging
with ``pageSize`` / ``pageToken`` / ``nextPageToken``, :data:`LIST_PAGE_SIZE` jobs a page
unless the client asks for another size).
Generated texts come from the loopback model (:func:`generation_answer`); batch jobs read
their input JSONL from the local paths given as ``gcsSource.uris`` and write prediction
JSONL under ``outputUriPrefix``, as Vertex does on Cloud Storage.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

from google.oauth2.credentials import Credentials

from gecko_jax.fret.llm.httpserver import Request, Response, error_response
from gecko_jax.fret.llm.loopback import generation_answer, label_logprobs
from gecko_jax.fret.llm.transport import RetryPolicy

from .scripted_server import ScriptedServer

_PREFIX = r"^/(?:v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
_GENERATE = re.compile(_PREFIX + r"/publishers/google/models/(?P<model>[^/:]+):generateContent$")
_JOBS = re.compile(_PREFIX + r"/batchPredictionJobs$")
_JOB = re.compile(_PREFIX + r"/batchPredictionJobs/(?P<id>\d+)$")

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
THOUGHT_TOKENS = 64  # a thinking model's thoughts before it answers
LIST_PAGE_SIZE = 2  # small, so that listing clients must follow nextPageToken
_DISPLAY_NAME_FILTER = re.compile(r'^display_name="(?P<name>[^"]*)"$')


def thinking_budget(generation_config: dict[str, Any]) -> int | None:
    """A request's thinking budget. Proto JSON takes either field spelling, and the Gen AI
    SDK sends ``thinkingConfig`` with a snake-case ``thinking_budget`` inside."""
    config = generation_config.get("thinkingConfig") or {}
    return config.get("thinkingBudget", config.get("thinking_budget"))


def client_options(server: ScriptedServer, **options: Any) -> dict[str, Any]:
    """Arguments of a Vertex client or job talking to ``server`` (project ``proj`` in
    ``europe-west4``, a fixed token, fast retries), ``options`` over them."""
    return {
        "project": "proj",
        "location": "europe-west4",
        "credentials": Credentials(token="test-token"),
        "base_url": server.url,
        "retry": FAST_RETRY,
        **options,
    }


class VertexFakeServer(ScriptedServer):
    """Answers like Vertex AI.

    Args:
      top_candidates: ``(token, logProbability)`` pairs returned as the first position's
        ``logprobsResult.topCandidates`` (cut to the request's ``logprobs``).
      rc_labels: without ``top_candidates``, the candidates are the loopback model's
        relevance labels for the prompt's query and passage (:func:`label_logprobs`).
      polls_until_done: GETs of a batch job before it succeeds (it runs until then).
      models: the model names that exist (others get 404).
      lost_create_replies: the next this many job creations create the job but answer
        503, as if the reply were lost on the way.
      thinking_models: models that think first, as Gemini 2.5 Flash does: unless the
        request's ``thinkingConfig.thinkingBudget`` is 0, thinking takes up to
        :data:`THOUGHT_TOKENS` of ``maxOutputTokens``, and an answer left no room
        ends with ``MAX_TOKENS``, no text and no log-probabilities.
    """

    def __init__(
        self,
        top_candidates: Sequence[tuple[str, float]] = (),
        *,
        rc_labels: Sequence[str] = (),
        polls_until_done: int = 2,
        models: Sequence[str] = ("gemini-2.0-flash",),
        lost_create_replies: int = 0,
        thinking_models: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.top_candidates = list(top_candidates)
        self.rc_labels = tuple(rc_labels)
        self.polls_until_done = polls_until_done
        self.models = set(models)
        self.lost_create_replies = lost_create_replies
        self.thinking_models = set(thinking_models)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}

    def handle(self, request: Request) -> Response:
        path = request.path
        if request.method == "POST" and (match := _GENERATE.match(path)):
            if match["model"] not in self.models:
                return error_response(404, f"Publisher Model `{match['model']}` was not found")
            body = request.json()
            if match["model"] in self.thinking_models:
                thought = self.thinking(body)
                if thought is not None:
                    return Response(200, thought)
            return Response(200, self.generate(body, self.scripted_content))
        if request.method == "POST" and (match := _JOBS.match(path)):
            job = self._create_job(match, request.json())
            if self.lost_create_replies > 0:
                self.lost_create_replies -= 1
                return error_response(503, "the reply to this create was lost")
            return Response(200, job)
        if request.method == "GET" and _JOBS.match(path):
            return self._list_jobs(request.query)
        if request.method == "GET" and (match := _JOB.match(path)):
            return self._get_job(match["id"])
        return error_response(404, f"no route for {request.method} {path}")

    @staticmethod
    def thinking(body: dict[str, Any]) -> dict[str, Any] | None:
        """A thinking model's reply when its thoughts leave no room for the answer, or None."""
        config = body.get("generationConfig") or {}
        if thinking_budget(config) == 0:
            return None
        limit = int(config.get("maxOutputTokens", 8192))
        if limit > THOUGHT_TOKENS:
            return None
        return {
            "candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}],
            "usageMetadata": {
                "promptTokenCount": 10,
                "thoughtsTokenCount": limit,
                "totalTokenCount": 10 + limit,
            },
        }

    def generate(self, body: dict[str, Any], content: str | None = None) -> dict[str, Any]:
        """A ``GenerateContentResponse`` for a request body."""
        prompt = "".join(part.get("text", "") for part in body["contents"][-1]["parts"])
        if "BLOCKME" in prompt:
            return {
                "promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": {"promptTokenCount": len(prompt.split())},
            }
        config = body.get("generationConfig") or {}
        text = content if content is not None else generation_answer(prompt)
        candidate: dict[str, Any] = {
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP",
        }
        if config.get("responseLogprobs"):
            top = self.top_candidates or (
                label_logprobs(prompt, self.rc_labels) if self.rc_labels else []
            )
            top = top[: config.get("logprobs", 0)]
            candidate["logprobsResult"] = {
                "topCandidates": [
                    {
                        "candidates": [
                            {"token": token, "logProbability": value} for token, value in top
                        ]
                    }
                ],
                "chosenCandidates": [{"token": top[0][0], "logProbability": top[0][1]}]
                if top
                else [],
            }
        return {
            "candidates": [candidate],
            "modelVersion": "fake-001",
            "usageMetadata": {
                "promptTokenCount": len(prompt.split()),
                "candidatesTokenCount": len(text.split()),
                "totalTokenCount": len(prompt.split()) + len(text.split()),
            },
        }

    def _create_job(self, match: re.Match[str], body: dict[str, Any]) -> dict[str, Any]:
        job_id = str(1000 + len(self.jobs))
        location = f"projects/{match['project']}/locations/{match['location']}"
        name = f"{location}/batchPredictionJobs/{job_id}"
        self.jobs[job_id] = {
            "name": name,
            "displayName": body.get("displayName", ""),
            "model": body["model"],
            "state": "JOB_STATE_PENDING",
            "inputConfig": body["inputConfig"],
            "outputConfig": body["outputConfig"],
        }
        self.polls[job_id] = 0
        return self.jobs[job_id]

    def _list_jobs(self, query: dict[str, list[str]]) -> Response:
        """One page of the jobs that pass the ``filter`` (only ``display_name="..."``)."""
        jobs = list(self.jobs.values())
        if "filter" in query:
            match = _DISPLAY_NAME_FILTER.match(query["filter"][0])
            if match is None:
                return error_response(400, f"unsupported filter {query['filter'][0]!r}")
            jobs = [job for job in jobs if job.get("displayName") == match["name"]]
        size = int(query.get("pageSize", [LIST_PAGE_SIZE])[0])
        start = int(query.get("pageToken", ["0"])[0])
        page: dict[str, Any] = (
            {"batchPredictionJobs": jobs[start : start + size]}
            if jobs[start : start + size]
            else {}
        )
        if start + size < len(jobs):
            page["nextPageToken"] = str(start + size)
        return Response(200, page)

    def _get_job(self, job_id: str) -> Response:
        if job_id not in self.jobs:
            return error_response(404, f"batch job {job_id} not found")
        job = self.jobs[job_id]
        self.polls[job_id] += 1
        if job["state"] != "JOB_STATE_SUCCEEDED":
            if self.polls[job_id] >= self.polls_until_done:
                self._run_job(job_id, job)
            else:
                job["state"] = "JOB_STATE_RUNNING"
        return Response(200, job)

    def _run_job(self, job_id: str, job: dict[str, Any]) -> None:
        lines = []
        for uri in job["inputConfig"]["gcsSource"]["uris"]:
            with open(uri, encoding="utf-8") as f:
                lines += [json.loads(line) for line in f if line.strip()]
        out_dir = os.path.join(
            job["outputConfig"]["gcsDestination"]["outputUriPrefix"], f"prediction-model-{job_id}"
        )
        os.makedirs(out_dir, exist_ok=True)
        failed = 0
        with open(os.path.join(out_dir, "predictions.jsonl"), "w", encoding="utf-8") as f:
            for line in lines:
                request = line["request"]
                out: dict[str, Any] = {
                    "status": "",
                    "processed_time": "2025-01-01T00:00:00Z",
                    "request": request,
                }
                if "FAILME" in request["contents"][-1]["parts"][0]["text"]:
                    out["status"] = "Bad Request: 400 the request is invalid"
                    failed += 1
                else:
                    out["response"] = self.generate(request)
                f.write(json.dumps(out) + "\n")
        job.update(
            state="JOB_STATE_SUCCEEDED",
            outputInfo={"gcsOutputDirectory": out_dir},
            completionStats={
                "successfulCount": str(len(lines) - failed),
                "failedCount": str(failed),
            },
        )
