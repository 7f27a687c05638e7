"""The series names Shoal exports, derived from the code rather than listed by hand: the runtime's and
the router's and the operator's metrics are registered in fresh registries, and each family's type gives the names
Prometheus scrapes (counters with `_total`, histograms as `_bucket`, `_sum`, `_count`)."""

from prometheus_client import CollectorRegistry, ProcessCollector

from shoal import metric_names as names
from shoal.operator.metrics import OperatorMetrics
from shoal.router.backends.registry import BackendRegistry
from shoal.router.metrics import RouterMetrics
from shoal.router.traffic.measurements import Measurements
from shoal.runtime.engine.llm_engine import EngineStats
from shoal.runtime.server.metrics import RuntimeMetrics
from shoal.runtime.startup import StartupBreakdown

SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def registered_families() -> dict[str, str]:
    """Metric family name -> type, for everything the runtime, the router and the operator register."""
    runtime = CollectorRegistry()
    runtime_metrics = RuntimeMetrics(runtime, "model", "pool", "revision")
    runtime_metrics.watch_engine(lambda: EngineStats(0, 0, 1, 1, 0, 0.0, 0, 0, 0, 0), lambda: 0)
    runtime_metrics.watch_lifecycle(lambda: False, "initial")
    runtime_metrics.record_startup(StartupBreakdown({"import": 1.0, "total": 1.0}))
    router = CollectorRegistry()
    RouterMetrics(router).watch({}, Measurements(), BackendRegistry(), lambda: 0)
    operator = OperatorMetrics().registry
    return {family.name: family.type for registry in (runtime, router, operator) for family in registry.collect()}


def process_families() -> set[str]:
    """prometheus_client's standard process_* families (the runtime registers them, as vLLM does)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return {family.name for family in registry.collect()}


def declared_names() -> set[str]:
    """The metric names shoal/metric_names.py declares (not its prefixes or label names)."""
    return {
        value
        for value in vars(names).values()
        if isinstance(value, str) and value.startswith(names.PREFIX) and not value.endswith(("_", ":"))
    }


def series_names(families: dict[str, str]) -> set[str]:
    return {name + suffix for name, kind in families.items() for suffix in SUFFIXES[kind]}
