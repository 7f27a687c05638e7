"""After each appended token: detokenize, find stop strings, and cut the text delta to stream.

The scheduler has already applied the token-level stops (stop token ids, EOS, lengths) by the time
a token gets here; the text of a stop token or EOS is not shown. This module finds stop strings
(the text is cut before one, as OpenAI does) and reports the hit; the engine passes it to the
scheduler, which ends the request. While a request streams, the last len(longest stop string) - 1
characters are held back, so a client never sees the start of a stop string that later matches.

It reads requests and writes only its own text state.
"""

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from shoal.runtime.engine.messages import SampledToken
from shoal.runtime.engine.request import FinishReason, Request
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
    weights_version: str = ""  # the weights that produced these tokens (stamped by AsyncEngine)


@dataclass
class _TextState:
    detokenizer: IncrementalDetokenizer | None
    hold_back: int
    emitted: int = 0  # characters of detokenizer.text already sent


class OutputProcessor:
    def __init__(self, tokenizer: PreTrainedTokenizerBase | None):
        self.tokenizer = tokenizer
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

    def add_token(self, request: Request, token_id: int, is_last: bool = True) -> str | None:
        """Adds the text of `token_id`, one of the tokens the step appended (`is_last`: the last one);
        returns the stop string that text completed, if any (the text is then cut before it)."""
        state = self._states[request.request_id]
        if state.detokenizer is None or (is_last and request.finish_reason is FinishReason.STOP):
            return None  # a STOP here came from this token being a stop token or EOS: no text
        state.detokenizer.add(token_id)
        return self._find_stop_string(state, request.sampling.stop)

    def output(self, request: Request, tokens: list[SampledToken]) -> RequestOutput:
        """What to send for `tokens` (already added); the final output once the request has ended."""
        state = self._states[request.request_id]
        finished = request.is_finished
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

    def _find_stop_string(self, state: _TextState, stops: tuple[str, ...]) -> str | None:
        """Finds a stop string in the text not yet sent; cuts the text before it."""
        text = state.detokenizer.text
        for stop in stops:
            index = text.find(stop, state.emitted)
            if index != -1:
                state.detokenizer.text = text[:index]
                return stop
        return None
