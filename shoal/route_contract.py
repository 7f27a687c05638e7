"""What the operator and the router exchange over the router's admin API, typed, with its JSON here
and nowhere else (but for a pool's load, in shoal/pool_load.py).

Operator -> router: a pool's Route (PUT /admin/pools/{pool}/route): the model clients ask for and
which of its QoS classes the pool takes (another pool may take the others), each live revision's
runtime endpoints, the stable/canary split, the rollback rules the router judges the canary by, QoS,
per-tenant limits, which requests may speculate, and how its requests wait while it has no ready
runtime (cold_start). Its JSON is one `pools[]` entry of the router's config file, so a
route written by hand (router/examples/local.yaml) and one pushed by the operator are read by the
same `parse_route`.

Router -> operator: Verdicts (GET /admin/pools/{pool}/rollback), the router's judgement that a
canary broke a rule, and MeasuredWindows (GET /admin/measurements), from which the operator counts
the canary's samples before it steps the rollout on; and a pool's load (GET
/admin/pools/{pool}/load, shoal/pool_load.py's PoolLoad), from which it sizes the pool.
"""

import dataclasses
import urllib.parse
from dataclasses import dataclass, field

from shoal.fields import FieldError, Fields

LATENCY_METRICS = ("ttft", "itl", "e2e")
QOS_CLASSES = ("realtime", "batch")


@dataclass(frozen=True)
class RuntimeEndpoint:
    target: str  # host:port of the runtime's gRPC server
    metrics_url: str | None = None  # its Prometheus /metrics; None: not scraped


# --- rollback rules: what makes the router pull a canary back ---


@dataclass(frozen=True)
class LatencyRatioRule:
    """Canary's latency quantile above max_ratio x stable's (and at least min_difference_s more)."""

    metric: str = "e2e"
    quantile: float = 0.99
    max_ratio: float = 1.3
    min_difference_s: float = 0.0
    min_samples: int = 50
    window_s: float = 60.0

    @property
    def name(self) -> str:
        return f"latency_ratio:{self.metric}_p{self.quantile * 100:g}"


@dataclass(frozen=True)
class ErrorRateRule:
    """Canary's error rate above max_rate, or above stable's + max_over_stable (whichever is set)."""

    max_rate: float | None = 0.01
    max_over_stable: float | None = None
    min_samples: int = 50
    window_s: float = 60.0

    @property
    def name(self) -> str:
        return "error_rate"


@dataclass(frozen=True)
class PreemptionRule:
    """More than max_count preemptions (the runtime ran out of KV memory) on the canary's runtimes."""

    max_count: int = 0
    window_s: float = 60.0

    @property
    def name(self) -> str:
        return "preemptions"


@dataclass(frozen=True)
class OomRule:
    """More than max_count requests failed because an engine step ran out of GPU memory, on the canary's
    runtimes (their shoal:oom_errors_total). Counted from the runtimes' own counter, not from requests
    the router saw fail: one out-of-memory step is reason enough, long before an error rate has its
    samples."""

    max_count: int = 0
    window_s: float = 60.0

    @property
    def name(self) -> str:
        return "oom_errors"


@dataclass(frozen=True)
class KvFreeRule:
    """The canary's KV free fraction (its fullest runtime), averaged over the window's scrapes, below min_free."""

    min_free: float = 0.10
    min_samples: int = 3
    window_s: float = 30.0

    @property
    def name(self) -> str:
        return "kv_free"


RollbackRule = LatencyRatioRule | ErrorRateRule | PreemptionRule | OomRule | KvFreeRule
RULE_KINDS: dict[str, type] = {
    "latency_ratio": LatencyRatioRule,
    "error_rate": ErrorRateRule,
    "preemptions": PreemptionRule,
    "oom_errors": OomRule,
    "kv_free": KvFreeRule,
}
DEFAULT_RULES: tuple = (LatencyRatioRule(), ErrorRateRule(), PreemptionRule(), OomRule(), KvFreeRule())
# The rules that read what the router scrapes from the runtimes' /metrics: blind while it cannot.
SCRAPED_RULES = (PreemptionRule, OomRule, KvFreeRule)


# --- the rest of a route ---


@dataclass(frozen=True)
class QosConfig:
    max_concurrency_per_endpoint: int = 16  # requests the router keeps in flight to one runtime
    realtime_queue: int = 64  # realtime requests waiting at the router before it sheds them
    batch_queue: int = 256
    max_queue_wait_s: float = 30.0
    batch_share_min: float = 0.1  # of the pool's concurrency, whatever realtime latency does
    batch_share_max: float = 0.5
    realtime_ttft_target_s: float = 1.0  # batch's share shrinks as realtime p95 TTFT nears this
    batch_priority: int = 1  # the runtime priority of batch requests (realtime: 0)


