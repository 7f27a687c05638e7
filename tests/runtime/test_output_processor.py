"""Stop conditions and streamed text: EOS, stop tokens, stop strings (cut and held back), lengths.

The engine runs here on a scripted worker that returns the given tokens: the scheduler applies the
token-level stops, the output processor finds stop strings, the scheduler ends the request."""

from dataclasses import replace

from shoal.runtime.engine.block_manager import BlockManager
from shoal.runtime.engine.llm_engine import LLMEngine
from shoal.runtime.engine.messages import SampledToken, StepInput
from shoal.runtime.engine.output_processor import OutputProcessor
from shoal.runtime.engine.request import FinishReason
from shoal.runtime.engine.scheduler import Scheduler, SchedulerConfig
from shoal.runtime.engine.stop_conditions import StopLimits
from shoal.runtime.sampling.params import SamplingParams

EOS = 2


class ScriptedRunner:
    """A worker whose draws are the given tokens, in order."""

    def __init__(self, token_ids: list[int]):
        self._tokens = iter(token_ids)

    def launch(self, step: StepInput) -> list[SampledToken | None]:
        return [SampledToken(next(self._tokens)) if row.sampling is not None else None for row in step.rows]

    def finish(self, launched: list[SampledToken | None]) -> list[SampledToken | None]:
        return launched

    def release_cached_memory(self) -> None:
        pass


def run(tokenizer, sampling: SamplingParams, token_ids: list[int], max_tokens: int = 100, max_model_len: int = 1000):
    scheduler = Scheduler(
        SchedulerConfig(max_num_seqs=256, max_num_batched_tokens=8192),
        BlockManager(256, 16),
        StopLimits(frozenset({EOS}), max_model_len),
    )
    engine = LLMEngine(ScriptedRunner(token_ids), scheduler, OutputProcessor(tokenizer), max_model_len, len(tokenizer))
    engine.add_request("r", [1, 9690], replace(sampling, max_tokens=min(max_tokens, max_model_len - 2)))
    outputs = []
    while engine.has_unfinished():
        outputs += engine.step().outputs
    assert scheduler.block_manager.num_free_blocks == 256
    return outputs


def text_of(outputs) -> str:
    return "".join(o.new_text for o in outputs)


def test_eos_stops_and_its_text_is_not_shown(smollm_tokenizer):
    tokens = smollm_tokenizer.encode("Paris.", add_special_tokens=False) + [EOS, 5, 6]
    outputs = run(smollm_tokenizer, SamplingParams(), tokens)
    assert outputs[-1].finished and outputs[-1].finish_reason is FinishReason.STOP
    assert outputs[-1].stop_reason is None
    assert outputs[-1].new_token_ids == [EOS]
    assert text_of(outputs) == "Paris."
    assert outputs[-1].num_output_tokens == len(tokens) - 2


def test_ignore_eos_runs_to_max_tokens(smollm_tokenizer):
    outputs = run(smollm_tokenizer, SamplingParams(ignore_eos=True), [EOS, EOS, EOS, EOS], max_tokens=3)
    assert len(outputs) == 3
    assert outputs[-1].finish_reason is FinishReason.LENGTH


def test_stop_token_id_is_reported_as_the_stop_reason(smollm_tokenizer):
    tokens = smollm_tokenizer.encode("one two", add_special_tokens=False)
    outputs = run(smollm_tokenizer, SamplingParams(stop_token_ids=(tokens[1],)), tokens + [7])
    assert outputs[-1].finish_reason is FinishReason.STOP
    assert outputs[-1].stop_reason == tokens[1]
    assert text_of(outputs) == "one"


def test_stop_string_cuts_the_text_before_it_even_across_tokens(smollm_tokenizer):
    text = "The answer is forty-two. Then more text follows."
    tokens = smollm_tokenizer.encode(text, add_special_tokens=False)
    outputs = run(smollm_tokenizer, SamplingParams(stop=("two. Th",)), tokens)
    assert outputs[-1].finish_reason is FinishReason.STOP
    assert outputs[-1].stop_reason == "two. Th"
    assert text_of(outputs) == "The answer is forty-"
    streamed = ""
    for o in outputs[:-1]:
        streamed += o.new_text
        assert "two" not in streamed  # the start of the stop string is never sent early


def test_text_held_back_for_a_stop_string_is_released_when_it_does_not_match(smollm_tokenizer):
    text = "alpha beta gamma delta"
    tokens = smollm_tokenizer.encode(text, add_special_tokens=False)
    outputs = run(smollm_tokenizer, SamplingParams(stop=("never appears",)), tokens, max_tokens=len(tokens))
    assert outputs[-1].finish_reason is FinishReason.LENGTH
    assert text_of(outputs) == text


def test_context_window_ends_the_request_with_length(smollm_tokenizer):
    outputs = run(smollm_tokenizer, SamplingParams(), [5, 6, 7, 8], max_model_len=4)
    assert len(outputs) == 2 and outputs[-1].finish_reason is FinishReason.LENGTH
