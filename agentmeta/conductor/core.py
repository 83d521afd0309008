"""Meta-prompting: one conductor model splits a task into expert calls and answers.

Protocol (Suzgun & Kalai): the conductor writes `Expert <Name>:` and an instruction in triple
quotes; each expert is a fresh call that sees only that instruction (its persona comes from the
name); `Expert Python` code runs in the sandbox and its output comes back; the conductor is told
when it reaches its last round; the answer follows `>> FINAL ANSWER:` in triple quotes.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, Field

from agentmeta.errors import ConfigError
from agentmeta.models import Model, get_model
from agentmeta.models.types import Usage
from agentmeta.prompts import render

_FINAL = re.compile(r">>\s*FINAL\s+ANSWER\s*:?\s*(?:\"\"\"(.*?)(?:\"\"\"|$)|(.+))", re.S | re.I)
_EXPERT = re.compile(
    r"Expert\s+([A-Za-z][\w .'-]{0,60}?)\s*:\s*\"\"\"(.*?)(?:\"\"\"|(?=\n\s*Expert\s+[A-Za-z][\w .'-]{0,60}?\s*:)|$)",
    re.S,
)
_CODE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)


class Turn(BaseModel):
    """One message of the conductor's conversation."""

    role: Literal["conductor", "expert", "python", "system"]
    name: str = ""
    """Expert name (expert, python) or empty."""
    content: str
    round: int = 0


class ConductorResult(BaseModel):
    answer: str
    """The final answer, or the best available answer if none was given."""
    transcript: list[Turn]
    rounds: int
    usage: Usage = Field(default_factory=Usage)
    finished: bool = True
    """False if the run ended without a `>> FINAL ANSWER:`."""
    note: str = ""


def parse_final(text: str) -> str | None:
    m = _FINAL.search(text)
    if not m:
        return None
    answer = (m.group(1) if m.group(1) is not None else m.group(2) or "").strip()
    return answer or None


def parse_experts(text: str) -> list[tuple[str, str]]:
    """Every `Expert <Name>: \"\"\"...\"\"\"` call in order, tolerating a missing closing quote."""
    calls = []
    for m in _EXPERT.finditer(text):
        name, instruction = m.group(1).strip(), m.group(2).strip()
        if instruction:
            calls.append((name, instruction))
    return calls


