"""The operator and the router agree on what crosses the admin API (shoal/route_contract.py): the
route the operator builds reads back, through JSON and the router's own parser, as the same Route;
a verdict and the measurements the router writes read back, through JSON, as what the operator
acts on."""

import json

import pytest

from shoal.fields import FieldError
from shoal.operator.children import PoolRef
from shoal.operator.plan import Observed, PoolObject, plan_for
from shoal.operator.rollout import RolloutState, RouterView
from shoal.operator.route import route_for
from shoal.operator.spec import parse_pool_spec
from shoal.route_contract import (
    Breach,
    ColdStart,
    MeasuredWindow,
    RuntimeEndpoint,
    ScrapeHealth,
    measurement_to_json,
    measurements_from_json,
    rollback_from_json,
    rollback_to_json,
    route_to_json,
)
from shoal.router.config import load_config, parse_pool
from shoal.router.dev import LOCAL_CONFIG
from shoal.router.traffic.measurements import Measurements
from shoal.router.traffic.rollout import PoolRollout
from shoal.router.traffic.split import Split

REF = PoolRef("chat", "team-a", "uid-1")
SPEC = {
    "model": {"revision": "v1", "servedName": "chat-model"},
    "runtime": {"device": "cpu"},
    "resources": {"gpus": 0},
    "rollout": {"analysis": {"maxErrorRate": 0.05, "minSamples": 20, "windowSeconds": 90}},
    "qos": {"maxConcurrencyPerReplica": 8, "batchShareMin": 0.2},
    "tenants": [{"name": "acme", "maxConcurrent": 2}, {"name": "evals", "tokensPerMinute": 6000}],
    "speculative": {"method": "ngram", "qosClasses": ["batch"]},
    "coldStart": {"maxQueued": 8, "maxWaitSeconds": 30},
}


def wire(value):
    """As it travels: JSON text, and back."""
    return json.loads(json.dumps(value))


def test_the_route_the_operator_builds_is_the_route_the_router_reads():
    state = RolloutState(stable="v1-a", canary="v2-b", canary_weight=25)
    endpoints = {
        "v1-a": (RuntimeEndpoint("10.0.0.2:50051", "http://10.0.0.2:8001/metrics"),),
        "v2-b": (
            RuntimeEndpoint("[fd00::3]:50051", "http://[fd00::3]:8001/metrics"),
            RuntimeEndpoint("10.0.0.4:50051"),
        ),
    }
    route = route_for(REF, parse_pool_spec(SPEC), state, endpoints)
    assert parse_pool(wire(route_to_json(route))) == route
    assert route.canary_weight == 25.0 and route.qos.max_concurrency_per_endpoint == 8
    assert route.speculative.qos_classes == ("batch",)
    assert route.cold_start == ColdStart(enabled=True, max_queued=8, max_wait_s=30.0)
    assert {r.name: r.window_s for r in route.rollback_rules} == {
        "latency_ratio:e2e_p99": 90.0,
        "error_rate": 90.0,
        "preemptions": 90.0,
        "oom_errors": 90.0,
        "kv_free": 90.0,
    }


@pytest.mark.parametrize(
    "metrics_url",
    [
        "file:///etc/passwd",
        "gopher://10.0.0.2:8001/",
        "not a url",
        "http:///metrics",
        "http://169.254.169.254/latest/meta-data/",  # another host: fetched for whoever wrote the route
        "http://10.0.0.2.evil.example:8001/metrics",
    ],
)
def test_a_metrics_url_is_http_on_the_runtimes_own_host(metrics_url):
    route = {"name": "p", "model": "m", "revisions": {"v1": {"endpoints": [{"target": "10.0.0.2:50051"}]}}}
    route["revisions"]["v1"]["endpoints"][0]["metrics_url"] = metrics_url
    with pytest.raises(FieldError, match=r"metrics_url"):
        parse_pool(route)


def test_a_planned_route_reads_back_too():
    plan = plan_for(PoolObject(REF, 1, SPEC, {}), Observed([], []), RouterView(reachable=True), 2_000_000.0, 30)
    assert plan.route is not None and parse_pool(wire(route_to_json(plan.route))) == plan.route


def test_a_route_written_by_hand_reads_back_the_same():
    for route in load_config(LOCAL_CONFIG).pools:
        assert parse_pool(wire(route_to_json(route))) == route


def test_the_routers_verdict_is_what_the_operator_reads():
    rollout = PoolRollout(Split("v1", "v2", 10.0))
    breaches = [
        Breach(
            "error_rate", {"canary_error_rate": 0.25, "canary_errors": 5, "canary_requests": 20}, "<= 0.01 over 60s"
        ),
        Breach(
            "latency_ratio:e2e_p99",
            {"canary_s": 2.5, "stable_s": 0.0, "ratio": float("inf")},
            "canary <= 1.3 x stable over 60s",
        ),
    ]
    verdict = rollout.roll_back(breaches, wall_now=1_700_000_000.5)
    read = rollback_from_json(wire(rollback_to_json("team-a.chat", rollout.rolled_back.values())))
    assert read == {"v2": verdict}
    assert read["v2"].reason == verdict.reason and read["v2"].weight_before == 10.0


def test_the_canary_samples_the_router_counts_are_what_the_operator_reads():
    measurements = Measurements(retention_s=60.0)
    for i in range(7):
        measurements.record_finish(
            "team-a.chat", "v2", "realtime" if i % 2 else "batch", 100.0, error=i == 0, e2e_s=0.1
        )
    every = measurements.stats("team-a.chat", "v2", 60.0, 100.0).summary()
    per_class = {q: measurements.stats("team-a.chat", "v2", 60.0, 100.0, q).summary() for q in ("realtime", "batch")}
    scrapes = ScrapeHealth(endpoints=2, failing=1)
    body = {"measurements": [measurement_to_json("team-a.chat", "v2", 60.0, every, per_class, scrapes)]}
    assert measurements_from_json(wire(body)) == (
        MeasuredWindow("team-a.chat", "v2", 60.0, requests=7, errors=1, scrapes=scrapes),
    )