@dataclass(frozen=True)
class PrefixAffinity:
    enabled: bool = False
    prefix_chars: int = 512  # how much of the prompt picks the replica
    max_load_factor: float = 1.5  # leave the preferred replica above this x the average load


@dataclass(frozen=True)
class TenantLimit:
    """A tenant's limits on one pool, on top of the router-wide ones (router/config.py's TenantConfig)."""

    name: str
    max_concurrent: int | None = None  # None: unlimited
    tokens_per_minute: int | None = None  # prompt + completion tokens; None: unlimited


@dataclass(frozen=True)
class Speculation:
    """Which of the pool's requests may speculate (the runtime drafts tokens and verifies them in one
    pass, when started with --speculative-config): those of a class in qos_classes, from a tenant not
    in tenants_off, while the pool's load is below max_load (None: at any load). The load is its QoS
    gate's: requests in flight to its runtimes plus those queued, over its concurrency capacity
    (router/traffic/speculation.py decides). A request the rule turns down reaches the runtime with
    `sampling.speculative = false`; a client may opt out, never in."""

    qos_classes: tuple[str, ...] = QOS_CLASSES
    tenants_off: tuple[str, ...] = ()
    max_load: float | None = None


@dataclass(frozen=True)
class ColdStart:
    """While none of the pool's runtimes is ready (it scaled to zero, or every replica is starting), its
    requests wait at the router: up to max_queued of them (more are refused at once, 429), each for up
    to max_wait_s (then 503 with Retry-After), and all go on, oldest first, when a runtime is ready
    (router/cold_start.py). The router stays Ready meanwhile, so the request that wakes the pool
    reaches it. Off: such a request is answered 503 at once."""

    enabled: bool = True
    max_queued: int = 64
    max_wait_s: float = 120.0


@dataclass(frozen=True)
class Route:
    name: str  # the pool's name at the router (the operator's: namespace.name)
    model: str  # what clients send as `model`
    stable: str  # revision names
    # The QoS classes of the model's requests it takes; another pool of the same model may take the
    # others (router/traffic/model_pools.py: each class of a model goes to one pool at most).
    qos_classes: tuple[str, ...] = QOS_CLASSES
    canary: str | None = None
    canary_weight: float = 0.0  # percent of requests to the canary
    sticky: bool = True  # a session key (header or `user`) keeps a client on one revision
    revisions: dict[str, tuple[RuntimeEndpoint, ...]] = field(default_factory=dict)
    rollback_rules: tuple = DEFAULT_RULES
    qos: QosConfig = QosConfig()
    prefix_affinity: PrefixAffinity = PrefixAffinity()
    tenants: tuple[TenantLimit, ...] = ()
    speculative: Speculation = Speculation()
    cold_start: ColdStart = ColdStart()

    @property
    def longest_window_s(self) -> float:
        """How far back its rollback rules look: the measurements must be kept at least this long."""
        return max((rule.window_s for rule in self.rollback_rules), default=0.0)


# --- what the router reports back ---


@dataclass(frozen=True)
class Breach:
    """One rule the canary broke: its name, the values seen, the limit in words."""

    rule: str
    observed: dict  # what the canary (and stable, where compared) showed
    threshold: str

    def message(self) -> str:
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in self.observed.items())
        return f"{self.rule}: {values} (limit: {self.threshold})"


@dataclass(frozen=True)
class Verdict:
    """The router pulled `revision` back: it took weight_before percent when the rules broke."""

    revision: str
    breaches: tuple[Breach, ...]
    at: float  # wall-clock seconds since the epoch
    weight_before: float

    @property
    def reason(self) -> str:
        return "; ".join(b.message() for b in self.breaches)


@dataclass(frozen=True)
class ScrapeHealth:
    """How many of a revision's runtimes the router scrapes, and how many of those it cannot read now."""

    endpoints: int = 0
    failing: int = 0


@dataclass(frozen=True)
class MeasuredWindow:
    """One pool revision's finished requests over a window, all QoS classes together, and whether the
    router can read its runtimes' /metrics (the rules in SCRAPED_RULES judge from them)."""

    pool: str
    revision: str
    window_s: float
    requests: int
    errors: int
    scrapes: ScrapeHealth = ScrapeHealth()


# --- JSON: routes ---


