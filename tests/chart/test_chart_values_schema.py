"""values.schema.json: a bad value fails `helm template` (and so `helm install`) with a message that
names it, before anything reaches the cluster."""

import pytest

from tests.chart.helm import helm, template_args

BAD_VALUES = [
    (("router.replicas=0",), "router.replicas"),
    (("image.pullPolicy=Sometimes",), "image.pullPolicy"),
    (("router.tenants[0].name=acme", "router.tenants[0].default_qos=urgent"), "default_qos"),
    (("router.replica=2",), "replica"),  # a misspelt key is refused, not ignored
    (("monitoring.serviceMonitor.interval=15",), "interval"),
    (("operator.reconcileIntervalSeconds=0",), "reconcileIntervalSeconds"),
    (("router.apiKeys.keys[0].key=short", "router.apiKeys.keys[0].tenant=default"), "key"),
    (("router.gateway.enabled=true",), "parentRefs"),  # a route needs a Gateway to attach to
    (("operator.watchNamespaces[0]=Team_A",), "watchNamespaces"),
    (("router.service.type=ExternalName",), "router.service.type"),
]


@pytest.mark.parametrize(("sets", "named"), BAD_VALUES, ids=[sets[-1] for sets, _ in BAD_VALUES])
def test_a_bad_value_is_refused_by_the_values_schema(sets, named):
    result = helm(*template_args(sets=sets), check=False)
    assert result.returncode != 0, f"accepted: {sets}"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert named in result.stderr, result.stderr
