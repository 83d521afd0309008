"""Requests per second of `agentmeta serve` on the embedded model, at 1 and 16 concurrent clients.

The `cot` agent is served (`agentmeta.serve.create_app`, uvicorn on a loopback port, in this
process) on the embedded model; clients are threads sending the tasks of the main-job suite's
train split (never validation or test) through the official `openai` client, each request one
task. Per concurrency level: `--requests` requests, `--repeats` interleaved repeats, the median
requests/s and completion tokens/s with their range, and the latency median. Run it alone on the
machine. Prints a table and writes bench/results/serve.json.

    python bench/bench_serve.py [--requests 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SUITE = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_level(client: Any, tasks: list[str], concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()

    def ask(task: str) -> None:
        start = time.perf_counter()
        out = client.chat.completions.create(model="cot", messages=[{"role": "user", "content": task}])
        with lock:
            latencies.append(time.perf_counter() - start)
            tokens[0] += out.usage.completion_tokens

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(ask, tasks))
    wall = time.perf_counter() - start
    return {
        "requests": len(tasks), "wall_s": wall, "requests_per_s": len(tasks) / wall,
        "completion_tokens_per_s": tokens[0] / wall, "latency_median_s": statistics.median(latencies),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--levels", default="1,16")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve.json"))
    args = ap.parse_args()

    import openai
    import torch
    import uvicorn

    from agentmeta import get_model
    from agentmeta.agents.builtin import get_agent
    from agentmeta.eval import load_suite
    from agentmeta.serve import create_app

    model = get_model("smollm2", cache=False)
    agent, _ = get_agent("cot")
    tasks = [s.input for s in load_suite(SUITE, split="train", limit=args.requests).samples]
    port = _port()
    server = uvicorn.Server(uvicorn.Config(create_app(agent, model, name="cot", concurrency=32), host="127.0.0.1",
                                           port=port, log_level="warning"))  # fmt: skip
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", timeout=600)
    levels = [int(x) for x in args.levels.split(",")]
    client.chat.completions.create(model="cot", messages=[{"role": "user", "content": tasks[0]}])  # warm up
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in levels}
    for r in range(args.repeats):
        for n in levels if r % 2 == 0 else reversed(levels):
            runs[n].append(run_level(client, tasks, n))
            print(f"repeat {r + 1}, {n} clients: {runs[n][-1]['requests_per_s']:.2f} req/s", flush=True)
    server.should_exit = True
    rows = []
    for n in levels:
        rps = [x["requests_per_s"] for x in runs[n]]
        tps = [x["completion_tokens_per_s"] for x in runs[n]]
        rows.append({
            "clients": n, "requests": args.requests, "requests_per_s": statistics.median(rps),
            "requests_per_s_range": [min(rps), max(rps)], "completion_tokens_per_s": statistics.median(tps),
            "latency_median_s": statistics.median(x["latency_median_s"] for x in runs[n]), "runs": runs[n],
        })  # fmt: skip
    out = {
        "what": "agentmeta serve, agent cot on the embedded smollm2, openai client threads on loopback",
        "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "cpu": platform.machine()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows,
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"\n{'clients':>7} {'req/s (median [range])':>26} {'completion tok/s':>17} {'latency median':>15}")
    for row in rows:
        lo, hi = row["requests_per_s_range"]
        print(f"{row['clients']:>7} {row['requests_per_s']:>10.2f} [{lo:.2f}, {hi:.2f}]       "
              f"{row['completion_tokens_per_s']:>17.1f} {row['latency_median_s']:>13.2f} s")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
