"""Who may speculate: the pool's rule by QoS class, tenant and load, and the client's opt-out, with the
first reason that applies the one counted; and the load the rule reads, the QoS gate's."""

import math

import pytest

from shoal.route_contract import QosConfig, Speculation
from shoal.router.traffic.qos import BATCH, REALTIME, QosPolicy
from shoal.router.traffic.speculation import SpeculationDecision, decide

ALLOWED = SpeculationDecision.ALLOWED
OFF_BY_CLIENT = SpeculationDecision.OFF_BY_CLIENT
OFF_BY_QOS = SpeculationDecision.OFF_BY_QOS
OFF_BY_TENANT = SpeculationDecision.OFF_BY_TENANT
OFF_BY_LOAD = SpeculationDecision.OFF_BY_LOAD
REALTIME_ONLY = Speculation(qos_classes=(REALTIME,), tenants_off=("evals",), max_load=0.5)


@pytest.mark.parametrize(
    ("rule", "qos", "tenant", "load", "opted_out", "decision"),
    [
        (Speculation(), REALTIME, "acme", 5.0, False, ALLOWED),  # the default: everyone, at any load
        (Speculation(), BATCH, "acme", math.inf, False, ALLOWED),
        (Speculation(), REALTIME, "acme", 0.1, True, OFF_BY_CLIENT),
        (REALTIME_ONLY, REALTIME, "acme", 0.25, False, ALLOWED),
        (REALTIME_ONLY, BATCH, "acme", 0.25, False, OFF_BY_QOS),
        (REALTIME_ONLY, REALTIME, "evals", 0.25, False, OFF_BY_TENANT),
        (REALTIME_ONLY, REALTIME, "acme", 0.5, False, OFF_BY_LOAD),  # below max_load, not at it
        (REALTIME_ONLY, REALTIME, "acme", math.inf, False, OFF_BY_LOAD),  # no capacity
        (Speculation(qos_classes=()), REALTIME, "acme", 0.0, False, OFF_BY_QOS),  # off for the whole pool
        (Speculation(max_load=0.0), REALTIME, "acme", 0.0, False, OFF_BY_LOAD),
        # The first reason counts: the client's, then class, tenant, load.
        (REALTIME_ONLY, BATCH, "evals", 0.9, True, OFF_BY_CLIENT),
        (REALTIME_ONLY, BATCH, "evals", 0.9, False, OFF_BY_QOS),
        (REALTIME_ONLY, REALTIME, "evals", 0.9, False, OFF_BY_TENANT),
    ],
)
def test_decision(rule, qos, tenant, load, opted_out, decision):
    assert decide(rule, qos, tenant, load, client_opted_out=opted_out) is decision


def test_load_is_in_flight_and_queued_over_capacity():
    policy = QosPolicy(QosConfig(batch_share_max=0.5), capacity=0)
    assert policy.load() == math.inf  # no runtime to run anything on
    policy.set_capacity(4, batch_share=0.5)
    assert policy.load() == 0.0
    for i in range(4):
        policy.arrive(REALTIME, f"r{i}", 0.0)
    assert policy.load() == 1.0
    policy.arrive(REALTIME, "r4", 0.0)  # queued
    assert policy.load() == 1.25
    policy.depart(REALTIME, 0.1)  # r4 takes the slot
    assert policy.load() == 1.0
