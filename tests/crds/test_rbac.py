"""The operator's RBAC (crds/rbac.yaml): exactly the permissions it was reviewed with, granted to
the ServiceAccount the operator runs as, in objects the API server accepts. Widening a rule means
changing EXPECTED here, on purpose."""

import yaml

from tests.crds.files import CRDS

# What the operator was seen to use in the audit log (tests/operator/test_operator_rbac.py), no more.
EXPECTED = {
    ("shoal.dev", "modelpools"): {"get", "list", "watch", "patch"},
    ("shoal.dev", "modelpools/status"): {"patch"},
    ("shoal.dev", "modelpools/scale"): {"patch"},  # the autoscaler's replicas (spec.autoscaling)
    ("apps", "deployments"): {"list", "create", "patch", "delete"},
    ("", "services"): {"get", "create"},
    ("", "secrets"): {"get", "create"},  # the pools' runtime admin tokens
    ("", "pods"): {"list"},
    ("", "events"): {"create"},
    ("", "namespaces"): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
}
EXPECTED_IN_OWN_NAMESPACE = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}  # leader election

DOCS = {doc["kind"]: doc for doc in yaml.safe_load_all((CRDS / "rbac.yaml").read_text())}


def granted_by(role: dict) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames, nonResourceURLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_the_roles_grant_exactly_the_reviewed_permissions():
    assert granted_by(DOCS["ClusterRole"]) == EXPECTED
    assert granted_by(DOCS["Role"]) == EXPECTED_IN_OWN_NAMESPACE
    assert DOCS["Role"]["metadata"]["namespace"] == DOCS["ServiceAccount"]["metadata"]["namespace"]


def test_the_bindings_give_the_roles_to_the_operators_service_account():
    account = DOCS["ServiceAccount"]
    assert account["metadata"] == {"name": "shoal-operator", "namespace": "shoal-system"}
    for role, binding in ((DOCS["ClusterRole"], DOCS["ClusterRoleBinding"]), (DOCS["Role"], DOCS["RoleBinding"])):
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role["kind"],
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", **account["metadata"]}]


def test_the_api_server_accepts_every_document(server_dry_run):
    stored = server_dry_run.apply(*DOCS.values())
    assert [doc["kind"] for doc in stored] == list(DOCS)
