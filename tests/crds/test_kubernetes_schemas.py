"""The CRD and the operator's RBAC against Kubernetes' own OpenAPI schemas (kubernetes-validate ships
them; no cluster or network), strictly: a misspelt field is an error, not a silent drop.

1.28 is the oldest Kubernetes the CRD can be applied to: its CEL rules' fieldPath and reason came then.
"""

import kubernetes_validate
import pytest
import yaml

from tests.crds.files import CRDS, MODELPOOL_CRD

OLDEST_SUPPORTED = "1.28"
VERSIONS = [OLDEST_SUPPORTED, kubernetes_validate.latest_version()]
DOCUMENTS = [
    (f"{name}:{doc['kind']}", doc)
    for name in ("modelpool.yaml", "rbac.yaml")
    for doc in yaml.safe_load_all((CRDS / name).read_text())
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("document", [doc for _, doc in DOCUMENTS], ids=[name for name, _ in DOCUMENTS])
def test_document_matches_kubernetes_schema(document, version):
    kubernetes_validate.validate(document, version, strict=True)


def test_the_crd_needs_what_came_in_the_oldest_supported_version():
    """Guards OLDEST_SUPPORTED: one release earlier refuses the CRD (a rule's fieldPath is unknown there)."""
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(MODELPOOL_CRD, "1.27", strict=True)
