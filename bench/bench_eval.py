"""Evaluation throughput: the `cot` agent through agentmeta's embedded model, through agentmeta
against `transformers serve`, and through an ADAS-style harness against the same server.

Three paths (five with llama.cpp, below), one run, the same work: the `cot` agent's single greedy call on the same samples of
`rg/basic_arithmetic` (the suite as `load_suite` gives it), the same model (the embedded
SmolLM2-135M-Instruct's dense copy, `ensure_dense_copy()`), the same max_tokens (default: cot's
own, 256), `--concurrency` samples at a time (default 16), no call cache:

(a) embedded: `evaluate("cot", suite, model=get_model("smollm2", cache=False), concurrency=C)`,
    agentmeta's in-process engine as it runs by default (bfloat16 weights through its lean
    forward where the CPU computes bfloat16 natively, else float32).
(b) agentmeta -> server: the same `evaluate` with `openai/<dense dir>` against
    `transformers serve --continuous-batching --cb-num-blocks B <dense dir>` on 127.0.0.1, the
    model pinned. B sizes its KV cache for C requests of up to 1024 prompt tokens plus max_tokens
    (`--server-kv-blocks`): left unsized, continuous batching on CPU takes 60% of the free RAM
    (14 GB of 24 here) and its first request spends about a minute allocating it.
(c) ADAS-style harness: a ThreadPoolExecutor(C), one chat request per sample (httpx) to the same
    server with the messages cot sends (recorded through a mock model), temperature 0, the same
    max_tokens; the reply is scored with the suite's scorer. That is what ADAS's scripts do.

(d) and (e), where llama-cpp-python is installed (`--skip-llamacpp` leaves them out): the same
    `evaluate` on `llamacpp` (the embedded model in llama.cpp: its GGUF de-quantized once to
    float16, the values the dense copy holds in float32) and on `llamacpp/q4_1` (the GGUF as
    shipped: Q4_1 layers, a Q8_0 output layer, which llama.cpp multiplies with 8-bit activations).
    Their arithmetic differs from transformers', so some outputs, scores and token counts differ
    too (for (d) few, for (e) most); the table shows them.

(f) the same `evaluate` on `smollm2?dtype=float32`: float32 weights through transformers'
    forward, the reference (and the default before bfloat16), for the engine's gain at equal
    arithmetic: the server of (b) and (c) runs the same float32 weights.

The server is started once and warmed up (one request, then C at once: the first request pays
for the continuous-batching setup) and the embedded model loaded and warmed once (C at once),
before any timed run. The paths run one at a time, interleaved with the order rotating each
repeat (a b c, b c a, c a b, ...) so a slow spell of the machine does not land on one path. The server's CPU time is read while it is idle and while
the embedded path runs (it should not compete). Per path: samples/min (median and spread over
the repeats), score, completion tokens; and the ratios within each repeat, median over repeats:

    embedded / harness            target >= 2.5
    embedded / agentmeta->server  target >= 1.2
    embedded float32 / harness    target >= 2.0
    (the same two for (d) and (e))

A second table: raw tokens/s of the embedded backend (`Model.generate` of the same model from K
threads released together, `bench_models.run_callers`) at 1, 8, 16 and 32 concurrent requests of
mixed lengths (prompts of varied length, max_tokens drawn from {32, 64, 128, 256} with a fixed
seed, greedy; the completion tokens actually produced are counted), median and spread over the
repeats, for the default, the float32 reference and the llama.cpp paths. Then
`agentmeta conduct "What is 12*13? Use Python to check."` as a user runs it (a fresh process,
call cache off) `--conduct-repeats` times on the default and on the float32 reference: wall
seconds, model load included. Prints the tables and writes bench/results/eval.json. Run it
alone on the machine.

    python bench/bench_eval.py [--n 32] [--concurrency 16] [--repeats 3] [--max-tokens 256]
    python bench/bench_eval.py --skip-server          # embedded path and the raw table only
    python bench/bench_eval.py --raw-concurrency 1 8 16 32 --raw-max-tokens 32 64 128 256
    python bench/bench_eval.py --n 4 --repeats 1 --max-tokens 32 --raw-concurrency 1 2 \\
        --raw-max-tokens 16 --out /tmp/eval-smoke.json   # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_models import run_callers, spread  # the same caller release and summary as the model bench

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
PATHS = {
    "a": ("embedded", "(a) agentmeta embedded (default)"),
    "b": ("agentmeta_server", "(b) agentmeta -> transformers serve"),
    "c": ("harness_server", "(c) ADAS-style harness -> serve"),
    "d": ("embedded_llamacpp", "(d) agentmeta llamacpp (f16)"),
    "e": ("embedded_llamacpp_q4_1", "(e) agentmeta llamacpp/q4_1 (shipped)"),
    "f": ("embedded_float32", "(f) agentmeta embedded, float32"),
}
REFERENCE = "smollm2?dtype=float32"  # path (f): the float32 reference (transformers' forward)
CONDUCT_QUESTION = "What is 12*13? Use Python to check."
LLAMACPP = {"d": "llamacpp", "e": "llamacpp/q4_1"}  # path -> model spec
TARGETS = {  # ratio name: (numerator path, denominator path, target)
    "embedded_vs_harness": ("a", "c", 2.5),
    "embedded_float32_vs_harness": ("f", "c", 2.0),
    "embedded_vs_agentmeta_server": ("a", "b", 1.2),
    "llamacpp_vs_harness": ("d", "c", 2.0),
    "llamacpp_vs_agentmeta_server": ("d", "b", 1.2),
    "llamacpp_q4_1_vs_harness": ("e", "c", 2.0),
    "llamacpp_q4_1_vs_agentmeta_server": ("e", "b", 1.2),
}
TOPICS = ["a dragon", "the sea", "a robot", "a city", "a forest", "winter", "a train", "the moon"]
RAW_SEED = 0
IDLE_CHECK_S = 5.0
HTTP_TIMEOUT_S = 900.0
PAGE_TOKENS = 256  # transformers' continuous-batching page (block) size


def kv_blocks(concurrency: int, max_tokens: int) -> int:
    """KV-cache blocks for the server: `concurrency` requests of up to 1024 prompt tokens plus
    `max_tokens` each. Without a size, continuous batching on CPU takes 60% of the free RAM for its
    cache (14 GB on a 24 GB machine, ~1 min to allocate on the first request)."""
    return concurrency * -(-(1024 + max_tokens) // PAGE_TOKENS)


def public_path(arg: str) -> str:
    """A command-line argument as it may be published: this checkout's and the home folder's
    paths shortened."""
    venv = Path(sys.executable).parent.parent  # a virtual environment elsewhere, shown as ./.venv
    if (venv / "pyvenv.cfg").is_file():
        arg = arg.replace(str(venv), "./.venv")
    return arg.replace(str(ROOT), ".").replace(str(Path.home()), "~")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the server


def pct(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far; None where /proc is not readable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class Server:
    """`transformers serve --continuous-batching <dense dir>` on 127.0.0.1, pinned to that model."""

    def __init__(self, dense: str, log_path: Path, blocks: int) -> None:
        import httpx

        sys.path.insert(0, str(ROOT))
        from tests.servers import free_port

        self.model = dense
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self.cmd = [
            str(Path(sys.executable).parent / "transformers"), "serve", "--continuous-batching",
            "--cb-num-blocks", str(blocks), "--host", "127.0.0.1", "--port", str(self.port), dense,
        ]  # fmt: skip
        self.log = log_path.open("w")
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        deadline = time.monotonic() + 600
        while True:
            if self.proc.poll() is not None:
                raise SystemExit("transformers serve exited: " + log_path.read_text()[-2000:])
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"transformers serve did not answer in 10 minutes; log: {log_path}")
            time.sleep(1)
        self.start_s = time.perf_counter() - start

    def cpu_s(self) -> float | None:
        return proc_cpu_s(self.proc.pid)

    def idle_cpu_share(self, seconds: float) -> float | None:
        """Share of one core the server uses over `seconds` with no request (0.01 = 1%)."""
        before = self.cpu_s()
        time.sleep(seconds)
        after = self.cpu_s()
        return None if before is None or after is None else (after - before) / seconds

    def stop(self) -> None:
        from tests.servers import stop

        stop(self.proc, self.log, timeout_s=30)


# ----------------------------------------------------------------------------- the three paths


def record_messages(suite: Any, max_tokens: int | None) -> dict[str, dict[str, Any]]:
    """What cot sends for each sample (messages, temperature, max_tokens), recorded through a mock
    model driven by the same `evaluate` (so the run's max_tokens cap applies as it does there)."""
    from agentmeta.eval import evaluate
    from agentmeta.models import get_model
    from agentmeta.models.mock import MockProvider

    out: dict[str, dict[str, Any]] = {}
    for sample in suite.samples:
        mock = get_model("mock", cache=False)
        assert isinstance(mock.provider, MockProvider)
        one = suite.model_copy(update={"samples": [sample]})
        evaluate("cot", one, model=mock, concurrency=1, max_tokens=max_tokens)
        [req] = mock.provider.requests
        out[sample.id] = {
            "messages": [m.model_dump() for m in req.messages],
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
        }
    return out


def harness(client: Any, model: str, suite: Any, sent: dict[str, dict[str, Any]], c: int) -> dict[str, Any]:
    """ADAS-style: a thread pool of `c`, one chat request per sample, the reply scored here."""

    def one(sample: Any) -> tuple[float, int, bool]:
        req = sent[sample.id]
        body = {
            "model": model,
            "messages": req["messages"],
            "temperature": req["temperature"],
            "max_tokens": req["max_tokens"],
        }
        try:
            r = client.post("/chat/completions", json=body)
            r.raise_for_status()
            data = r.json()
            text = data["choices"][0]["message"]["content"] or ""
            tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
        except Exception as e:  # noqa: BLE001 - counted as an error, scored 0
            log(f"harness: sample {sample.id}: {type(e).__name__}: {e}")
            return 0.0, 0, True
        return float(suite.score(text, sample).value), tokens, False

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=c) as pool:
        results = list(pool.map(one, suite.samples))
    wall = time.perf_counter() - start
    scores = [s for s, _, _ in results]
    return {
        "wall_s": wall,
        "samples": len(results),
        "score": statistics.fmean(scores),
        "completion_tokens": sum(t for _, t, _ in results),
        "errors": sum(err for _, _, err in results),
    }