class Conductor:
    """A conductor model that calls experts (fresh calls of `expert_model`) until it answers."""

    def __init__(
        self,
        model: str | Model | None = None,
        expert_model: str | Model | None = None,
        max_rounds: int = 15,
        python_expert: bool = True,
        seed: int = 0,
        max_tokens: int = 384,
        expert_max_tokens: int = 384,
        temperature: float = 0.0,
        template: str = "conductor",
        allowed_experts: list[str] | None = None,
        python_timeout_s: float = 20.0,
    ) -> None:
        if max_rounds < 1:
            raise ConfigError(f"max_rounds must be >= 1; got {max_rounds}")
        self.model = get_model(model)
        self.expert_model = self.model if expert_model is None else get_model(expert_model)
        self.max_rounds = max_rounds
        self.python_expert = python_expert
        self.seed = seed
        self.max_tokens = max_tokens
        self.expert_max_tokens = expert_max_tokens
        self.temperature = temperature
        self.template = template
        self.allowed_experts = allowed_experts
        self.python_timeout_s = python_timeout_s

    def system_prompt(self) -> str:
        note = render("conductor-python-note").rstrip("\n") if self.python_expert else ""
        return render(self.template, python_note=note, max_rounds=self.max_rounds)

    # -- experts -------------------------------------------------------------------------
    def _expert(self, name: str, instruction: str, rnd: int, usage: Usage) -> tuple[str, str]:
        if name.lower() == "python" and self.python_expert:
            return "python", self._python(instruction, rnd, usage)
        if self.allowed_experts is not None and name not in self.allowed_experts:
            return (
                "expert",
                f"(Expert {name} is not available; use one of: {', '.join(self.allowed_experts)})",
            )
        messages = [
            {"role": "system", "content": f"You are Expert {name}."},
            {"role": "user", "content": instruction},
        ]
        resp = self.expert_model.generate(
            messages,
            max_tokens=self.expert_max_tokens,
            temperature=self.temperature,
            seed=self.seed * 1009 + rnd,
        )
        usage.add(resp)
        return "expert", resp.text.strip()

    def _python(self, instruction: str, rnd: int, usage: Usage) -> str:
        blocks = _CODE.findall(instruction)
        code = "\n".join(blocks)
        if not code.strip():
            messages = [
                {
                    "role": "system",
                    "content": "You are Expert Python. Reply with one ```python code block that "
                    "prints the result, and nothing else.",
                },
                {"role": "user", "content": instruction},
            ]
            resp = self.expert_model.generate(
                messages, max_tokens=self.expert_max_tokens, temperature=0.0, seed=self.seed * 1009 + rnd
            )
            usage.add(resp)
            found = _CODE.findall(resp.text + ("\n```" if resp.text.count("```") % 2 else ""))
            code = "\n".join(found) if found else resp.text
        from agentmeta.agents.sandbox import run_code

        res = run_code(code, timeout=self.python_timeout_s)
        out = (res.stdout or "").strip()
        if res.ok:
            return f"Code:\n```python\n{code.strip()}\n```\nOutput:\n{out or '(nothing printed)'}"
        return f"Code:\n```python\n{code.strip()}\n```\nOutput:\n{out}\nError ({res.error_kind}): {(res.error or '')[-800:]}"

    # -- the loop ------------------------------------------------------------------------
    def run(self, question: str) -> ConductorResult:
        if not question or not question.strip():
            raise ConfigError("the question is empty: give the conductor a task")
        usage = Usage()
        transcript: list[Turn] = []
        messages = [
            {"role": "system", "content": self.system_prompt()},
            {
                "role": "user",
                "content": f"Question: {question.strip()}\n\nLet's first come up with a "
                "plan, then call the experts.",
            },
        ]
        last_output = ""
        for rnd in range(1, self.max_rounds + 1):
            if rnd == self.max_rounds:
                messages[-1]["content"] += (
                    "\n\nThis is the last round: give your >> FINAL ANSWER: now, in triple quotes."
                )
            resp = self.model.generate(
                messages,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                seed=self.seed * 7919 + rnd,
            )
            usage.add(resp)
            text = resp.text.strip()
            transcript.append(Turn(role="conductor", content=text, round=rnd))
            messages.append({"role": "assistant", "content": text})
            calls = parse_experts(text)
            final = parse_final(text)
            if final is not None and not calls:
                return ConductorResult(answer=final, transcript=transcript, rounds=rnd, usage=usage)
            if not calls:
                if final is not None:
                    return ConductorResult(answer=final, transcript=transcript, rounds=rnd, usage=usage)
                reminder = (
                    "Please call an expert (Expert <Name>: followed by the instruction in triple "
                    "quotes) or give the >> FINAL ANSWER: in triple quotes."
                )
                transcript.append(Turn(role="system", content=reminder, round=rnd))
                messages.append({"role": "user", "content": reminder})
                continue
            replies = []
            for name, instruction in calls:
                role, output = self._expert(name, instruction, rnd, usage)
                transcript.append(Turn(role=role, name=name, content=output, round=rnd))  # type: ignore[arg-type]
                replies.append(f'Expert {name}\'s output:\n"""\n{output}\n"""')
                last_output = output
            if final is not None:  # an answer written after expert calls in the same turn
                return ConductorResult(answer=final, transcript=transcript, rounds=rnd, usage=usage)
            messages.append({"role": "user", "content": "\n\n".join(replies)})
        best = last_output or (transcript[-1].content if transcript else "")
        return ConductorResult(
            answer=best,
            transcript=transcript,
            rounds=self.max_rounds,
            usage=usage,
            finished=False,
            note=f"no final answer after {self.max_rounds} rounds; returned the last "
            f"{'expert output' if last_output else 'conductor message'}",
        )

    async def arun(self, question: str) -> ConductorResult:
        return await asyncio.to_thread(self.run, question)

    def run_batch(self, questions: list[str], concurrency: int = 16) -> list[ConductorResult]:
        """Run many questions at once; their model calls are batched by the model layer."""
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(questions) or 1))) as pool:
            return list(pool.map(self.run, questions))

    # -- workflow conductor (defined in workflow.py) ---------------------------------------
    def plan(self, question: str, workers: list[str]) -> Any:
        from agentmeta.conductor.workflow import plan

        return plan(self, question, workers)

    def run_workflow(self, question: str, workflow: Any, workers: list[str] | None = None) -> Any:
        from agentmeta.conductor.workflow import run_workflow

        return run_workflow(self, question, workflow, workers)
