"""OpenAI's `best_of` on completions: `best_of` choices are generated, the `n` whose tokens have the
highest total log probability are returned (ties to the lower index), renumbered from 0. The
runtime generates them as `n = best_of` choices with each token's logprob; the ones not chosen are
still counted in usage, as OpenAI counts them. Not with streaming: which ones win is known only at
the end."""

from shoal.router.openai.responses import by_choice
from shoal.v1 import runtime_pb2 as pb


def best_choices(messages: list[pb.GenerateResponse], n: int, keep_logprobs: bool) -> list[pb.GenerateResponse]:
    """The messages of the n best choices, renumbered; their logprobs dropped unless asked for."""
    ranked = sorted(by_choice(messages), key=lambda choice: -_total_logprob(choice))
    chosen = []
    for new_index, choice in enumerate(ranked[:n]):
        for message in choice:
            copy = pb.GenerateResponse()
            copy.CopyFrom(message)
            copy.index = new_index
            if not keep_logprobs:
                copy.ClearField("logprobs")
            chosen.append(copy)
    return chosen


def _total_logprob(choice: list[pb.GenerateResponse]) -> float:
    return sum(token.logprob for message in choice for token in message.logprobs)
