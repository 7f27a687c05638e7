"""One request, n choices (OpenAI's `n`): n sequences from one prompt, their outputs merged into one
stream, each tagged with its choice's index.

The first choice starts alone; the others start once it has produced its first output, when its
prompt's KV blocks are in the prefix cache, so they share them instead of computing the prompt
again. A seeded request's choice i samples with seed + i: the choices differ, and the same request
gives the same choices again. If any choice fails the others are aborted and the error raised; if
the consumer stops reading, every choice is aborted (their KV blocks freed before the next step).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

from shoal.runtime.engine.async_engine import AsyncEngine
from shoal.runtime.engine.output_processor import RequestOutput
from shoal.runtime.sampling.params import SamplingParams

_DONE = object()


async def generate_choices(
    engine: AsyncEngine, request_id: str, prompt_ids: list[int], sampling: SamplingParams, priority: int, n: int
) -> AsyncIterator[tuple[int, RequestOutput]]:
    """(choice index, output) pairs, until every choice has finished."""
    if n == 1:
        async for output in engine.generate(request_id, prompt_ids, sampling, priority):
            yield 0, output
        return
    merged: asyncio.Queue = asyncio.Queue()
    first_output = asyncio.Event()

    async def choice(index: int) -> None:
        if index > 0:
            await first_output.wait()
        seeded = replace(sampling, seed=sampling.seed + index) if sampling.seed is not None else sampling
        try:
            async for output in engine.generate(f"{request_id}/{index}", prompt_ids, seeded, priority):
                first_output.set()
                merged.put_nowait((index, output))
        except Exception as error:  # handed to the consumer, which raises it
            first_output.set()
            merged.put_nowait(error)
        merged.put_nowait(_DONE)

    tasks = [asyncio.create_task(choice(index)) for index in range(n)]
    try:
        running = n
        while running:
            item = await merged.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
