import pytest

from tests.crds.files import MODELPOOL_CRD
from tests.support.crd_schema import Crd


@pytest.fixture(scope="session")
def modelpool_crd() -> Crd:
    return Crd.from_manifest(MODELPOOL_CRD)
