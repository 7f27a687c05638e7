"""The router's Prometheus metrics (names in shoal.metric_names, `shoal:router_` prefix).

Events (requests, tokens, latencies, refusals, rollbacks) are counted as they happen; live state
(queues, held requests, weights, verdicts, backends) and the rolling windows the rollback rules read
are computed at scrape time from the objects that hold them, so they are never stale. Labels are pool, revision,
qos_class, tenant and a few closed sets (status, reason, rule, decision): bounded, never a request id.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shoal import metric_names as names
from shoal.route_contract import QOS_CLASSES
from shoal.router.backends.registry import BackendRegistry
from shoal.router.pools import PoolState
from shoal.router.traffic.measurements import ADMIN_QUANTILES, LATENCIES, Measurements

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
E2E_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WINDOW_S = 60.0  # the window the /metrics gauges summarize
L_POOL, L_REV, L_QOS, L_TENANT = names.LABEL_POOL, names.LABEL_REVISION, names.LABEL_QOS_CLASS, names.LABEL_TENANT


@dataclass(frozen=True)
class FinishedRequest:
    """A request that reached a runtime, as its end is counted. Its tokens are those the runtime worked
    on: its usage if it finished; if it was cut short (client gone, runtime failed) after the runtime
    sent something, the prompt's estimate and the tokens streamed; none if the runtime sent nothing."""

    pool: str
    revision: str
    qos: str
    tenant: str
    status: int  # the HTTP status answered (499: the client left first)
    e2e_s: float | None  # None unless answered in full
    token_gaps_s: list[float]
    prompt_tokens: int
    completion_tokens: int


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.requests = Counter(
            names.ROUTER_REQUESTS,
            "Requests answered, by the HTTP status the client got.",
            [L_POOL, L_REV, L_QOS, L_TENANT, names.LABEL_STATUS],
            registry=registry,
        )
        self.prompt_tokens = Counter(
            names.ROUTER_PROMPT_TOKENS,
            "Prompt tokens the runtimes worked on (estimated for requests cut short).",
            [L_POOL, L_REV, L_QOS, L_TENANT],
            registry=registry,
        )
        self.generation_tokens = Counter(
            names.ROUTER_GENERATION_TOKENS,
            "Tokens the runtimes generated, for requests finished or cut short.",
            [L_POOL, L_REV, L_QOS, L_TENANT],
            registry=registry,
        )
        self.upstream_errors = Counter(
            names.ROUTER_UPSTREAM_ERRORS,
            "Runtime calls that failed, by gRPC code.",
            [L_POOL, L_REV, names.LABEL_CODE],
            registry=registry,
        )
        self.rate_limited = Counter(
            names.ROUTER_RATE_LIMITED,
            "Requests refused by a tenant limit.",
            [L_TENANT, names.LABEL_LIMIT],
            registry=registry,
        )
        self.rollbacks = Counter(
            names.ROUTER_ROLLBACKS,
            "Canary revisions rolled back, by the first rule broken.",
            [L_POOL, L_REV, names.LABEL_RULE],
            registry=registry,
        )
        self.speculation_decisions = Counter(
            names.ROUTER_SPECULATION_DECISIONS,
            "Requests sent to runtimes, by whether they may speculate (or the first reason they may not).",
            [L_POOL, L_QOS, names.LABEL_DECISION],
            registry=registry,
        )
        self.ttft = Histogram(
            names.ROUTER_TIME_TO_FIRST_TOKEN,
            "Arrival at the router to first token, seconds.",
            [L_POOL, L_REV, L_QOS],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.itl = Histogram(
            names.ROUTER_INTER_TOKEN_LATENCY,
            "Time between streamed responses, seconds.",
            [L_POOL, L_REV, L_QOS],
            buckets=ITL_BUCKETS,
            registry=registry,
        )
        self.e2e = Histogram(
            names.ROUTER_E2E_REQUEST_LATENCY,
            "Arrival at the router to the last token, seconds.",
            [L_POOL, L_REV, L_QOS],
            buckets=E2E_BUCKETS,
            registry=registry,
        )
        self.queue_time = Histogram(
            names.ROUTER_QUEUE_TIME,
            "Time waiting in the router's QoS queue, seconds.",
            [L_POOL, L_QOS],
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )

    def watch(
        self,
        pools: dict[str, PoolState],
        measurements: Measurements,
        backends: BackendRegistry,
        sessions: Callable[[], int],
    ) -> None:
        self.registry.register(_StateCollector(pools, measurements, backends, sessions))

    def first_token(self, pool: str, revision: str, qos: str, ttft_s: float) -> None:
        self.ttft.labels(pool, revision, qos).observe(ttft_s)

    def finished(self, request: FinishedRequest) -> None:
        pool, revision, qos, tenant = request.pool, request.revision, request.qos, request.tenant
        self.requests.labels(pool, revision, qos, tenant, str(request.status)).inc()
        if request.e2e_s is not None:
            self.e2e.labels(pool, revision, qos).observe(request.e2e_s)
        itl = self.itl.labels(pool, revision, qos)
        for gap in request.token_gaps_s:
            itl.observe(gap)
        self.prompt_tokens.labels(pool, revision, qos, tenant).inc(request.prompt_tokens)
        self.generation_tokens.labels(pool, revision, qos, tenant).inc(request.completion_tokens)

    def refused(self, pool: str, qos: str, tenant: str, status: int) -> None:
        """Answered without reaching a runtime (limits, shedding, bad input, no backend)."""
        self.requests.labels(pool, "", qos, tenant, str(status)).inc()


class _StateCollector(Collector):
    def __init__(self, pools, measurements: Measurements, backends: BackendRegistry, sessions):
        self.pools, self.measurements, self.backends, self.sessions = pools, measurements, backends, sessions

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        gauge = lambda name, doc, labels: GaugeMetricFamily(name, doc, labels=labels)  # noqa: E731
        running = gauge(names.ROUTER_REQUESTS_RUNNING, "Requests in flight to runtimes.", [L_POOL, L_QOS])
        waiting = gauge(names.ROUTER_REQUESTS_WAITING, "Requests waiting in the router's QoS queue.", [L_POOL, L_QOS])
        held = gauge(names.ROUTER_HELD_REQUESTS, "Requests held until the pool has a ready runtime.", [L_POOL])
        batch_limit = gauge(names.ROUTER_BATCH_CONCURRENCY_LIMIT, "Batch requests the pool may run at once.", [L_POOL])
        weight = gauge(names.ROUTER_REVISION_WEIGHT, "Percent of new requests sent to the revision.", [L_POOL, L_REV])
        rolled_back = gauge(names.ROUTER_REVISION_ROLLED_BACK, "1 while the revision is rolled back.", [L_POOL, L_REV])
        ready = gauge(names.ROUTER_BACKENDS_READY, "Runtime endpoints taking requests.", [L_POOL, L_REV])
        unscraped = gauge(
            names.ROUTER_BACKENDS_METRICS_FAILING,
            "Runtime endpoints whose /metrics the router cannot read.",
            [L_POOL, L_REV],
        )
        shed = CounterMetricFamily(
            names.ROUTER_SHED, "Requests shed by QoS admission.", labels=[L_POOL, L_QOS, names.LABEL_REASON]
        )
        hold_timeouts = CounterMetricFamily(
            names.ROUTER_HOLD_TIMEOUTS,
            "Held requests answered 503 because no runtime of the pool became ready in time.",
            labels=[L_POOL],
        )
        for pool in self.pools.values():
            for qos in QOS_CLASSES:
                running.add_metric([pool.name, qos], pool.gate.in_flight(qos))
                waiting.add_metric([pool.name, qos], pool.gate.queued(qos))
            for (qos, reason), count in pool.gate.shed_counts.items():
                shed.add_metric([pool.name, qos, reason], count)
            held.add_metric([pool.name], pool.hold.held())
            hold_timeouts.add_metric([pool.name], pool.hold.timed_out)
            batch_limit.add_metric([pool.name], pool.gate.policy.batch_limit)
            split = pool.rollout.split
            weight.add_metric([pool.name, split.stable], split.stable_weight)
            if split.canary is not None:
                weight.add_metric([pool.name, split.canary], split.effective_canary_weight)
            for revision in pool.rollout.rolled_back:
                rolled_back.add_metric([pool.name, revision], 1)
            for revision in sorted(self.backends.revisions(pool.name)):
                backends = self.backends.backends(pool.name, revision)
                ready.add_metric([pool.name, revision], sum(b.ready for b in backends))
                unscraped.add_metric([pool.name, revision], sum(b.metrics_failing for b in backends))
        yield from (running, waiting, held, batch_limit, weight, rolled_back, ready, unscraped, shed, hold_timeouts)
        sessions = gauge(names.ROUTER_REALTIME_SESSIONS, "Open WebSocket realtime sessions.", [])
        sessions.add_metric([], self.sessions())
        yield sessions
        yield from self._windows(now)

    def _windows(self, now: float) -> Iterator[Metric]:
        labels = [L_POOL, L_REV, L_QOS]
        latency = GaugeMetricFamily(
            names.ROUTER_WINDOW_LATENCY,
            f"Latency quantiles over the last {WINDOW_S:g}s.",
            labels=labels + [names.LABEL_METRIC, names.LABEL_QUANTILE],
        )
        errors = GaugeMetricFamily(
            names.ROUTER_WINDOW_ERROR_RATIO, f"Failed / finished requests over the last {WINDOW_S:g}s.", labels=labels
        )
        tokens = GaugeMetricFamily(
            names.ROUTER_WINDOW_TOKENS_PER_SECOND,
            f"Generated tokens per second over the last {WINDOW_S:g}s.",
            labels=labels,
        )
        kv_free = GaugeMetricFamily(
            names.ROUTER_WINDOW_KV_FREE,
            "Mean KV free fraction of the revision's fullest runtime.",
            labels=[L_POOL, L_REV],
        )
        preemptions = GaugeMetricFamily(
            names.ROUTER_WINDOW_PREEMPTIONS,
            f"Preemptions on the revision's runtimes over the last {WINDOW_S:g}s.",
            labels=[L_POOL, L_REV],
        )
        oom_errors = GaugeMetricFamily(
            names.ROUTER_WINDOW_OOM_ERRORS,
            f"Requests failed by an out-of-memory engine step on the revision's runtimes over the last {WINDOW_S:g}s.",
            labels=[L_POOL, L_REV],
        )
        for pool, revision, qos in self.measurements.keys():
            stats = self.measurements.stats(pool, revision, WINDOW_S, now, qos)
            for metric in LATENCIES:
                for q in ADMIN_QUANTILES:
                    value = stats.quantile(metric, q)
                    if value is not None:
                        latency.add_metric([pool, revision, qos, metric, f"{q:g}"], value)
            errors.add_metric([pool, revision, qos], stats.error_rate)
            tokens.add_metric([pool, revision, qos], stats.tokens_per_s)
        for pool in self.pools:
            for revision in self.measurements.revisions(pool):
                stats = self.measurements.stats(pool, revision, WINDOW_S, now)
                if stats.kv_free_mean is not None:
                    kv_free.add_metric([pool, revision], stats.kv_free_mean)
                preemptions.add_metric([pool, revision], stats.preemptions)
                oom_errors.add_metric([pool, revision], stats.oom_errors)
        yield from (latency, errors, tokens, kv_free, preemptions, oom_errors)
