"""A minimal sentence-transformers embedding server: the baseline of ``serve_load.py``.

What a user writes in an afternoon: FastAPI + uvicorn + orjson, one OpenAI-compatible
route, ``POST /v1/embeddings`` (``input`` a string or a list of strings), each request
encoded on its own with ``SentenceTransformer.encode``. The forward passes run one at a
time on a single worker thread, off the event loop: torch already uses every core for
one pass, so overlapping passes would only contend. No batching across requests.
``GET /health`` answers 200 once the model is loaded and has encoded once.

    python bench/st_server.py --model PATH [--port 8000] [--batch_size 32]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
from typing import Any

import numpy as np
import orjson
import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response


def build_app(model_path: str, batch_size: int) -> FastAPI:
    """The FastAPI app serving the sentence-transformers model at ``model_path``."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    model.encode(["warm-up"], convert_to_numpy=True)
    encode_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    name = model_path.rstrip("/").split("/")[-1]
    app = FastAPI()

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        try:
            body: dict[str, Any] = orjson.loads(await request.body())
        except orjson.JSONDecodeError as error:
            raise HTTPException(400, f"malformed JSON: {error}") from error
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise HTTPException(400, "'input' must be a string or a non-empty list of strings")
        vectors = await asyncio.get_running_loop().run_in_executor(encode_thread, encode, texts)
        payload = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v}
                for i, v in enumerate(vectors.tolist())
            ],
            "model": body.get("model", name),
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }
        return Response(orjson.dumps(payload), media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a sentence-transformers model folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    app = build_app(args.model, args.batch_size)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
