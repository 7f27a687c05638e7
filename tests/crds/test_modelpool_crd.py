"""The ModelPool CRD as the real API server serves it: accepted as written (a structural schema,
defaults valid against their own schema and CEL rules, rules that compile and point at declared
fields: the server refuses a CRD otherwise), printer columns that show the status fields they name,
and a scale subresource that reads and writes the right ones."""

import json
import re
from collections.abc import Callable, Iterator

import pytest

from tests.crds.files import MODELPOOL_CRD
from tests.support.control_plane import ControlPlane

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/modelpools.shoal.dev"
# What the operator writes, one value for each field the printer columns and the scale subresource read.
STATUS = {
    "replicas": 3,
    "readyReplicas": 2,
    "selector": "shoal.dev/pool=chat",
    "stableRevision": "v1-5d8f6c",
    "canaryRevision": "v2-7c9e1a",
    "canaryWeight": 25,
    "phase": "Progressing",
}


def test_the_api_server_serves_the_crd_as_written(control_plane):
    served = control_plane.request("GET", CRD_PATH)
    assert served["spec"] == {**MODELPOOL_CRD["spec"], "conversion": {"strategy": "None"}}
    assert served["status"]["acceptedNames"] == MODELPOOL_CRD["spec"]["names"]
    conditions = {c["type"]: c["status"] for c in served["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}


@pytest.fixture
def kubectl(control_plane: ControlPlane) -> Iterator[Callable[..., str]]:
    """kubectl (its stdout) as the admin in a namespace of its own, where a ModelPool `chat` is
    stored with its status written as the operator would."""
    namespace = control_plane.create_namespace("crd")
    pools = f"/apis/shoal.dev/v1alpha1/namespaces/{namespace}/modelpools"
    manifest = {
        "apiVersion": "shoal.dev/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "chat"},
        "spec": {"model": {"revision": "v1"}},
    }
    stored = control_plane.request("POST", pools, manifest)
    control_plane.request("PUT", f"{pools}/chat/status", {**stored, "status": STATUS})

    def run(*args: str) -> str:
        return control_plane.kubectl("--namespace", namespace, *args).stdout

    yield run
    control_plane.request("DELETE", f"/api/v1/namespaces/{namespace}")


def test_kubectl_get_shows_each_printer_columns_status_field(kubectl):
    header, row = (line.split() for line in kubectl("get", "modelpools").splitlines())
    (version,) = MODELPOOL_CRD["spec"]["versions"]
    assert header == ["NAME"] + [column["name"].upper() for column in version["additionalPrinterColumns"]]
    cells = dict(zip(header, row, strict=True))
    assert re.fullmatch(r"\d+s", cells.pop("AGE"))  # .metadata.creationTimestamp, as a date
    assert cells == {
        "NAME": "chat",
        "READY": "2",
        "STABLE": "v1-5d8f6c",
        "CANARY": "v2-7c9e1a",
        "WEIGHT": "25",
        "PHASE": "Progressing",
    }


def test_the_scale_subresource_reads_the_status_and_writes_spec_replicas(kubectl):
    scale = json.loads(kubectl("get", "modelpool", "chat", "--subresource=scale", "--output=json"))
    assert (scale["spec"], scale["status"]) == ({"replicas": 1}, {"replicas": 3, "selector": "shoal.dev/pool=chat"})
    kubectl("scale", "modelpool", "chat", "--replicas=4")
    assert json.loads(kubectl("get", "modelpool", "chat", "--output=json"))["spec"]["replicas"] == 4
