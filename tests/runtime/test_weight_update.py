"""Weight updates, the pure parts: an update is checked whole (names, shapes, dtypes) before anything
is written; bytes cut into chunks anywhere land in the right tensors; too few or too many bytes are
refused; a paused runtime's admission waits, or refuses with a retry hint."""

import asyncio

import pytest
import torch

from shoal.runtime.engine.lifecycle import Admission, LifecycleConfig, PauseMode
from shoal.runtime.errors import EngineUnavailableError, InvalidRequestError
from shoal.runtime.model.weight_update import TensorSpec, check_update, copy_from_broadcast, copy_from_bytes


def targets() -> dict[str, torch.Tensor]:
    return {"a.weight": torch.zeros(2, 3), "b.bias": torch.zeros(4)}


@pytest.mark.parametrize(
    ("specs", "exact", "message"),
    [
        ([], True, "names no tensors"),
        ([TensorSpec("c.weight", (2, 3), torch.float32)], True, "'c.weight' has no place in this model"),
        ([TensorSpec("a.weight", (3, 2), torch.float32)], True, "expected shape (2, 3), got (3, 2)"),
        (
            [TensorSpec("a.weight", (2, 3), torch.float16)],
            True,
            "expected dtype float32 (the served dtype), got float16",
        ),
        ([TensorSpec("a.weight", (2, 3), torch.int64)], False, "not a floating-point type"),
        ([TensorSpec("b.bias", (4,), torch.float32)] * 2, True, "given twice"),
    ],
)
def test_a_bad_update_is_refused_naming_the_tensor(specs, exact, message):
    with pytest.raises(InvalidRequestError, match="manifest") as refused:
        check_update(targets(), specs, "manifest", exact_dtype=exact)
    assert message in str(refused.value)


def test_a_file_may_hold_another_floating_dtype_which_is_cast():
    check_update(targets(), [TensorSpec("a.weight", (2, 3), torch.bfloat16)], "path", exact_dtype=False)


@pytest.mark.parametrize("chunk", [1, 5, 7, 24, 1000])
def test_bytes_cut_anywhere_land_in_their_tensors(chunk):
    a, b = torch.arange(6, dtype=torch.float32).view(2, 3), torch.tensor([9.0, 8.0, 7.0, 6.0])
    data = a.numpy().tobytes() + b.numpy().tobytes()
    model = targets()
    specs = [TensorSpec("a.weight", (2, 3), torch.float32), TensorSpec("b.bias", (4,), torch.float32)]
    copy_from_bytes(model, specs, iter([data[i : i + chunk] for i in range(0, len(data), chunk)]))
    assert torch.equal(model["a.weight"], a) and torch.equal(model["b.bias"], b)


def test_too_few_or_too_many_bytes_are_refused():
    specs = [TensorSpec("b.bias", (4,), torch.float32)]
    with pytest.raises(InvalidRequestError, match="ended inside tensor 'b.bias'"):
        copy_from_bytes(targets(), specs, iter([b"\0" * 15]))
    with pytest.raises(InvalidRequestError, match="more bytes"):
        copy_from_bytes(targets(), specs, iter([b"\0" * 16, b"\0"]))


def test_broadcast_buffers_are_copied_into_place():
    model = targets()
    copy_from_broadcast(model, [TensorSpec("b.bias", (4,), torch.float32)], lambda spec, device: torch.ones(spec.shape))
    assert torch.equal(model["b.bias"], torch.ones(4))


def test_while_paused_new_requests_wait_for_the_resume_or_are_refused():
    async def scenario():
        waiting = Admission(LifecycleConfig(pause_wait_s=5))
        waiting.close(PauseMode.KEEP)
        entering = asyncio.create_task(waiting.enter())
        await asyncio.sleep(0.05)
        assert not entering.done()
        waiting.open()
        await asyncio.wait_for(entering, 1)
        refusing = Admission(LifecycleConfig(pause_wait_s=0, retry_after_s=3))
        refusing.close(PauseMode.WAIT)
        with pytest.raises(EngineUnavailableError, match="paused") as refused:
            await refusing.enter()
        assert refused.value.retry_after_s == 3

    asyncio.run(scenario())
