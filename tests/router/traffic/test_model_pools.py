"""Which pool a request goes to by its model and QoS class, and which pools of one model may serve
side by side: each class of a model to one pool at most."""

import pytest

from shoal.route_contract import Route
from shoal.router.traffic.model_pools import clash, serving
from shoal.router.traffic.qos import BATCH, REALTIME


def route(name: str, model: str = "llama", qos_classes: tuple[str, ...] = (REALTIME, BATCH)) -> Route:
    return Route(name=name, model=model, stable="v1", qos_classes=qos_classes)


INTERACTIVE = route("interactive", qos_classes=(REALTIME,))
BULK = route("bulk", qos_classes=(BATCH,))
OTHER = route("other", model="qwen")


@pytest.mark.parametrize(
    ("routes", "model", "qos", "expected"),
    [
        ([INTERACTIVE, BULK, OTHER], "llama", REALTIME, INTERACTIVE),
        ([INTERACTIVE, BULK, OTHER], "llama", BATCH, BULK),
        ([BULK, INTERACTIVE], "llama", REALTIME, INTERACTIVE),  # by class, not by order
        ([INTERACTIVE, BULK, OTHER], "qwen", BATCH, OTHER),  # a pool of both classes: today's behaviour
        ([BULK, OTHER], "llama", REALTIME, BULK),  # no pool takes the class: the model's only one answers
        ([INTERACTIVE, OTHER], "llama", BATCH, INTERACTIVE),
        ([INTERACTIVE, BULK], "qwen", REALTIME, None),  # no pool serves the model: a 404
        ([], "llama", REALTIME, None),
        ([INTERACTIVE], None, REALTIME, None),  # a request whose model could not be read
    ],
)
def test_a_request_goes_to_the_pool_of_its_model_that_takes_its_class(routes, model, qos, expected):
    assert serving(routes, model, qos) == expected


def test_pools_of_one_model_may_serve_side_by_side_only_with_classes_of_their_own():
    assert clash(BULK, [INTERACTIVE, OTHER]) is None
    assert clash(route("other-llama", model="mistral"), [INTERACTIVE, BULK, OTHER]) is None
    assert clash(INTERACTIVE, [INTERACTIVE]) is None  # a pool's own route again
    assert clash(route("bulk", qos_classes=(REALTIME, BATCH)), [INTERACTIVE, BULK]) == (
        "model 'llama' is served by pool 'interactive' for realtime requests (its qos_classes: realtime): "
        "pools of one model take different QoS classes"
    )
    assert "pool 'bulk' for batch requests" in clash(route("second-bulk", qos_classes=(BATCH,)), [INTERACTIVE, BULK])
    assert "for realtime and batch requests" in clash(route("twin"), [OTHER, route("first")])
