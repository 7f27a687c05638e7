"""The operator's tests on the real control plane: its pods go to a fake node (fake_node.py), so
the session's local node is never needed here; the operator logs in as its ServiceAccount."""

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import pytest_asyncio

from shoal.constants import API_VERSION, PLURAL
from shoal.router.app import Router
from tests.operator.fake_node import FakeNode, fake_node_in_thread, node_shape
from tests.router.harness import make_config
from tests.support.api_client import ApiClient
from tests.support.api_paths import object_path
from tests.support.certificates import Identity
from tests.support.control_plane import ControlPlane
from tests.support.operator_account import install_operator_rbac


@pytest.fixture(scope="session")
def fake_node(control_plane: ControlPlane) -> Iterator[FakeNode]:
    """Logged in as a kubelet is (system:node:<name>): the Node authorizer lets it see and change
    only its own Node, Lease and pods."""
    shape = node_shape()
    access, _ = control_plane.client_access(
        f"node-{shape.name}", Identity(f"system:node:{shape.name}", ("system:nodes",))
    )
    with fake_node_in_thread(access, shape) as node:
        yield node


@pytest.fixture(scope="session")
def operator_rbac(control_plane: ControlPlane) -> ControlPlane:
    """crds/rbac.yaml applied (and shoal-system made), once per session."""
    install_operator_rbac(control_plane)
    return control_plane


@pytest.fixture
def namespace(control_plane: ControlPlane, fake_node: FakeNode) -> Iterator[str]:
    """A fresh namespace on the control plane, deleted after the test (the root conftest's would
    start the local node; here the fake node runs the pods, and finishes them as the namespace
    goes). Its pools may still carry the operator's finalizer with no operator left to remove it:
    the test's admin removes it, so the namespace goes whole."""
    name = control_plane.create_namespace("op")
    yield name
    for pool in control_plane.request("GET", object_path(API_VERSION, PLURAL, name))["items"]:
        control_plane.kubectl(
            "-n",
            name,
            "patch",
            "modelpool",
            pool["metadata"]["name"],
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
        )
    control_plane.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest_asyncio.fixture
async def api(control_plane: ControlPlane) -> AsyncIterator[ApiClient]:
    """The test's own client, as the cluster's admin."""
    async with aiohttp.ClientSession() as session:
        yield ApiClient(session, control_plane.admin)


@pytest_asyncio.fixture
async def router() -> AsyncIterator[Router]:
    """A router with no pools: the operator pushes their routes through its admin API."""
    router = Router(make_config([]))
    await router.start()
    try:
        yield router
    finally:
        await router.stop(grace_s=0)