def route_to_json(route: Route) -> dict:
    """The body of PUT /admin/pools/{pool}/route (and a config file's pools[] entry)."""
    return _without_none(
        {
            "name": route.name,
            "model": route.model,
            # Left out when both: a router older than the field still takes the routes that do not use it.
            "qos_classes": list(route.qos_classes) if route.qos_classes != QOS_CLASSES else None,
            "stable": route.stable,
            "canary": route.canary,
            "canary_weight": route.canary_weight,
            "sticky": route.sticky,
            "revisions": {
                r: {"endpoints": [_without_none(dataclasses.asdict(e)) for e in es]}
                for r, es in route.revisions.items()
            },
            "rollback_rules": [
                {_KIND_OF[type(rule)]: _without_none(dataclasses.asdict(rule))} for rule in route.rollback_rules
            ],
            "qos": dataclasses.asdict(route.qos),
            "prefix_affinity": dataclasses.asdict(route.prefix_affinity),
            "tenants": [_without_none(dataclasses.asdict(t)) for t in route.tenants],
            "speculative": _without_none(
                {
                    "qos_classes": list(route.speculative.qos_classes),
                    "tenants_off": list(route.speculative.tenants_off),
                    "max_load": route.speculative.max_load,
                }
            ),
            "cold_start": dataclasses.asdict(route.cold_start),
        }
    )


def route_from_json(data, error: type[FieldError] = FieldError) -> Route:
    """One route on its own (an admin API body); errors name the field from the entry's top."""
    return parse_route(Fields(data, "", error))


def parse_route(f: Fields) -> Route:
    name = f.get("name", str)
    revisions = {}
    for revision, value in f.get("revisions", dict, {}).items():
        rf = Fields(value or {}, f"{f.name('revisions')}.{revision}", f.error)
        revisions[str(revision)] = tuple(_endpoint(e) for e in rf.items("endpoints"))
        rf.done()
    stable = f.get("stable", str)
    canary = f.get("canary", str, None)
    if canary == stable:
        raise f.error(f"{f.name('canary')}: must differ from stable ({stable!r})")
    tenants = tuple(_pool_tenant(t) for t in f.items("tenants"))
    unique(f, "tenants", [t.name for t in tenants], "name")
    route = Route(
        name=name,
        model=f.get("model", str, name),
        stable=stable,
        qos_classes=read_qos_classes(f, "qos_classes", Route.qos_classes, at_least_one=True),
        canary=canary,
        canary_weight=f.get("canary_weight", float, Route.canary_weight, minimum=0.0, maximum=100.0),
        sticky=f.get("sticky", bool, Route.sticky),
        revisions=revisions,
        rollback_rules=_rules(f) if "rollback_rules" in f.data else DEFAULT_RULES,
        qos=_qos(f.sub("qos")),
        prefix_affinity=_affinity(f.sub("prefix_affinity")),
        tenants=tenants,
        speculative=_speculation(f.sub("speculative")),
        cold_start=_cold_start(f.sub("cold_start")),
    )
    f.done()
    return route


def unique(f: Fields, key: str, values: list, what: str = "") -> None:
    """No value twice in the list `key` (of its items' field `what`, or of the items themselves)."""
    seen = set()
    for index, value in enumerate(values):
        if value in seen:
            raise f.error(f"{f.name(key)}[{index}]{'.' + what if what else ''}: {value!r} is used twice")
        seen.add(value)


def _endpoint(f: Fields) -> RuntimeEndpoint:
    target = f.get("target", str)
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise f.error(f"{f.name('target')}: must be host:port, got {target!r}")
    metrics_url = f.get("metrics_url", str, None)
    if metrics_url is not None:
        _check_metrics_url(f, metrics_url, host)
    endpoint = RuntimeEndpoint(target, metrics_url)
    f.done()
    return endpoint


