"""The pool's speculation rule reaching a (fake) runtime: a request the rule turns down arrives with
`sampling.speculative = false`, one it allows as its client sent it; a client's `speculative: false`
arrives false, its `true` never overrides the pool's "no"; every decision is counted."""

import asyncio

import aiohttp
import pytest

from shoal import metric_names as names
from tests.router.harness import RouterInThread, make_config, pool
from tests.router.http_client import chat, post

pytestmark = pytest.mark.integration
RULED, LOADED = "fake-model", "fake-loaded"


@pytest.fixture
def router(loop_thread, start_fake):
    ruled, loaded = start_fake(tokens=2), start_fake(tokens=2)
    pools = [
        pool("fake", {"v1": [ruled]}, model=RULED, speculative={"qos_classes": ["realtime"], "tenants_off": ["noisy"]}),
        # One endpoint of 4 slots: a lone request is a load of 0.25, not below 0.25.
        pool(
            "loaded",
            {"v1": [loaded]},
            model=LOADED,
            qos={"max_concurrency_per_endpoint": 4},
            speculative={"max_load": 0.25},
        ),
    ]
    router = RouterInThread(loop_thread, make_config(pools))
    router.ruled, router.loaded = ruled, loaded
    yield router
    router.stop()


def sampling_sent(router, fake, model: str, key: str = "sk-test-quiet", qos: str | None = None, **params):
    """The SamplingParams the runtime got for one chat completion."""

    async def call():
        async with aiohttp.ClientSession() as session:
            headers = {"x-shoal-qos": qos} if qos else {}
            return await post(session, router.base_url + "/v1/chat/completions", chat(model, **params), key, **headers)

    reply = asyncio.run(call())
    assert reply.status == 200, reply.body
    return fake.counters.last_request.sampling


def decisions(router, pool: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels[names.LABEL_QOS_CLASS], s.labels[names.LABEL_DECISION]): s.value
        for family in router.router.registry.collect()
        if family.name == names.ROUTER_SPECULATION_DECISIONS
        for s in family.samples
        if s.name.endswith("_total") and s.labels[names.LABEL_POOL] == pool
    }


def test_the_pools_rule_and_the_clients_opt_out_reach_the_runtime(router):
    realtime = sampling_sent(router, router.ruled, RULED)
    assert not realtime.HasField("speculative")  # allowed: as the client sent it, the runtime's default
    batch = sampling_sent(router, router.ruled, RULED, qos="batch")
    assert batch.HasField("speculative") and batch.speculative is False
    batch_asking = sampling_sent(router, router.ruled, RULED, qos="batch", speculative=True)
    assert batch_asking.HasField("speculative") and batch_asking.speculative is False  # no client overrides it
    tenant_off = sampling_sent(router, router.ruled, RULED, key="sk-test-noisy")
    assert tenant_off.HasField("speculative") and tenant_off.speculative is False
    opted_out = sampling_sent(router, router.ruled, RULED, speculative=False)
    assert opted_out.HasField("speculative") and opted_out.speculative is False
    asking = sampling_sent(router, router.ruled, RULED, speculative=True)
    assert asking.speculative is True
    assert decisions(router, "fake") == {
        ("realtime", "allowed"): 2.0,
        ("batch", "off_by_qos"): 2.0,
        ("realtime", "off_by_tenant"): 1.0,
        ("realtime", "off_by_client"): 1.0,
    }


def test_a_pool_at_its_max_load_turns_speculation_off(router):
    loaded = sampling_sent(router, router.loaded, LOADED)
    assert loaded.HasField("speculative") and loaded.speculative is False
    assert decisions(router, "loaded") == {("realtime", "off_by_load"): 1.0}
