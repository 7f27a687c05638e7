"""What the router adds: latency and throughput through `shoal router` vs calling the backend directly.

The backend is a fake runtime (tests/router/fake_runtime.py: it implements shoal.v1.Runtime and
streams canned tokens at once, no model), so the numbers are the router's own cost. Three
processes: the fake runtime, the router, and this load generator; each request streams `--tokens`
tokens. At each concurrency, `concurrency` workers send requests back to back for `--seconds`:

    direct        gRPC Runtime/Generate straight to the fake runtime
    router gRPC   the router's public gRPC API (shoal.v1.Inference/Generate)
    router HTTP   the OpenAI API, POST /v1/chat/completions with stream=true (SSE)

    python bench/router_overhead.py                      # concurrency 1, 4, 16, 64; 5 s each
    python bench/router_overhead.py --concurrency 1 8 --seconds 3

All three share this machine's cores, the load generator included; on 2 cores the load generator
and the fake runtime take a good part of them, so absolute req/s understate what the router alone
could do. Writes bench/results/router_overhead_fake_backend.{json,md}.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.report import markdown_table, write_report  # noqa: E402
from shoal.router.dev import wait_until_ready  # noqa: E402
from shoal.v1 import router_pb2, router_pb2_grpc, runtime_pb2, runtime_pb2_grpc  # noqa: E402
from tests.runtime.server_process import free_port  # noqa: E402

MODEL = "fake-model"
KEY = "sk-bench"


def wait_for(url: str, process: subprocess.Popen) -> None:
    failure = wait_until_ready(url, process, timeout_s=60, poll_s=0.1)
    if failure is not None:
        raise SystemExit(failure)


def start_processes(args: argparse.Namespace, workdir: Path) -> tuple[list[subprocess.Popen], dict]:
    ports = {name: free_port() for name in ("fake", "fake_metrics", "http", "admin", "grpc")}
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.router.fake_runtime",
            "--port",
            str(ports["fake"]),
            "--metrics-port",
            str(ports["fake_metrics"]),
            "--tokens",
            str(args.tokens),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    (workdir / "keys.yaml").write_text(json.dumps({"keys": [{"key": KEY, "tenant": "bench"}]}))
    config = {
        "listen": {"host": "127.0.0.1", "port": ports["http"]},
        "admin": {"host": "127.0.0.1", "port": ports["admin"]},
        "grpc": {"host": "127.0.0.1", "port": ports["grpc"]},
        "auth": {"api_keys_file": "keys.yaml"},
        "tenants": [{"name": "bench"}],
        "pools": [
            {
                "name": "bench",
                "model": MODEL,
                "stable": "v1",
                "revisions": {
                    "v1": {
                        "endpoints": [
                            {
                                "target": f"127.0.0.1:{ports['fake']}",
                                "metrics_url": f"http://127.0.0.1:{ports['fake_metrics']}/metrics",
                            }
                        ]
                    }
                },
                "qos": {"max_concurrency_per_endpoint": 4096, "realtime_queue": 4096},
            }
        ],
    }
    (workdir / "router.yaml").write_text(json.dumps(config))
    router = subprocess.Popen(
        [sys.executable, "-m", "shoal", "router", "--config", str(workdir / "router.yaml"), "--log-level", "WARNING"],
        cwd=ROOT,
    )
    wait_for(f"http://127.0.0.1:{ports['fake_metrics']}/metrics", fake)
    wait_for(f"http://127.0.0.1:{ports['http']}/ready", router)
    return [fake, router], ports


async def run_level(one, concurrency: int, seconds: float) -> list[float]:
    """Latencies of the requests that `concurrency` back-to-back workers finished in `seconds`."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker():
        while time.monotonic() < deadline:
            started = time.monotonic()
            await one()
            latencies.append(time.monotonic() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def measure(args: argparse.Namespace, ports: dict) -> list[dict]:
    chat = runtime_pb2.ChatMessages(messages=[runtime_pb2.ChatMessage(role="user", content="Hi")])
    sampling = runtime_pb2.SamplingParams(max_tokens=args.tokens)
    direct_channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports['fake']}")
    router_channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports['grpc']}")
    direct_stub, router_stub = (
        runtime_pb2_grpc.RuntimeStub(direct_channel),
        router_pb2_grpc.InferenceStub(router_channel),
    )
    metadata = (("authorization", f"Bearer {KEY}"),)
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": args.tokens, "stream": True}
    url = f"http://127.0.0.1:{ports['http']}/v1/chat/completions"

    async def direct():
        tokens = [r async for r in direct_stub.Generate(runtime_pb2.GenerateRequest(chat=chat, sampling=sampling))]
        assert tokens[-1].finish_reason

    async def via_grpc():
        tokens = [
            r
            async for r in router_stub.Generate(
                router_pb2.InferenceRequest(model=MODEL, chat=chat, sampling=sampling), metadata=metadata
            )
        ]
        assert tokens[-1].finish_reason

    async def via_http():
        async with http.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as response:
            text = await response.read()
            assert response.status == 200 and text.endswith(b"data: [DONE]\n\n"), text[-200:]

    rows = []
    modes = {"direct": direct, "router gRPC": via_grpc, "router HTTP": via_http}
    for one in modes.values():
        await run_level(one, 4, 1.0)  # warm up connections and code paths
    for concurrency in args.concurrency:
        for mode, one in modes.items():
            latencies = sorted(await run_level(one, concurrency, args.seconds))
            rows.append(
                {
                    "mode": mode,
                    "concurrency": concurrency,
                    "requests": len(latencies),
                    "requests_per_s": len(latencies) / args.seconds,
                    "p50_ms": 1000 * latencies[len(latencies) // 2],
                    "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
                }
            )
            print(
                f"{mode:12s} concurrency {concurrency:3d}: {rows[-1]['requests_per_s']:7.0f} req/s  p50 "
                f"{rows[-1]['p50_ms']:6.1f} ms  p99 {rows[-1]['p99_ms']:6.1f} ms",
                flush=True,
            )
    await http.close()
    await direct_channel.close()
    await router_channel.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=5.0, help="per mode and concurrency")
    parser.add_argument("--tokens", type=int, default=16, help="tokens streamed per request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        processes, ports = start_processes(args, Path(workdir))
        try:
            rows = asyncio.run(measure(args, ports))
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=30)
    direct = {r["concurrency"]: r for r in rows if r["mode"] == "direct"}
    for r in rows:
        base = direct[r["concurrency"]]
        r["added_p50_ms"] = r["p50_ms"] - base["p50_ms"]
        r["added_p99_ms"] = r["p99_ms"] - base["p99_ms"]
    best = {
        mode: max(r["requests_per_s"] for r in rows if r["mode"] == mode)
        for mode in ("direct", "router gRPC", "router HTTP")
    }
    table = markdown_table(
        ["path", "concurrency", "req/s", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms"],
        [
            [r["mode"], r["concurrency"], f"{r['requests_per_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}"]
            + (["", ""] if r["mode"] == "direct" else [f"{r['added_p50_ms']:+.1f}", f"{r['added_p99_ms']:+.1f}"])
            for r in rows
        ],
    )
    markdown = (
        f"# Router overhead: `shoal router` in front of a fake runtime vs the fake runtime directly\n\n"
        f"Each request streams {args.tokens} tokens from a fake runtime (no model: tokens at once). Closed "
        "loop: at each "
        f"concurrency that many workers send back to back for {args.seconds:g} s. The fake runtime, the router "
        "and the load "
        f"generator share the machine's {os.cpu_count()} cores.\n\n{table}\n\n"
        f"Most requests per second sustained: direct {best['direct']:.0f}, through the router's gRPC API "
        f"{best['router gRPC']:.0f}, through its OpenAI HTTP API (SSE) {best['router HTTP']:.0f}.\n"
    )
    payload = {
        "benchmark": "router_overhead",
        "backend": "fake runtime (tests/router/fake_runtime.py)",
        "settings": vars(args),
        "rows": rows,
        "max_requests_per_s": best,
    }
    json_path, md_path = write_report("router_overhead_fake_backend", payload, markdown)
    print(f"\n{markdown}\nwrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
