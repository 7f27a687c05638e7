"""The runtime's Prometheus metrics, with vLLM's names under the `shoal:` prefix (shoal.metric_names).

Request latencies and token counts are observed as outputs reach the event loop (this class is the
AsyncEngine's observer); scheduler and KV-cache state is read from the engine at scrape time, so
gauges are never stale and counters never double-count. Each server has its own registry.
"""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shoal import metric_names as names
from shoal.runtime.engine.llm_engine import EngineStats
from shoal.runtime.startup import StartupBreakdown

# vLLM's buckets, with finer steps at the fast end for GPU decode latencies.
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
E2E_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12)
UPDATE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0)
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry, model_name: str, pool: str, revision: str):
        self.registry = registry
        ProcessCollector(registry=registry)  # process_start_time_seconds, CPU and memory, as vLLM exposes
        self.label_values = (model_name, pool, revision)

        self.prompt_tokens = self._counter(names.PROMPT_TOKENS, "Prompt tokens processed.").labels(*self.label_values)
        self.generation_tokens = self._counter(names.GENERATION_TOKENS, "Tokens generated.").labels(*self.label_values)
        self.request_success = self._counter(
            names.REQUEST_SUCCESS, "Requests that ran to their end, by finish reason.", (names.LABEL_FINISHED_REASON,)
        )
        self.request_aborts = self._counter(
            names.REQUEST_ABORTS, "Requests cut short: cancelled by the client, or aborted while draining."
        ).labels(*self.label_values)
        self.request_errors = self._counter(
            names.REQUEST_ERRORS, "Requests refused or failed, by gRPC status code.", (names.LABEL_CODE,)
        )
        self.ttft = self._histogram(names.TIME_TO_FIRST_TOKEN, "Time to first token, seconds.", TTFT_BUCKETS).labels(
            *self.label_values
        )
        self.itl = self._histogram(
            names.INTER_TOKEN_LATENCY, "Time between output tokens, seconds.", ITL_BUCKETS
        ).labels(*self.label_values)
        self.e2e = self._histogram(
            names.E2E_REQUEST_LATENCY, "Request latency, arrival to last token, seconds.", E2E_BUCKETS
        ).labels(*self.label_values)
        self.request_prompt_tokens = self._histogram(
            names.REQUEST_PROMPT_TOKENS, "Prompt length of finished requests.", TOKEN_BUCKETS
        ).labels(*self.label_values)
        self.request_generation_tokens = self._histogram(
            names.REQUEST_GENERATION_TOKENS, "Generated length of finished requests.", TOKEN_BUCKETS
        ).labels(*self.label_values)
        self.iteration_tokens = self._histogram(
            names.ITERATION_TOKENS, "Tokens per engine step.", TOKEN_BUCKETS
        ).labels(*self.label_values)
        self.step_duration = self._histogram(
            names.ENGINE_STEP_DURATION, "Engine step wall time, seconds.", STEP_BUCKETS
        ).labels(*self.label_values)
        self.structured_requests = self._counter(
            names.STRUCTURED_OUTPUT_REQUESTS, "Constrained requests, by kind of constraint.", (names.LABEL_KIND,)
        )
        self.grammar_compile = self._histogram(
            names.GRAMMAR_COMPILE_DURATION, "Compiling a request's grammar, seconds (cached ones too).", STEP_BUCKETS
        ).labels(*self.label_values)
        self.mask_duration = self._histogram(
            names.GRAMMAR_MASK_DURATION, "Filling a step's allowed-token masks, seconds.", STEP_BUCKETS
        ).labels(*self.label_values)

    def watch_lifecycle(self, paused: Callable[[], bool], weights_version: str) -> None:
        """The pause read at every scrape; the weights' version as an info gauge."""
        self._gauge(names.ENGINE_PAUSED, "1 while RuntimeAdmin has the engine paused.").labels(
            *self.label_values
        ).set_function(lambda: float(paused()))
        self._weights_info = self._gauge(
            names.WEIGHTS_INFO,
            "The weights being served (1, labelled with their version).",
            (names.LABEL_WEIGHTS_VERSION,),
        )
        self._weights_info.labels(*self.label_values, weights_version).set(1)
        self._weight_updates = self._counter(names.WEIGHT_UPDATES, "Weight updates applied in place.").labels(
            *self.label_values
        )
        self._weight_update_duration = self._histogram(
            names.WEIGHT_UPDATE_DURATION, "Applying a weight update, seconds.", UPDATE_BUCKETS
        ).labels(*self.label_values)

    def record_weight_update(self, weights_version: str, duration_s: float) -> None:
        self._weights_info.clear()
        self._weights_info.labels(*self.label_values, weights_version).set(1)
        self._weight_updates.inc()
        self._weight_update_duration.observe(duration_s)

    def record_startup(self, startup: StartupBreakdown) -> None:
        gauge = self._gauge(
            names.STARTUP_PHASE_SECONDS,
            "How long the runtime took to start, by phase (total: process start to serving), seconds.",
            (names.LABEL_PHASE,),
        )
        for phase, seconds in startup.seconds.items():
            gauge.labels(*self.label_values, phase).set(seconds)

    # Every family carries the runtime's labels (model, pool, revision), then its own `extra` ones.

    def _counter(self, name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, [*names.RUNTIME_LABELS, *extra], registry=self.registry)

    def _gauge(self, name: str, doc: str, extra: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, [*names.RUNTIME_LABELS, *extra], registry=self.registry)

    def _histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, doc, list(names.RUNTIME_LABELS), buckets=buckets, registry=self.registry)

    def watch_engine(self, stats: Callable[[], EngineStats], num_waiting: Callable[[], int]) -> None:
        """Reads scheduler and KV-cache state at every scrape."""
        self.registry.register(_EngineStateCollector(stats, num_waiting, self.label_values))

    def record_error(self, code: str) -> None:
        self.request_errors.labels(*self.label_values, code).inc()

    # EngineObserver

    def on_first_token(self, ttft_s: float, num_prompt_tokens: int) -> None:
        self.ttft.observe(ttft_s)
        self.prompt_tokens.inc(num_prompt_tokens)

    def on_tokens(self, num_tokens: int, inter_token_s: float | None) -> None:
        self.generation_tokens.inc(num_tokens)
        if inter_token_s is not None:
            self.itl.observe(inter_token_s)

    def on_finished(self, finish_reason: str, e2e_s: float, num_prompt_tokens: int, num_output_tokens: int) -> None:
        self.request_success.labels(*self.label_values, finish_reason).inc()
        self.e2e.observe(e2e_s)
        self.request_prompt_tokens.observe(num_prompt_tokens)
        self.request_generation_tokens.observe(num_output_tokens)

    def on_aborted(self) -> None:
        self.request_aborts.inc()

    def on_step(self, num_batched_tokens: int, duration_s: float, mask_s: float | None) -> None:
        self.iteration_tokens.observe(num_batched_tokens)
        self.step_duration.observe(duration_s)
        if mask_s is not None:
            self.mask_duration.observe(mask_s)

    def on_grammar_compiled(self, kind: str, duration_s: float) -> None:
        self.structured_requests.labels(*self.label_values, kind).inc()
        self.grammar_compile.observe(duration_s)


