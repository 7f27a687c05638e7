"""Whether the token just appended ends its request: a stop token id, EOS, max_tokens or the context
window. Stop strings need the text, so the output processor finds them (the scheduler still ends
the request)."""

from dataclasses import dataclass

from shoal.runtime.engine.request import FinishReason, Request


@dataclass(frozen=True)
class StopLimits:
    """What ends a request besides its own sampling parameters: the model's EOS and context window."""

    eos_token_ids: frozenset[int] = frozenset()
    max_model_len: int | None = None  # None: no window (tests)


def token_stop(request: Request, token_id: int, limits: StopLimits) -> tuple[FinishReason, int | None] | None:
    """(finish reason, stop reason) if `token_id`, already appended, ends the request, else None.

    A stop token or EOS is checked first: its text is never shown, which the output processor reads
    from the STOP reason it leaves.
    """
    if token_id in request.sampling.stop_token_ids:
        return FinishReason.STOP, token_id
    if token_id in limits.eos_token_ids and not request.sampling.ignore_eos:
        return FinishReason.STOP, None
    if request.grammar is not None and request.grammar.is_terminated():
        return FinishReason.STOP, None  # the structure is complete: nothing may follow
    if request.num_output_tokens >= request.max_tokens:
        return FinishReason.LENGTH, None
    if limits.max_model_len is not None and request.num_tokens >= limits.max_model_len:
        return FinishReason.LENGTH, None
    return None
