"""The runtime's lifecycle without restarts, against a real `shoal runtime` process on the embedded
model: pause (KEEP) in the middle of 16 streamed generations, an in-place update to a perturbed copy
of the weights, resume: every stream completes with nothing lost or repeated, and the tokens after
the switch are exactly what the new weights give from the state the old ones left (checked with
HF's model). Updates over gRPC bytes and from a trainer over gloo; bad updates refused with the old
weights still serving; WAIT, ABORT and refusals while paused; the prefix cache reset."""

import threading
import time

import grpc
import pytest
import torch

from shoal.runtime.weight_sync import WeightSync
from shoal.v1 import runtime_admin_pb2 as apb
from shoal.v1 import runtime_pb2 as pb
from tests.runtime.lifecycle_support import (
    admin_runtime,
    admin_stub,
    bearer,
    greedy_after_switch,
    hf_with,
    perturbed_weights,
    save_weights,
    state,
)
from tests.runtime.server_process import free_port

pytestmark = pytest.mark.integration
NUM_STREAMS = 16
MAX_TOKENS = 24


@pytest.fixture(scope="module")
def runtime(smollm_dir, tmp_path_factory):
    process, token = admin_runtime(tmp_path_factory.mktemp("admin"))
    process.token = token
    yield process
    process.stop()


@pytest.fixture(scope="module")
def new_weights(smollm_dir):
    return perturbed_weights(smollm_dir)


@pytest.fixture(scope="module")
def new_weights_dir(new_weights, tmp_path_factory):
    return save_weights(new_weights, tmp_path_factory.mktemp("v2"))


@pytest.fixture(scope="module")
def models(smollm_hf, new_weights):
    return smollm_hf, hf_with(smollm_hf, new_weights)


def prompts(tokenizer) -> list[list[int]]:
    topics = ["the sea", "a cat", "Paris", "winter", "bread", "trains", "the moon", "music"]
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Write {kind} about {topic}."}], add_generation_prompt=True, tokenize=False
        )
        for topic in topics
        for kind in ("a poem", "a story")
    ]
    return [tokenizer.encode(text, add_special_tokens=False) for text in texts]


def generate_request(prompt: list[int], max_tokens: int = MAX_TOKENS) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        token_ids=pb.TokenIds(ids=prompt),
        sampling=pb.SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True),
    )


def assert_serves(runtime, hf_model, prompt: list[int], num_tokens: int = 8) -> None:
    """The runtime's greedy tokens are HF's with these weights."""
    served = [t for m in runtime.stub().Generate(generate_request(prompt, num_tokens)) for t in m.token_ids]
    expected = hf_model.generate(torch.tensor([prompt]), max_new_tokens=num_tokens, do_sample=False)
    assert served == expected[0, len(prompt) :].tolist()


def restore(runtime, smollm_dir) -> None:
    """Back to the initial weights, serving (each test starts from there)."""
    admin = admin_stub(runtime)
    admin.Pause(apb.PauseRequest(mode=apb.PAUSE_MODE_WAIT), metadata=bearer(runtime.token))
    admin.UpdateWeights(
        apb.UpdateWeightsRequest(path=str(smollm_dir), version="initial"), metadata=bearer(runtime.token)
    )
    admin.Resume(apb.ResumeRequest(), metadata=bearer(runtime.token))


