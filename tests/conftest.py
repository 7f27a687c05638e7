"""Fixtures every test folder may use: the real Kubernetes control plane (one per session, started
on first use) with the local node, and a namespace of its own for each test."""

from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster, running_cluster

@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler (`make k8s`) and the local node;
    the CRDs of crds/ installed."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running

@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace, deleted (with everything in it) after the test."""
    name = cluster.create_namespace()
    yield name
    cluster.delete_namespace(name)