def _check_metrics_url(f: Fields, metrics_url: str, runtime_host: str) -> None:
    """The router fetches this URL: only http(s), and only on the runtime's own host, so a route cannot
    point the router at anything else it can reach (cloud metadata, internal services, files)."""
    url = urllib.parse.urlsplit(metrics_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise f.error(f"{f.name('metrics_url')}: must be an http:// or https:// URL, got {metrics_url!r}")
    if url.hostname != runtime_host.strip("[]"):
        raise f.error(
            f"{f.name('metrics_url')}: must be on the runtime's own host {runtime_host!r}, got {url.hostname!r}"
        )


def _rules(f: Fields) -> tuple:
    rules = []
    for index, item in enumerate(f.get("rollback_rules", list)):
        path = f"{f.name('rollback_rules')}[{index}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise f.error(f"{path}: must be a mapping of one rule kind ({', '.join(RULE_KINDS)}) to its settings")
        ((kind, settings),) = item.items()
        if kind not in RULE_KINDS:
            raise f.error(f"{path}: unknown rule {kind!r}; one of {', '.join(RULE_KINDS)}")
        rf = Fields(settings or {}, f"{path}.{kind}", f.error)
        rules.append(_rule(RULE_KINDS[kind], rf))
        rf.done()
    return tuple(rules)


def _rule(kind: type, f: Fields):
    window = f.get("window_s", float, kind.window_s, minimum=1.0)
    if kind is LatencyRatioRule:
        return LatencyRatioRule(
            metric=f.get("metric", str, kind.metric, choices=LATENCY_METRICS),
            quantile=f.get("quantile", float, kind.quantile, minimum=0.5, maximum=1.0),
            max_ratio=f.get("max_ratio", float, kind.max_ratio, minimum=1.0),
            min_difference_s=f.get("min_difference_s", float, kind.min_difference_s, minimum=0.0),
            min_samples=f.get("min_samples", int, kind.min_samples, minimum=1),
            window_s=window,
        )
    if kind is ErrorRateRule:
        # Written out, a limit left out is no limit: {max_over_stable: 0.02} compares with stable only.
        # (The default rule, with nothing written, has max_rate's dataclass default.)
        rule = ErrorRateRule(
            max_rate=f.get("max_rate", float, None, minimum=0.0, maximum=1.0),
            max_over_stable=f.get("max_over_stable", float, None, minimum=0.0, maximum=1.0),
            min_samples=f.get("min_samples", int, kind.min_samples, minimum=1),
            window_s=window,
        )
        if rule.max_rate is None and rule.max_over_stable is None:
            raise f.error(f"{f.path}: set max_rate, max_over_stable or both")
        return rule
    if kind in (PreemptionRule, OomRule):
        return kind(max_count=f.get("max_count", int, kind.max_count, minimum=0), window_s=window)
    return KvFreeRule(
        min_free=f.get("min_free", float, kind.min_free, minimum=0.0, maximum=1.0),
        min_samples=f.get("min_samples", int, kind.min_samples, minimum=1),
        window_s=window,
    )


def _qos(f: Fields) -> QosConfig:
    d = QosConfig
    qos = QosConfig(
        max_concurrency_per_endpoint=f.get(
            "max_concurrency_per_endpoint", int, d.max_concurrency_per_endpoint, minimum=1
        ),
        realtime_queue=f.get("realtime_queue", int, d.realtime_queue, minimum=0),
        batch_queue=f.get("batch_queue", int, d.batch_queue, minimum=0),
        max_queue_wait_s=f.get("max_queue_wait_s", float, d.max_queue_wait_s, minimum=0.0),
        batch_share_min=f.get("batch_share_min", float, d.batch_share_min, minimum=0.0, maximum=1.0),
        batch_share_max=f.get("batch_share_max", float, d.batch_share_max, minimum=0.0, maximum=1.0),
        realtime_ttft_target_s=f.get("realtime_ttft_target_s", float, d.realtime_ttft_target_s, minimum=0.001),
        batch_priority=f.get("batch_priority", int, d.batch_priority, minimum=1),
    )
    if qos.batch_share_min > qos.batch_share_max:
        raise f.error(f"{f.name('batch_share_min')}: must be <= batch_share_max ({qos.batch_share_max})")
    f.done()
    return qos


def _affinity(f: Fields) -> PrefixAffinity:
    d = PrefixAffinity
    affinity = PrefixAffinity(
        enabled=f.get("enabled", bool, d.enabled),
        prefix_chars=f.get("prefix_chars", int, d.prefix_chars, minimum=1),
        max_load_factor=f.get("max_load_factor", float, d.max_load_factor, minimum=1.0),
    )
    f.done()
    return affinity


def _speculation(f: Fields) -> Speculation:
    d = Speculation
    qos_classes = read_qos_classes(f, "qos_classes", d.qos_classes, at_least_one=False)
    tenants_off = tuple(f.strings("tenants_off"))
    unique(f, "tenants_off", list(tenants_off))
    speculation = Speculation(
        qos_classes=qos_classes,
        tenants_off=tenants_off,
        max_load=f.get("max_load", float, d.max_load, minimum=0.0),
    )
    f.done()
    return speculation


def read_qos_classes(f: Fields, key: str, default: tuple[str, ...], at_least_one: bool) -> tuple[str, ...]:
    """A list of QoS classes, each once; `default` when left out. Errors are f's kind (ConfigError,
    SpecError), so a ModelPool's spec reads its classes the same way."""
    if f.get(key, list, None) is None:
        return default
    classes = tuple(f.strings(key))
    for index, qos in enumerate(classes):
        if qos not in QOS_CLASSES:
            raise f.error(f"{f.name(key)}[{index}]: must be one of {', '.join(QOS_CLASSES)}, got {qos!r}")
    unique(f, key, list(classes))
    if at_least_one and not classes:
        raise f.error(f"{f.name(key)}: must list at least one of {', '.join(QOS_CLASSES)} (left out: both)")
    return classes


def _cold_start(f: Fields) -> ColdStart:
    d = ColdStart
    cold_start = ColdStart(
        enabled=f.get("enabled", bool, d.enabled),
        max_queued=f.get("max_queued", int, d.max_queued, minimum=1),
        max_wait_s=f.get("max_wait_s", float, d.max_wait_s, minimum=0.0),
    )
    f.done()
    return cold_start


def read_tenant_limit(f: Fields) -> TenantLimit:
    """A tenant's name and limits; the caller reads on (router/config.py's tenants have more fields)
    and calls done()."""
    d = TenantLimit
    return TenantLimit(
        name=f.get("name", str),
        max_concurrent=f.get("max_concurrent", int, d.max_concurrent, minimum=1),
        tokens_per_minute=f.get("tokens_per_minute", int, d.tokens_per_minute, minimum=1),
    )


def _pool_tenant(f: Fields) -> TenantLimit:
    """Concurrency and tokens only: a tenant's QoS class and token burst are router-wide."""
    tenant = read_tenant_limit(f)
    f.done()
    return tenant


# --- JSON: what the router reports back ---


def verdict_to_json(verdict: Verdict) -> dict:
    return {
        "revision": verdict.revision,
        "at": verdict.at,
        "weight_before": verdict.weight_before,
        "reason": verdict.reason,  # for people reading the admin API; the operator rebuilds it from the rules
        "rules": [breach_to_json(b) for b in verdict.breaches],
    }


def breach_to_json(breach: Breach) -> dict:
    return {"rule": breach.rule, "observed": breach.observed, "threshold": breach.threshold}


def rollback_to_json(pool: str, verdicts) -> dict:
    """The body of GET /admin/pools/{pool}/rollback."""
    return {"pool": pool, "rolled_back": [verdict_to_json(v) for v in verdicts]}


def rollback_from_json(body) -> dict[str, Verdict]:
    """Revision -> verdict. Keys a newer router may add are passed over: it answers, we only read."""
    f = Fields(body, "rollback", FieldError)
    verdicts = {}
    for item in f.items("rolled_back"):
        verdict = Verdict(
            revision=item.get("revision", str),
            breaches=tuple(_breach(b) for b in item.items("rules")),
            at=item.get("at", float),
            weight_before=item.get("weight_before", float),
        )
        verdicts[verdict.revision] = verdict
    return verdicts


def _breach(f: Fields) -> Breach:
    return Breach(f.get("rule", str), dict(f.get("observed", dict, {})), f.get("threshold", str, ""))


def measurement_to_json(
    pool: str, revision: str, window_s: float, all_classes: dict, per_class: dict[str, dict], scrapes: ScrapeHealth
) -> dict:
    """One entry of GET /admin/measurements: the window's summary for all classes, then per class."""
    return {
        "pool": pool,
        "revision": revision,
        "window_s": window_s,
        "scrapes": dataclasses.asdict(scrapes),
        "all": all_classes,
        **per_class,
    }


def measurements_from_json(body) -> tuple[MeasuredWindow, ...]:
    f = Fields(body, "measurements", FieldError)
    windows = []
    for item in f.items("measurements"):
        counts, scrapes = item.sub("all", required=True), item.sub("scrapes")
        windows.append(
            MeasuredWindow(
                item.get("pool", str),
                item.get("revision", str),
                item.get("window_s", float),
                counts.get("requests", int),
                counts.get("errors", int, 0),
                ScrapeHealth(scrapes.get("endpoints", int, 0), scrapes.get("failing", int, 0)),
            )
        )
    return tuple(windows)


_KIND_OF = {kind: name for name, kind in RULE_KINDS.items()}


def _without_none(mapping: dict) -> dict:
    """A field left out reads as its default, and None is every optional field's default."""
    return {k: v for k, v in mapping.items() if v is not None}


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