def test_keep_pause_update_resume_mid_stream(runtime, smollm_dir, smollm_tokenizer, new_weights_dir, models):
    asked = prompts(smollm_tokenizer)
    streams: list[list[pb.GenerateResponse]] = [[] for _ in asked]
    errors = []

    def consume(index: int) -> None:
        try:
            for message in runtime.stub().Generate(generate_request(asked[index])):
                streams[index].append(message)
        except Exception as error:  # reported by the test, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(NUM_STREAMS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while not all(len(s) >= 2 for s in streams) and time.monotonic() < deadline:
        time.sleep(0.01)
    admin, metadata = admin_stub(runtime), bearer(runtime.token)
    paused = admin.Pause(apb.PauseRequest(mode=apb.PAUSE_MODE_KEEP), metadata=metadata)
    assert paused.pause_mode == apb.PAUSE_MODE_KEEP and paused.num_requests_frozen > 0
    time.sleep(0.3)  # what was produced before the pause reaches the clients
    frozen_at = [len(s) for s in streams]
    time.sleep(0.5)
    assert [len(s) for s in streams] == frozen_at, "no tokens while paused"
    updated = admin.UpdateWeights(apb.UpdateWeightsRequest(path=str(new_weights_dir), version="v2"), metadata=metadata)
    assert updated.weights_version == "v2" and updated.weight_updates == 1
    admin.Resume(apb.ResumeRequest(), metadata=metadata)
    for thread in threads:
        thread.join(timeout=120)
    assert not errors

    old_model, new_model = models
    switched = 0
    for prompt, stream in zip(asked, streams, strict=True):
        final = stream[-1]
        tokens = [t for m in stream for t in m.token_ids]
        assert final.finish_reason == pb.FINISH_REASON_LENGTH and final.usage.completion_tokens == len(tokens)
        assert len(tokens) == MAX_TOKENS, "nothing lost, nothing repeated"
        versions = [m.weights_version for m in stream if m.token_ids]
        assert versions == sorted(versions, key=lambda v: v == "v2"), "old weights' tokens first, then new"
        old_tokens = [t for m in stream if m.weights_version == "initial" for t in m.token_ids]
        new_tokens = tokens[len(old_tokens) :]
        assert old_tokens and new_tokens
        assert new_tokens == greedy_after_switch(old_model, new_model, prompt, old_tokens, len(new_tokens))
        switched += new_tokens != greedy_after_switch(old_model, old_model, prompt, old_tokens, len(new_tokens))
    assert switched > NUM_STREAMS // 2, "the new weights change what most streams say"
    info = runtime.stub().GetModelInfo(pb.GetModelInfoRequest())
    assert info.weights_version == "v2"
    assert "shoal:weights_info{" in runtime.scrape() and 'weights_version="v2"' in runtime.scrape()
    restore(runtime, smollm_dir)


def test_an_update_resets_the_prefix_cache(runtime, smollm_dir, smollm_tokenizer):
    prompt = prompts(smollm_tokenizer)[0] * 3  # several full blocks
    for _ in range(2):
        list(runtime.stub().Generate(generate_request(prompt, 2)))
    assert runtime.stats().kv_blocks_cached > 0
    restore(runtime, smollm_dir)
    assert runtime.stats().kv_blocks_cached == 0
    hits = runtime.stats().prefix_cache_hits
    list(runtime.stub().Generate(generate_request(prompt, 2)))
    assert runtime.stats().prefix_cache_hits == hits, "nothing cached by the old weights is used"


def test_weights_streamed_over_grpc(runtime, smollm_dir, smollm_tokenizer, new_weights, models):
    sync = WeightSync(runtime.target, runtime.token)
    prompt = prompts(smollm_tokenizer)[2]
    sync.pause("wait")
    assert sync.stream(new_weights.items(), "v2-streamed").weights_version == "v2-streamed"
    sync.resume()
    assert_serves(runtime, models[1], prompt)
    restore(runtime, smollm_dir)


def test_a_trainer_pushes_weights_over_gloo(runtime, smollm_dir, smollm_tokenizer, new_weights, models):
    sync = WeightSync(runtime.target, runtime.token)
    sync.init_group("127.0.0.1", free_port(), backend="gloo")
    sync.pause("keep")
    assert sync.broadcast(new_weights.items(), "step-1").weights_version == "step-1"
    sync.resume()
    prompt = prompts(smollm_tokenizer)[3]
    assert_serves(runtime, models[1], prompt)
    restore(runtime, smollm_dir)


