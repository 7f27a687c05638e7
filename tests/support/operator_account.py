"""Who the operator runs as in these tests, and what the API server's audit log says it did.

The operator's ServiceAccount and roles are crds/rbac.yaml applied as written (never widened for a
test); each operator process gets a token of its own (TokenRequest), so the audit log tells its
requests from every other one's by the token's id (credential-id JTI=...), even with two replicas
of the same account.
"""

import base64
import copy
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.control_plane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
RBAC = ROOT / "crds" / "rbac.yaml"
NAMESPACE, ACCOUNT = "shoal-system", "shoal-operator"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}  # the audit log's verbs that change something


@dataclass(frozen=True)
class Token:
    account: str  # system:serviceaccount:<namespace>:<name>
    jti: str  # the token's id: its requests carry it in the audit log
    kubeconfig: Path


@dataclass(frozen=True)
class Request:
    """One request of the audit log, by what RBAC decides on."""

    group: str
    resource: str  # with /subresource; "" for a non-resource URL (/version, /apis...)
    verb: str
    code: int
    uri: str

    @property
    def permission(self) -> tuple[str, str, str]:
        return self.group, self.resource, self.verb


def install_operator_rbac(plane: ControlPlane) -> None:
    """The namespace shoal-system (the chart's job in a real install) and crds/rbac.yaml; again
    changes nothing."""
    plane.kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    )
    plane.kubectl("apply", "-f", str(RBAC))


def rbac_documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(RBAC.read_text())}


def token(plane: ControlPlane, path: Path, account: str = ACCOUNT) -> Token:
    """A fresh token of the account (in shoal-system), in a kubeconfig at `path`."""
    access, _ = plane.service_account_access(NAMESPACE, account, kubeconfig=path)  # a path per token
    claims = json.loads(base64.urlsafe_b64decode(access.token.split(".")[1] + "=="))
    return Token(f"system:serviceaccount:{NAMESPACE}:{account}", claims["jti"], path)


def account_without(plane: ControlPlane, name: str, group: str, resource: str, verb: str) -> None:
    """A ServiceAccount `name` in shoal-system bound to a copy of the operator's ClusterRole that
    lacks one verb on one resource, and to its leader-election Role as it is."""
    docs = rbac_documents()
    role = copy.deepcopy(docs["ClusterRole"])
    role["metadata"] = {"name": name}
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            assert rule["apiGroups"] == [group] and rule["resources"] == [resource], "split the rule first"
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NAMESPACE}},
        role,
        {
            **docs["ClusterRoleBinding"],
            "metadata": {"name": name},
            "roleRef": {**docs["ClusterRoleBinding"]["roleRef"], "name": name},
            "subjects": subject,
        },
        {**docs["RoleBinding"], "metadata": {"name": name, "namespace": NAMESPACE}, "subjects": subject},
    ]
    plane.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))


def delete_account(plane: ControlPlane, name: str) -> None:
    plane.kubectl("delete", "clusterrole,clusterrolebinding", name, "--ignore-not-found")
    plane.kubectl("-n", NAMESPACE, "delete", "serviceaccount,rolebinding", name, "--ignore-not-found")


def requests_of(plane: ControlPlane, token: Token) -> list[Request]:
    """Every request made with the token so far, oldest first."""
    found = []
    for event in plane.audit_events(token.account):
        if f"JTI={token.jti}" not in event["user"].get("extra", {}).get(CREDENTIAL_ID, ()):
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        found.append(
            Request(
                ref.get("apiGroup", ""), resource, event["verb"], event["responseStatus"]["code"], event["requestURI"]
            )
        )
    return found


def granted() -> set[tuple[str, str, str]]:
    """(group, resource, verb) that crds/rbac.yaml grants the operator, cluster-wide or in
    shoal-system, its own namespace."""
    documents = rbac_documents()
    return {
        (group, resource, verb)
        for kind in ("ClusterRole", "Role")
        for rule in documents[kind]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
