"""Whether a request may speculate: the pool's rule (shoal/route_contract.py's Speculation) and the
client's own opt-out, decided once per request as the dispatcher sends it to a runtime.

Speculation (the runtime drafts tokens and verifies them in one pass) buys latency with compute: worth
it for realtime requests on a lightly loaded pool, wasted on batch traffic at high load, where the
verification passes take batch slots from requests that need them. A request turned down reaches the
runtime with `sampling.speculative = false`; one allowed keeps what its client sent (unset or true),
so a client can opt out but never override the pool's "no". The first reason that applies is the
one counted: the client's, then the QoS class, the tenant, the load.
"""

from enum import Enum

from shoal.route_contract import Speculation


class SpeculationDecision(Enum):
    ALLOWED = "allowed"
    OFF_BY_CLIENT = "off_by_client"
    OFF_BY_QOS = "off_by_qos"
    OFF_BY_TENANT = "off_by_tenant"
    OFF_BY_LOAD = "off_by_load"


def decide(rule: Speculation, qos: str, tenant: str, load: float, client_opted_out: bool) -> SpeculationDecision:
    """`load` is the pool's QoS gate load (router/traffic/qos.py's QosPolicy.load) with the request
    admitted: it may speculate only while that is below rule.max_load."""
    if client_opted_out:
        return SpeculationDecision.OFF_BY_CLIENT
    if qos not in rule.qos_classes:
        return SpeculationDecision.OFF_BY_QOS
    if tenant in rule.tenants_off:
        return SpeculationDecision.OFF_BY_TENANT
    if rule.max_load is not None and not load < rule.max_load:
        return SpeculationDecision.OFF_BY_LOAD
    return SpeculationDecision.ALLOWED
