"""Per-sample overhead of the sandbox versus running the same agent function in-process.

Two tiny agents: one makes one model call (mock model, zero delay), one makes none. Each runs
sequentially N times in a warm worker pool (median per sample), with a fresh worker per sample
(cold start, `reuse=False`), and in-process (exec'd once, called N times). Both isolation modes
(bubblewrap, plain subprocess) when bubblewrap works here.

    python bench/bench_sandbox.py [--n 300] [--cold 30]

Prints a table and writes bench/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from agentmeta.models import get_model
from agentmeta.sandbox import Sandbox, SandboxLimits, bwrap_works, llm_from_model, unshare_works

AGENTS = {
    "llm_call": ("def forward(q):\n    return llm(q, max_tokens=8)['texts'][0]\n", ["What is 2+2?"]),
    "no_llm": ("def forward(n):\n    return sum(i * i for i in range(n))\n", [100]),
}


def _ms(samples: list[float]) -> dict[str, float]:
    xs = sorted(samples)
    return {
        "median_ms": round(statistics.median(xs) * 1e3, 3),
        "p90_ms": round(xs[int(0.9 * (len(xs) - 1))] * 1e3, 3),
    }


def in_process(source: str, args: list[Any], n: int) -> dict[str, float]:
    model = get_model("mock", outputs=lambda req: "4")
    call = llm_from_model(model)

    def llm(prompt: str, **sampling: Any) -> dict[str, Any]:
        return call({"messages": [{"role": "user", "content": prompt}], **sampling})

    g: dict[str, Any] = {"llm": llm}
    exec(compile(source, "<candidate>", "exec"), g)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        g["forward"](*args)
        times.append(time.perf_counter() - t)
    return _ms(times)


def sandboxed(mode: str, reuse: bool, source: str, args: list[Any], n: int) -> dict[str, float]:
    model = get_model("mock", outputs=lambda req: "4")
    flags = {"bwrap": {"use_bwrap": True}, "unshare": {"use_bwrap": False, "use_unshare": True},
             "plain": {"use_bwrap": False, "use_unshare": False, "allow_unsafe": True}}[mode]  # fmt: skip
    with Sandbox(SandboxLimits(), pool_size=1, reuse=reuse, **flags) as sb:
        if reuse:
            sb.warm(1)
            sb.run(source, "forward", args, llm=model)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            r = sb.run(source, "forward", args, llm=model)
            times.append(time.perf_counter() - t)
            if not r.ok:
                raise RuntimeError(f"benchmark agent failed: {r.error}")
    return _ms(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="samples per warm measurement")
    ap.add_argument("--cold", type=int, default=30, help="samples per cold-start measurement")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sandbox.json"))
    opts = ap.parse_args()
    root = os.geteuid() == 0
    modes = (["bwrap"] if bwrap_works(root) else []) + (["unshare"] if unshare_works(root) else []) + ["plain"]
    rows: list[dict[str, Any]] = []
    for agent, (source, args) in AGENTS.items():
        base = in_process(source, args, opts.n)
        rows.append({"agent": agent, "mode": "in-process", "pool": "-", **base, "overhead_ms": 0.0})
        for mode in modes:
            for pool, reuse, n in (("warm", True, opts.n), ("cold", False, opts.cold)):
                m = sandboxed(mode, reuse, source, args, n)
                rows.append(
                    {
                        "agent": agent,
                        "mode": mode,
                        "pool": pool,
                        **m,
                        "overhead_ms": round(m["median_ms"] - base["median_ms"], 3),
                    }
                )
    print(f"{'agent':10} {'mode':11} {'pool':5} {'median ms':>10} {'p90 ms':>9} {'overhead ms':>12}")
    for r in rows:
        print(
            f"{r['agent']:10} {r['mode']:11} {r['pool']:5} {r['median_ms']:10.3f} {r['p90_ms']:9.3f} "
            f"{r['overhead_ms']:12.3f}"
        )
    out = {
        "what": "per-sample wall time of a tiny agent: in-process vs sandboxed (warm pool, cold start)",
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "root": os.geteuid() == 0,
        },
        "n_warm": opts.n,
        "n_cold": opts.cold,
        "rows": rows,
    }
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
