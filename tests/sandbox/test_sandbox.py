"""The sandbox's normal path: values, model calls over the pipe, batching, reuse, run_code."""

from __future__ import annotations

import threading

import pytest

from agentmeta.errors import SandboxError
from agentmeta.models import get_model
from agentmeta.sandbox import Sandbox, SandboxLimits, run_code

LIMITS = SandboxLimits(cpu_seconds=5, memory_mb=512, wall_seconds=10)
ASK = "def forward(question):\n    return llm(question, temperature=0.0)['texts'][0]\n"


@pytest.fixture(scope="module")
def sb():
    box = Sandbox(LIMITS, pool_size=8)
    yield box
    box.close()


def test_returns_value_and_stdout(sb: Sandbox) -> None:
    r = sb.run("def forward(x):\n    print('thinking', x)\n    return {'double': x * 2}\n", "forward", [21])
    assert r.ok and r.value == {"double": 42} and r.stdout == "thinking 21\n" and r.error is None
    bad = sb.run("def forward():\n    return 1 / 0\n", "forward")
    assert not bad.ok and bad.error_kind == "exception" and "ZeroDivisionError" in (bad.error or "")
    missing = sb.run("x = 1\n", "forward")
    assert not missing.ok and "forward" in (missing.error or "")


def test_llm_calls_go_through_the_parent_model(sb: Sandbox) -> None:
    model = get_model("mock", outputs=lambda req: "echo: " + req.messages[-1].content)
    r = sb.run(ASK, "forward", ["what is 2+2?"], llm=model)
    assert r.ok and r.value == "echo: what is 2+2?" and r.llm_calls == 1
    assert model.usage.calls == 1 and model.provider.requests[0].temperature == 0.0


def test_llm_failures_reach_the_code_as_llm_error(sb: Sandbox) -> None:
    def broken(request: dict) -> dict:
        raise RuntimeError("server down")

    src = "def forward():\n    try:\n        llm('hi')\n    except LLMError as e:\n        return str(e)\n"
    r = sb.run(src, "forward", llm=broken)
    assert r.ok and "server down" in r.value
    assert "no model" in sb.run(src, "forward").value
    model = get_model("mock", outputs=["never"])
    bad_field = sb.run(
        "def forward():\n    try:\n        llm('hi', temperature=99)\n    except LLMError as e:\n"
        "        return 'rejected: ' + str(e)\n",
        "forward",
        llm=model,
    )
    assert bad_field.ok and bad_field.value.startswith("rejected:") and model.usage.calls == 0


def test_concurrent_sandboxes_share_one_batching_model(sb: Sandbox) -> None:
    sb.warm(8)
    model = get_model(
        "mock", outputs=lambda req: req.messages[-1].content.upper(), batching=True, delay_s=0.05
    )
    results: dict[int, object] = {}

    def one(i: int) -> None:
        results[i] = sb.run(ASK, "forward", [f"q{i}"], llm=model)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i].ok and results[i].value == f"Q{i}" for i in range(8)), results
    assert model.usage.calls == 8
    assert model.backend_calls < 8  # the calls of different sandboxes were batched together


def test_threads_inside_one_job_batch_too(sb: Sandbox) -> None:
    model = get_model("mock", outputs=lambda req: "a", batching=True, delay_s=0.05)
    src = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "def forward(n):\n    with ThreadPoolExecutor(n) as ex:\n"
        "        return [r['texts'][0] for r in ex.map(lambda i: llm(f'q{i}'), range(n))]\n"
    )
    r = sb.run(src, "forward", [5], llm=model)
    assert r.ok and r.value == ["a"] * 5 and r.llm_calls == 5 and model.backend_calls < 5


def test_preamble_defines_helpers(sb: Sandbox) -> None:
    preamble = "def ask(q):\n    return llm(q)['texts'][0].strip()\n"
    model = get_model("mock", outputs=["  42  "])
    r = sb.run(
        "def forward(q):\n    return int(ask(q))\n", "forward", ["?"], llm=model, env_preamble=preamble
    )
    assert r.ok and r.value == 42


