"""What the router itself counted during a stretch of load: its /metrics before and after, subtracted.
The router serves /metrics on its admin port (8002 by default), not on the public one.

The client sees a 429; the router knows why (shed by the QoS gate, and for which reason, or refused by
a tenant limit) and how long requests waited in its queue. The requests it answered, by tenant, QoS
class and status, can be held against what the client counted.
"""

import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from bench.report import markdown_table
from shoal import metric_names as names

TENANT, QOS = names.LABEL_TENANT, names.LABEL_QOS_CLASS
COUNTERS = {
    names.ROUTER_REQUESTS + "_total": (TENANT, QOS, names.LABEL_STATUS),
    names.ROUTER_SHED + "_total": (QOS, names.LABEL_REASON),
    names.ROUTER_RATE_LIMITED + "_total": (TENANT, names.LABEL_LIMIT),
    names.ROUTER_QUEUE_TIME + "_sum": (QOS,),
    names.ROUTER_QUEUE_TIME + "_count": (QOS,),
}


def scrape(admin_url: str) -> dict[tuple, float]:
    """The counters above from the router at `admin_url` (its admin port's base URL), summed over the
    labels not named there: {(sample name, *label values): value}."""
    with urllib.request.urlopen(f"{admin_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[tuple, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = COUNTERS.get(sample.name)
            if labels is not None:
                values[(sample.name, *(sample.labels.get(label, "") for label in labels))] += sample.value
    return dict(values)


def delta(before: dict[tuple, float], after: dict[tuple, float]) -> dict:
    """What changed between two scrapes, as JSON: requests, shed and rate_limited counts, queue time."""
    changed = {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)}
    out: dict = {"requests": {}, "shed": {}, "rate_limited": {}, "queue_time_s": {}}
    queue: dict[str, dict] = defaultdict(dict)
    for (name, *labels), value in sorted(changed.items()):
        if name == names.ROUTER_REQUESTS + "_total":
            out["requests"]["/".join(labels)] = round(value)
        elif name == names.ROUTER_SHED + "_total":
            out["shed"]["/".join(labels)] = round(value)
        elif name == names.ROUTER_RATE_LIMITED + "_total":
            out["rate_limited"]["/".join(labels)] = round(value)
        else:
            queue[labels[0]]["sum" if name.endswith("_sum") else "count"] = value
    for qos, q in queue.items():
        count = q.get("count", 0)
        out["queue_time_s"][qos] = {"requests": round(count), "mean": q.get("sum", 0) / count if count else None}
    return out


def markdown_counted(counted: list[dict]) -> str:
    """One row per phase: what the router answered, whom it refused and why, how long requests queued."""

    def listed(counts: dict) -> str:
        return ", ".join(f"{k}: {n}" for k, n in counts.items()) or "-"

    def statuses(requests: dict) -> str:
        totals: dict[str, int] = defaultdict(int)
        for key, n in requests.items():
            totals[key.rsplit("/", 1)[1]] += n
        return listed(dict(sorted(totals.items())))

    def waits(queue: dict) -> str:
        return ", ".join(f"{qos} {q['mean']:.2f} s" for qos, q in sorted(queue.items()) if q["mean"] is not None)

    return markdown_table(
        ["phase", "answered (status)", "shed (class/reason)", "rate limited (tenant/limit)", "mean queue wait"],
        [
            [
                c["phase"],
                statuses(c["requests"]),
                listed(c["shed"]),
                listed(c["rate_limited"]),
                waits(c["queue_time_s"]),
            ]
            for c in counted
        ],
    )
