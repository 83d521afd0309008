"""Safe by default: without bubblewrap the sandbox still isolates (unshare), and where nothing can
isolate, generated code refuses to run unless the user opts in.

Real worker processes throughout; only the probes are replaced, to play a machine where isolation
is impossible.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
from pathlib import Path

import pytest

import agentmeta.sandbox as sandbox_mod
from agentmeta.agents import CodeAgent
from agentmeta.agents.graph import GraphAgent
from agentmeta.errors import ConfigError, InfrastructureError, SandboxError
from agentmeta.models import get_model
from agentmeta.sandbox import (
    UNSAFE_ENV,
    Sandbox,
    SandboxLimits,
    SandboxUnavailableError,
    available_isolation,
    unshare_works,
)

LIMITS = SandboxLimits(cpu_seconds=5, memory_mb=512, wall_seconds=15, tmp_mb=8)
REPO = Path(__file__).resolve().parents[2]

# An ADAS code candidate that tries to reach the host: a TCP server on 127.0.0.1, a file left in
# the host's /tmp, files the test wrote in its temp dir and in the working tree, the home folder.
# It reports what worked as JSON (its final answer).
INTRUDER = """
def forward(self, taskInfo):
    import json, os, socket
    plan = json.loads(taskInfo.content if hasattr(taskInfo, "content") else taskInfo)
    got = {"connected": [], "read": [], "seen": []}
    try:
        socket.create_connection(("127.0.0.1", plan["port"]), timeout=2).close()
        got["connected"].append("127.0.0.1")
    except OSError as e:
        got["connect_error"] = str(e)
    with open(plan["drop"], "w") as f:  # its own /tmp: allowed, and gone with the sandbox
        f.write("pwned")
    for p in plan["secrets"]:
        try:
            got["read"].append(open(p).read())
        except OSError:
            pass
    for d in plan["dirs"]:
        if os.path.exists(d):
            got["seen"].append(d)
    home = plan["home"]
    try:
        got["home"] = sorted(os.listdir(home))
    except OSError:
        got["home"] = None
    with open(plan["scratch"], "w") as f:  # the sandbox's private /tmp works
        f.write("fine")
    got["scratch"] = open(plan["scratch"]).read()
    return json.dumps(got)
