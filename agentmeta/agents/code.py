"""Code agents: Python source defining `forward(self, taskInfo)`, run in the sandbox.

The source is untrusted. The parent only compiles it (a syntax check, nothing runs) and inspects
its AST; everything else happens in a sandbox worker, whose model calls come back to the parent
over a pipe and go through the model layer (batching, cache). Where no isolation works (neither
bubblewrap nor unshare), running one raises `SandboxUnavailableError` unless the user opted in
(AGENTMETA_UNSAFE_SANDBOX=1); see `agentmeta.sandbox`.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmeta.errors import InvalidAgentError

if TYPE_CHECKING:
    from agentmeta.models import Model
    from agentmeta.sandbox import Sandbox, SandboxResult

ADAS_API = (Path(__file__).with_name("adas_api.py")).read_text()
_ENTRY = "\n\ndef __agentmeta_entry(task_text):\n    return __agentmeta_run(task_text, forward)\n"


def job_preamble(seed: int | None, sample_id: str = "") -> str:
    """The helper API sent before a candidate's code; with a run seed, it first seeds the job's
    agent ids (`LLMAgentBase.id`, which later prompts quote) and its `random` module from a hash
    of (seed, sample id)."""
    if seed is None:
        return ADAS_API
    blob = f"{seed}\x1f{sample_id}\x1fagent-ids".encode()
    job_seed = int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")
    return f"AGENT_ID_SEED = {job_seed}\nimport random as _random\n_random.seed({job_seed})\n" + ADAS_API


def check_code(source: str) -> None:
    """Raise `InvalidAgentError` unless `source` parses and defines `forward(self, taskInfo)`."""
    if not source or not source.strip():
        raise InvalidAgentError("the code is empty: it must define forward(self, taskInfo)")
    try:
        tree = ast.parse(source)
        compile(tree, "<candidate>", "exec")
    except SyntaxError as e:
        raise InvalidAgentError(f"syntax error at line {e.lineno}: {e.msg}") from e
    forwards = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "forward"]
    if not forwards:
        raise InvalidAgentError("the code defines no top-level function forward(self, taskInfo)")
    args = forwards[-1].args
    if len(args.args) != 2:
        raise InvalidAgentError(
            f"forward must take exactly (self, taskInfo), it takes {len(args.args)} argument(s)"
        )


class CodeAgent:
    """An ADAS-style agent. `run(task, model)` executes `forward` in the sandbox."""

    kind = "code"

    def __init__(
        self,
        source: str,
        name: str = "code-agent",
        sandbox: Sandbox | None = None,
        timeout_s: float | None = None,
    ) -> None:
        check_code(source)
        self.source = source
        self.name = name
        self._sandbox = sandbox
        self.timeout_s = timeout_s
        self.last_result: SandboxResult | None = None

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            from agentmeta.sandbox import default_sandbox

            self._sandbox = default_sandbox()
        return self._sandbox

    def run_raw(self, task_input: str, model: Model | Any) -> SandboxResult:
        """Run once and return the sandbox's full result (value, error kind, stdout, calls).

        When `model` carries a run seed (an evaluation's per-sample handle), the job's agent ids
        and its `random` module are seeded from (run seed, sample id), so a seeded run replays
        with the same prompts; otherwise they are drawn at random."""
        from agentmeta.sandbox import llm_from_model

        llm = model if callable(model) and not hasattr(model, "generate") else llm_from_model(model)
        result = self.sandbox.run(
            self.source + _ENTRY,
            entry="__agentmeta_entry",
            args=[task_input],
            llm=llm,
            env_preamble=job_preamble(getattr(model, "seed", None), getattr(model, "sample_id", "")),
            timeout=self.timeout_s,
        )
        self.last_result = result
        return result

    def run(self, task_input: str, model: Model) -> str:
        result = self.run_raw(task_input, model)
        if not result.ok:
            raise AgentRunError(result.error_kind or "error", result.error or "failed")
        return str(result.value)


class AgentRunError(RuntimeError):
    """A sandboxed agent failed on one sample (the sample scores 0 and keeps this reason)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
