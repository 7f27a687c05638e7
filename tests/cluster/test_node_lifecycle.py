"""A pod's life on the local node, as the real control plane sees it: readiness from its probes, a
failing liveness or startup probe restarting it, crash loops with restart counts and backoff, pods
the node refuses, and graceful deletion (SIGTERM, then SIGKILL after the grace period)."""

import asyncio
import time

import aiohttp
import pytest

from shoal.operator.route import is_ready
from tests.cluster.pods import (
    HTTP_SERVER,
    SLEEP_SCRIPT,
    container_status,
    create,
    is_running,
    log_of,
    phase,
    pid_of,
    pod,
    pods_path,
    read_pod,
    wait_pod,
)
from tests.support.api_client import ApiClient
from tests.support.cluster import Cluster
from tests.support.polling import eventually

pytestmark = pytest.mark.asyncio

# Takes SIGTERM as a cue to leave (as servers do), or ignores it: then only SIGKILL stops it.
ON_SIGTERM = """
import signal, sys, time
def leave(*_):
    print("got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, leave if sys.argv[1] == "leave" else signal.SIG_IGN)
print("running", flush=True)
time.sleep(300)
"""
HTTP_PORT = [{"name": "http", "containerPort": 8080}]


async def test_probes_decide_readiness_and_a_failing_liveness_or_startup_probe_restarts_the_process(
    cluster: Cluster, api: ApiClient, namespace: str
):
    unhealthy = pod(
        "unhealthy",
        HTTP_SERVER,
        container={
            "env": [{"name": "HEALTH", "value": "500"}],
            "ports": HTTP_PORT,
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
            "livenessProbe": {
                "httpGet": {"path": "/health", "port": "http"},
                "initialDelaySeconds": 1,
                "periodSeconds": 1,
                "failureThreshold": 2,
            },
        },
    )
    never_starts = pod(
        "never-starts",
        SLEEP_SCRIPT,
        container={
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 2},
        },
    )
    await create(api, pods_path(namespace), unhealthy)
    await create(api, pods_path(namespace), never_starts)

    ready = await wait_pod(api, namespace, "unhealthy", is_ready, what="Ready from its readiness probe")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{ready['status']['podIP']}:8080/health") as response,
    ):
        assert response.status == 500
    restarted = await wait_pod(
        api,
        namespace,
        "unhealthy",
        lambda p: container_status(p).get("restartCount", 0) >= 1,
        what="a restart for liveness",
    )
    assert container_status(restarted)["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM: 128 + 15
    assert not is_running(pid_of(ready))
    await wait_pod(api, namespace, "unhealthy", is_ready, what="Ready again after the restart")

    restarted = await wait_pod(
        api,
        namespace,
        "never-starts",
        lambda p: container_status(p).get("restartCount", 0) >= 1,
        what="a restart for startup",
    )
    assert not container_status(restarted)["started"] and not is_ready(restarted)


async def test_crashing_processes_are_restarted_with_backoff_as_their_restart_policy_says(
    cluster: Cluster, api: ApiClient, namespace: str
):
    crash = "import sys; print('boom', flush=True); sys.exit(3)"
    await create(api, pods_path(namespace), pod("loop", crash))
    await create(api, pods_path(namespace), pod("once", crash, restartPolicy="Never"))
    await create(api, pods_path(namespace), pod("done", "print('ok')", restartPolicy="OnFailure"))

    looping = await wait_pod(
        api, namespace, "loop", lambda p: container_status(p).get("restartCount", 0) >= 2, what="two restarts"
    )
    assert phase(looping) == "Running"
    assert container_status(looping)["lastState"]["terminated"]["exitCode"] == 3
    await eventually(
        lambda: _logged(cluster, namespace, "loop"),
        lambda text: text.count("boom") >= 3,
        timeout=5,
        what="each run's output logged",
    )
    waiting = await wait_pod(
        api, namespace, "loop", lambda p: "waiting" in container_status(p)["state"], what="a back-off"
    )
    assert container_status(waiting)["state"]["waiting"]["reason"] == "CrashLoopBackOff"

    once = await wait_pod(api, namespace, "once", lambda p: phase(p) == "Failed", what="Failed")
    assert (
        container_status(once)["state"]["terminated"]["exitCode"] == 3 and container_status(once)["restartCount"] == 0
    )
    done = await wait_pod(api, namespace, "done", lambda p: phase(p) == "Succeeded", what="Succeeded")
    assert container_status(done)["state"]["terminated"]["reason"] == "Completed"


async def test_the_node_refuses_pods_it_cannot_run_as_processes(cluster: Cluster, api: ApiClient, namespace: str):
    await create(
        api,
        pods_path(namespace),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "60"]}]},
        },
    )
    host_path = pod(
        "host-path",
        SLEEP_SCRIPT,
        container={"volumeMounts": [{"name": "root", "mountPath": "/host"}]},
        volumes=[{"name": "root", "hostPath": {"path": "/"}}],
    )
    await create(api, pods_path(namespace), host_path)
    for name, reason in (("sleeper", "only commands starting with `shoal`"), ("host-path", "not hostPath")):
        refused = await wait_pod(api, namespace, name, lambda p: phase(p) == "Failed", what=f"{name} refused")
        assert refused["spec"]["nodeName"] == cluster.node_name  # bound by the scheduler, then refused
        assert refused["status"]["reason"] == "UnsupportedByLocalNode" and reason in refused["status"]["message"]
        assert refused["status"].get("qosClass") == "BestEffort"  # the API server's, left alone


