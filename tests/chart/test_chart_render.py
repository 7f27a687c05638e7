"""charts/shoal through the real helm: lint and template with every value set, and every rendered
manifest valid for Kubernetes (its OpenAPI schemas, strictly); the ModelPools and the operator's
RBAC accepted by the real API server (a dry run)."""

import kubernetes_validate
import pytest
import yaml

from tests.chart.helm import CHART, ROOT, by_kind, helm, render, value_sets

CRD = ROOT / "crds" / "modelpool.yaml"
OLDEST_SUPPORTED = "1.28"  # the CRD's own floor (tests/crds/test_kubernetes_schemas.py)
# Kinds whose schemas kubernetes-validate does not ship: checked in test_chart_wiring.py instead.
NOT_CORE = {"monitoring.coreos.com/v1", "gateway.networking.k8s.io/v1", "shoal.dev/v1alpha1"}
IDS = [path.stem if path else "defaults" for path in value_sets()]
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@pytest.mark.parametrize("values", value_sets(), ids=IDS)
def test_helm_lint_passes_strictly(values):
    args = ["lint", str(CHART), "--strict"] + (["--values", str(values)] if values else [])
    assert "0 chart(s) failed" in helm(*args).stdout


@pytest.mark.parametrize("version", [OLDEST_SUPPORTED, kubernetes_validate.latest_version()])
@pytest.mark.parametrize("values", value_sets(), ids=IDS)
def test_rendered_manifests_match_the_kubernetes_schemas(values, version):
    docs = render(values)
    core = [doc for doc in docs if doc["apiVersion"] not in NOT_CORE]
    assert len(core) >= 10
    for doc in core:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: {error}") from None


@pytest.mark.parametrize("values", value_sets(), ids=IDS)
def test_every_modelpool_rendered_is_valid_for_the_crd(server_dry_run, values):
    pools = by_kind(render(values), "ModelPool")
    if pools:
        server_dry_run.apply(*pools)


@pytest.mark.parametrize("values", value_sets(), ids=IDS)
def test_the_rbac_rendered_is_accepted_by_the_api_server(server_dry_run, values):
    rbac = [doc for doc in render(values) if doc["kind"] in RBAC_KINDS]
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= {doc["kind"] for doc in rbac}  # the operator's
    assert [doc["kind"] for doc in server_dry_run.apply(*rbac)] == [doc["kind"] for doc in rbac]


def test_the_chart_installs_the_repositorys_crd_unchanged():
    """One source of truth: charts/shoal/crds/modelpool.yaml is crds/modelpool.yaml."""
    assert (CHART / "crds" / "modelpool.yaml").read_bytes() == CRD.read_bytes()
    rendered = [doc for doc in render(include_crds=True) if doc["kind"] == "CustomResourceDefinition"]
    assert rendered == [yaml.safe_load(CRD.read_text())]


def test_the_operators_cluster_role_has_exactly_the_rules_of_crds_rbac():
    (expected,) = [
        doc for doc in yaml.safe_load_all((ROOT / "crds" / "rbac.yaml").read_text()) if doc["kind"] == "ClusterRole"
    ]
    (rendered,) = by_kind(render(), "ClusterRole")
    assert rendered["rules"] == expected["rules"]


def test_names_follow_the_release():
    names = {
        (doc["kind"], doc["metadata"]["name"])
        for doc in yaml.safe_load_all(helm("template", "shoal", str(CHART)).stdout)
        if doc
    }
    assert ("Deployment", "shoal-router") in names and ("Deployment", "shoal-operator") in names  # no shoal-shoal-
