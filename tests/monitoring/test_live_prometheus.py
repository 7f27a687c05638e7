"""The dashboards and alerts against a real Prometheus scraping real Shoal processes.

Two `shoal runtime` processes on the embedded model serve pool `chat`: stable r1, and canary r2 that
fails half its requests on purpose (--fault-error-rate). `shoal router` splits traffic 50/50 between
them. Prometheus scrapes all three every second and evaluates the alert rules. A short load goes
through the router with the OpenAI SDK (chat and completions, streamed or not, realtime and batch,
three tenants, one of them over its concurrency limit). Then every expression of every dashboard
panel, annotation and variable and every alert rule goes to /api/v1/query and must be accepted,
the rules must evaluate cleanly, and the key panels must show the traffic that was sent.
"""

import math
import time
from contextlib import ExitStack

import pytest

from tests.monitoring.load import MODEL, send_load
from tests.monitoring.prometheus_server import PrometheusProcess, binary
from tests.monitoring.queries import RULES_FILE, Query, panel_queries, rule_queries, variable_queries
from tests.router.harness import RouterProcess, pool
from tests.runtime.server_process import RuntimeProcess

pytestmark = pytest.mark.integration

POOL = "chat"
RUNTIME_FLAGS = ("--device", "cpu", "--kv-cache-memory", "64MiB", "--max-num-batched-tokens", "512", "--pool", POOL)

# Panels that must show data after the load, every query of them (dashboard uid -> panel titles).
KEY_PANELS = {
    "shoal-fleet-overview": [
        "Requests/s",
        "5xx error ratio",
        "Generated tokens/s",
        "p99 TTFT",
        "Fullest KV cache",
        "Requests/s by pool",
        "Error ratio by pool",
        "Tokens/s by pool",
        "p99 TTFT by pool",
        "KV cache usage by pool (fullest runtime)",
        "Requests waiting by pool",
        "Traffic weight by pool and revision",
    ],
    "shoal-pool-detail": [
        "Traffic weight",
        "Ready runtimes",
        "Traffic weight by revision",
        "Requests/s by revision and status",
        "Time to first token: $revision",
        "Inter-token latency: $revision",
        "End-to-end latency: $revision",
        "p99 TTFT by revision",
        "p99 inter-token latency by revision",
        "p99 end-to-end latency by revision",
        "5xx error ratio by revision",
        "Runtime errors/s by revision and gRPC code",
        "Generated tokens/s by revision",
        "KV cache usage by revision (fullest runtime)",
        "Queue depth by revision",
    ],
    "shoal-runtime-internals": [
        "KV cache usage (fullest runtime)",
        "KV blocks free",
        "Requests running",
        "Requests waiting",
        "KV cache usage per runtime",
        "KV blocks used and free",
        "Preemptions/s",
        "Prefix cache hit rate",
        "Queue depth: running and waiting",
        "Tokens per engine step",
        "Engine step time",
        "Engine steps/s",
        "Tokens/s: prompt and generated",
        "Request sizes (tokens)",
        "TTFT in the runtime",
        "Inter-token latency in the runtime",
        "End-to-end latency in the runtime",
        "Finished requests/s by reason",
        "Failed requests/s by gRPC code",
    ],
    "shoal-qos-tenants": [
        "Requests/s by QoS class and status",
        "p95 TTFT by QoS class",
        "Time in the router's queue by QoS class",
        "Router queue depth by QoS class",
        "Batch concurrency limit",
        "Requests/s by tenant",
        "Generated tokens/s by tenant",
        "Prompt tokens/s by tenant",
        "Rate limited/s by tenant and limit",
        "429 ratio by tenant",
        "5xx ratio by tenant",
        "Open realtime sessions",
    ],
}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> PrometheusProcess:
    """Prometheus once the load has been sent and scraped."""
    from shoal.runtime.model.loader import materialize, resolve_model_source

    binary("prometheus")  # fail at once, not after the runtimes have started
    materialize(resolve_model_source("default"))  # convert once, before two processes want it
    with ExitStack() as stack:  # all start at once; each stops at the end, whatever failed
        runtimes = [
            RuntimeProcess(*RUNTIME_FLAGS, "--revision", "r1"),
            RuntimeProcess(*RUNTIME_FLAGS, "--revision", "r2", "--fault-error-rate", "0.5"),
        ]
        for runtime in runtimes:
            stack.callback(runtime.stop)
        # No rollback rules: the canary fails on purpose and must keep its share for the whole test.
        router = RouterProcess(
            [
                pool(
                    POOL,
                    {"r1": [runtimes[0]], "r2": [runtimes[1]]},
                    model=MODEL,
                    canary="r2",
                    canary_weight=50,
                    rollback_rules=[],
                )
            ]
        )
        stack.callback(router.stop)
        targets = {
            "shoal-runtime": [f"127.0.0.1:{r.metrics_port}" for r in runtimes],
            "shoal-router": [f"127.0.0.1:{router.admin_port}"],  # its /metrics is on the admin port
        }
        prometheus = PrometheusProcess(tmp_path_factory.mktemp("prometheus"), targets, [RULES_FILE])
        stack.callback(prometheus.stop)
        for process in (*runtimes, router, prometheus):
            process.wait_ready()
        sent = send_load(router)
        wait_for_scrapes(prometheus, sent)
        yield prometheus


