"""Scheduler decisions: token budget, decode-first order, chunked prefill, admission, preemption,
priority; and its updates: appended draws, token-level stops, the rows the worker is sent."""

from shoal.runtime.engine.block_manager import BlockManager
from shoal.runtime.engine.messages import SampledToken
from shoal.runtime.engine.request import FinishReason, RequestStatus
from shoal.runtime.engine.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from shoal.runtime.engine.stop_conditions import StopLimits
from shoal.runtime.sampling.params import SamplingParams
from tests.runtime.helpers import make_request


def make_scheduler(num_blocks=100, block_size=4, max_num_seqs=8, budget=32, stop_limits=None) -> Scheduler:
    return Scheduler(SchedulerConfig(max_num_seqs, budget), BlockManager(num_blocks, block_size), stop_limits)


def draws(output: SchedulerOutput, token_id: int = 7) -> list[SampledToken | None]:
    """What the worker returns for the step: a token for each row that samples."""
    return [SampledToken(token_id) if row.sampling is not None else None for row in output.step.rows]


def run_step(scheduler: Scheduler) -> dict[str, int]:
    """Schedules, then plays the model: the step is launched, and its draws (all 7) come back."""
    output = scheduler.schedule()
    scheduler.advance(output)
    scheduler.update(output, draws(output))
    return {item.request.request_id: item.num_new_tokens for item in output.scheduled}


def test_long_prompt_is_prefilled_in_chunks_of_the_budget():
    scheduler = make_scheduler(budget=16)
    scheduler.add(make_request("a", num_prompt_tokens=40))
    assert run_step(scheduler) == {"a": 16}
    assert run_step(scheduler) == {"a": 16}
    assert run_step(scheduler) == {"a": 8}
    assert run_step(scheduler) == {"a": 1}  # now decoding


def test_decodes_come_first_then_prefill_chunks_then_new_requests():
    scheduler = make_scheduler(budget=20)
    scheduler.add(make_request("decoding", num_prompt_tokens=4, arrival_time=0))
    run_step(scheduler)
    scheduler.add(make_request("long", num_prompt_tokens=30, arrival_time=1))
    assert run_step(scheduler) == {"decoding": 1, "long": 19}
    scheduler.add(make_request("late", num_prompt_tokens=5, arrival_time=2))
    # decoding: 1; long: its remaining 11; late: admitted mid-flight with what is left of the budget.
    output = scheduler.schedule()
    assert [(s.request.request_id, s.num_new_tokens) for s in output.scheduled] == [
        ("decoding", 1),
        ("long", 11),
        ("late", 5),
    ]
    assert output.num_batched_tokens == 17


def test_decodes_run_every_step_while_a_long_prompt_is_prefilled():
    scheduler = make_scheduler(budget=16)
    scheduler.add(make_request("decoding", num_prompt_tokens=4, max_tokens=50, arrival_time=0))
    run_step(scheduler)
    long = make_request("long", num_prompt_tokens=120, max_tokens=1, arrival_time=1)
    scheduler.add(long)
    steps = []
    while long.num_output_tokens == 0:
        steps.append(run_step(scheduler))
    assert [step["long"] for step in steps] == [15] * 8  # 120 prompt tokens, 15 a step beside the decode
    assert all(step["decoding"] == 1 for step in steps)


def test_realtime_request_arriving_during_a_chunked_batch_prefill_is_scheduled_in_the_next_step():
    scheduler = make_scheduler(budget=16)
    scheduler.add(make_request("batch-decoding", num_prompt_tokens=4, max_tokens=50, priority=1, arrival_time=0))
    run_step(scheduler)
    scheduler.add(make_request("batch-long", num_prompt_tokens=200, max_tokens=1, priority=1, arrival_time=1))
    assert run_step(scheduler) == {"batch-decoding": 1, "batch-long": 15}
    scheduler.add(make_request("realtime", num_prompt_tokens=6, priority=0, arrival_time=2))
    # The batch chunk yields its budget to the realtime prompt and takes what is left.
    assert run_step(scheduler) == {"batch-decoding": 1, "realtime": 6, "batch-long": 9}
    assert run_step(scheduler) == {"batch-decoding": 1, "realtime": 1, "batch-long": 14}


def test_realtime_prompt_longer_than_the_budget_is_prefilled_before_the_batch_prompt_resumes():
    scheduler = make_scheduler(budget=16)
    scheduler.add(make_request("batch-long", num_prompt_tokens=200, max_tokens=1, priority=1, arrival_time=0))
    assert run_step(scheduler) == {"batch-long": 16}
    scheduler.add(make_request("realtime", num_prompt_tokens=20, priority=0, arrival_time=1))
    assert run_step(scheduler) == {"realtime": 16}
    assert run_step(scheduler) == {"realtime": 4, "batch-long": 12}
    assert run_step(scheduler) == {"realtime": 1, "batch-long": 15}


