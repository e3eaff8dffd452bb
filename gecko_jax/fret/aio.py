"""asyncio utilities shared by the LLM stages."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


async def gather_progress(
    awaitables: Iterable[Awaitable[T]], desc: str, progress: bool = True, unit: str = "call"
) -> list[T]:
    """Awaits all concurrently (results in order) with a tqdm bar ticking per completion.

    The LLM client bounds how many calls are in flight. On the first failure every
    other awaitable is cancelled before the error propagates, so a failed stage leaves
    nothing running.
    """
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    with tqdm(total=len(tasks), desc=desc, unit=unit, disable=not progress, file=sys.stderr) as bar:
        for task in tasks:
            task.add_done_callback(lambda _: bar.update(1))
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