def test_bad_updates_are_refused_and_the_old_weights_keep_serving(
    runtime, smollm_dir, smollm_tokenizer, new_weights, tmp_path
):
    admin, metadata = admin_stub(runtime), bearer(runtime.token)
    prompt = prompts(smollm_tokenizer)[4]
    before = [t for m in runtime.stub().Generate(generate_request(prompt, 6)) for t in m.token_ids]
    with pytest.raises(grpc.RpcError) as refused:
        admin.UpdateWeights(apb.UpdateWeightsRequest(path=str(smollm_dir), version="v9"), metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # not paused
    admin.Pause(apb.PauseRequest(mode=apb.PAUSE_MODE_WAIT), metadata=metadata)
    wrong_shape = dict(new_weights)
    wrong_shape["model.norm.weight"] = torch.ones(7)
    bad_dir = save_weights(wrong_shape, tmp_path / "wrong-shape")
    with pytest.raises(grpc.RpcError) as refused:
        admin.UpdateWeights(apb.UpdateWeightsRequest(path=str(bad_dir), version="v9"), metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'model.norm.weight': expected shape" in refused.value.details()
    sync = WeightSync(runtime.target, runtime.token)
    half = {name: t.half() for name, t in list(new_weights.items())[:2]}
    with pytest.raises(grpc.RpcError) as refused:
        sync.stream(half.items(), "v9")
    assert (
        refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expected dtype float32" in refused.value.details()
    )
    with pytest.raises(grpc.RpcError) as refused:
        admin.UpdateWeights(apb.UpdateWeightsRequest(path=str(tmp_path / "nowhere"), version="v9"), metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and refused.value.details().startswith("path:")
    admin.Resume(apb.ResumeRequest(), metadata=metadata)
    assert state(admin, runtime.token).weights_version == "initial"
    after = [t for m in runtime.stub().Generate(generate_request(prompt, 6)) for t in m.token_ids]
    assert after == before
    for wrong in (bearer("not-the-token"), ()):
        with pytest.raises(grpc.RpcError) as refused:
            admin.GetLifecycle(apb.GetLifecycleRequest(), metadata=wrong)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_wait_and_abort_pauses_and_requests_that_arrive_while_paused(runtime, smollm_tokenizer):
    admin, metadata = admin_stub(runtime), bearer(runtime.token)
    prompt = prompts(smollm_tokenizer)[5]
    running = runtime.stub().Generate(generate_request(prompt, 40))
    first = next(running)
    paused = admin.Pause(apb.PauseRequest(mode=apb.PAUSE_MODE_WAIT), metadata=metadata)
    assert paused.num_requests_running == 0, "WAIT holds once what runs has finished"
    assert [first, *running][-1].finish_reason == pb.FINISH_REASON_LENGTH
    health = runtime.stub().Health(pb.HealthRequest())
    assert health.status == pb.HealthResponse.NOT_SERVING and "paused" in health.message
    late: list[pb.GenerateResponse] = []
    arrival = threading.Thread(target=lambda: late.extend(runtime.stub().Generate(generate_request(prompt, 4))))
    arrival.start()
    time.sleep(0.5)
    assert not late, "a request that arrives while paused waits"
    admin.Resume(apb.ResumeRequest(), metadata=metadata)
    arrival.join(timeout=60)
    assert late[-1].finish_reason == pb.FINISH_REASON_LENGTH
    running = runtime.stub().Generate(generate_request(prompt, 200))
    next(running)
    admin.Pause(apb.PauseRequest(mode=apb.PAUSE_MODE_ABORT), metadata=metadata)
    final = [m for m in running][-1]
    assert final.finish_reason == pb.FINISH_REASON_ABORT and final.stop_reason == "aborted by a pause"
    admin.Resume(apb.ResumeRequest(), metadata=metadata)
    stats = runtime.stats()
    assert stats.kv_blocks_free == stats.kv_blocks_total


def test_a_runtime_that_does_not_wait_refuses_with_a_retry_hint(tmp_path, smollm_dir):
    process, token = admin_runtime(tmp_path, "--pause-wait", "0")
    try:
        admin_stub(process).Pause(apb.PauseRequest(mode=apb.PAUSE_MODE_KEEP), metadata=bearer(token))
        with pytest.raises(grpc.RpcError) as refused:
            list(process.stub().Generate(generate_request([1, 2, 3], 2)))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert dict(refused.value.trailing_metadata())["retry-after"] == "1"
    finally:
        process.stop()