def test_workers_are_reused_with_fresh_globals_unless_told_otherwise() -> None:
    pid_src = (
        "import os\nSEEN = globals().get('SEEN', 0) + 1\ndef forward():\n    return [os.getpid(), SEEN]\n"
    )
    with Sandbox(LIMITS, pool_size=1) as box:
        a, b = box.run(pid_src, "forward"), box.run(pid_src, "forward")
        assert a.value[0] == b.value[0] and a.value[1] == b.value[1] == 1
        # A job that leaves a thread running gets its worker replaced.
        box.run(
            "import threading, time\ndef forward():\n    threading.Thread(target=time.sleep, args=(30,),"
            " daemon=True).start()\n",
            "forward",
        )
        c = box.run(pid_src, "forward")
        assert c.ok and box.workers_started == 2
    with Sandbox(LIMITS, pool_size=1, reuse=False) as fresh:
        x, y = fresh.run(pid_src, "forward"), fresh.run(pid_src, "forward")
        assert x.ok and y.ok and fresh.workers_started == 2


def test_run_code_captures_output_and_exit_status(sb: Sandbox) -> None:
    r = sb.run_code(
        "import sys\nname = input()\nprint('hello', name)\nprint('warn', file=sys.stderr)\n", stdin="world\n"
    )
    assert r.ok and r.stdout == "hello world\n" and r.stderr == "warn\n" and r.exit_code == 0
    humaneval = "def add(a, b):\n    return a - b\n\ndef check(f):\n    assert f(2, 3) == 5\n\ncheck(add)\n"
    failed = sb.run_code(humaneval)
    assert not failed.ok and failed.error_kind == "exception" and "AssertionError" in (failed.error or "")
    assert sb.run_code("import sys\nsys.exit(0)").ok
    assert sb.run_code("import sys\nsys.exit(2)").exit_code == 2
    assert run_code("print(sum(range(10)))", sandbox=sb).stdout == "45\n"


def test_arguments_must_be_json(sb: Sandbox) -> None:
    with pytest.raises(SandboxError, match="JSON"):
        sb.run(ASK, "forward", [object()])


def test_use_bwrap_true_fails_clearly_when_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import agentmeta.sandbox as sandbox_mod

    monkeypatch.setattr(sandbox_mod, "bwrap_works", lambda root=None: False)
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        Sandbox(use_bwrap=True)


def test_model_calls_per_job_are_capped() -> None:
    model = get_model("mock", outputs=lambda req: "x")
    src = (
        "def forward():\n    ok = 0\n    for _ in range(10):\n        try:\n            llm('q')\n"
        "            ok += 1\n        except LLMError:\n            pass\n    return ok\n"
    )
    with Sandbox(SandboxLimits(max_llm_calls=3), pool_size=1) as box:
        r = box.run(src, "forward", llm=model)
    assert r.ok and r.value == 3 and model.usage.calls == 3


@pytest.mark.parametrize("mode", ["bwrap", "unshare"])
def test_idle_workers_outlive_the_thread_that_needed_them(mode: str) -> None:
    """A worker started for a job on a short-lived thread (an evaluation's thread pool) must not
    die with that thread: the next job on the warm worker would fail as a crash."""
    from agentmeta.sandbox import available_isolation, unshare_works

    if mode == "bwrap" and available_isolation() != "bwrap":
        pytest.skip("bubblewrap is not installed here (CI installs it)")
    if mode == "unshare" and not unshare_works():
        pytest.skip("unshare cannot create namespaces here")
    flags = {"use_bwrap": True} if mode == "bwrap" else {"use_bwrap": False, "use_unshare": True}
    with Sandbox(SandboxLimits(), pool_size=1, **flags) as box:
        first: list = []
        t = threading.Thread(target=lambda: first.append(box.run("def f(x):\n    return x + 1\n", "f", [1])))
        t.start()
        t.join()
        assert first[0].ok and box.workers_started == 1
        import time

        time.sleep(0.3)  # the parent-death signal, if any, has arrived by now
        again = box.run("def f(x):\n    return x * 2\n", "f", [4])
        assert again.ok and again.value == 8, again.error
        assert box.workers_started == 1  # the same warm worker ran it


# -- whose failure: the job's own time, stalled models, workers killed from outside ----------------