class _EngineStateCollector(Collector):
    def __init__(self, stats: Callable[[], EngineStats], num_waiting: Callable[[], int], label_values: tuple[str, ...]):
        self._stats = stats
        self._num_waiting = num_waiting
        self._label_values = list(label_values)

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        for kind, name, doc, value in (
            (GaugeMetricFamily, names.NUM_REQUESTS_RUNNING, "Requests in the running batch.", s.num_running),
            (GaugeMetricFamily, names.NUM_REQUESTS_WAITING, "Requests waiting to be scheduled.", self._num_waiting()),
            (
                GaugeMetricFamily,
                names.KV_CACHE_USAGE_PERC,
                "Fraction of KV blocks in use (1 = full).",
                s.kv_cache_usage,
            ),
            (
                GaugeMetricFamily,
                names.KV_CACHE_FREE_BLOCKS,
                "KV blocks no request holds (cached prefixes included).",
                s.kv_blocks_free,
            ),
            (GaugeMetricFamily, names.KV_CACHE_TOTAL_BLOCKS, "KV blocks in the pool.", s.kv_blocks_total),
            (CounterMetricFamily, names.NUM_PREEMPTIONS, "Requests preempted to free KV blocks.", s.num_preemptions),
            (
                CounterMetricFamily,
                names.PREFIX_CACHE_QUERIES,
                "Prompt tokens looked up in the prefix cache.",
                s.prefix_cache_queries,
            ),
            (
                CounterMetricFamily,
                names.PREFIX_CACHE_HITS,
                "Prompt tokens found in the prefix cache.",
                s.prefix_cache_hits,
            ),
            (
                CounterMetricFamily,
                names.OOM_ERRORS,
                "Requests failed by a step out of GPU memory, one per request.",
                s.num_oom_errors,
            ),
            (CounterMetricFamily, names.SPEC_DECODE_NUM_DRAFTS, "Rows of drafts verified.", s.drafts.num_drafts),
            (
                CounterMetricFamily,
                names.SPEC_DECODE_NUM_DRAFT_TOKENS,
                "Draft tokens proposed.",
                s.drafts.num_draft_tokens,
            ),
            (
                CounterMetricFamily,
                names.SPEC_DECODE_NUM_ACCEPTED_TOKENS,
                "Draft tokens accepted.",
                s.drafts.num_accepted_tokens,
            ),
        ):
            family = kind(name, doc, labels=list(names.RUNTIME_LABELS))
            family.add_metric(self._label_values, value)
            yield family
        per_position = CounterMetricFamily(
            names.SPEC_DECODE_NUM_ACCEPTED_TOKENS_PER_POS,
            "Draft tokens accepted, by their position among the drafts.",
            labels=[*names.RUNTIME_LABELS, names.LABEL_POSITION],
        )
        for position, accepted in enumerate(s.drafts.accepted_per_position):
            per_position.add_metric([*self._label_values, str(position)], accepted)
        yield per_position