"""

TOOL_GRAPH = {
    "name": "tool-user",
    "nodes": [
        {
            "id": "tool",
            "type": "python",
            "code": "def tool(input, last):\n    return 'Answer: ' + input[::-1]\n",
        }
    ],
}


def needs_unshare() -> None:
    if not unshare_works():
        pytest.skip("unshare cannot create the sandbox's namespaces here (kernel or container policy)")


@pytest.fixture()
def no_isolation(monkeypatch: pytest.MonkeyPatch):
    """Play a machine where neither bubblewrap nor unshare can isolate; a fresh default sandbox."""
    monkeypatch.setattr(sandbox_mod, "bwrap_works", lambda root=None: False)
    monkeypatch.setattr(sandbox_mod, "unshare_works", lambda root=None: False)
    monkeypatch.delenv(UNSAFE_ENV, raising=False)
    monkeypatch.setattr(sandbox_mod, "_default", None)
    yield monkeypatch
    if sandbox_mod._default is not None:
        sandbox_mod._default.close()


def test_the_fallback_without_bubblewrap_isolates_a_code_candidate(tmp_path: Path) -> None:
    needs_unshare()
    secret = f"agentmeta-secret-{random.randrange(10**12)}"
    in_tmp = tmp_path / "answers.json"  # world-readable, in a world-readable folder
    in_tmp.write_text(secret)
    tmp_path.chmod(0o755)
    in_tree = REPO / f".sandbox-test-{random.randrange(10**12)}.txt"
    in_tree.write_text(secret)
    in_tree.chmod(0o644)
    drop = f"/tmp/agentmeta-pwned-{random.randrange(10**12)}.txt"
    scratch = f"/tmp/agentmeta-scratch-{random.randrange(10**12)}.txt"
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    plan = {
        "port": server.getsockname()[1],
        "drop": drop,
        "scratch": scratch,
        "secrets": [str(in_tmp), str(in_tree), str(REPO / "pyproject.toml")],
        "dirs": [str(tmp_path), str(REPO)],
        "home": os.path.expanduser("~"),
    }
    try:
        with Sandbox(LIMITS, use_bwrap=False, pool_size=1) as box:
            assert box.isolation == "unshare"
            agent = CodeAgent(INTRUDER, sandbox=box)
            answer = agent.run(json.dumps(plan), get_model("mock", outputs=["unused"]))
        with pytest.raises(TimeoutError):
            server.accept()  # nothing ever reached the server
    finally:
        server.close()
        in_tree.unlink()
    got = json.loads(answer)
    assert got["connected"] == [] and got["read"] == [], got
    assert got["seen"] == [], got  # the test's temp dir and the working tree do not exist there
    # Home holds at most the path down to the bound Python install (e.g. ~/.pyenv), nothing else.
    prefix = Path(os.path.realpath(sys.base_prefix))
    on_path = {p.name for p in [prefix, *prefix.parents]}
    assert got["home"] is None or set(got["home"]) <= on_path, got
    assert got["scratch"] == "fine"
    assert not os.path.exists(drop) and not os.path.exists(scratch)  # the host's /tmp got nothing


def test_the_fallback_keeps_limits_model_calls_and_run_code() -> None:
    needs_unshare()
    model = get_model("mock", outputs=lambda req: "echo: " + req.messages[-1].content)
    with Sandbox(SandboxLimits(cpu_seconds=1, wall_seconds=10), use_bwrap=False, pool_size=1) as box:
        assert box.isolation == "unshare"
        r = box.run("def forward(q):\n    return llm(q)['texts'][0]\n", "forward", ["hi"], llm=model)
        assert r.ok and r.value == "echo: hi" and r.llm_calls == 1
        spin = box.run("def forward():\n    while True:\n        pass\n", "forward")
        assert not spin.ok and spin.error_kind == "timeout" and "CPU" in (spin.error or ""), spin
        sleep = box.run("import time\ndef forward():\n    time.sleep(60)\n", "forward", timeout=1)
        assert not sleep.ok and sleep.error_kind == "timeout" and "wall-clock" in (sleep.error or "")
        flood = box.run("def forward():\n    while True:\n        print('x' * 1000)\n", "forward")
        assert not flood.ok and flood.error_kind == "output"
        ok = box.run_code("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('passed')\n")
        assert ok.ok and ok.stdout == "passed\n"
        bad = box.run_code("def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5\n")
        assert not bad.ok and bad.error_kind == "exception" and "AssertionError" in (bad.error or "")


def test_humaneval_scoring_runs_in_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    needs_unshare()
    from agentmeta.eval import scorers
    from agentmeta.eval.scorers import build_scorer
    from agentmeta.eval.types import Sample, ScorerSpec

    monkeypatch.setattr(sandbox_mod, "bwrap_works", lambda root=None: False)
    monkeypatch.setattr(scorers, "_code_sandboxes", {})
    sample = Sample(
        id="h",
        input="complete add",
        target="def check(candidate):\n    assert candidate(2, 3) == 5\n",
        metadata={"entry_point": "add", "prompt": "def add(a, b):\n    '''Add.'''\n"},
    )
    code = build_scorer(ScorerSpec(name="code", args={"timeout_s": 5}))
    assert code("```python\ndef add(a, b):\n    return a + b\n```", sample).value == 1.0
    assert code("```python\ndef add(a, b):\n    return a - b\n```", sample).value == 0.0
    (box,) = scorers._code_sandboxes.values()
    assert box.isolation == "unshare"
    box.close()


def test_without_isolation_code_refuses_to_run_with_one_line(no_isolation: pytest.MonkeyPatch) -> None:
    assert available_isolation() == "none"
    with pytest.raises(SandboxUnavailableError) as info:
        Sandbox(LIMITS)
    message = str(info.value)
    assert "\n" not in message
    assert "apt-get install bubblewrap" in message and f"{UNSAFE_ENV}=1" in message
    assert "allow_unsafe=True" in message
    # a setup problem, not a flaky machine: not retried, not an agent's 0; the evaluation stops
    assert isinstance(info.value, ConfigError) and not isinstance(info.value, InfrastructureError)
    # Code candidates and graph python nodes, which use the default sandbox, refuse the same way.
    model = get_model("mock", outputs=["Answer: 1"])
    agent = CodeAgent("def forward(self, taskInfo):\n    return 'Answer: 1'\n")
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        agent.run("q", model)
    with pytest.raises(SandboxUnavailableError, match=UNSAFE_ENV):
        GraphAgent.from_source(TOOL_GRAPH).run("abc", model)
    from agentmeta.eval import Sample, Suite, evaluate

    suite = Suite(name="s", samples=[Sample(id=f"x{i}", input="q", target="1") for i in range(3)])
    with pytest.raises(SandboxUnavailableError):
        evaluate(agent, suite, model=model)
    # Asking for a mode that does not work is an error too, never a silent downgrade.
    with pytest.raises(SandboxError, match="use_unshare=True"):
        Sandbox(LIMITS, use_unshare=True)
    # allow_unsafe=False wins over the environment.
    no_isolation.setenv(UNSAFE_ENV, "1")
    with pytest.raises(SandboxUnavailableError):
        Sandbox(LIMITS, allow_unsafe=False)


def test_without_isolation_an_explicit_opt_in_runs_unisolated(no_isolation: pytest.MonkeyPatch) -> None:
    with Sandbox(LIMITS, allow_unsafe=True, pool_size=1) as box:
        assert box.isolation == "none" and not box.use_bwrap
        r = box.run("def forward(a):\n    return a * 2\n", "forward", [21])
        assert r.ok and r.value == 42
    no_isolation.setenv(UNSAFE_ENV, "1")
    model = get_model("mock", outputs=["unused"])
    agent = CodeAgent("def forward(self, taskInfo):\n    return 'Answer: 7'\n")
    assert agent.run("q", model) == "Answer: 7" and agent.sandbox.isolation == "none"
    assert GraphAgent.from_source(TOOL_GRAPH).run("abc", model) == "cba"


def test_use_unshare_false_skips_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_mod, "bwrap_works", lambda root=None: False)
    monkeypatch.delenv(UNSAFE_ENV, raising=False)
    with pytest.raises(SandboxUnavailableError):
        Sandbox(LIMITS, use_unshare=False)
    with pytest.raises(SandboxError, match="choose one"):
        Sandbox(LIMITS, use_bwrap=True, use_unshare=True)