def test_a_prefill_does_not_yield_to_a_waiting_request_of_equal_priority():
    scheduler = make_scheduler(budget=16)
    scheduler.add(make_request("first", num_prompt_tokens=40, max_tokens=1, priority=1, arrival_time=0))
    run_step(scheduler)
    scheduler.add(make_request("second", num_prompt_tokens=6, priority=1, arrival_time=1))
    assert run_step(scheduler) == {"first": 16}


def test_running_sequences_are_capped_by_max_num_seqs():
    scheduler = make_scheduler(max_num_seqs=2)
    for name in "abc":
        scheduler.add(make_request(name, num_prompt_tokens=3))
    assert set(run_step(scheduler)) == {"a", "b"}
    assert scheduler.num_waiting == 1
    scheduler.finish(scheduler.get("a"), FinishReason.STOP)
    assert "c" in run_step(scheduler)


def test_when_blocks_run_out_the_latest_request_is_preempted_and_requeued():
    scheduler = make_scheduler(num_blocks=4, block_size=4, budget=64)
    first = make_request("first", num_prompt_tokens=8, arrival_time=0)
    second = make_request("second", num_prompt_tokens=8, arrival_time=1)
    scheduler.add(first)
    scheduler.add(second)
    run_step(scheduler)  # both prefilled: 2 blocks each, pool full; each holds 9 tokens now
    output = scheduler.schedule()  # both need a third block
    assert output.preempted == [second]
    assert [s.request for s in output.scheduled] == [first]
    assert second.status is RequestStatus.WAITING
    assert second.num_computed_tokens == 0 and scheduler.block_manager.block_ids("second") == []
    assert second.token_ids[-1] == 7  # generated tokens are kept and recomputed later
    assert scheduler.num_preemptions == 1


def test_lower_priority_request_is_preempted_before_an_earlier_higher_priority_one():
    scheduler = make_scheduler(num_blocks=4, block_size=4, budget=64)
    batch = make_request("batch", num_prompt_tokens=8, priority=1, arrival_time=0)
    realtime = make_request("realtime", num_prompt_tokens=8, priority=0, arrival_time=1)
    scheduler.add(batch)
    scheduler.add(realtime)
    run_step(scheduler)
    output = scheduler.schedule()
    assert output.preempted == [batch]
    assert [s.request.request_id for s in output.scheduled] == ["realtime"]


def test_waiting_requests_are_admitted_by_priority_then_arrival():
    scheduler = make_scheduler(max_num_seqs=1)
    scheduler.add(make_request("batch-early", priority=1, arrival_time=0))
    scheduler.add(make_request("realtime-late", priority=0, arrival_time=5))
    scheduler.add(make_request("realtime-later", priority=0, arrival_time=6))
    assert list(run_step(scheduler)) == ["realtime-late"]


def test_waiting_realtime_request_preempts_running_batch_work_when_the_pool_is_full():
    scheduler = make_scheduler(num_blocks=4, block_size=4, budget=64)
    scheduler.add(make_request("batch", num_prompt_tokens=15, priority=1, arrival_time=0))
    run_step(scheduler)  # holds all 4 blocks
    scheduler.add(make_request("realtime", num_prompt_tokens=6, priority=0, arrival_time=1))
    output = scheduler.schedule()
    assert [r.request_id for r in output.preempted] == ["batch"]
    assert [s.request.request_id for s in output.scheduled] == ["realtime"]
    assert output.num_batched_tokens == 6  # the batch decode scheduled earlier was refunded


def test_waiting_request_of_equal_priority_does_not_preempt():
    scheduler = make_scheduler(num_blocks=4, block_size=4, budget=64)
    scheduler.add(make_request("first", num_prompt_tokens=15, arrival_time=0))
    run_step(scheduler)
    scheduler.add(make_request("second", num_prompt_tokens=6, arrival_time=1))
    output = scheduler.schedule()
    assert output.preempted == []
    assert scheduler.num_waiting == 1


def test_preempted_request_resumes_from_the_prefix_cache():
    scheduler = make_scheduler(num_blocks=5, block_size=4, budget=64)
    a = make_request("a", num_prompt_tokens=8, arrival_time=0)
    b = make_request("b", num_prompt_tokens=8, arrival_time=1)
    scheduler.add(a)
    scheduler.add(b)
    run_step(scheduler)  # 2 blocks each; 9 tokens known each
    output = scheduler.schedule()  # one free block: a gets it, b is preempted
    assert output.preempted == [b]
    scheduler.finish(a, FinishReason.STOP)
    output = scheduler.schedule()
    # b's two full prompt blocks stayed cached: only its last token is computed again.
    assert [(s.request.request_id, s.num_new_tokens) for s in output.scheduled] == [("b", 1)]
    assert b.num_computed_tokens == 8
    assert b.num_cached_tokens == 0  # usage reports the cache hit of the first admission only


