"""Every example under crds/examples/ is one ModelPool the API server would accept, explained by a comment."""

import pytest
import yaml

from tests.crds.files import CRDS
from tests.support.crd_schema import validate

EXAMPLES = sorted((CRDS / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_is_one_commented_valid_modelpool(modelpool_crd, path):
    text = path.read_text()
    (manifest,) = yaml.safe_load_all(text)
    assert text.startswith("# ")
    assert (manifest["apiVersion"], manifest["kind"]) == ("shoal.dev/v1alpha1", "ModelPool")
    validate(modelpool_crd, manifest)
