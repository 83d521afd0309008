"""Audit the labels of every shipped suite: `agentmeta suites check` on each, one table.

Fixed suites are audited whole (every split). Procedural suites (every reasoning-gym task with its
default options, the README's main-job configuration, drop-lite) are audited on `--limit` generated
items per split. Each suite is checked by `agentmeta suites check SPEC --json` in its own process,
with a time limit (a few reasoning-gym generators take seconds per item). Prints a table and
writes bench/results/audit.json.

    python bench/audit_suites.py [--limit 50] [--timeout 120] [--tasks basic_arithmetic,chain_sum]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

FIXED = ["gsm8k", "gpqa", "aime2025", "mmlu", "humaneval", "arc"]
EXTRA = [
    "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false",
    "drop-lite",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=50, help="items per split of procedural suites")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per suite")
    parser.add_argument("--tasks", default="", help="comma-separated reasoning-gym tasks (default: all)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "audit.json"))
    args = parser.parse_args()

    from agentmeta.eval.loaders import rg_tasks

    tasks = [t for t in args.tasks.split(",") if t] or rg_tasks()
    specs = [(s, None) for s in FIXED] + [(s, args.limit) for s in EXTRA]
    specs += [(f"rg/{t}", args.limit) for t in tasks]
    rows = []
    for spec, limit in specs:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "agentmeta", "suites", "check", spec, "--json"]
        if limit is not None:
            cmd += ["--limit", str(limit)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            rows.append({"suite": spec, "error": f"not finished in {args.timeout:.0f} s"})
            print(f"{spec[:60]:60s} not finished in {args.timeout:.0f} s", flush=True)
            continue
        if proc.returncode != 0:
            message = (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]
            rows.append({"suite": spec, "error": message})
            print(f"{spec[:60]:60s} {message}", flush=True)
            continue
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            rows.append({"suite": spec, "error": f"unreadable report: {proc.stdout[:100]!r}"})
            print(f"{spec[:60]:60s} unreadable report", flush=True)
            continue
        bad = len({i["sample_id"] for i in report["issues"]})
        row = {
            "suite": spec,
            "items": report["items"],
            "limit_per_split": limit,
            "bad_items": bad,
            "counts": report["counts"],
            "examples": report["issues"][:3],
            "seconds": round(time.perf_counter() - start, 1),
        }
        rows.append(row)
        counts = ", ".join(f"{k} {v}" for k, v in report["counts"].items()) or "-"
        print(f"{spec[:60]:60s} {report['items']:6d} items {bad:5d} bad  {counts}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"machine": platform.platform(), "limit_per_split": args.limit, "suites": rows}, indent=2
        )
    )
    flagged = [r for r in rows if r.get("bad_items")]
    print(f"\n{len(rows)} suites audited, {len(flagged)} with bad items; wrote {out}")


if __name__ == "__main__":
    main()
