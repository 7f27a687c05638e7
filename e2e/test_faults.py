"""Faults on the local cluster (see local_system.py), with clients watching: a runtime killed in the
middle of its streams, then the router killed and started again.

- The streams the dead runtime was serving end with an error at once, none hangs; the Deployment
  starts a new pod, and the router sends it traffic within 2 s of its being Ready.
- A router started afresh has no pools; the operator pushes the pool's route again within a few
  reconcile passes, and clients are answered.
"""

import asyncio
import signal
import time

import openai
import pytest

from e2e.local_system import API_KEY, LOCAL, LocalSystem
from e2e.processes import shoal_process
from e2e.traffic import client_for
from tests.support.api_paths import object_path
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
POOL = "e2e-faults"
MODEL = "e2e-chat"  # the manifest's servedName
FIRST_START_S = 240  # the first runtime may convert the embedded GGUF model (about 25 s once)
POD_START_S = 120
STREAMS = 2
STREAM_END_S = 10  # a stream cut by a dead runtime ends within this, with an error
BACK_AFTER_READY_S = 2.0
ROUTES_BACK_S = 10


async def ready_pods(system: LocalSystem) -> set[str]:
    pods = await system.client.get(
        object_path("v1", "pods", system.namespace) + f"?labelSelector=shoal.dev/pool={POOL}"
    )
    return {
        pod["metadata"]["name"]
        for pod in pods["items"]
        if not pod["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
    }


async def answers(client: openai.AsyncOpenAI) -> bool:
    try:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi."}], max_tokens=1, temperature=0
        )
        return True
    except openai.APIError:
        return False


async def stream(client: openai.AsyncOpenAI, started: asyncio.Event) -> str:
    """A long streamed answer: 'completed', or the error class that ended it."""
    try:
        chunks = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Count from one to one thousand."}],
            max_tokens=2000,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        async for _ in chunks:
            started.set()
        return "completed"
    except openai.APIError as error:
        return type(error).__name__


async def first_chunks(started: list[asyncio.Event], streams: list[asyncio.Task]) -> bool:
    """Whether every stream has its first chunk; a stream that ended before one fails the test."""
    ended = [
        stream.result() for stream, event in zip(streams, started, strict=True) if stream.done() and not event.is_set()
    ]
    assert not ended, f"a stream ended before its first chunk: {ended}"
    return all(event.is_set() for event in started)


async def test_a_runtime_killed_mid_stream_and_a_router_restarted(system: LocalSystem):
    manifest = (LOCAL / "modelpool.yaml").read_text().replace("name: e2e-chat", f"name: {POOL}")
    await system.kubectl("apply", "-f", "-", stdin=manifest)
    await system.wait_for_status(POOL, lambda s: s.get("phase") == "Ready", timeout=FIRST_START_S, what="pool Ready")
    client = client_for(f"{system.router_url}/v1", API_KEY)
    try:
        (victim,) = await ready_pods(system)

        # Streams in flight when their runtime dies end at once, with an error, not a hang.
        started = [asyncio.Event() for _ in range(STREAMS)]
        streams = [asyncio.create_task(stream(client, event)) for event in started]
        await eventually(
            lambda: first_chunks(started, streams),
            lambda all_started: all_started,
            timeout=60,
            what="streams under way",
        )
        killed_at = time.monotonic()
        await system.kubectl("delete", "pod", victim, "--grace-period=0", "--force", "--wait=false")
        ends = await asyncio.wait_for(asyncio.gather(*streams), timeout=STREAM_END_S)
        assert all(end != "completed" for end in ends), ends
        print(f"streams cut by the dead runtime ended {time.monotonic() - killed_at:.1f}s after the kill: {ends}")

        # The Deployment's new pod: traffic within 2 s of its being Ready.
        (replacement,) = await eventually(
            lambda: ready_pods(system), lambda pods: pods and victim not in pods, timeout=POD_START_S, what="a new pod"
        )
        ready_at = time.monotonic()
        await eventually(lambda: answers(client), bool, timeout=30, what="answers from the new runtime")
        back_s = time.monotonic() - ready_at
        print(f"traffic back {back_s:.2f}s after {replacement} was seen Ready")
        assert back_s < BACK_AFTER_READY_S

        # The router killed outright and started again: the operator gives it the pool back.
        system.router_process.send_signal(signal.SIGKILL)
        await system.router_process.wait()
        restarted_at = time.monotonic()
        async with shoal_process(
            system.router_args, log=system.logs / "router-restarted.log", ready_url=f"{system.router_url}/ready"
        ):
            await eventually(
                lambda: answers(client), bool, timeout=ROUTES_BACK_S, what="answers from the restarted router"
            )
            print(f"the restarted router answered {time.monotonic() - restarted_at:.1f}s after it was started")
            assert f"{system.namespace}.{POOL}" in await system.router_pools()
    finally:
        await client.close()
