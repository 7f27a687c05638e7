"""A fake runtime: implements shoal.v1.Runtime with canned token streams and no model, so router
tests and the router benchmark can go fast and make the backend misbehave on purpose.

Each Generate streams `max_tokens` (or `tokens`) messages of `text`, `delay_s` apart, then a final
one with usage; or fails with `error` (a gRPC status) before the first. It counts what happened
(requests, cancellations, messages sent, priorities seen) and serves a Prometheus /metrics page with
the runtime's names, whose values the test sets; or, with `max_num_seqs`, live ones: it then runs
that many requests at once, as a serving engine's batch, the others wait their turn
(num_requests_waiting), and each running one holds 1/max_num_seqs of its KV cache
(kv_cache_usage_perc). Run it in a test's event loop (`await start()`),
or as a process: `python -m tests.router.fake_runtime --port 50070`.
"""

import argparse
import asyncio
from dataclasses import dataclass, field

import grpc
from aiohttp import web

from shoal import metric_names as names
from shoal.v1 import runtime_pb2 as pb
from shoal.v1 import runtime_pb2_grpc


@dataclass
class FakeCounters:
    requests: int = 0
    finished: int = 0
    cancelled: int = 0
    failed: int = 0
    sent: int = 0  # messages handed to gRPC
    in_flight: int = 0
    priorities: list = field(default_factory=list)
    last_request: pb.GenerateRequest | None = None


