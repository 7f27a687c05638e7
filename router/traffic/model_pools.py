"""Which pool a request goes to: of the pools serving its model, the one that takes its QoS class
(a route's `qos_classes`), else the model's only pool, whatever classes that one takes; and the
rule that keeps the choice single: of the pools serving one model, no two take the same class.

So one model name may stand for two pools, one taking realtime requests and one batch, each sized on
its own signal. Two pools of a model then take one class each and cover both; a model has a class
no pool takes only while it has one pool, and that pool answers it rather than a 404: the model is
served, and a pool being added, renamed or removed must not turn its clients away meanwhile.

Pure logic over routes: the dispatcher, the config file and the admin API's route pushes call it.
"""

from collections.abc import Iterable

from shoal.route_contract import Route


def clash(route: Route, others: Iterable[Route]) -> str | None:
    """Why `route` cannot serve beside the other pools' routes, in words, or None if it can."""
    for other in others:
        if other.name == route.name or other.model != route.model:
            continue
        shared = [qos for qos in route.qos_classes if qos in other.qos_classes]
        if shared:
            return (
                f"model {route.model!r} is served by pool {other.name!r} for {' and '.join(shared)} requests "
                f"(its qos_classes: {', '.join(other.qos_classes)}): pools of one model take different QoS classes"
            )
    return None


def serving(routes: Iterable[Route], model: str | None, qos: str) -> Route | None:
    """The route a request for `model` of class `qos` goes to; None if no pool serves the model."""
    of_model = [route for route in routes if route.model == model]
    return next((route for route in of_model if qos in route.qos_classes), of_model[0] if of_model else None)