def test_abort_of_a_waiting_request_removes_it():
    scheduler = make_scheduler(max_num_seqs=1)
    scheduler.add(make_request("running"))
    scheduler.add(make_request("queued"))
    run_step(scheduler)
    scheduler.finish(scheduler.get("queued"), FinishReason.ABORT)
    assert scheduler.num_waiting == 0
    assert scheduler.get("queued") is None
    scheduler.finish(scheduler.get("running"), FinishReason.ABORT)
    assert not scheduler.has_unfinished()
    assert scheduler.block_manager.num_free_blocks == 100


def test_a_token_in_flight_makes_a_decode_and_the_last_one_stops_scheduling():
    scheduler = make_scheduler()
    request = make_request("a", num_prompt_tokens=5, max_tokens=2)
    scheduler.add(request)
    first = scheduler.schedule()
    assert first.scheduled[0].completes_prompt
    scheduler.advance(first)  # step 1 launched; its draw not yet read
    assert (request.num_computed_tokens, request.num_pending_tokens) == (5, 1)
    second = scheduler.schedule()
    assert [(s.request.request_id, s.num_new_tokens) for s in second.scheduled] == [("a", 1)]
    assert second.step.rows[0].token_ids == []  # its input is step 1's draw, still on the device
    scheduler.advance(second)  # step 2 launched...
    scheduler.update(first, draws(first))  # ...step 1's draw read; step 2's, its last (max_tokens=2), in flight
    assert request.num_pending_tokens == 1 and request.is_generation_done
    assert scheduler.schedule().is_empty
    scheduler.update(second, draws(second, 8))
    assert request.output_token_ids == [7, 8] and request.finish_reason is FinishReason.LENGTH


def test_update_applies_stop_tokens_and_eos_and_frees_the_blocks():
    scheduler = make_scheduler(stop_limits=StopLimits(eos_token_ids=frozenset({2})))
    stopped = make_request(
        "stop-token", num_prompt_tokens=5, sampling=SamplingParams(temperature=0, stop_token_ids=(9,))
    )
    eos = make_request("eos", num_prompt_tokens=5)
    scheduler.add(stopped)
    scheduler.add(eos)
    output = scheduler.schedule()
    scheduler.advance(output)
    appended = scheduler.update(output, [SampledToken(9), SampledToken(2)])
    assert [(r.request_id, [t.token_id for t in ts]) for r, ts in appended] == [("stop-token", [9]), ("eos", [2])]
    assert (stopped.finish_reason, stopped.stop_reason) == (FinishReason.STOP, 9)
    assert (eos.finish_reason, eos.stop_reason) == (FinishReason.STOP, None)
    assert not scheduler.has_unfinished() and scheduler.block_manager.num_free_blocks == 100


def test_a_draw_for_a_request_ended_while_it_was_in_flight_is_dropped():
    scheduler = make_scheduler()
    request = make_request("a", num_prompt_tokens=5)
    scheduler.add(request)
    output = scheduler.schedule()
    scheduler.advance(output)
    scheduler.finish(request, FinishReason.ABORT)
    assert scheduler.update(output, draws(output)) == []
    assert request.output_token_ids == [] and request.num_pending_tokens == 0


def test_a_stop_string_outranks_a_length_end_at_the_same_token():
    scheduler = make_scheduler()
    request = make_request("a", num_prompt_tokens=5, max_tokens=1)
    scheduler.add(request)
    output = scheduler.schedule()
    scheduler.advance(output)
    scheduler.update(output, draws(output))
    assert request.finish_reason is FinishReason.LENGTH
    scheduler.finish_at_stop_string(request, "7")
    assert (request.finish_reason, request.stop_reason) == (FinishReason.STOP, "7")


def test_the_worker_is_told_of_finished_requests_in_the_next_step_it_gets():
    scheduler = make_scheduler()
    scheduler.add(make_request("a"))
    scheduler.finish(scheduler.get("a"), FinishReason.ABORT)
    assert scheduler.schedule().step.finished_request_ids == []  # an empty step goes nowhere
    scheduler.add(make_request("b"))
    output = scheduler.schedule()
    assert output.step.finished_request_ids == ["a"]
    row = output.step.rows[0]
    assert (row.request_id, row.start, row.num_new_tokens) == ("b", 0, 10)
    assert row.block_ids == scheduler.block_manager.block_ids("b") and row.sampling is not None
    assert scheduler.schedule().step.finished_request_ids == []