SLOW_CHAIN = (
    "def forward(n):\n    out = []\n    for i in range(n):\n"
    "        out.append(llm(f'step {i}')['texts'][0])\n    return out\n"
)


def _slow(delay: float):
    import time

    def call(request: dict) -> dict:
        time.sleep(delay)
        return {"texts": ["ok"], "prompt_tokens": 1, "completion_tokens": 1}

    return call


def test_time_waiting_on_the_model_does_not_count_against_the_wall_clock() -> None:
    """Three 0.8 s model calls take 2.4 s, past a 1.5 s wall clock: the job's own time is tiny, so
    it finishes (on the old single wait over the whole job it was a timeout, scored as the agent's 0)."""
    with Sandbox(SandboxLimits(cpu_seconds=5, memory_mb=512, wall_seconds=1.5), pool_size=1) as box:
        r = box.run(SLOW_CHAIN, "forward", [3], llm=_slow(0.8))
        assert r.ok, r.error
        assert r.value == ["ok", "ok", "ok"] and r.wall_s > 2.0
        busy = box.run("def forward():\n    while True:\n        pass\n", "forward")  # its own time
        assert (
            not busy.ok and busy.error_kind == "timeout" and "wall-clock limit of 1.5 s" in (busy.error or "")
        )


def test_a_stalled_model_is_an_infrastructure_error_not_the_agents_zero() -> None:
    from agentmeta.errors import InfrastructureError, ModelStallError

    limits = SandboxLimits(cpu_seconds=5, memory_mb=512, wall_seconds=1.0, model_call_seconds=1.0)
    with Sandbox(limits, pool_size=1) as box:
        with pytest.raises(ModelStallError, match="model_call_seconds=1 s"):
            box.run(SLOW_CHAIN, "forward", [1], llm=_slow(2.5))
        assert issubclass(ModelStallError, InfrastructureError)
        assert box.run(SLOW_CHAIN, "forward", [1], llm=_slow(0.0)).ok  # the sandbox goes on


def _kill_worker_when_started(box: Sandbox, sig: int) -> threading.Thread:
    """Kill the (only) worker's processes from outside once its job waits on a model call."""
    import contextlib
    import os
    import time

    from agentmeta.sandbox.launch import _descendants

    def killer() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            busy = [w for w in list(box.busy) if w._job is not None and w._job.pending]
            if busy:
                for pid in [busy[0].proc.pid, *_descendants(busy[0].proc.pid)]:
                    with contextlib.suppress(OSError):
                        os.kill(pid, sig)
                return
            time.sleep(0.02)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    return t


def test_a_worker_killed_from_outside_is_an_infrastructure_error() -> None:
    """An operator's or the OOM killer's SIGKILL is not the job's failure: `WorkerKilledError`."""
    import signal

    from agentmeta.errors import WorkerKilledError

    with Sandbox(LIMITS, pool_size=1) as box:
        killer = _kill_worker_when_started(box, signal.SIGKILL)
        with pytest.raises(WorkerKilledError, match="killed from outside the job by SIGKILL"):
            box.run(SLOW_CHAIN, "forward", [1], llm=_slow(3.0))
        killer.join()
        assert box.run(SLOW_CHAIN, "forward", [1], llm=_slow(0.0)).ok


def test_a_job_that_kills_its_own_worker_is_still_the_jobs_crash(sb: Sandbox) -> None:
    src = "import os, signal\ndef forward():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    r = sb.run(src, "forward")
    assert not r.ok and r.error_kind == "crash" and "after the job called os.kill" in (r.error or "")


def test_common_imports_do_not_cost_the_worker() -> None:
    """Jobs importing modules that rebind names when imported again (dataclasses, inspect,
    time.strptime, a package's submodule) pass the integrity check: the worker is kept."""
    jobs = [
        "import dataclasses, inspect, asyncio\ndef forward():\n    return 1\n",
        "import time\ndef forward():\n    return time.strptime('2024', '%Y').tm_year\n",
        "import json.tool\ndef forward():\n    return 3\n",
    ] * 2
    with Sandbox(LIMITS, pool_size=1) as box:
        assert [box.run(src, "forward").value for src in jobs] == [1, 2024, 3] * 2
        assert box.workers_started == 1
