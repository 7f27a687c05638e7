"""Every PromQL expression of the dashboards (panels, annotations, variables) and the alert rules reads
only series the code exports: the names in shoal/metric_names.py, with the suffixes their types give."""

from shoal import metric_names as names
from tests.monitoring.exported import declared_names, process_families, registered_families, series_names
from tests.monitoring.promql_names import metric_names
from tests.monitoring.queries import panel_queries, rule_queries, variable_queries


def every_query():
    return panel_queries() + rule_queries() + [query for query, _ in variable_queries()]


def test_names_are_told_apart_from_labels_functions_keywords_and_durations():
    expr = """
      histogram_quantile(0.99, sum by (pool, le) (rate(shoal:a_bucket{status=~"5..", x="}"}[1m])))
      > on (pool) group_left () 1.5 * min by (pool) (shoal:b offset 5m or shoal:c * 0)
      and ignoring (instance) (time() - shoal:d) > 3600 unless sum without (tenant) (shoal:e) == bool 1
    """
    assert metric_names(expr) == {"shoal:a_bucket", "shoal:b", "shoal:c", "shoal:d", "shoal:e"}


def test_the_code_exports_only_names_metric_names_declares():
    """Besides the process collector's standard families, of which the router reads one."""
    assert names.PROCESS_START_TIME in process_families()
    assert set(registered_families()) <= declared_names() | process_families()


def test_every_declared_name_is_exported():
    """And the other way round: a name declared for dashboards but registered nowhere is a dead panel."""
    assert declared_names() <= set(registered_families())


def test_every_expression_reads_only_exported_series():
    exported = series_names(registered_families())
    unknown = [
        f"{sorted(metric_names(q.expr) - exported)} in {q}" for q in every_query() if metric_names(q.expr) - exported
    ]
    assert not unknown, "\n".join(unknown)


def test_every_expression_reads_some_series():
    """Guards the test above: a name finder that found nothing would pass it."""
    queries = every_query()
    assert len(queries) > 100
    assert all(metric_names(q.expr) for q in queries), [str(q) for q in queries if not metric_names(q.expr)]
