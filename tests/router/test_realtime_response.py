"""The response lifecycle on its own (router/realtime/response.py), with a scripted dispatcher and
client: however the stream ends, the client hears one response.done (unless it is gone), and the
generation is closed, which is what gives back the runtime call, pool slot and tenant lease."""

import asyncio

import pytest

from shoal.router.errors import RateLimitExceeded
from shoal.router.realtime.items import Item
from shoal.router.realtime.response import Response
from shoal.router.request import InferenceRequest, Prompt
from shoal.v1 import runtime_pb2 as pb
from tests.router.realtime_clients import RecordingPeer

REQUEST = InferenceRequest(
    "m",
    Prompt(chat=pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="hi")])),
    pb.SamplingParams(),
    "t",
    "realtime",
)


class Generation:
    def __init__(self, texts: list[str], pause_s: float):
        self.texts = texts
        self.pause_s = pause_s
        self.finals: list[pb.GenerateResponse] = []
        self.closed = False

    async def messages(self):
        for i, text in enumerate(self.texts):
            await asyncio.sleep(self.pause_s)
            last = i == len(self.texts) - 1
            message = pb.GenerateResponse(text=text, finish_reason=pb.FINISH_REASON_STOP if last else 0)
            if last:
                message.usage.CopyFrom(pb.Usage(prompt_tokens=5, completion_tokens=len(self.texts)))
                self.finals.append(message)
            yield message

    async def close(self) -> None:
        self.closed = True


class Dispatcher:
    def __init__(self, fails: BaseException | None = None, texts=("a", "b", "c"), pause_s: float = 0.0):
        self.fails = fails
        self.generation = Generation(list(texts), pause_s)

    async def start(self, request: InferenceRequest) -> Generation:
        if self.fails is not None:
            raise self.fails
        return self.generation


def texts(conversation: list[Item]) -> list[tuple[str, str]]:
    return [(item.role, item.text) for item in conversation]


def run(dispatcher: Dispatcher, peer: RecordingPeer, cancel_after_s: float | None = None) -> list[Item]:
    async def main():
        conversation = []
        response = Response("resp_1", REQUEST, peer, dispatcher, conversation)
        if cancel_after_s is not None:
            if cancel_after_s > 0:
                await asyncio.sleep(cancel_after_s)
            response.cancel("client_cancelled")
        await response.wait()
        assert response.done
        return conversation

    return asyncio.run(main())


def test_a_finished_stream_reports_its_text_and_usage():
    peer, dispatcher = RecordingPeer(), Dispatcher()
    conversation = run(dispatcher, peer)
    assert peer.types() == ["response.text.delta"] * 3 + ["response.text.done", "response.done"]
    done = peer.done()
    assert done["status"] == "completed" and done["usage"]["output_tokens"] == 3
    assert done["output"][0]["content"][0]["text"] == "abc" and texts(conversation) == [("assistant", "abc")]


@pytest.mark.parametrize("cancel_after_s", [0.0, 0.015])
def test_a_cancel_before_the_stream_ran_or_midway_ends_it_once(cancel_after_s):
    """0: cancelled with no await in between, before the stream's task first ran (so no code of the
    stream's own ever runs); still one response.done."""
    peer, dispatcher = RecordingPeer(), Dispatcher(texts=["x"] * 100, pause_s=0.01)
    run(dispatcher, peer, cancel_after_s)
    assert peer.types().count("response.done") == 1
    assert peer.done()["status"] == "cancelled" and peer.done()["status_details"]["reason"] == "client_cancelled"
    if cancel_after_s:
        assert dispatcher.generation.closed and 0 < peer.types().count("response.text.delta") < 100


def test_a_refused_request_is_an_error_then_a_failed_response():
    refused = RateLimitExceeded("slow down", "requests", 1.0, {})
    peer = RecordingPeer()
    run(Dispatcher(fails=refused), peer)
    assert peer.types() == ["error", "response.done"]
    assert peer.sent[0]["error"]["code"] == "rate_limit_exceeded"
    assert peer.done()["status"] == "failed" and peer.done()["status_details"]["error"]["type"] == "requests"


def test_a_bug_is_a_server_error_then_a_failed_response(caplog):
    peer = RecordingPeer()
    run(Dispatcher(fails=ValueError("Value out of range: 2147483648")), peer)
    assert peer.types() == ["error", "response.done"] and peer.sent[0]["error"]["type"] == "server_error"
    assert "out of range" not in peer.sent[0]["error"]["message"]  # internals stay in the log
    assert peer.done()["status"] == "failed" and "Value out of range" in caplog.text


def test_a_client_gone_midway_stops_the_stream_and_hears_nothing_more():
    peer, dispatcher = RecordingPeer(gone_after=2), Dispatcher(texts=["x"] * 100)
    conversation = run(dispatcher, peer)
    assert peer.types() == ["response.text.delta"] * 2 and dispatcher.generation.closed
    assert texts(conversation) == [("assistant", "xxx")]  # the third delta was read, then could not be sent
