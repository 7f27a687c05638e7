"""spec.parallelism: a runtime split over several GPUs of its pod. Parsed and checked as the CRD
does, passed to the runtime as vLLM's flags, given a memory-backed /dev/shm; a pool without it (or
at 1 x 1) keeps its pods and its revision name."""

import argparse

import pytest

from shoal.operator.children import SHM_MOUNT, PoolRef, desired_deployment
from shoal.operator.plan import Observed, PoolObject, plan_for
from shoal.operator.revisions import revision_name
from shoal.operator.rollout import RouterView
from shoal.operator.spec import ParallelismSpec, SpecError, parse_pool_spec

MODEL = {"revision": "v1"}
REF = PoolRef("chat", "team-a", "uid-1")
MANIFEST = {"apiVersion": "shoal.dev/v1alpha1", "kind": "ModelPool", "metadata": {"name": "m"}}


def tp(tensor: int, pipeline: int = 1, **spec) -> dict:
    """A pool at tensor x pipeline (unless spec says otherwise): on cuda with as many GPUs, or, with
    pipeline stages (which run on CPU pools only so far), on a CPU pool."""
    if pipeline > 1:
        place = {"runtime": {"device": "cpu"}, "resources": {"gpus": 0}}
    else:
        place = {"resources": {"gpus": tensor}}
    return {"model": MODEL, "parallelism": {"tensor": tensor, "pipeline": pipeline}, **place, **spec}


def pod_spec(spec: dict) -> dict:
    return desired_deployment(REF, "v1-abc123", parse_pool_spec(spec), 1)["spec"]["template"]["spec"]


def args_of(spec: dict) -> list[str]:
    return pod_spec(spec)["containers"][0]["args"]


def test_left_out_or_empty_it_is_one_process_on_one_gpu():
    absent = parse_pool_spec({"model": MODEL})
    assert absent.parallelism == parse_pool_spec({"model": MODEL, "parallelism": {}}).parallelism == ParallelismSpec()
    assert absent.parallelism.world_size == 1
    spec = parse_pool_spec(tp(2, 4))
    assert spec.parallelism == ParallelismSpec(tensor=2, pipeline=4) and spec.parallelism.world_size == 8


def test_a_pool_without_it_keeps_any_gpu_count():
    """As before the field existed (its runtime uses one of them): no new rule for pools that do not say."""
    assert parse_pool_spec({"model": MODEL, "resources": {"gpus": 2}}).resources.gpus == 2


def test_on_cpu_it_needs_no_gpu():
    spec = parse_pool_spec(tp(2, runtime={"device": "cpu"}, resources={"gpus": 0}))
    assert spec.parallelism.world_size == 2 and spec.resources.gpus == 0


@pytest.mark.parametrize(
    "spec,field",
    [
        ({"model": MODEL, "parallelism": {"tensor": 0}}, "spec.parallelism.tensor: must be >= 1"),
        ({"model": MODEL, "parallelism": {"tensor": 16}}, "spec.parallelism.tensor: must be <= 8"),
        ({"model": MODEL, "parallelism": {"pipeline": 0}}, "spec.parallelism.pipeline: must be >= 1"),
        ({"model": MODEL, "parallelism": {"tensor": "2"}}, "spec.parallelism.tensor: must be int"),
        ({"model": MODEL, "parallelism": {"data": 2}}, "spec.parallelism.data: unknown field"),
        (tp(4, 4), "spec.parallelism: tensor x pipeline (4 x 4) must be at most 8"),
        (
            {"model": MODEL, "parallelism": {"tensor": 2}},
            "spec.resources.gpus: must equal parallelism.tensor x parallelism.pipeline (2) when runtime.device "
            "is cuda, got 1",
        ),
        (tp(2, resources={"gpus": 4}), "spec.resources.gpus: must equal parallelism.tensor x parallelism.pipeline (2)"),
        ({"model": MODEL, "parallelism": {}, "resources": {"gpus": 2}}, "spec.resources.gpus: must equal"),
        (
            tp(2, speculative={"method": "draft_model", "draftModel": "/models/small"}),
            "spec.speculative.method: draft_model needs parallelism.tensor x parallelism.pipeline of 1",
        ),
    ],
)
def test_what_the_crd_refuses_the_operator_refuses_naming_the_field(spec, field):
    with pytest.raises(SpecError) as error:
        parse_pool_spec(spec)
    assert str(error.value).startswith(field), error.value


def test_a_draft_model_and_ngram_are_fine_at_one_gpu_and_ngram_beyond():
    draft = {"method": "draft_model", "draftModel": "/models/small"}
    assert parse_pool_spec(tp(1, speculative=draft)).speculative.config.method == "draft_model"
    assert parse_pool_spec(tp(2, speculative={"method": "ngram"})).speculative.config.method == "ngram"


def test_the_runtime_gets_each_size_only_above_one():
    assert "--tensor-parallel-size" not in args_of({"model": MODEL}) + args_of(tp(1))
    assert "--pipeline-parallel-size" not in args_of({"model": MODEL}) + args_of(tp(2))
    args = args_of(tp(2))
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    args = args_of(tp(1, 2))
    assert args[args.index("--pipeline-parallel-size") + 1] == "2" and "--tensor-parallel-size" not in args
    args = args_of(tp(4, 2))
    assert (args[args.index("--tensor-parallel-size") + 1], args[args.index("--pipeline-parallel-size") + 1]) == (
        "4",
        "2",
    )


