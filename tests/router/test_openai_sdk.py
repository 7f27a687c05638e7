"""Must show 1: the official `openai` SDK against `shoal router` in front of a real runtime serving the
embedded model: chat and completions, streaming and not, and errors as the SDK's typed exceptions."""

import openai
import pytest

from tests.router.conftest import MODEL

pytestmark = pytest.mark.integration


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_completion(sdk_client):
    completion = sdk_client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=32)
    choice = completion.choices[0]
    assert "Paris" in choice.message.content and choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert (
        completion.usage.prompt_tokens > 10
        and completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.model == MODEL and completion.system_fingerprint == "shoal-r1"


def test_chat_streaming_matches_the_whole_answer(sdk_client):
    whole = sdk_client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=32)
    chunks = list(
        sdk_client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            temperature=0,
            max_tokens=32,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_streaming_and_not_with_logprobs(sdk_client):
    asked = {"model": MODEL, "prompt": "The quick brown fox", "max_tokens": 6, "temperature": 0}
    whole = sdk_client.completions.create(**asked, logprobs=2)
    chunks = list(sdk_client.completions.create(**asked, stream=True))
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 6
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    logprobs = whole.choices[0].logprobs
    assert len(logprobs.tokens) == 6 and all(lp <= 0 for lp in logprobs.token_logprobs)
    assert all(len(top) == 2 for top in logprobs.top_logprobs)


def test_chat_logprobs_and_seeded_sampling(sdk_client):
    first = sdk_client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=8, seed=11, temperature=1.0, logprobs=True, top_logprobs=3
    )
    second = sdk_client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=8, seed=11, temperature=1.0)
    assert first.choices[0].message.content == second.choices[0].message.content
    content = first.choices[0].logprobs.content
    assert len(content) == first.usage.completion_tokens and all(len(t.top_logprobs) == 3 for t in content)


def test_models_list(sdk_client):
    assert [m.id for m in sdk_client.models.list()] == [MODEL]
    assert sdk_client.models.retrieve(MODEL).id == MODEL


def test_errors_are_the_sdks_typed_exceptions(sdk_client, stable_router):
    with pytest.raises(openai.AuthenticationError):
        wrong_key = openai.OpenAI(base_url=stable_router.base_url + "/v1", api_key="sk-wrong", max_retries=0)
        wrong_key.chat.completions.create(model=MODEL, messages=QUESTION)
    with pytest.raises(openai.NotFoundError) as missing:
        sdk_client.chat.completions.create(model="gpt-9", messages=QUESTION)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        sdk_client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=3)
    assert bad.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as unknown:
        sdk_client.chat.completions.create(model=MODEL, messages=QUESTION, extra_body={"mirostat": 2})
    assert unknown.value.param == "mirostat"
    with pytest.raises(openai.BadRequestError) as too_long:  # refused by the runtime: longer than its context
        sdk_client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=100_000)
    assert too_long.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as too_many:  # the runtime's --max-n
        sdk_client.chat.completions.create(model=MODEL, messages=QUESTION, n=17)
    assert too_many.value.param == "n"
    noisy = openai.OpenAI(base_url=stable_router.base_url + "/v1", api_key="sk-test-noisy", max_retries=0)
    streams = [noisy.completions.create(model=MODEL, prompt="Count:", max_tokens=64, stream=True) for _ in range(2)]
    try:
        with pytest.raises(openai.RateLimitError) as limited:  # the noisy tenant may run 2 at once
            noisy.completions.create(model=MODEL, prompt="Count:", max_tokens=64, stream=True)
    finally:
        for stream in streams:
            stream.close()
    assert limited.value.code == "rate_limit_exceeded" and limited.value.type == "requests"
    assert limited.value.response.headers["x-ratelimit-limit-requests"] == "2"
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_n_choices_streamed_and_not(sdk_client):
    asked = {"model": MODEL, "messages": QUESTION, "max_tokens": 10, "temperature": 1.0, "seed": 5, "n": 3}
    whole = sdk_client.chat.completions.create(**asked)
    assert [c.index for c in whole.choices] == [0, 1, 2]
    assert len({c.message.content for c in whole.choices}) == 3  # seeds 5, 6 and 7
    assert whole.usage.completion_tokens == 30 and whole.usage.prompt_tokens < 40  # the prompt counted once
    chunks = list(sdk_client.chat.completions.create(**asked, stream=True, stream_options={"include_usage": True}))
    texts, finishes = {}, {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert finishes == {0: "length", 1: "length", 2: "length"}
    assert chunks[-1].usage.completion_tokens == 30
    completions = sdk_client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=5, n=2, seed=1)
    assert [c.index for c in completions.choices] == [0, 1] and completions.usage.completion_tokens == 10


def test_best_of_returns_the_choices_with_the_highest_total_logprob(sdk_client):
    asked = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 6, "temperature": 1.0, "seed": 3}
    every = sdk_client.completions.create(**asked, n=3, logprobs=0)
    ranked = sorted(every.choices, key=lambda c: -sum(c.logprobs.token_logprobs))
    best = sdk_client.completions.create(**asked, n=2, best_of=3)
    assert [c.index for c in best.choices] == [0, 1] and all(c.logprobs is None for c in best.choices)
    assert [c.text for c in best.choices] == [c.text for c in ranked[:2]]
    assert best.usage.completion_tokens == every.usage.completion_tokens  # all three generated, all counted
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_client.completions.create(**asked, best_of=17)
    assert caught.value.param == "best_of"
