"""Client traffic for the e2e runs: chat completions through the router with the OpenAI SDK,
each outcome kept with the revision that served it (the router's x-shoal-revision header).

    python -m e2e.traffic --base-url http://127.0.0.1:8000/v1 --api-key KEY --model NAME --seconds 60
"""

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import openai


@dataclass
class Outcomes:
    ok: Counter = field(default_factory=Counter)  # revision -> answered requests
    failed: Counter = field(default_factory=Counter)  # revision ('?' if none named) -> failures
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"ok {dict(self.ok)}, failed {dict(self.failed)}"


async def send_one(client: openai.AsyncOpenAI, model: str, outcomes: Outcomes) -> None:
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=4, temperature=0
        )
        raw.parse()
        outcomes.ok[raw.headers.get("x-shoal-revision", "?")] += 1
    except openai.APIStatusError as error:
        outcomes.failed[error.response.headers.get("x-shoal-revision", "?")] += 1
        outcomes.errors.append(f"{error.status_code}: {error.message}"[:300])
    except openai.APIError as error:
        outcomes.failed["?"] += 1
        outcomes.errors.append(f"{type(error).__name__}: {error}"[:300])


async def keep_sending(
    client: openai.AsyncOpenAI, model: str, outcomes: Outcomes, stop: asyncio.Event, concurrency: int = 4
) -> None:
    """`concurrency` clients, each sending one request after another until stop is set."""

    async def loop() -> None:
        while not stop.is_set():
            await send_one(client, model, outcomes)

    await asyncio.gather(*(loop() for _ in range(concurrency)))


def client_for(base_url: str, api_key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60.0)


@contextlib.asynccontextmanager
async def sending(base_url: str, api_key: str, model: str, concurrency: int = 4) -> AsyncIterator[Outcomes]:
    """`concurrency` clients sending chat completions one after another, until exit."""
    outcomes, stop = Outcomes(), asyncio.Event()
    client = client_for(base_url, api_key)
    loops = asyncio.create_task(keep_sending(client, model, outcomes, stop, concurrency))
    try:
        yield outcomes
    finally:
        stop.set()
        await loops
        await client.close()


async def _main(args: argparse.Namespace) -> None:
    client, outcomes, stop = client_for(args.base_url, args.api_key), Outcomes(), asyncio.Event()
    sender = asyncio.create_task(keep_sending(client, args.model, outcomes, stop, args.concurrency))
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(5)
        print(outcomes.summary(), flush=True)
    stop.set()
    await sender
    print("final:", outcomes.summary())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=4)
    asyncio.run(_main(parser.parse_args()))
