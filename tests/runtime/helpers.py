"""Small builders shared by the runtime tests."""

import zlib

from shoal.runtime.engine.request import Request
from shoal.runtime.sampling.params import SamplingParams


def make_request(
    request_id: str,
    num_prompt_tokens: int = 10,
    max_tokens: int = 10,
    priority: int = 0,
    arrival_time: float = 0.0,
    token_ids: list[int] | None = None,
    sampling: SamplingParams | None = None,
) -> Request:
    prompt = (
        token_ids
        if token_ids is not None
        else [(zlib.crc32(request_id.encode()) + i) % 1000 for i in range(num_prompt_tokens)]
    )
    return Request(
        request_id=request_id,
        prompt_token_ids=list(prompt),
        sampling=sampling or SamplingParams(temperature=0.0, max_tokens=max_tokens),
        max_tokens=max_tokens,
        priority=priority,
        arrival_time=arrival_time,
    )