def wait_for_scrapes(prometheus: PrometheusProcess, sent: int, timeout_s: float = 60) -> None:
    """Until Prometheus has every request the router answered, and a scrape of every target after that."""
    deadline = time.monotonic() + timeout_s
    while prometheus.value("sum(shoal:router_requests_total)") != sent:
        assert time.monotonic() < deadline, (
            f"Prometheus never counted {sent} requests: {prometheus.value('sum(shoal:router_requests_total)')}"
        )
        time.sleep(0.2)
    counted_at = time.time()
    while (prometheus.value("min(timestamp(up))") or 0) <= counted_at:
        assert time.monotonic() < deadline, "Prometheus stopped scraping"
        time.sleep(0.2)


def series(prometheus: PrometheusProcess, query: Query) -> list[tuple[dict, float]]:
    """(labels, value) of each series the query returns now; fails on a query error."""
    response = prometheus.query(query.expr)
    assert response["status"] == "success", f"{query}\n{response}"
    return [(s["metric"], float(s["value"][1])) for s in response["data"]["result"]]


def by_label(prometheus: PrometheusProcess, source: str, panel: str, label: str) -> dict[str, float]:
    """A panel's first query, as label value -> value."""
    query = next(q for q in panel_queries() if (q.source, q.name) == (source, panel))
    return {labels.get(label, ""): value for labels, value in series(prometheus, query)}


def test_prometheus_accepts_every_expression(prometheus):
    queries = panel_queries() + rule_queries() + [query for query, _ in variable_queries()]
    rejected = []
    for query in queries:
        response = prometheus.query(query.expr)
        if response["status"] != "success":
            rejected.append(f"{query}\n  -> {response.get('errorType')}: {response.get('error')}")
    assert not rejected, "\n".join(rejected)


def test_alert_rules_evaluate_without_errors(prometheus):
    deadline = time.monotonic() + 30
    while True:
        rules = [rule for group in prometheus.api("rules")["data"]["groups"] for rule in group["rules"]]
        if all(rule["health"] != "unknown" for rule in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rules) == len(rule_queries())
    assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r["health"], r.get("lastError")) for r in rules]


def test_the_failing_canary_has_a_pending_error_rate_alert(prometheus):
    """The 5xx rule matches the router's real status labels: r2 is over 5 % (pending for 5 minutes),
    r1 is not. Rules are evaluated every second, so the first evaluation after the scrape may be due."""
    deadline = time.monotonic() + 10
    while True:
        alerts = [
            a for a in prometheus.api("alerts")["data"]["alerts"] if a["labels"]["alertname"] == "ShoalHighErrorRate"
        ]
        if alerts or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(a["labels"]["pool"], a["labels"]["revision"], a["state"]) for a in alerts] == [(POOL, "r2", "pending")]


def test_key_panels_show_data(prometheus):
    empty = []
    for source, titles in KEY_PANELS.items():
        for title in titles:
            queries = [q for q in panel_queries() if (q.source, q.name) == (source, title)]
            assert queries, f"{source}: no panel {title!r}"
            for query in queries:
                if not any(math.isfinite(value) for _, value in series(prometheus, query)):
                    empty.append(str(query))
    assert not empty, "no data:\n" + "\n".join(empty)


def test_stable_and_canary_side_by_side(prometheus):
    assert set(by_label(prometheus, "shoal-pool-detail", "p99 TTFT by revision", "revision")) == {"r1", "r2"}
    assert by_label(prometheus, "shoal-pool-detail", "Traffic weight by revision", "revision") == {
        "r1": 50.0,
        "r2": 50.0,
    }
    errors = by_label(prometheus, "shoal-pool-detail", "5xx error ratio by revision", "revision")
    assert errors["r1"] == 0 and errors["r2"] > 0.05
    assert set(by_label(prometheus, "shoal-pool-detail", "Runtime errors/s by revision and gRPC code", "code")) == {
        "INTERNAL"
    }
    assert set(by_label(prometheus, "shoal-runtime-internals", "KV cache usage per runtime", "revision")) == {
        "r1",
        "r2",
    }


def test_tenants_and_qos_classes(prometheus):
    assert set(by_label(prometheus, "shoal-qos-tenants", "Requests/s by tenant", "tenant")) == {
        "quiet",
        "batchy",
        "noisy",
    }
    assert set(by_label(prometheus, "shoal-qos-tenants", "Requests/s by QoS class and status", "qos_class")) == {
        "realtime",
        "batch",
    }
    # One refusal makes a series but no rate yet (its first scrape is its baseline): its labels show.
    assert set(by_label(prometheus, "shoal-qos-tenants", "Rate limited/s by tenant and limit", "limit")) == {"requests"}


def test_variables_list_the_pools_revisions_and_runtimes(prometheus):
    values = {}
    for query, label in variable_queries():
        values[query.source, query.name] = {
            labels.get(label)
            for labels, _ in series(prometheus, Query(query.source, query.name, f"group by ({label}) ({query.expr})"))
        }
    assert values["shoal-pool-detail", "pool"] == values["shoal-runtime-internals", "pool"] == {POOL}
    assert values["shoal-pool-detail", "revision"] == values["shoal-runtime-internals", "revision"] == {"r1", "r2"}
    assert len(values["shoal-runtime-internals", "instance"]) == 2
    assert values["shoal-qos-tenants", "qos_class"] == {"realtime", "batch"}
    assert values["shoal-qos-tenants", "tenant"] == {"quiet", "batchy", "noisy"}
