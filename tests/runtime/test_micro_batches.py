"""A pipeline's micro-batches (StepOverlap with several stages): a step is launched while the ones
before are still in the pipeline, one per stage; they take disjoint requests, each an even share of
those not in flight, and every request's tokens are what it gets one step at a time. The worker here
is a recording stand-in whose draw for a row is a function of the request and its position, so the
outputs do not depend on how the requests were batched."""

import pytest
import xgrammar as xgr

from shoal.runtime.engine.block_manager import BlockManager
from shoal.runtime.engine.llm_engine import LLMEngine, StepOverlap
from shoal.runtime.engine.messages import SampledToken, StepInput
from shoal.runtime.engine.output_processor import OutputProcessor
from shoal.runtime.engine.scheduler import Scheduler, SchedulerConfig
from shoal.runtime.engine.stop_conditions import StopLimits
from shoal.runtime.sampling.params import SamplingParams
from shoal.runtime.structured.spec import REGEX, StructuredOutput

VOCAB = 1000
DIGITS = "[0-9]*"  # every token of the test's vocabulary ("000" to "999") keeps to it


class RecordingRunner:
    """Draws token (position * 7 + request number) % VOCAB; records launches and finishes in order."""

    def __init__(self):
        self.events: list[tuple[str, frozenset[str]]] = []

    def launch(self, step: StepInput) -> StepInput:
        self.events.append(("launch", frozenset(row.request_id for row in step.rows)))
        if step.token_bitmask is not None:  # as the model runner does, once the forward pass is queued
            step.token_bitmask()
        return step

    def finish(self, step: StepInput) -> list[SampledToken | None]:
        self.events.append(("finish", frozenset(row.request_id for row in step.rows)))
        return [
            SampledToken((row.end * 7 + int(row.request_id)) % VOCAB) if row.sampling is not None else None
            for row in step.rows
        ]

    def release_cached_memory(self) -> None:
        pass


def run(
    overlap: StepOverlap, num_requests: int, grammar: xgr.CompiledGrammar | None = None
) -> tuple[dict[str, list[int]], RecordingRunner]:
    """Every request constrained by `grammar`, when given (its regex is DIGITS)."""
    runner = RecordingRunner()
    scheduler = Scheduler(
        SchedulerConfig(max_num_seqs=64, max_num_batched_tokens=64),
        BlockManager(512, 16),
        StopLimits(frozenset(), 10_000),
    )
    engine = LLMEngine(runner, scheduler, OutputProcessor(None), 10_000, VOCAB, overlap)
    structured = StructuredOutput(REGEX, DIGITS) if grammar is not None else None
    sampling = SamplingParams(max_tokens=12, ignore_eos=True, structured=structured)
    for i in range(num_requests):
        engine.add_request(str(i), [1 + i] * (5 + 3 * i), sampling, grammar=grammar)
    outputs: dict[str, list[int]] = {str(i): [] for i in range(num_requests)}
    while engine.has_unfinished():
        for output in engine.step().outputs:
            outputs[output.request_id] += output.new_token_ids
    assert scheduler.block_manager.num_free_blocks == 512
    return outputs, runner


def launches_with_the_pipeline_full(runner: RecordingRunner, stages: int, num_requests: int) -> float:
    """The share of launches that left a micro-batch in every stage (or every request in one)."""
    in_flight, full, launches = 0, 0, 0
    for event, _ in runner.events:
        in_flight += 1 if event == "launch" else -1
        launches += event == "launch"
        full += event == "launch" and in_flight == min(stages, num_requests)
    return full / launches


@pytest.mark.parametrize("stages", [2, 3, 4])
@pytest.mark.parametrize("num_requests", [1, 2, 5, 8])
def test_a_micro_batch_per_stage_is_in_flight_with_disjoint_requests_and_outputs_do_not_change(stages, num_requests):
    one_at_a_time, _ = run(StepOverlap(), num_requests)
    pipelined, runner = run(StepOverlap(async_scheduling=True, pipeline_stages=stages), num_requests)
    assert pipelined == one_at_a_time
    assert all(len(tokens) == 12 for tokens in pipelined.values())

    in_flight: list[frozenset[str]] = []
    for event, requests in runner.events:
        if event == "launch":
            assert all(not (requests & other) for other in in_flight), "a request was in two micro-batches"
            others = sum(map(len, in_flight))
            assert len(requests) <= -(-(num_requests - others) // max(1, stages - len(in_flight)))  # an even share
            in_flight.append(requests)
        else:
            assert in_flight.pop(0) == requests  # read in launch order
        assert len(in_flight) <= stages
    if num_requests > 1:  # every stage (or every request, when fewer) kept busy for most of the run
        assert launches_with_the_pipeline_full(runner, stages, num_requests) >= 0.75


def test_constrained_requests_keep_the_pipeline_full():
    """A step's masks need no draws of the steps in flight, whose requests it does not hold: filling
    them must not read (and so drain) the pipeline."""
    info = xgr.TokenizerInfo([f"{token:03d}" for token in range(VOCAB)])
    grammar = xgr.GrammarCompiler(info).compile_regex(DIGITS)
    one_at_a_time, _ = run(StepOverlap(), 8, grammar)
    pipelined, runner = run(StepOverlap(async_scheduling=True, pipeline_stages=3), 8, grammar)
    assert pipelined == one_at_a_time
    assert launches_with_the_pipeline_full(runner, 3, 8) >= 0.75
