"""The operator's spec parser agrees with the CRD: what the API server stores (a dry run on the
real one), it reads."""

from pathlib import Path

import pytest
import yaml

from shoal.operator.revisions import revision_name
from shoal.operator.spec import SpecError, parse_duration, parse_pool_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "crds" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_as_stored_by_the_api_server_parses(server_dry_run, path):
    (stored,) = server_dry_run.apply(yaml.safe_load(path.read_text()))
    spec = parse_pool_spec(stored["spec"])
    assert revision_name(spec).startswith(spec.model.revision + "-")


def test_defaults_match_the_crd_defaults(server_dry_run):
    (stored,) = server_dry_run.apply({"apiVersion": "shoal.dev/v1alpha1", "kind": "ModelPool", "metadata": {"name": "m"}, "spec": {"model": {"revision": "v1"}}})  # fmt: skip
    assert parse_pool_spec(stored["spec"]) == parse_pool_spec({"model": {"revision": "v1"}})


@pytest.mark.parametrize(
    "spec,field",
    [
        ({"model": {"revision": "v1", "source": "huggingface"}}, "spec.model.source"),
        ({"model": {"revision": "V1"}}, "spec.model.revision"),
        ({"model": {"revision": "v1"}, "replicas": -1}, "spec.replicas"),
        ({"model": {"revision": "v1"}, "rollout": {"steps": [{"weight": 50}, {"weight": 20}]}}, "spec.rollout.steps"),
        ({"model": {"revision": "v1"}, "rollout": {"steps": [{"weight": 5, "pause": "soon"}]}}, "spec.rollout.steps[0].pause"),
        ({"model": {"revision": "v1"}, "runtime": {"device": "cpu"}, "resources": {"gpus": 2}}, "spec.resources.gpus"),
        ({"model": {"revision": "v1"}, "qos": {"batchShareMin": 0.9, "batchShareMax": 0.2}}, "spec.qos.batchShareMin"),
        ({"model": {"revision": "v1"}, "tenants": [{"name": "a"}, {"name": "a"}]}, "spec.tenants"),
        ({"model": {"revision": "v1"}, "replicaz": 3}, "spec: unknown field(s) ['replicaz']"),
        ({"model": {"revision": "v1"}, "runtime": {"maxNumSeqs": "many"}}, "spec.runtime.maxNumSeqs"),
    ],
)
def test_what_the_schema_would_catch_is_caught_again_with_the_field_named(spec, field):
    with pytest.raises(SpecError) as error:
        parse_pool_spec(spec)
    assert str(error.value).startswith(field)


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("2m", 120), ("1h30m", 5400), ("250ms", 0.25), ("1.5m", 90)])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds
