"""The live test's load: requests through `shoal router` with the OpenAI SDK, in every shape the
dashboards break down (chat and completions, streamed or not, realtime and batch, three tenants),
until the canary that fails half its requests on purpose has answered and failed enough of them;
then one tenant over its concurrency limit."""

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.router.harness import RouterProcess

MODEL = "SmolLM2-135M-Instruct"
QUESTIONS = ["Name a planet.", "What is rain?", "Say something kind.", "Name a bird.", "Spell cat.", "What is 2+2?"]
MIN_REQUESTS, MAX_REQUESTS = 24, 96
# Enough for the canary's error-rate alert to pend (5 requests in its window, as Prometheus counts
# them: a counter's first scrape is its baseline) and its 5xx counter to rise between scrapes.
MIN_CANARY_REQUESTS, MIN_CANARY_FAILURES = 14, 3


def client(router: RouterProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.base_url + "/v1", api_key=key, max_retries=0, timeout=120)


def one_request(router: RouterProcess, i: int) -> str:
    """Request i of the load: its kind, tenant and QoS class follow from i. Returns the revision that
    answered it, "r2 failed" when the canary's injected fault failed it."""
    c = client(router, ("sk-test-quiet", "sk-test-batch")[i % 2])  # tenants quiet (realtime) and batchy (batch)
    headers = {"x-shoal-qos": "batch"} if i % 4 == 2 else {}
    question = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
    try:
        if i % 3 == 0:
            answer = c.completions.create(
                model=MODEL, prompt=QUESTIONS[i % len(QUESTIONS)], max_tokens=8, extra_headers=headers
            )
        elif i % 3 == 1:
            answer = c.chat.completions.create(model=MODEL, messages=question, max_tokens=12, extra_headers=headers)
        else:
            stream = c.chat.completions.create(
                model=MODEL,
                messages=question,
                max_tokens=12,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=headers,
            )
            answer = list(stream)[-1]
    except openai.InternalServerError as error:
        # The runtime's own words stay in the router's log; the answer names the revision it came from.
        assert error.response.headers.get("x-shoal-revision") == "r2" and "(INTERNAL)" in str(error), error
        return "r2 failed"
    return answer.system_fingerprint.removeprefix("shoal-")


def send_load(router: RouterProcess) -> int:
    """Four at a time until there were MIN_REQUESTS, the canary answered MIN_CANARY_REQUESTS of them
    and failed MIN_CANARY_FAILURES; then tenant `noisy` (max_concurrent 2) holds two streams open and
    its third request is refused. Returns how many requests the router answered."""
    answered: list[str] = []
    with ThreadPoolExecutor(4) as executor:
        while (
            len(answered) < MIN_REQUESTS
            or sum(a.startswith("r2") for a in answered) < MIN_CANARY_REQUESTS
            or answered.count("r2 failed") < MIN_CANARY_FAILURES
        ):
            assert len(answered) < MAX_REQUESTS, (
                f"a 50 % canary failing half its requests should not look like this: {answered}"
            )
            answered += executor.map(lambda i: one_request(router, i), range(len(answered), len(answered) + 8))
    assert set(answered) == {"r1", "r2", "r2 failed"}
    return len(answered) + hold_noisy_over_its_limit(router)


def hold_noisy_over_its_limit(router: RouterProcess) -> int:
    noisy = client(router, "sk-test-noisy")
    question = [{"role": "user", "content": "Count to a thousand."}]
    held, sent = [], 0
    while len(held) < 2:  # a stream that sent its first chunk runs on; one the canary fails is retried
        sent += 1
        try:
            stream = noisy.chat.completions.create(
                model=MODEL, messages=question, max_tokens=200, stream=True, extra_body={"ignore_eos": True}
            )
            next(iter(stream))
            held.append(stream)
        except openai.InternalServerError:
            assert sent < 20
    with pytest.raises(openai.RateLimitError):
        noisy.chat.completions.create(model=MODEL, messages=question, max_tokens=4)
    for stream in held:
        stream.close()  # the router sees the client leave and cancels the runtime's work
    return sent + 1
