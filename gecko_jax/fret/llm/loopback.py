"""A deterministic OpenAI-compatible LLM server on 127.0.0.1, for tests, benchmarks and
dry runs (``gecko-fret --llm loopback``). No model runs: answers are derived from the
words of the prompt, the same every time.

Prompt conventions (the FRet templates follow them):

* A *field* is a line ``Name: value``; its value is the rest of that line plus the lines
  after it, up to a blank line, a line that starts another field (``Word words:``, e.g.
  ``Task type:``, ``Query:``, ``Output:``) or a line starting with ``Output``. The
  *last* line starting with ``Passage:`` gives the passage (few-shot examples must
  label theirs differently, e.g. ``Example passage:``); likewise ``Query:`` and
  ``Task type:``.
* ``/v1/chat/completions`` answers a prompt (the last user message) holding a passage
  with strict JSON ``{"task": ..., "query": ...}``: the query is the passage's four
  longest content words (at least two words: ``overview`` pads), lowercased, longest
  first, reversed if that order is a run of the passage (so never a copy of it), with a
  question mark; the task is a fixed sentence for the ``Task type:``
  field if there is one, else one picked by a hash of the passage. Without a passage it
  answers a short plain-text line.
* ``/v1/completions`` generates one token. With ``echo=true`` it returns the prompt's
  tokens (``\\s*\\S+`` pieces) with log-probabilities: ``log 0.5`` for a word found in
  the passage, ``log 0.05`` for any other, null for the first token; so a query's
  likelihood grows with its overlap with the passage. The generated token and its
  ``top_logprobs`` range over ``rc_labels`` (first word of each, with a leading space),
  most relevant first: with overlap ``o`` = the share of the query's words found in the
  passage, label ``i`` of ``n`` gets the log-softmax of ``-2 (i - (1 - o)(n - 1))^2``.
* ``/v1/models`` lists ``model``; a request for any other model gets vLLM's 404.

Run one by hand: ``python -m gecko_jax.fret.llm.loopback --port 8000 --latency_s 0.05``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import threading
from collections.abc import Sequence
from typing import Any

from gecko_jax.fret.llm.httpserver import LocalHTTPServer, Request, Response, error_response

QL_LOGPROB_IN_PASSAGE = math.log(0.5)
QL_LOGPROB_OTHER = math.log(0.05)
RC_SHARPNESS = 2.0
DEFAULT_RC_LABELS = ("3", "2", "1", "0")

_TOKEN = re.compile(r"\s*\S+")
_WORD = re.compile(r"[a-z0-9]+")
_FIELD_LINE = re.compile(r"^[A-Z][A-Za-z ]{0,30}:(\s|$)")
_STOPWORDS = frozenset(
    "a an and are as at be been but by can did do does for from had has have he her his how "
    "i if in into is it its may more most not of on or our she so such than that the their "
    "them then there these they this those to was we were what when where which while who "
    "why will with would you your also about after before over under between".split()
)
_TASKS = {
    "question answering": "Given a question, retrieve passages that answer the question",
    "fact checking": "Given a claim, find documents that support or refute the claim",
    "search result": "Given a web search query, retrieve relevant passages",
    "sentence similarity": "Retrieve sentences that are semantically similar to the given sentence",
}


def find_field(text: str, name: str) -> str | None:
    """The value of the last ``name:`` field of ``text`` (see the module docstring)."""
    lines = text.split("\n")
    prefix = f"{name}:"
    starts = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    if not starts:
        return None
    value = [lines[starts[-1]][len(prefix) :].strip()]
    for line in lines[starts[-1] + 1 :]:
        if not line.strip() or _FIELD_LINE.match(line) or line.startswith("Output"):
            break
        value.append(line.strip())
    return " ".join(part for part in value if part)


def words(text: str) -> list[str]:
    """Lowercased alphanumeric words."""
    return _WORD.findall(text.lower())


def generation_answer(prompt: str) -> str:
    """The chat answer: JSON ``{"task", "query"}`` for a prompt with a passage."""
    passage = find_field(prompt, "Passage")
    if not passage:
        return "loopback: no 'Passage:' line in the prompt"
    content = list(
        dict.fromkeys(
            w for w in words(passage) if len(w) >= 3 and w not in _STOPWORDS and not w.isdigit()
        )
    )
    chosen = [
        content[i] for i in sorted(range(len(content)), key=lambda i: (-len(content[i]), i))[:4]
    ]
    chosen += ["overview"] * (2 - len(chosen))
    if f" {' '.join(chosen)} " in f" {' '.join(words(passage))} ":
        chosen.reverse()
    query = " ".join(chosen)
    task_type = (find_field(prompt, "Task type") or "").lower()
    if task_type in _TASKS:
        task = _TASKS[task_type]
    elif task_type:
        task = f"Given a {task_type} query, retrieve relevant passages"
    else:
        digest = int(hashlib.sha256(passage.encode("utf-8")).hexdigest()[:8], 16)
        task = sorted(_TASKS.values())[digest % len(_TASKS)]
    return json.dumps({"task": task, "query": query + "?"})


def prompt_logprobs(text: str) -> tuple[list[str], list[int], list[float | None]]:
    """Tokens, character offsets and query-likelihood log-probabilities of ``text``."""
    passage_words = set(words(find_field(text, "Passage") or ""))
    tokens, offsets, values = [], [], []
    for match in _TOKEN.finditer(text):
        tokens.append(match.group())
        offsets.append(match.start())
        token_words = words(match.group())
        inside = bool(token_words) and all(w in passage_words for w in token_words)
        values.append(QL_LOGPROB_IN_PASSAGE if inside else QL_LOGPROB_OTHER)
    if values:
        values[0] = None
    return tokens, offsets, values


def label_logprobs(text: str, labels: Sequence[str]) -> list[tuple[str, float]]:
    """``(token, logprob)`` of each label's first word, most likely first."""
    query = set(words(find_field(text, "Query") or ""))
    passage = set(words(find_field(text, "Passage") or ""))
    overlap = len(query & passage) / len(query) if query else 0.0
    target = (1.0 - overlap) * (len(labels) - 1)
    scores = [-RC_SHARPNESS * (i - target) ** 2 for i in range(len(labels))]
    norm = max(scores) + math.log(sum(math.exp(s - max(scores)) for s in scores))
    pairs = [(" " + label.split()[0], score - norm) for label, score in zip(labels, scores)]
    return sorted(pairs, key=lambda pair: -pair[1])