def test_several_ranks_get_a_memory_backed_dev_shm_and_their_gpus():
    single, split = pod_spec({"model": MODEL}), pod_spec(tp(4))
    assert not any(v.get("emptyDir", {}).get("medium") == "Memory" for v in single["volumes"])
    assert SHM_MOUNT not in [m["mountPath"] for m in single["containers"][0]["volumeMounts"]]
    (shm,) = [v for v in split["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
    (container,) = split["containers"]
    assert {"name": shm["name"], "mountPath": SHM_MOUNT} in container["volumeMounts"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 4}


def test_a_pool_without_it_keeps_its_pods_and_revision_name():
    """Pinned from before the field: a changed name or pod would roll out every pool again. {} and
    1 x 1 are the same pods, so the same revision too."""
    for gpus, pinned in ((1, "v1-f1363a"), (2, "v1-5f9084")):
        before = {"model": MODEL, "resources": {"gpus": gpus}}
        assert revision_name(parse_pool_spec(before)) == pinned
    same = [{"model": MODEL}, {"model": MODEL, "parallelism": {}}, tp(1, 1)]
    assert {revision_name(parse_pool_spec(spec)) for spec in same} == {"v1-f1363a"}
    first, *others = (desired_deployment(REF, "v1-f1363a", parse_pool_spec(spec), 1) for spec in same)
    assert all(other == first for other in others)


def test_each_size_is_a_revision_of_its_own():
    names = {revision_name(parse_pool_spec(spec)) for spec in (tp(1), tp(2), tp(1, 2), tp(2, 2), tp(4, 2))}
    assert len(names) == 5


def test_a_change_is_a_canary_and_the_stable_keeps_its_size():
    """The stable's pods come from its template (status.stableTemplate), parallelism included."""
    view = RouterView(reachable=True)
    first = plan_for(PoolObject(REF, 1, tp(2), {}), Observed([], []), view, 0.0, 30)
    stable = first.status["stableRevision"]
    assert first.status["stableTemplate"]["parallelism"] == {"tensor": 2, "pipeline": 1}
    plan = plan_for(
        PoolObject(REF, 2, tp(4), first.status), Observed(list(first.deployments.values()), []), view, 1, 30
    )
    canary = plan.status["canaryRevision"]
    assert canary not in (None, stable)
    sizes = {}
    for revision in (stable, canary):
        args = plan.deployments[f"chat-{revision}"]["spec"]["template"]["spec"]["containers"][0]["args"]
        sizes[revision] = args[args.index("--tensor-parallel-size") + 1]
    assert sizes == {stable: "2", canary: "4"}


def test_the_runtime_reads_the_parallelism_flags():
    """The pod's args through `shoal runtime`'s own parser (runtime/cli.py declares the flags)."""
    from shoal.runtime.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(args_of(tp(2, 2)))
    assert (args.tensor_parallel_size, args.pipeline_parallel_size) == (2, 2)


def test_the_api_server_and_the_operator_read_parallelism_alike(server_dry_run):
    """{} is stored as 1 x 1 and parsed as absent; left out, nothing is stored for it."""
    (stored,) = server_dry_run.apply({**MANIFEST, "spec": {"model": MODEL, "parallelism": {}}})
    assert stored["spec"]["parallelism"] == {"tensor": 1, "pipeline": 1}
    assert parse_pool_spec(stored["spec"]) == parse_pool_spec({"model": MODEL})
    (stored,) = server_dry_run.apply({**MANIFEST, "spec": {"model": MODEL, "resources": {"gpus": 2}}})
    assert "parallelism" not in stored["spec"] and parse_pool_spec(stored["spec"]).resources.gpus == 2
    (stored,) = server_dry_run.apply({**MANIFEST, "spec": tp(4, 2)})
    assert parse_pool_spec(stored["spec"]).parallelism == ParallelismSpec(4, 2)


@pytest.mark.parametrize(
    "spec,field,says",
    [
        (tp(4, 4), "spec.parallelism", "must be at most 8"),
        (
            {"model": MODEL, "parallelism": {"tensor": 2}},
            "spec.resources.gpus",
            "resources.gpus must equal parallelism.tensor x parallelism.pipeline when runtime.device is cuda",
        ),
        (
            tp(2, speculative={"method": "draft_model", "draftModel": "/models/small"}),
            "spec.speculative.method",
            "draft_model needs parallelism.tensor x parallelism.pipeline of 1",
        ),
        (
            {"model": MODEL, "parallelism": {"pipeline": 2}, "resources": {"gpus": 2}},
            "spec.parallelism.pipeline",
            "runs on CPU pools only so far",
        ),
    ],
)
def test_the_api_server_refuses_what_the_operator_would(server_dry_run, spec, field, says):
    refusal = server_dry_run.refusal({**MANIFEST, "spec": spec})
    assert f"{field}: " in refusal and says in refusal, refusal
    with pytest.raises(SpecError, match=f"^{field}"):
        parse_pool_spec(spec)