class FakeRuntime(runtime_pb2_grpc.RuntimeServicer):
    def __init__(
        self,
        tokens: int = 8,
        text: str = "tok ",
        delay_s: float = 0.0,
        revision: str = "fake",
        model: str = "fake-model",
        max_num_seqs: int | None = None,
    ):
        self.tokens = tokens
        self.text = text
        self.delay_s = delay_s
        self.first_delay_s = 0.0
        self.error: grpc.StatusCode | None = None
        self.error_message = "injected by the fake runtime"
        self.error_trailers: tuple = ()
        self.fail_after_tokens: int | None = None  # fail mid-stream after this many messages
        self.revision = revision
        self.model = model
        self.kv_usage = 0.0
        self.waiting = 0
        self.preemptions = 0
        self.oom_errors = 0
        self.started_at: float | None = None  # process_start_time_seconds, if set
        self.metrics_status = 200  # what /metrics answers; other than 200, with no body
        self.serving = True  # what Health answers
        self.max_num_seqs = max_num_seqs
        self._batch: asyncio.Semaphore | None = None  # its free places, with max_num_seqs
        self.counters = FakeCounters()
        self.port = self.metrics_port = 0
        self._server: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    async def start(self, port: int = 0, metrics_port: int = 0, host: str = "127.0.0.1") -> "FakeRuntime":
        self.host = host
        self._server = grpc.aio.server()
        runtime_pb2_grpc.add_RuntimeServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        await self._server.start()
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, host, metrics_port)
        await site.start()
        self.metrics_port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0)
        if self._http is not None:
            await self._http.cleanup()

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext):
        c = self.counters
        c.requests += 1
        c.last_request = request
        c.priorities.append(request.priority)
        if self.error is not None:
            c.failed += 1
            await context.abort(self.error, self.error_message, trailing_metadata=self.error_trailers)
        tokens = request.sampling.max_tokens if request.sampling.HasField("max_tokens") else self.tokens
        await self._join_batch()
        c.in_flight += 1
        ended = False  # finished, or failed on purpose
        try:
            if self.first_delay_s:
                await asyncio.sleep(self.first_delay_s)
            for index in range(request.n or 1):  # choice after choice (a runtime interleaves them)
                for i in range(tokens - 1):
                    if self.fail_after_tokens is not None and i >= self.fail_after_tokens:
                        c.failed += 1
                        ended = True
                        await context.abort(grpc.StatusCode.INTERNAL, self.error_message)
                    yield pb.GenerateResponse(
                        request_id=request.request_id, token_ids=[100 + i % 100], text=self.text, index=index
                    )
                    c.sent += 1
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                usage = pb.Usage(prompt_tokens=_prompt_tokens(request), completion_tokens=tokens)
                yield pb.GenerateResponse(
                    request_id=request.request_id,
                    token_ids=[7],
                    text=self.text,
                    finish_reason=pb.FINISH_REASON_LENGTH,
                    usage=usage,
                    index=index,
                )
                c.sent += 1
            c.finished += 1
            ended = True
        finally:  # a client that cancels shows up as CancelledError, or as a failed write while blocked
            c.cancelled += not ended
            c.in_flight -= 1
            if self._batch is not None:
                self._batch.release()

    async def _join_batch(self) -> None:
        """Returns once the request has a place in the batch; meanwhile it counts as waiting."""
        if self.max_num_seqs is None:
            return
        if self._batch is None:
            self._batch = asyncio.Semaphore(self.max_num_seqs)
        self.waiting += 1
        try:
            await self._batch.acquire()
        finally:
            self.waiting -= 1

    async def Health(self, request, context) -> pb.HealthResponse:
        status = pb.HealthResponse.SERVING if self.serving else pb.HealthResponse.NOT_SERVING
        return pb.HealthResponse(status=status)

    async def GetStats(self, request, context) -> pb.RuntimeStats:
        return pb.RuntimeStats(num_requests_running=self.counters.in_flight, num_requests_waiting=self.waiting)

    async def GetModelInfo(self, request, context) -> pb.ModelInfo:
        return pb.ModelInfo(served_model_name=self.model, revision=self.revision)

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.metrics_status != 200:
            return web.Response(status=self.metrics_status)
        labels = f'model_name="{self.model}",pool="",revision="{self.revision}"'
        kv_usage = self.counters.in_flight / self.max_num_seqs if self.max_num_seqs else self.kv_usage
        text = "\n".join(
            [
                f"# TYPE {names.KV_CACHE_USAGE_PERC} gauge",
                f"{names.KV_CACHE_USAGE_PERC}{{{labels}}} {kv_usage}",
                f"# TYPE {names.NUM_REQUESTS_WAITING} gauge",
                f"{names.NUM_REQUESTS_WAITING}{{{labels}}} {self.waiting}",
                f"# TYPE {names.NUM_REQUESTS_RUNNING} gauge",
                f"{names.NUM_REQUESTS_RUNNING}{{{labels}}} {self.counters.in_flight}",
                f"# TYPE {names.NUM_PREEMPTIONS} counter",
                f"{names.NUM_PREEMPTIONS}_total{{{labels}}} {self.preemptions}",
                f"# TYPE {names.OOM_ERRORS} counter",
                f"{names.OOM_ERRORS}_total{{{labels}}} {self.oom_errors}",
            ]
            + ([f"{names.PROCESS_START_TIME} {self.started_at}"] if self.started_at is not None else [])
            + [""]
        )
        return web.Response(text=text, content_type="text/plain")


def _prompt_tokens(request: pb.GenerateRequest) -> int:
    """About what a tokenizer would say: a token per 4 characters, at least 5."""
    if request.WhichOneof("prompt") == "token_ids":
        return len(request.token_ids.ids)
    chars = len(request.text) + sum(len(m.content) for m in request.chat.messages)
    return max(5, chars // 4)


async def _main(args: argparse.Namespace) -> None:
    fake = FakeRuntime(tokens=args.tokens, text="x" * args.text_bytes, delay_s=args.delay_s)
    await fake.start(args.port, args.metrics_port)
    print(f"fake runtime on {fake.target}, metrics on {fake.metrics_url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A fake shoal.v1.Runtime that streams canned tokens at once.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--metrics-port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--text-bytes", type=int, default=4)
    parser.add_argument("--delay-s", type=float, default=0.0)
    try:
        asyncio.run(_main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
