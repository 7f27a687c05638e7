"""`helm install` of charts/shoal for real: into the test cluster's real API server, its pods run by
the local node (processes in network namespaces of their own, standing in for containers; the
images are not pulled: their `shoal` command is this checkout's). The operator and the router log
in with the ServiceAccount token the chart gives them (the router with none), so the chart's RBAC
is what they get.

Install, wait for the operator and both routers to be Ready, apply a ModelPool, send OpenAI
traffic through the router Service's endpoints (as kube-proxy would), upgrade with a value that
rolls the routers, uninstall (everything gone but the CRD, as Helm keeps CRDs). A value the
schema refuses fails `helm install` before anything is created.
"""

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from shoal.operator.route import is_ready
from tests.chart.helm import CHART, helm
from tests.support.cluster import Cluster

pytestmark = pytest.mark.integration
RELEASE = "shoal-helm"  # not "shoal": crds/rbac.yaml, which other tests apply, owns the shoal-operator ClusterRole
API_KEY = "sk-shoal-helm-test"
POOL_MANIFEST = Path(__file__).parents[2] / "e2e" / "local" / "modelpool.yaml"
POOL = "e2e-chat"
VALUES = {
    "router": {"replicas": 2, "apiKeys": {"keys": [{"key": API_KEY, "tenant": "default"}]}, "scrapeIntervalSeconds": 1},
    "operator": {"reconcileIntervalSeconds": 1, "drainSeconds": 2},
}
READY_S = 180  # the first runtime may convert the embedded model (about 25 s once)


def helm_on(cluster: Cluster, *args: str, check: bool = True):
    return helm("--kubeconfig", str(cluster.kubeconfig), *args, check=check, timeout_s=300)


def wait_for(read, accept, *, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s}s; last seen: {value!r}")
        time.sleep(0.5)


def get_json(cluster: Cluster, namespace: str, *args: str) -> dict:
    return json.loads(cluster.kubectl("--namespace", namespace, "get", *args, "-o", "json").stdout)


def ready_pods(cluster: Cluster, namespace: str, component: str) -> list[dict]:
    pods = get_json(
        cluster,
        namespace,
        "pods",
        "-l",
        f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}",
    )
    return [pod for pod in pods["items"] if not pod["metadata"].get("deletionTimestamp") and is_ready(pod)]


def service_addresses(cluster: Cluster, namespace: str, service: str, port_name: str) -> list[str]:
    """host:port of every ready endpoint of the Service's EndpointSlices (kube-proxy's view)."""
    slices = get_json(cluster, namespace, "endpointslices", "-l", f"kubernetes.io/service-name={service}")
    found = []
    for endpoint_slice in slices["items"]:
        port = next((p["port"] for p in endpoint_slice.get("ports") or [] if p.get("name") == port_name), None)
        for endpoint in endpoint_slice.get("endpoints") or []:
            if port is not None and endpoint.get("conditions", {}).get("ready"):
                found += [f"{address}:{port}" for address in endpoint["addresses"]]
    return sorted(found)


