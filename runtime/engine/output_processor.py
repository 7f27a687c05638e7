"""After each sampled token: detokenize, decide whether the request is done, and cut the text delta.

Stop conditions, checked in this order: a stop token id or EOS (whose text is not shown), a stop
string (the text is cut before it, as OpenAI does), max_tokens, and the context window. While a
request streams, the last len(longest stop string) - 1 characters are held back, so a client never
sees the start of a stop string that later matches.
"""

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from shoal.runtime.engine.request import FinishReason, Request
from shoal.runtime.sampling.sampler import SampledToken
from shoal.runtime.tokenization.detokenizer import IncrementalDetokenizer


@dataclass
class RequestOutput:
    request_id: str
    new_token_ids: list[int]
    new_text: str
    logprobs: list[SampledToken] | None
    finished: bool
    finish_reason: FinishReason | None
    stop_reason: str | int | None
    num_prompt_tokens: int
    num_output_tokens: int
    num_cached_tokens: int


@dataclass
class _TextState:
    detokenizer: IncrementalDetokenizer | None
    hold_back: int
    emitted: int = 0  # characters of detokenizer.text already sent


class OutputProcessor:
    def __init__(self, tokenizer: PreTrainedTokenizerBase | None, eos_token_ids: tuple[int, ...], max_model_len: int):
        self.tokenizer = tokenizer
        self.eos_token_ids = frozenset(eos_token_ids)
        self.max_model_len = max_model_len
        self._states: dict[str, _TextState] = {}

    def add(self, request: Request) -> None:
        detokenizer = None
        if self.tokenizer is not None:
            detokenizer = IncrementalDetokenizer(
                self.tokenizer, request.prompt_token_ids, request.sampling.skip_special_tokens
            )
        hold_back = max((len(s) for s in request.sampling.stop), default=1) - 1
        self._states[request.request_id] = _TextState(detokenizer, hold_back)

    def remove(self, request_id: str) -> None:
        self._states.pop(request_id, None)

    def process(self, request: Request, token: SampledToken) -> RequestOutput:
        """`token` is already appended to request.token_ids; sets finish_reason when it ends the request."""
        state = self._states[request.request_id]
        sampling = request.sampling
        reason, stop_reason = None, None
        if token.token_id in sampling.stop_token_ids:
            reason, stop_reason = FinishReason.STOP, token.token_id
        elif token.token_id in self.eos_token_ids and not sampling.ignore_eos:
            reason = FinishReason.STOP
        elif state.detokenizer is not None:
            state.detokenizer.add(token.token_id)
            matched = self._find_stop_string(state, sampling.stop)
            if matched is not None:
                reason, stop_reason = FinishReason.STOP, matched
        if reason is None and (request.num_output_tokens >= request.max_tokens or request.num_tokens >= self.max_model_len):
            reason = FinishReason.LENGTH
        if reason is not None:
            request.finish_reason, request.stop_reason = reason, stop_reason
        return self._output(request, state, [token])

    def finish_aborted(self, request: Request) -> RequestOutput:
        request.finish_reason = FinishReason.ABORT
        return self._output(request, self._states[request.request_id], [])

    def _find_stop_string(self, state: _TextState, stops: tuple[str, ...]) -> str | None:
        """Finds a stop string in the text not yet sent; cuts the text before it."""
        text = state.detokenizer.text
        for stop in stops:
            index = text.find(stop, state.emitted)
            if index != -1:
                state.detokenizer.text = text[:index]
                return stop
        return None

    def _output(self, request: Request, state: _TextState, tokens: list[SampledToken]) -> RequestOutput:
        finished = request.finish_reason is not None
        new_text = ""
        if state.detokenizer is not None:
            if finished and not isinstance(request.stop_reason, str):
                state.detokenizer.flush()  # a stop string already cut the text; keep it cut
            text = state.detokenizer.text
            end = len(text) if finished else max(state.emitted, len(text) - state.hold_back)
            new_text, state.emitted = text[state.emitted : end], end
        if finished:
            self.remove(request.request_id)
        return RequestOutput(
            request_id=request.request_id,
            new_token_ids=[t.token_id for t in tokens],
            new_text=new_text,
            logprobs=list(tokens) if request.sampling.logprobs is not None else None,
            finished=finished,
            finish_reason=request.finish_reason,
            stop_reason=request.stop_reason,
            num_prompt_tokens=request.num_prompt_tokens,
            num_output_tokens=request.num_output_tokens,
            num_cached_tokens=request.num_cached_tokens,
        )
