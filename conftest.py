"""Fixtures every test folder (tests/ and e2e/) may use: the real Kubernetes control plane (one per session, started
on first use), the local node on it, a namespace of its own for each test, and the API server's
judgement of manifests (dry runs).

The Kubernetes modules are imported inside the fixtures: a run that needs no cluster (the GPU
tests on a machine without the dev extras, say) never imports them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.cluster import Cluster
    from tests.support.control_plane import ControlPlane
    from tests.support.dry_run import ServerDryRun
    from tests.support.pod_network import Reservation


@pytest.fixture(scope="session")
def pod_network() -> Iterator[Reservation]:
    """The local node's pod network, which no other session on this machine may take. Pods reach
    the API server at its gateway, so the API server's certificate names it."""
    from tests.support.pod_network import reserved_pod_network

    with reserved_pod_network() as reservation:
        yield reservation


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory, pod_network: Reservation) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler (`make k8s`), the CRDs of
    crds/ installed; no node, so no pod runs."""
    from tests.support.cluster import install_crds
    from tests.support.control_plane import ControlPlane

    with ControlPlane.start(
        tmp_path_factory.mktemp("control-plane"), api_hosts=(pod_network.gateway,), before_controllers=install_crds
    ) as plane:
        yield plane


@pytest.fixture(scope="session")
def cluster(control_plane: ControlPlane, pod_network: Reservation, tmp_path_factory) -> Iterator[Cluster]:
    """The control plane and the local node."""
    from tests.support.cluster import Cluster, running_node

    with running_node(control_plane, tmp_path_factory.mktemp("node"), pod_network) as (pod_logs, node_log):
        yield Cluster(control_plane, pod_logs, node_log)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace, deleted (with everything in it) after the test."""
    name = cluster.create_namespace()
    yield name
    cluster.delete_namespace(name)


@pytest.fixture(scope="session")
def server_dry_run(control_plane: ControlPlane) -> ServerDryRun:
    """`kubectl apply --dry-run=server --validate=strict` as the admin, in a namespace of its own."""
    from tests.support.dry_run import ServerDryRun

    return ServerDryRun(control_plane.admin_kubeconfig, control_plane.create_namespace("dry-run"))
