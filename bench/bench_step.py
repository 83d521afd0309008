"""Where a decode step's time goes: the embedded model's forward pass at 1, 8 and 32 rows.

For each way the engine can run SmolLM2-135M-Instruct on CPU -- float32 through transformers'
forward (the reference), bfloat16 through transformers' forward, bfloat16 through the engine's
lean forward (the default where the CPU computes bfloat16 natively) -- one decode step (one new
token per row, a key/value cache of `--width` columns) is timed `--repeats` times (median and
spread), then profiled with torch's profiler: the step's wall time is split into matrix products
(mm/addmm/bmm), attention (scaled_dot_product_attention's kernels), the other tensor operations,
and what is outside any tensor operation (Python, dispatch, waiting), each in ms per step.

    python bench/bench_step.py                     # writes bench/results/step.json
    python bench/bench_step.py --rows 1 --repeats 5 --out /tmp/step.json   # a smoke run

Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench_models import spread  # noqa: E402 - the same summary as the other benches

PATHS = {  # name: (model spec, use the lean forward)
    "float32 (transformers forward)": ("smollm2?dtype=float32&speculate=0", False),
    "bfloat16 (transformers forward)": ("smollm2?dtype=bfloat16&speculate=0", False),
    "bfloat16 (lean forward)": ("smollm2?dtype=bfloat16&speculate=0", True),
}
MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "mkldnn")
ATTENTION = ("scaled_dot_product", "flash_attention")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--width", type=int, default=256, help="cache columns before the step")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "step.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from torch.profiler import ProfilerActivity, profile

    from agentmeta.models import get_model

    results: dict[str, dict[str, Any]] = {}
    for name, (spec, lean) in PATHS.items():
        model = get_model(spec, cache=False, shared=False)
        engine = model.provider.engine
        dtype = model.provider.model.dtype
        kept = engine.lean
        if not lean:
            engine.lean = None
        elif kept is None:
            print(f"{name}: the lean forward does not fit here (bfloat16 on this CPU?); left out")
            model.close()
            continue
        results[name] = {}
        for rows in args.rows:
            with torch.inference_mode():
                cache = engine._new_cache()
                for layer in cache.layers:
                    shape = (rows, 3, args.width, 64)
                    layer.load(torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype), spare=4 * args.repeats + 8)

                def step(engine: Any = engine, cache: Any = cache, rows: int = rows) -> None:
                    w = cache.layers[0].width
                    engine._forward(
                        torch.full((rows, 1), 42),
                        torch.ones((rows, w + 1), dtype=torch.long),
                        torch.full((rows, 1), w),
                        engine._new_cache(cache.layers),
                    )

                for _ in range(3):
                    step()
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    step()
                    times.append((time.perf_counter() - t) * 1000)
                n_prof = max(3, args.repeats // 4)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(n_prof):
                        step()
                wall = spread(times)["median"]
                parts = {"matrix products": 0.0, "attention": 0.0, "other tensor ops": 0.0}
                # self CPU time per op (us), top-level ops only counted through their self time
                for ev in prof.key_averages():
                    ms = ev.self_cpu_time_total / 1000 / n_prof
                    if any(k in ev.key for k in ATTENTION):
                        parts["attention"] += ms
                    elif any(ev.key.startswith(k) for k in MATMUL):
                        parts["matrix products"] += ms
                    else:
                        parts["other tensor ops"] += ms
                in_ops = sum(parts.values())
                parts["outside tensor ops"] = max(0.0, wall - in_ops)
                results[name][str(rows)] = {
                    "step_ms": spread(times),
                    "tokens_per_s": rows / wall * 1000,
                    "parts_ms": parts,
                }
                print(
                    f"{name:32s} rows {rows:3d}: {wall:6.1f} ms  "
                    + "  ".join(f"{k} {v:.1f}" for k, v in parts.items()),
                    flush=True,
                )
        engine.lean = kept
        model.close()

    print(f"\ndecode step, cache {args.width} columns, median of {args.repeats} (ms per step)")
    print(f"{'path':32s}{'rows':>5}{'step':>7}{'min':>7}{'max':>7}{'matmul':>8}{'attn':>6}{'other':>7}{'outside':>8}{'tok/s':>8}")
    for name, by_rows in results.items():
        for rows, r in by_rows.items():
            s, p = r["step_ms"], r["parts_ms"]
            print(
                f"{name:32s}{rows:>5}{s['median']:>7.1f}{s['min']:>7.1f}{s['max']:>7.1f}{p['matrix products']:>8.1f}"
                f"{p['attention']:>6.1f}{p['other tensor ops']:>7.1f}{p['outside tensor ops']:>8.1f}{r['tokens_per_s']:>8.0f}"
            )
    out = {
        "what": "one decode step of the embedded model (one new token per row, a cache of `width` columns): "
        "wall time (median and spread of `repeats`), and its parts from torch's profiler: matrix products, "
        "attention, other tensor operations (self CPU time per step) and the rest of the wall time",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "width": args.width,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "paths": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
