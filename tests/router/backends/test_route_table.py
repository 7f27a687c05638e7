"""The route table: the source's endpoints and each pushed route's, for the pools the router has,
published only when the union changes."""

from shoal.router.backends.endpoints import Endpoint
from shoal.router.backends.route_table import RouteTable

STATIC = Endpoint("static", "v1", "10.0.0.1:1")
SLICE = Endpoint("pushed", "v1", "10.0.0.2:1")  # the source knows it before the pool is pushed
OLD, NEW = Endpoint("pushed", "v1", "10.0.0.3:1"), Endpoint("pushed", "v2", "10.0.0.4:1")


def table() -> tuple[RouteTable, list]:
    published = []
    return RouteTable(published.append, ["static"]), published


def test_source_and_pushed_endpoints_are_one_set_for_the_pools_that_exist():
    routes, published = table()
    routes.from_source(frozenset({STATIC, SLICE}))
    assert published == [{STATIC}]  # no pool `pushed` yet: its endpoint waits
    routes.push("pushed", frozenset({OLD}))
    assert published[-1] == {STATIC, SLICE, OLD}
    routes.push("pushed", frozenset({NEW}))  # a route replaces its pool's pushed endpoints
    assert published[-1] == {STATIC, SLICE, NEW}
    routes.from_source(frozenset({STATIC}))
    assert published[-1] == {STATIC, NEW}


def test_the_same_push_publishes_nothing():
    routes, published = table()
    routes.from_source(frozenset({STATIC}))
    routes.push("pushed", frozenset({OLD}))
    count = len(published)
    routes.push("pushed", frozenset({OLD}))
    routes.from_source(frozenset({STATIC}))
    assert len(published) == count


def test_a_dropped_pool_loses_all_its_endpoints_until_it_is_pushed_again():
    routes, published = table()
    routes.from_source(frozenset({STATIC, SLICE}))
    routes.push("pushed", frozenset({OLD}))
    routes.drop("pushed")
    assert published[-1] == {STATIC}
    routes.drop("static")  # a config-file pool too
    assert published[-1] == frozenset()
    routes.push("pushed", frozenset())
    assert published[-1] == {SLICE}
