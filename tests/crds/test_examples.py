"""Every example under crds/examples/ is one ModelPool the API server accepts, explained by a comment."""

import pytest
import yaml

from tests.crds.files import CRDS

EXAMPLES = sorted((CRDS / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_is_one_commented_valid_modelpool(server_dry_run, path):
    text = path.read_text()
    (manifest,) = yaml.safe_load_all(text)
    assert text.startswith("# ")
    assert (manifest["apiVersion"], manifest["kind"]) == ("shoal.dev/v1alpha1", "ModelPool")
    server_dry_run.apply(manifest)
