"""The batching policy on its own: which texts share a model call, and in what order.

The model here is a plain function that records each call and returns the first token
id as the embedding, so the assertions are about the batcher, not about a network (the
service tests run the real encoder behind it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import numpy as np

from gecko_jax.serve.batching import Batcher
from gecko_jax.serve.metrics import ServiceMetrics


class RecordingModel:
    """Embeds ``[n, 1]``: each text's first id; records the calls; can be held."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, token_ids: list[np.ndarray]) -> np.ndarray:
        self.release.wait(10)
        self.calls.append([int(ids[0]) for ids in token_ids])
        return np.array([[float(ids[0])] for ids in token_ids], dtype=np.float32)


def _texts(first: int, count: int, length: int = 4) -> list[np.ndarray]:
    return [np.full(length, first + i, dtype=np.int32) for i in range(count)]


async def _with_batcher(model: RecordingModel, body, **kwargs):  # type: ignore[no-untyped-def]
    executor = concurrent.futures.ThreadPoolExecutor(1)
    settings = dict(max_batch_tokens=64, max_batch_size=8, max_length=16, full_pass=4)
    settings.update(kwargs)
    batcher = Batcher(model, 1, executor, metrics=ServiceMetrics(8), **settings)
    batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.stop()
        executor.shutdown()


def test_texts_arriving_while_the_model_runs_share_the_next_call() -> None:
    model = RecordingModel()

    async def body(batcher: Batcher) -> list[np.ndarray]:
        model.release.clear()  # the first call blocks until released
        first = asyncio.create_task(batcher.embed(_texts(100, 1)))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher.embed(_texts(200 + 10 * i, 1))) for i in range(3)]
        await asyncio.sleep(0.05)
        model.release.set()
        return await asyncio.gather(first, *rest)

    results = asyncio.run(_with_batcher(model, body))
    assert model.calls == [[100], [200, 210, 220]]
    assert [r[:, 0].tolist() for r in results] == [[100.0], [200.0], [210.0], [220.0]]


def test_a_large_request_is_split_by_the_token_budget_in_order() -> None:
    model = RecordingModel()

    async def body(batcher: Batcher) -> list[np.ndarray]:
        model.release.clear()
        big = asyncio.create_task(batcher.embed(_texts(0, 20, length=8)))
        await asyncio.sleep(0.02)
        small = asyncio.create_task(batcher.embed(_texts(500, 1)))
        await asyncio.sleep(0.02)
        model.release.set()
        return await asyncio.gather(big, small)

    big, small = asyncio.run(_with_batcher(model, body))
    # 8-token texts, a 64-token budget: 8 per call; the small request follows the big
    # one's texts in FIFO order and shares the last call with them.
    assert [len(call) for call in model.calls] == [8, 8, 5]
    assert [i for call in model.calls for i in call] == [*range(20), 500]
    assert big[:, 0].tolist() == [float(i) for i in range(20)] and small[0, 0] == 500.0


def test_an_idle_model_waits_briefly_for_requests_being_tokenized() -> None:
    model = RecordingModel()

    async def body(batcher: Batcher) -> list[np.ndarray]:
        async def tokenized_later(first: int) -> np.ndarray:
            with batcher.incoming():
                await asyncio.sleep(0.01)  # tokenizing
            return await batcher.embed(_texts(first, 1))

        early = asyncio.create_task(batcher.embed(_texts(1, 1)))
        later = asyncio.create_task(tokenized_later(2))
        return await asyncio.gather(early, later)

    asyncio.run(_with_batcher(model, body, max_wait_s=1.0))
    assert model.calls == [[1, 2]]


def test_without_requests_in_flight_a_text_starts_at_once() -> None:
    model = RecordingModel()

    async def body(batcher: Batcher) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.embed(_texts(7, 1))
        return loop.time() - start

    seconds = asyncio.run(_with_batcher(model, body, max_wait_s=5.0))
    assert model.calls == [[7]] and seconds < 1.0


def test_a_full_pass_is_queued_behind_the_running_batch() -> None:
    model = RecordingModel()

    async def body(batcher: Batcher) -> list[int]:
        model.release.clear()
        first = asyncio.create_task(batcher.embed(_texts(0, 1)))
        await asyncio.sleep(0.05)
        few = asyncio.create_task(batcher.embed(_texts(5, 2)))
        await asyncio.sleep(0.05)
        in_flight = [len(batcher._running)]  # fewer than a full pass: not queued yet
        full = asyncio.create_task(batcher.embed(_texts(10, 4)))
        await asyncio.sleep(0.05)
        in_flight.append(len(batcher._running))  # a full pass waits: queued at once
        model.release.set()
        await asyncio.gather(first, few, full)
        return in_flight

    in_flight = asyncio.run(_with_batcher(model, body))
    assert in_flight == [1, 2]
    assert model.calls == [[0], [5, 6, 10, 11, 12, 13]]
