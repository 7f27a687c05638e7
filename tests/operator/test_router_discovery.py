"""Which router pods the operator pushes routes to: every running one, Ready or not (a router is
not Ready until a route gives it a ready runtime, and only the operator can give it one)."""

from shoal.operator.router_client import admin_urls


def router_pod(ip: str | None, *, state: str = "running", ready: bool = True, terminating: bool = False) -> dict:
    metadata = {"name": f"router-{ip}", **({"deletionTimestamp": "2026-11-30T00:00:00Z"} if terminating else {})}
    status = {
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "router", "state": {state: {}}}],
        **({"podIP": ip} if ip else {}),
    }
    return {"metadata": metadata, "status": status}


def test_running_routers_get_routes_whether_ready_or_not():
    pods = [router_pod("10.0.0.2"), router_pod("10.0.0.3", ready=False)]
    assert admin_urls(pods, 8002) == ["http://10.0.0.2:8002", "http://10.0.0.3:8002"]


def test_routers_not_running_or_terminating_or_without_an_address_are_left_out():
    pods = [
        router_pod("10.0.0.4", state="waiting", ready=False),  # crash-looping, or not started
        router_pod("10.0.0.5", terminating=True),
        router_pod(None),
        {"metadata": {"name": "pending"}, "status": {}},
    ]
    assert admin_urls(pods, 8002) == []
