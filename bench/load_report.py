"""What a load run measured, summed up: pure functions from per-request outcomes to the report.

Every request the load generator sent becomes one Outcome, whichever way it was sent (a guidellm
benchmark or a trace replay). A run's summary counts them by status (`200`, `429`, `5xx`, ...,
`incomplete` for those cut off when a guidellm benchmark's time was up, `timeout`, `stream_error`
and `connection_error` for those that got no usable answer), gives TTFT, inter-token and end-to-end
latency percentiles over the ones that succeeded, and goodput: the successful requests that met the
TTFT and ITL objectives, per second of the run and as a share of the requests that finished (sent
minus incomplete) and of all sent (where many were cut off, the first flatters). The same summary
is given per tenant x QoS class. Retry-After is known only for replayed requests: guidellm keeps no
response headers.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from bench.report import markdown_table

QUANTILES = (50, 95, 99)
INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class Slo:
    ttft_ms: float
    itl_ms: float

    def met(self, outcome: "Outcome") -> bool:
        if outcome.status != "200" or outcome.ttft_ms is None:
            return False
        return outcome.ttft_ms <= self.ttft_ms and (outcome.itl_ms is None or outcome.itl_ms <= self.itl_ms)


@dataclass(frozen=True)
class Outcome:
    tenant: str
    qos: str
    status: str  # HTTP status as text, or incomplete / timeout / connection_error
    ttft_ms: float | None = None
    itl_ms: float | None = None  # None with one output token or fewer
    e2e_s: float | None = None  # for a refusal: how long it took to come
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    retry_after_s: float | None = None  # a 429's or 503's Retry-After, where the client saw it


@dataclass
class Run:
    """One stretch of load: a guidellm benchmark (one strategy) or one replayed trace."""

    name: str  # e.g. concurrent@4, poisson@1.5, sweep/throughput, replay/mixed_tenants
    profile: str  # concurrent, poisson, sweep, replay
    open_loop: bool  # arrivals at set times (poisson, constant, replay) rather than a fixed concurrency
    load: float  # the offered rate in req/s (open loop) or the concurrency (closed loop)
    duration_s: float
    outcomes: list[Outcome] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # what the source adds (guidellm's own totals, the trace)


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(outcomes: list[Outcome]) -> dict:
    ok = [o for o in outcomes if o.status == "200"]
    series = {
        "ttft_ms": [o.ttft_ms for o in ok if o.ttft_ms is not None],
        "itl_ms": [o.itl_ms for o in ok if o.itl_ms is not None],
        "e2e_s": [o.e2e_s for o in ok if o.e2e_s is not None],
    }
    return {name: {f"p{q}": percentile(values, q) for q in QUANTILES} for name, values in series.items()}


def summarize(outcomes: list[Outcome], duration_s: float, slo: Slo) -> dict:
    statuses = Counter(o.status for o in outcomes)
    finished = len(outcomes) - statuses[INCOMPLETE]
    good = sum(slo.met(o) for o in outcomes)
    refused = [o for o in outcomes if o.status in ("429", "503")]
    refusal_s = [o.e2e_s for o in refused if o.e2e_s is not None]
    return {
        "requests": len(outcomes),
        "succeeded": statuses["200"],
        "finished": finished,
        "status_counts": dict(sorted(statuses.items())),
        "goodput": {
            "requests": good,
            "per_s": good / duration_s if duration_s > 0 else None,
            "share_of_finished": good / finished if finished else None,
            "share_of_sent": good / len(outcomes) if outcomes else None,
        },
        "refusals": {
            "requests": len(refused),
            "with_retry_after": sum(o.retry_after_s is not None for o in refused),
            "p50_s": percentile(refusal_s, 50),
            "p99_s": percentile(refusal_s, 99),
            "slowest_s": max(refusal_s, default=None),
        },
        "latency": latency_summary(outcomes),
        "output_tokens_per_s": sum(o.output_tokens or 0 for o in outcomes if o.status == "200") / duration_s
        if duration_s > 0
        else None,
    }


def summarize_run(run: Run, slo: Slo) -> dict:
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for outcome in run.outcomes:
        groups[(outcome.tenant, outcome.qos)].append(outcome)
    return {
        "name": run.name,
        "profile": run.profile,
        "open_loop": run.open_loop,
        "load": run.load,
        "load_unit": "req/s" if run.open_loop else "concurrency",
        "duration_s": run.duration_s,
        "offered_per_s": len(run.outcomes) / run.duration_s if run.duration_s > 0 else None,
        **summarize(run.outcomes, run.duration_s, slo),
        "by_tenant_qos": [
            {"tenant": tenant, "qos": qos, **summarize(outcomes, run.duration_s, slo)}
            for (tenant, qos), outcomes in sorted(groups.items())
        ],
        **run.details,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def _statuses(counts: dict) -> str:
    return ", ".join(f"{status}: {n}" for status, n in counts.items()) or "-"


def _row(label: list, summary: dict) -> list:
    latency = summary["latency"]
    return label + [
        summary["requests"],
        _statuses(summary["status_counts"]),
        f"{summary['goodput']['requests']} ({_share(summary['goodput']['share_of_finished'])} / "
        f"{_share(summary['goodput']['share_of_sent'])})",
        " / ".join(_ms(latency["ttft_ms"][f"p{q}"]) for q in QUANTILES),
        " / ".join(_ms(latency["itl_ms"][f"p{q}"]) for q in QUANTILES),
        " / ".join(_s(latency["e2e_s"][f"p{q}"]) for q in QUANTILES),
        " / ".join(_ms(None if v is None else 1000 * v) for v in (summary["refusals"][k] for k in ("p50_s", "p99_s"))),
    ]


LATENCY_HEADERS = [
    "requests",
    "status mix",
    "goodput (of finished / of sent)",
    "TTFT ms p50/p95/p99",
    "ITL ms p50/p95/p99",
    "e2e s p50/p95/p99",
    "429/503 in ms p50/p99",
]


def markdown_runs(runs: list[dict]) -> str:
    """One table over the runs, then one per run that had more than one tenant x QoS class."""
    overview = markdown_table(
        ["run", "load", "offered req/s", "out tok/s"] + LATENCY_HEADERS,
        [
            _row(
                [
                    r["name"],
                    f"{r['load']:.2f} req/s" if r["open_loop"] else f"{r['load']:g} streams",
                    _s(r["offered_per_s"]),
                    f"{r['output_tokens_per_s']:.1f}",
                ],
                r,
            )
            for r in runs
        ],
    )
    parts = [overview]
    for r in runs:
        if len(r["by_tenant_qos"]) > 1 or r["profile"] == "replay":
            table = markdown_table(
                ["tenant", "QoS"] + LATENCY_HEADERS, [_row([g["tenant"], g["qos"]], g) for g in r["by_tenant_qos"]]
            )
            parts.append(f"**{r['name']}** by tenant and QoS class:\n\n{table}")
    return "\n\n".join(parts)