def chat(address: str, model: str) -> tuple[str, str]:
    """One chat completion through the router at address: (content, revision that answered)."""
    client = openai.OpenAI(base_url=f"http://{address}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    return raw.parse().choices[0].message.content, raw.headers["x-shoal-revision"]


@pytest.fixture
def release_namespace(cluster: Cluster, tmp_path) -> Iterator[tuple[str, Path]]:
    namespace = cluster.create_namespace("helm")
    values = tmp_path / "values.json"
    values.write_text(json.dumps(VALUES))
    yield namespace, values
    helm_on(cluster, "uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "2m", check=False)
    cluster.delete_namespace(namespace)


def test_a_value_the_schema_refuses_fails_helm_install_before_anything_is_created(cluster: Cluster, release_namespace):
    namespace, _ = release_namespace
    result = helm_on(
        cluster, "install", RELEASE, str(CHART), "--namespace", namespace, "--set", "router.replicas=-1", check=False
    )
    assert result.returncode != 0 and "router.replicas" in result.stderr, result.stderr
    assert RELEASE not in helm_on(cluster, "list", "--namespace", namespace, "--all", "-q").stdout
    assert leftovers(cluster, namespace) == []


def test_helm_install_serves_a_pool_then_upgrades_and_uninstalls(cluster: Cluster, release_namespace):
    namespace, values = release_namespace
    helm_on(
        cluster,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        str(values),
        "--wait",
        "--timeout",
        "3m",
    )
    assert len(ready_pods(cluster, namespace, "router")) == 2 and len(ready_pods(cluster, namespace, "operator")) >= 1

    # A pool, applied as a user would; the chart's operator (in a pod, with its own token) runs it.
    cluster.kubectl("--namespace", namespace, "apply", "-f", str(POOL_MANIFEST))
    status = wait_for(
        lambda: get_json(cluster, namespace, "modelpool", POOL).get("status") or {},
        lambda s: s.get("phase") == "Ready",
        timeout_s=READY_S,
        what="the pool Ready",
    )
    stable = status["stableRevision"]

    # Through the router Service: both routers get the route and answer.
    routers = wait_for(
        lambda: service_addresses(cluster, namespace, f"{RELEASE}-router", "http"),
        lambda found: len(found) == 2,
        timeout_s=30,
        what="two router endpoints",
    )
    for address in routers:
        content, revision = wait_for(
            lambda address=address: _try_chat(address),
            lambda answer: answer is not None,
            timeout_s=30,
            what=f"an answer from {address}",
        )
        assert "Paris" in content and revision == stable
    # The routers' /metrics, as the ServiceMonitor scrapes it: on the metrics Service (their admin
    # port, no token needed), and not on the public one.
    scraped = service_addresses(cluster, namespace, f"{RELEASE}-router-metrics", "metrics")
    assert len(scraped) == 2
    for address in scraped:
        assert f'shoal:router_requests_total{{pool="{namespace}.{POOL}"' in _get(f"http://{address}/metrics")[1]
    assert {_get(f"http://{address}/metrics")[0] for address in routers} == {404}

    # A values change that rolls the routers (their config's checksum changes): new pods, served.
    old_routers = {pod["metadata"]["name"] for pod in ready_pods(cluster, namespace, "router")}
    helm_on(
        cluster,
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        str(values),
        "--set",
        "router.logLevel=DEBUG",
        "--wait",
        "--timeout",
        "3m",
    )
    new_routers = wait_for(
        lambda: {pod["metadata"]["name"] for pod in ready_pods(cluster, namespace, "router")},
        lambda names: len(names) == 2 and not names & old_routers,
        timeout_s=60,
        what="the routers replaced",
    )
    assert new_routers
    for address in wait_for(
        lambda: service_addresses(cluster, namespace, f"{RELEASE}-router", "http"),
        lambda found: len(found) == 2 and set(found).isdisjoint(routers),
        timeout_s=60,
        what="the new routers' endpoints",
    ):
        content, _ = wait_for(
            lambda address=address: _try_chat(address),
            lambda answer: answer is not None,
            timeout_s=30,
            what=f"an answer from {address}",
        )
        assert "Paris" in content

    # Uninstalled: the pool goes first (its finalizer needs the operator), then the release.
    cluster.kubectl("--namespace", namespace, "delete", "modelpool", POOL, "--timeout=60s")
    helm_on(cluster, "uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "2m")
    wait_for(
        lambda: leftovers(cluster, namespace),
        lambda left: left == [],
        timeout_s=60,
        what="everything gone (pods finish their grace period)",
    )
    # The operators' leader-election Lease is their state, not the chart's: like controller-runtime's
    # it outlives the release (a re-install's operators take it over once it expires).
    assert [lease["metadata"]["name"] for lease in get_json(cluster, namespace, "leases")["items"]] == [
        f"{RELEASE}-operator"
    ]
    cluster_scoped = json.loads(
        cluster.kubectl(
            "get", "clusterroles,clusterrolebindings", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "json"
        ).stdout
    )
    assert cluster_scoped["items"] == []
    assert cluster.kubectl("get", "crd", "modelpools.shoal.dev").returncode == 0  # Helm keeps CRDs


def leftovers(cluster: Cluster, namespace: str) -> list[str]:
    """What is left in the namespace besides what Kubernetes itself puts in every one."""
    left = get_json(
        cluster,
        namespace,
        "deployments,replicasets,pods,services,configmaps,secrets,serviceaccounts,roles,rolebindings,poddisruptionbudgets",
    )
    return [
        f"{i['kind']}/{i['metadata']['name']}"
        for i in left["items"]
        if i["metadata"]["name"] not in ("default", "kube-root-ca.crt")
    ]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _try_chat(address: str) -> tuple[str, str] | None:
    try:
        return chat(address, POOL)
    except (openai.APIConnectionError, openai.APIStatusError):
        return None
