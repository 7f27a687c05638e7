"""Latency against offered load, as a PNG beside the load report (matplotlib, no display needed).

Two rows: open-loop runs (Poisson and constant rates, trace replays) against the offered rate in
requests/s, closed-loop runs (concurrent streams, synchronous, throughput) against their concurrency.
Three columns: TTFT and ITL percentiles (ms, log scale), end-to-end latency percentiles (s, log
scale), and goodput (requests per second that met the SLO) beside 429s per second. One line per
profile; a replayed trace is one point of its own.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

ROWS = (("open loop", True, "offered load (requests/s)"), ("closed loop", False, "concurrency (streams)"))


def _series(runs: list[dict], open_loop: bool) -> dict[str, list[dict]]:
    """Runs of one row, by label: a profile's runs as one line, each replayed trace alone."""
    series: dict[str, list[dict]] = {}
    for run in runs:
        if run["open_loop"] != open_loop:
            continue
        label = run["name"] if run["profile"] == "replay" else run["profile"]
        series.setdefault(label, []).append(run)
    return {label: sorted(points, key=lambda r: r["load"]) for label, points in series.items()}


def _per_s(run: dict, what: str) -> float | None:
    if run["duration_s"] <= 0:
        return None
    count = run["goodput"]["requests"] if what == "goodput" else run["status_counts"].get("429", 0)
    return count / run["duration_s"]


def _plot(axis, points: list[dict], values, label: str, style: str, color) -> None:
    xs = [p["load"] for p in points]
    ys = [values(p) for p in points]
    kept = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if kept:
        axis.plot(*zip(*kept, strict=True), style, label=label, marker="o", color=color)


def write_plot(runs: list[dict], path: Path, title: str) -> Path:
    figure, axes = plt.subplots(2, 3, figsize=(16, 9), squeeze=False)
    for row, (row_title, open_loop, x_label) in enumerate(ROWS):
        latency, e2e, rates = axes[row]
        series = _series(runs, open_loop)
        for i, (label, points) in enumerate(series.items()):  # a colour per series, a line style per metric
            color = f"C{i}"
            _plot(latency, points, lambda r: r["latency"]["ttft_ms"]["p50"], f"{label} TTFT p50", "-", color)
            _plot(latency, points, lambda r: r["latency"]["ttft_ms"]["p95"], f"{label} TTFT p95", "--", color)
            _plot(latency, points, lambda r: r["latency"]["itl_ms"]["p95"], f"{label} ITL p95", ":", color)
            _plot(e2e, points, lambda r: r["latency"]["e2e_s"]["p50"], f"{label} p50", "-", color)
            _plot(e2e, points, lambda r: r["latency"]["e2e_s"]["p95"], f"{label} p95", "--", color)
            _plot(rates, points, lambda r: _per_s(r, "goodput"), f"{label} goodput", "-", color)
            _plot(rates, points, lambda r: _per_s(r, "429"), f"{label} 429s", ":", color)
        for axis, y_label in ((latency, "ms"), (e2e, "s"), (rates, "requests/s")):
            axis.set_xlabel(x_label)
            axis.set_ylabel(y_label)
            axis.grid(True, alpha=0.3)
            if series:
                axis.legend(fontsize=7)
            else:
                axis.text(0.5, 0.5, "no runs", ha="center", va="center", transform=axis.transAxes)
        latency.set_title(f"{row_title}: TTFT and ITL")
        e2e.set_title(f"{row_title}: end-to-end latency")
        rates.set_title(f"{row_title}: goodput and 429s")
        rates.set_ylim(bottom=0)
        if series:  # latencies span orders of magnitude between an idle system and an overloaded one
            latency.set_yscale("log")
            e2e.set_yscale("log")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
