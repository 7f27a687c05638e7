"""The operator's RBAC (crds/rbac.yaml): exactly the permissions it was reviewed with, granted to
the ServiceAccount the operator runs as. Widening a rule means changing EXPECTED here, on purpose."""

import yaml

from tests.crds.files import CRDS

EXPECTED = {
    ("shoal.dev", "modelpools"): {"get", "list", "watch", "patch"},
    ("shoal.dev", "modelpools/status"): {"get", "patch", "update"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "namespaces"): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
}

DOCS = {doc["kind"]: doc for doc in yaml.safe_load_all((CRDS / "rbac.yaml").read_text())}


def test_the_cluster_role_grants_exactly_the_reviewed_permissions():
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in DOCS["ClusterRole"]["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames, nonResourceURLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED


def test_the_binding_gives_the_role_to_the_operators_service_account():
    account, role, binding = DOCS["ServiceAccount"], DOCS["ClusterRole"], DOCS["ClusterRoleBinding"]
    assert account["metadata"] == {"name": "shoal-operator", "namespace": "shoal-system"}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", **account["metadata"]}]
