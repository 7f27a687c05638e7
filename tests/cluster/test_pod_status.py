"""The pod status the local node reports, and its network's names and addresses (pure)."""

import pytest

from tests.support.local_node import NodeConfig, node_capacity, pod_base_env
from tests.support.pod_network import AddressPool, NetworkError, gateway_of, network_names
from tests.support.pod_status import PodState, pod_status, refused_status, scheduled_condition

SCHEDULED = {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": "t0"}


def test_a_running_pods_status_keeps_the_schedulers_condition_and_reports_the_process():
    state = PodState(
        pod_ip="10.9.0.7", host_ip="10.9.0.1", start_time="t1", container="c", image="i", scheduled=SCHEDULED
    )
    state.phase, state.started, state.ready, state.ready_since, state.restart_count = "Running", True, True, "t2", 2
    state.container_id, state.state = "local-process://42", {"running": {"startedAt": "t2"}}
    status = pod_status(state)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert status["conditions"][-1] == SCHEDULED  # as the scheduler wrote it: a merge patch replaces the list
    assert (status["podIP"], status["podIPs"], status["hostIPs"]) == (
        "10.9.0.7",
        [{"ip": "10.9.0.7"}],
        [{"ip": "10.9.0.1"}],
    )
    [container] = status["containerStatuses"]
    assert container["containerID"] == "local-process://42" and container["restartCount"] == 2 and container["ready"]
    assert "qosClass" not in status  # the API server's


def test_a_pod_not_ready_says_which_container_and_a_refused_pod_says_why():
    state = PodState(pod_ip="10.9.0.7", host_ip="10.9.0.1", start_time="t1", container="c", image="i", scheduled=None)
    ready = next(c for c in pod_status(state)["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["message"] == "containers with unready status: [c]"
    assert [c["type"] for c in pod_status(state)["conditions"]].count("PodScheduled") == 0
    assert refused_status("no") == {"phase": "Failed", "reason": "UnsupportedByLocalNode", "message": "no"}
    assert scheduled_condition({"status": {"conditions": [SCHEDULED]}}) == SCHEDULED


def test_network_names_fit_linux_limits_and_differ_by_cidr():
    names = network_names("10.213.0.0/16")
    assert len(names.bridge) <= 15 and len(names.veth(65534)) <= 15
    assert names.bridge_mac.startswith("02:") and len(names.bridge_mac.split(":")) == 6
    assert network_names("10.213.1.0/24") != network_names("10.213.0.0/24") == network_names("10.213.0.0/24")
    assert gateway_of("10.213.4.0/24") == "10.213.4.1"


def test_addresses_go_round_robin_after_the_gateway():
    pool = AddressPool("10.9.0.0/29")  # .1 gateway, .2 to .6 pods, .7 broadcast
    assert pool.gateway == "10.9.0.1"
    taken = [pool.allocate() for _ in range(5)]
    assert [address for _, address in taken] == [f"10.9.0.{n}" for n in range(2, 7)]
    with pytest.raises(NetworkError, match="no free pod address"):
        pool.allocate()
    pool.release(3)
    pool.release(5)
    assert pool.allocate() == (3, "10.9.0.3")
    assert pool.allocate() == (5, "10.9.0.5")


def test_the_node_offers_gpus_only_when_asked_and_keeps_cluster_credentials_from_pods(tmp_path):
    config = NodeConfig(log_dir=tmp_path, state_dir=tmp_path, api_server_port=1)
    assert node_capacity(config) == {"cpu": "64", "memory": "256Gi", "pods": "110"}
    assert (
        node_capacity(NodeConfig(log_dir=tmp_path, state_dir=tmp_path, api_server_port=1, gpus=2))["nvidia.com/gpu"]
        == "2"
    )
    assert pod_base_env({"PATH": "/bin", "KUBECONFIG": "/k", "KUBERNETES_SERVICE_HOST": "x"}) == {"PATH": "/bin"}
