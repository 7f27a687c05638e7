"""Every example under crds/examples/ is ModelPools the API server accepts (one, or a few that work
together, such as two pools of one model), explained by a comment."""

import pytest
import yaml

from tests.crds.files import CRDS

EXAMPLES = sorted((CRDS / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_is_commented_valid_modelpools(server_dry_run, path):
    text = path.read_text()
    manifests = list(yaml.safe_load_all(text))
    assert text.startswith("# ") and manifests
    for manifest in manifests:
        assert (manifest["apiVersion"], manifest["kind"]) == ("shoal.dev/v1alpha1", "ModelPool")
    server_dry_run.apply(*manifests)