async def test_deletion_stops_the_process_with_sigterm_then_sigkill_after_the_grace_period(
    cluster: Cluster, api: ApiClient, namespace: str
):
    await create(api, pods_path(namespace), pod("polite", ON_SIGTERM, container={"args": ["leave"]}))
    await create(
        api,
        pods_path(namespace),
        pod("stubborn", ON_SIGTERM, container={"args": ["ignore"]}, terminationGracePeriodSeconds=2),
    )
    running = {
        name: await wait_pod(api, namespace, name, is_ready, what=f"{name} Ready") for name in ("polite", "stubborn")
    }
    await eventually(
        lambda: _logged(cluster, namespace, "stubborn"), lambda text: "running" in text, what="the handler installed"
    )

    async def deleted_after(name: str) -> float:
        started = time.monotonic()
        await api.delete(pods_path(namespace, name))  # graceful: the node stops it, then deletes it
        await eventually(lambda: read_pod(api, namespace, name), lambda p: p == {}, timeout=20, what=f"{name} gone")
        return time.monotonic() - started

    polite, stubborn = await asyncio.gather(deleted_after("polite"), deleted_after("stubborn"))
    assert polite < 2 and "got SIGTERM" in log_of(cluster, namespace, "polite")
    assert 1.8 <= stubborn < 6  # its grace period, 2 s, then SIGKILL
    assert not any(is_running(pid_of(obj)) for obj in running.values())


async def test_a_process_that_exits_takes_the_processes_it_left_behind(
    cluster: Cluster, api: ApiClient, namespace: str
):
    leaves_a_child = (
        "import subprocess, sys; "
        "print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']).pid, flush=True)"
    )
    await create(api, pods_path(namespace), pod("parent", leaves_a_child, restartPolicy="Never"))
    await wait_pod(api, namespace, "parent", lambda p: phase(p) == "Succeeded", what="the parent done")
    child = int(log_of(cluster, namespace, "parent").strip())
    await eventually(
        lambda: _alive(child), lambda alive: not alive, timeout=5, what="the child killed with its process group"
    )


async def _alive(pid: int) -> bool:
    return is_running(pid)


async def _logged(cluster: Cluster, namespace: str, name: str) -> str:
    return log_of(cluster, namespace, name)