def run_eval(model: Any, suite: Any, c: int, max_tokens: int | None) -> dict[str, Any]:
    from agentmeta.eval import evaluate

    start = time.perf_counter()
    res = evaluate("cot", suite, model=model, concurrency=c, max_tokens=max_tokens)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "samples": len(res.records),
        "score": res.mean,
        "completion_tokens": res.usage.completion_tokens,
        "errors": res.n_errors + res.n_infra,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    spm = spread([r["samples_per_min"] for r in runs])
    return {
        "samples_per_min": spm["median"],
        "samples_per_min_spread": spm,
        "wall_s_spread": spread([r["wall_s"] for r in runs]),
        "score": statistics.median(r["score"] for r in runs),
        "completion_tokens": statistics.median(r["completion_tokens"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "runs": runs,
    }


# ----------------------------------------------------------------------------- the raw table


def raw_requests(k: int, choices: list[int]) -> list[Any]:
    """`k` greedy requests: prompts of varied length, max_tokens drawn from `choices` (fixed seed)."""
    from agentmeta.models import GenerateRequest

    rng = random.Random(RAW_SEED)
    out = []
    for i in range(k):
        extra = " Mention the weather, the time of day, one sound and one smell." * rng.randrange(6)
        prompt = f"Write a detailed story about {TOPICS[i % len(TOPICS)]}.{extra}"
        out.append(GenerateRequest.build(prompt, max_tokens=rng.choice(choices), temperature=0.0))
    return out


def raw_table(model: Any, levels: list[int], choices: list[int], repeats: int) -> dict[str, Any]:
    """tokens/s of `Model.generate` from K concurrent callers; levels interleaved within a repeat."""
    runs: dict[int, list[dict[str, float]]] = {k: [] for k in levels}
    reqs = {k: raw_requests(k, choices) for k in levels}
    for rep in range(repeats):
        for k in levels:
            wall, resps = run_callers(model, reqs[k])
            tokens = sum(sum(r.completion_tokens) for r in resps)
            runs[k].append({"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall})
            log(f"raw repeat {rep + 1}/{repeats}: {k} callers, {tokens} tokens in {wall:.1f} s")
    out = {}
    for k, rs in runs.items():
        tps = spread([r["tokens_per_s"] for r in rs])
        out[str(k)] = {
            "requested_max_tokens": [r.max_tokens for r in reqs[k]],
            "tokens_per_s": tps["median"],
            "tokens_per_s_spread": tps,
            "runs": rs,
        }
    return out


def conduct_runs(spec: str, repeats: int) -> dict[str, Any]:
    """`agentmeta conduct QUESTION --model spec` as a user runs it (a fresh process, no call
    cache), `repeats` times: wall seconds each, and the summary and answer lines of the last."""
    runs = []
    out = ""
    for _ in range(repeats):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "AGENTMETA_CALL_CACHE": "0"}
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "agentmeta", "conduct", CONDUCT_QUESTION, "--model", spec],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"agentmeta conduct --model {spec} failed: {proc.stderr.strip()[-500:]}")
        out = proc.stdout
        runs.append({"wall_s": wall})
        log(f"conduct --model {spec}: {wall:.1f} s")
    lines = [x for x in out.strip().splitlines() if x.strip()]
    return {
        "runs": runs,
        "wall_s_spread": spread([r["wall_s"] for r in runs]),
        "summary": lines[-1] if lines else "",
        "answer": lines[-2] if len(lines) > 1 else "",
    }


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="rg/basic_arithmetic")
    ap.add_argument("--n", type=int, default=32, help="samples per run (default 32)")
    ap.add_argument("--concurrency", type=int, default=16, help="samples at a time, every path (default 16)")
    ap.add_argument(
        "--repeats", type=int, default=3, help="rounds of (a, b, c), order rotated; raw table too"
    )
    ap.add_argument(
        "--max-tokens", type=int, default=None, help="completion cap per call (default: cot's own, 256)"
    )
    ap.add_argument("--skip-server", action="store_true", help="only the embedded paths and the raw tables")
    ap.add_argument(
        "--skip-llamacpp", action="store_true", help="without paths (d) and (e), even if llama-cpp-python is installed"
    )
    ap.add_argument(
        "--server-kv-blocks",
        type=int,
        default=None,
        help=f"the server's KV cache in blocks of {PAGE_TOKENS} tokens (default: concurrency x (1024 + max_tokens))",
    )
    ap.add_argument(
        "--raw-concurrency", type=int, nargs="+", default=[1, 8, 16, 32], help="raw table callers"
    )
    ap.add_argument(
        "--raw-max-tokens",
        type=int,
        nargs="+",
        default=[32, 64, 128, 256],
        help="raw table max_tokens choices",
    )
    ap.add_argument(
        "--conduct-repeats", type=int, default=3, help="runs of `agentmeta conduct` per model (0: none)"
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval.json"))
    args = ap.parse_args()
    optional = [x for x in (args.max_tokens, args.server_kv_blocks) if x is not None]
    if (
        min(args.n, args.concurrency, args.repeats, *args.raw_concurrency, *args.raw_max_tokens, *optional)
        < 1
    ):
        ap.error("--n, --concurrency, --repeats, --max-tokens, --server-kv-blocks and --raw-* must be >= 1")

    load_start = os.getloadavg()
    import torch
    import transformers

    from agentmeta.eval import load_suite
    from agentmeta.models import get_model
    from agentmeta.models.hf import ensure_dense_copy

    c = args.concurrency
    suite = load_suite(args.suite, limit=args.n)
    sent = record_messages(suite, args.max_tokens)
    max_tokens = sorted({r["max_tokens"] for r in sent.values()})
    dense = str(ensure_dense_copy())
    import importlib.util

    keys = (["a"] if args.skip_server else ["a", "b", "c"]) + ["f"]
    if not args.skip_llamacpp and importlib.util.find_spec("llama_cpp") is not None:
        keys += ["d", "e"]

    t0 = time.perf_counter()
    embedded = get_model("smollm2", cache=False)
    warm = [f"Say hi to {t}." for t in TOPICS] * (c // len(TOPICS) + 1)
    from agentmeta.models import GenerateRequest

    run_callers(embedded, [GenerateRequest.build(p, max_tokens=4) for p in warm[:c]])  # full width
    load_s: dict[str, float] = {"embedded": time.perf_counter() - t0}
    t0 = time.perf_counter()
    reference = get_model(REFERENCE, cache=False)
    run_callers(reference, [GenerateRequest.build(p, max_tokens=4) for p in warm[:c]])
    load_s[REFERENCE] = time.perf_counter() - t0
    embedded_dtype = str(embedded.provider.model.dtype).removeprefix("torch.")
    lcpp: dict[str, Any] = {}
    for key in (k for k in keys if k in LLAMACPP):
        t0 = time.perf_counter()
        lcpp[key] = get_model(LLAMACPP[key], cache=False, max_batch=c)
        run_callers(lcpp[key], [GenerateRequest.build(p, max_tokens=4) for p in warm[:c]])
        load_s[LLAMACPP[key]] = time.perf_counter() - t0

    server: Server | None = None
    server_info: dict[str, Any] = {}
    client = served = None
    try:
        if not args.skip_server:
            import httpx

            blocks = args.server_kv_blocks or kv_blocks(c, max(max_tokens))
            server = Server(dense, Path(tempfile.mkdtemp(prefix="bench-eval-")) / "serve.log", blocks)
            log(f"transformers serve up on {server.url} in {server.start_s:.1f} s (log {server.log_path})")
            served = get_model(
                f"openai/{dense}",
                base_url=server.url,
                cache=False,
                max_concurrency=c,
                timeout_s=HTTP_TIMEOUT_S,
            )
            client = httpx.Client(
                base_url=server.url, timeout=HTTP_TIMEOUT_S, limits=httpx.Limits(max_connections=c)
            )
            t0 = time.perf_counter()
            first = client.post(
                "/chat/completions",
                json={"model": dense, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0},
            )  # fmt: skip
            first.raise_for_status()
            first_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            run_callers(served, [GenerateRequest.build(p, max_tokens=4) for p in warm[:c]])  # full width
            warm_s = time.perf_counter() - t0
            idle = server.idle_cpu_share(IDLE_CHECK_S)
            server_info = {
                "command": " ".join(public_path(x) for x in server.cmd),
                "kv_blocks": blocks,
                "kv_tokens": blocks * PAGE_TOKENS,
                "start_s": server.start_s,
                "first_request_s": first_s,
                "warmup_s": warm_s,
                "idle_cpu_share_of_one_core": idle,
                "idle_check_s": IDLE_CHECK_S,
            }
            log(
                f"server: first request {first_s:.1f} s, warm-up at width {c} {warm_s:.1f} s, idle CPU {pct(idle)} of a core"
            )

        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        orders: list[str] = []
        server_cpu_during_a: list[float] = []
        for rep in range(args.repeats):
            order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
            orders.append("".join(order))
            for key in order:
                if key == "a":
                    before = server.cpu_s() if server else None
                    r = run_eval(embedded, suite, c, args.max_tokens)
                    after = server.cpu_s() if server else None
                    if before is not None and after is not None:
                        server_cpu_during_a.append(after - before)
                elif key == "b":
                    r = run_eval(served, suite, c, args.max_tokens)
                elif key == "f":
                    r = run_eval(reference, suite, c, args.max_tokens)
                elif key in lcpp:
                    r = run_eval(lcpp[key], suite, c, args.max_tokens)
                else:
                    r = harness(client, dense, suite, sent, c)
                r["samples_per_min"] = r["samples"] / r["wall_s"] * 60
                runs[key].append(r)
                log(
                    f"repeat {rep + 1}/{args.repeats} {key}: {r['samples']} samples in {r['wall_s']:.1f} s, "
                    f"score {r['score']:.3f}, {r['completion_tokens']} tokens, {r['errors']} errors"
                )
        if server_cpu_during_a:
            server_info["cpu_s_during_embedded_runs"] = server_cpu_during_a
            server_info["cpu_share_during_embedded_runs"] = [
                cpu / r["wall_s"] for cpu, r in zip(server_cpu_during_a, runs["a"], strict=True)
            ]

        raw = raw_table(embedded, args.raw_concurrency, args.raw_max_tokens, args.repeats)
        raw_reference = raw_table(reference, args.raw_concurrency, args.raw_max_tokens, args.repeats)
        raw_lcpp = {
            LLAMACPP[k]: raw_table(m, args.raw_concurrency, args.raw_max_tokens, args.repeats)
            for k, m in lcpp.items()
        }
    finally:
        for m in [*lcpp.values(), reference]:
            m.close()
        if client is not None:
            client.close()
        if served is not None:
            served.close()
        if server is not None:
            server.stop()
    embedded.close()
    conduct = {
        spec: conduct_runs(spec, args.conduct_repeats) for spec in ("smollm2", REFERENCE) if args.conduct_repeats
    }
    load_end = os.getloadavg()

    paths = {PATHS[k][0]: summarize(runs[k]) for k in keys}
    ratios: dict[str, Any] = {}
    for name, (num, den, target) in TARGETS.items():
        if num not in runs or den not in runs:
            continue
        per = [x["samples_per_min"] / y["samples_per_min"] for x, y in zip(runs[num], runs[den], strict=True)]
        med = statistics.median(per)
        ratios[name] = {
            "median": med,
            "spread": spread(per),
            "per_repeat": per,
            "target": target,
            "meets_target": med >= target,
        }
    result: dict[str, Any] = {
        "what": "samples/min of the cot agent through (a) agentmeta's embedded model, (b) agentmeta -> "
        "transformers serve --continuous-batching, (c) an ADAS-style thread-pool harness -> the same server; "
        "same samples, model, messages, max_tokens, greedy, concurrency; interleaved repeats with rotating "
        "order; plus raw tokens/s of the embedded Model.generate from K concurrent callers",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "suite": suite.name,
        "agent": "cot",
        "samples": len(suite),
        "max_tokens": max_tokens[0] if len(max_tokens) == 1 else max_tokens,
        "concurrency": c,
        "repeats": args.repeats,
        "orders": orders,
        "model": "smollm2 (SmolLM2-135M-Instruct, dense copy, CPU)",
        "embedded_dtype": embedded_dtype,
        "reference": REFERENCE,
        "dense_dir": dense.split("/")[-1],
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "loadavg_start": list(load_start),
        "loadavg_end": list(load_end),
        "load_s": load_s,
        "server": server_info or None,
        "paths": paths,
        "ratios": ratios,
        "raw": {
            "what": "tokens/s of Model.generate (smollm2, cache off) from K threads released together, greedy, "
            "prompts of varied length, max_tokens drawn from the choices with a fixed seed; tokens counted "
            "as produced (EOS ends a request early)",
            "max_tokens_choices": args.raw_max_tokens,
            "seed": RAW_SEED,
            "repeats": args.repeats,
            "levels": raw,
        },
        "raw_reference": {
            "what": f"the same raw table for {REFERENCE} (float32 weights through transformers' forward)",
            "spec": REFERENCE,
            "levels": raw_reference,
        },
        "conduct": {
            "what": f"wall time of `agentmeta conduct {CONDUCT_QUESTION!r}` as a fresh process (model load "
            "included, call cache off), per conductor model",
            "question": CONDUCT_QUESTION,
            "models": conduct,
        }
        if conduct
        else None,
        "raw_llamacpp": {
            "what": "the same raw table for the llamacpp provider: the embedded model de-quantized to "
            "float16 (llamacpp) and the GGUF as shipped (llamacpp/q4_1)",
            "llama_cpp": __import__("llama_cpp").__version__,
            "specs": raw_lcpp,
        }
        if raw_lcpp
        else None,
    }

    print(
        f"\ncot on {suite.name}, {len(suite)} samples, max_tokens {result['max_tokens']}, concurrency {c}, "
        f"median of {args.repeats} (orders {' '.join(orders)})"
    )
    print(
        f"{'path':<38}{'samples/min':>12}{'min':>8}{'max':>8}{'wall s':>8}{'score':>7}{'tokens':>8}{'errors':>7}"
    )
    for k in keys:
        name, label = PATHS[k]
        p = paths[name]
        s = p["samples_per_min_spread"]
        print(
            f"{label:<38}{s['median']:>12.1f}{s['min']:>8.1f}{s['max']:>8.1f}{p['wall_s_spread']['median']:>8.1f}"
            f"{p['score']:>7.3f}{p['completion_tokens']:>8.0f}{p['errors']:>7}"
        )
    for name, r in ratios.items():
        s = r["spread"]
        print(
            f"{name:<34} median {r['median']:.2f}x [{s['min']:.2f}, {s['max']:.2f}]  target >= {r['target']}x  "
            f"meets_target {r['meets_target']}"
        )
    if server_info:
        print(
            f"server: up in {server_info['start_s']:.1f} s, first request {server_info['first_request_s']:.1f} s, "
            f"warm-up {server_info['warmup_s']:.1f} s; its CPU use idle {pct(server_info['idle_cpu_share_of_one_core'])} "
            f"of a core, during the embedded runs {', '.join(pct(x) for x in server_info.get('cpu_share_during_embedded_runs', []))}"
        )
    for title, table in [(f"embedded ({embedded_dtype})", raw), (REFERENCE, raw_reference), *raw_lcpp.items()]:
        print(f"\nraw {title} Model.generate, max_tokens from {args.raw_max_tokens}, median of {args.repeats}")
        print(f"{'callers':>8}{'tokens':>8}{'tok/s':>9}{'min':>9}{'q1':>9}{'q3':>9}{'max':>9}")
        for k, r in table.items():
            s = r["tokens_per_s_spread"]
            tokens = statistics.median(x["tokens"] for x in r["runs"])
            print(
                f"{k:>8}{tokens:>8.0f}{s['median']:>9.1f}{s['min']:>9.1f}{s['q1']:>9.1f}{s['q3']:>9.1f}{s['max']:>9.1f}"
            )
    for spec, runs_ in conduct.items():
        w = runs_["wall_s_spread"]
        print(
            f"\nagentmeta conduct {CONDUCT_QUESTION!r} --model {spec}: {w['median']:.1f} s "
            f"[{w['min']:.1f}, {w['max']:.1f}] over {len(runs_['runs'])} fresh processes; last answer: {runs_['answer']!r}"
        )
    print(
        f"threads {result['threads']}   cpus {result['cpus_usable']}   load {load_start[0]:.2f} -> {load_end[0]:.2f}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