class LoopbackServer(LocalHTTPServer):
    """The deterministic OpenAI-compatible server (see the module docstring).

    Args:
      latency_s: seconds every request waits before its answer.
      model: the one model name served.
      rc_labels: relevance labels for ``/v1/completions``, most relevant first; their
        first words must differ.
      host, port: where to listen (port 0: an ephemeral one; see ``url``).
    """

    def __init__(
        self,
        latency_s: float = 0.0,
        model: str = "loopback",
        *,
        rc_labels: Sequence[str] = DEFAULT_RC_LABELS,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(latency_s=latency_s, host=host, port=port)
        self.model = model
        self.rc_labels = tuple(rc_labels)
        if len({label.split()[0] for label in self.rc_labels}) != len(self.rc_labels):
            raise ValueError(f"rc_labels must differ in their first word: {self.rc_labels}")

    @property
    def base_url(self) -> str:
        """The API root clients take: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def chat_answer(self, prompt: str) -> str:
        """The model's reply to a chat prompt (the loopback model: :func:`generation_answer`)."""
        return generation_answer(prompt)

    def handle(self, request: Request) -> Response:
        if request.method == "GET" and request.path == "/v1/models":
            return Response(
                200,
                {
                    "object": "list",
                    "data": [{"id": self.model, "object": "model", "owned_by": "gecko_jax"}],
                },
            )
        routes = {"/v1/chat/completions": self._chat, "/v1/completions": self._completions}
        if request.method != "POST" or request.path not in routes:
            return error_response(404, f"no route for {request.method} {request.path}")
        body = request.json() or {}
        if body.get("model") != self.model:
            return Response(
                404,
                {
                    "error": {
                        "message": f"The model `{body.get('model')}` does not exist.",
                        "type": "NotFoundError",
                        "param": None,
                        "code": 404,
                    }
                },
            )
        return routes[request.path](body)

    @staticmethod
    def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    def _chat(self, body: dict[str, Any]) -> Response:
        messages = body.get("messages") or []
        users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
        prompt = users[-1] if users else ""
        answer = self.chat_answer(prompt)
        prompt_tokens = sum(len(_TOKEN.findall(m.get("content") or "")) for m in messages)
        return Response(
            200,
            {
                "id": "chatcmpl-loopback",
                "object": "chat.completion",
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": answer},
                    }
                ],
                "usage": self._usage(prompt_tokens, len(_TOKEN.findall(answer))),
            },
        )

    def _completions(self, body: dict[str, Any]) -> Response:
        prompts = body.get("prompt", "")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        k = body.get("logprobs")
        generate = int(body.get("max_tokens", 16)) > 0
        choices, prompt_total, output_total = [], 0, 0
        for index, text in enumerate(prompts):
            ranked = label_logprobs(text, self.rc_labels)
            tokens, offsets, values = prompt_logprobs(text) if body.get("echo") else ([], [], [])
            tops: list[dict[str, float] | None] = [
                None if v is None else {t: v} for t, v in zip(tokens, values)
            ]
            if generate:
                token, value = ranked[0]
                offsets.append(len(text) if body.get("echo") else 0)
                tokens.append(token)
                values.append(value)
                tops.append(dict(ranked[: max(1, k or 1)]))
            choice: dict[str, Any] = {
                "index": index,
                "finish_reason": "length",
                "text": (text if body.get("echo") else "") + (tokens[-1] if generate else ""),
                "logprobs": None
                if k is None
                else {
                    "tokens": tokens,
                    "token_logprobs": values,
                    "text_offset": offsets,
                    "top_logprobs": tops,
                },
            }
            choices.append(choice)
            prompt_total += len(_TOKEN.findall(text))
            output_total += int(generate)
        return Response(
            200,
            {
                "id": "cmpl-loopback",
                "object": "text_completion",
                "model": self.model,
                "choices": choices,
                "usage": self._usage(prompt_total, output_total),
            },
        )


def main(argv: Sequence[str] | None = None) -> None:
    """Serves until interrupted; prints the base URL first."""
    parser = argparse.ArgumentParser(description="A deterministic OpenAI-compatible server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: an ephemeral port")
    parser.add_argument("--latency_s", type=float, default=0.0)
    parser.add_argument("--model", default="loopback")
    parser.add_argument(
        "--rc_labels",
        default=",".join(DEFAULT_RC_LABELS),
        help="comma-separated relevance labels, most relevant first",
    )
    args = parser.parse_args(argv)
    server = LoopbackServer(
        args.latency_s,
        args.model,
        host=args.host,
        port=args.port,
        rc_labels=[label.strip() for label in args.rc_labels.split(",")],
    )
    with server:
        print(server.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
