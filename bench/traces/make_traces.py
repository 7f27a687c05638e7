"""Writes the load suite's two synthetic traces into this folder, Mooncake-style JSONL:

    {"timestamp": 1234, "input_length": 96, "output_length": 16, "hash_ids": [0, 1, 7, 8, 9, 10],
     "tenant": "chat", "qos": "realtime"}

`timestamp` is the arrival in milliseconds from the trace's start; `hash_ids` name the prompt's blocks
of BLOCK_TOKENS tokens, as in the Mooncake traces: requests that share leading ids share that much
prompt prefix (a system prompt, a conversation's earlier turns), so the runtime's prefix cache sees
what it would see in production. `tenant` is one of bench/load_system.py's tenants and `qos` the
class the request asks for (the `x-shoal-qos` header). Sizes are small, for the embedded 135M model
on a CPU: prompts of 32-384 tokens, outputs of 4-48.

    mixed_tenants.jsonl   40 s: chat (a shared system prompt; realtime, a quarter of it batch), agent
                          (realtime sessions whose turns extend the previous turn's context) and bulk
                          (batch documents behind a shared instruction), about 0.8 requests/s in all
    overload_burst.jsonl  15 s: steady chat traffic; at 4 s agent sends 6 requests at once (its
                          max_concurrent is 2) and bulk 24 batch requests within a second, more than
                          the pool's batch share and batch queue hold

    python bench/traces/make_traces.py        # rewrites both; the same seed gives the same files
"""

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLOCK_TOKENS = 16  # tokens per hash id (Mooncake's traces use 512; these prompts are small)
TRACES = ("mixed_tenants", "overload_burst")


class Blocks:
    """Hands out hash ids: a fixed run of ids for a shared prefix, fresh ones for the rest."""

    def __init__(self):
        self.next_id = 0

    def fresh(self, count: int) -> list[int]:
        ids = list(range(self.next_id, self.next_id + count))
        self.next_id += count
        return ids


def row(ms: float, blocks: list[int], output_length: int, tenant: str, qos: str) -> dict:
    return {
        "timestamp": round(ms),
        "input_length": len(blocks) * BLOCK_TOKENS,
        "output_length": output_length,
        "hash_ids": blocks,
        "tenant": tenant,
        "qos": qos,
    }


def poisson_times(rng: random.Random, rate_per_s: float, start_s: float, end_s: float) -> list[float]:
    times, t = [], start_s
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= end_s:
            return times
        times.append(t * 1000)


def chat_rows(
    rng: random.Random, blocks: Blocks, system: list[int], times: list[float], batch_share: float = 0.0
) -> list[dict]:
    """Chat requests; `batch_share` of them ask for the batch class (the header over the tenant's default)."""
    return [
        row(
            t,
            system + blocks.fresh(rng.randint(2, 8)),
            rng.randint(4, 24),
            "chat",
            "batch" if rng.random() < batch_share else "realtime",
        )
        for t in times
    ]


def agent_sessions(rng: random.Random, blocks: Blocks, starts: list[float], turns: int) -> list[dict]:
    """Each session's turn extends the previous turn's context by the answer and a new message."""
    rows = []
    for start in starts:
        context, t = blocks.fresh(rng.randint(4, 8)), start
        for _ in range(turns):
            rows.append(row(t, context, rng.randint(8, 32), "agent", "realtime"))
            context = context + blocks.fresh(rng.randint(2, 4))
            t += rng.uniform(3000, 6000)
    return rows


def bulk_rows(rng: random.Random, blocks: Blocks, instruction: list[int], times: list[float]) -> list[dict]:
    return [
        row(t, instruction + blocks.fresh(rng.randint(12, 20)), rng.randint(16, 48), "bulk", "batch") for t in times
    ]


def mixed_tenants(rng: random.Random) -> list[dict]:
    blocks = Blocks()
    system, instruction = blocks.fresh(2), blocks.fresh(4)
    rows = chat_rows(rng, blocks, system, poisson_times(rng, 0.45, 0, 40), batch_share=0.25)
    rows += agent_sessions(rng, blocks, [2000, 14000, 26000], turns=3)
    rows += bulk_rows(rng, blocks, instruction, poisson_times(rng, 0.25, 0, 40))
    return rows


def overload_burst(rng: random.Random) -> list[dict]:
    blocks = Blocks()
    system, instruction = blocks.fresh(2), blocks.fresh(4)
    rows = chat_rows(rng, blocks, system, poisson_times(rng, 0.6, 0, 16))
    rows += [row(4000 + 50 * i, blocks.fresh(rng.randint(2, 6)), 16, "agent", "realtime") for i in range(6)]
    rows += bulk_rows(rng, blocks, instruction, sorted(rng.uniform(4000, 5000) for _ in range(24)))
    return rows


def write(path: Path, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: r["timestamp"])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_traces(directory: Path) -> list[Path]:
    paths = []
    for name, make in (("mixed_tenants", mixed_tenants), ("overload_burst", overload_burst)):
        rows = make(random.Random(f"shoal-{name}"))
        paths.append(directory / f"{name}.jsonl")
        write(paths[-1], rows)
        print(f"wrote {paths[-1]}: {len(rows)} requests over {max(r['timestamp'] for r in rows) / 1000:.0f} s")
    return paths


def main() -> None:
    write_traces(HERE)


if __name__ == "__main__":
    main()
