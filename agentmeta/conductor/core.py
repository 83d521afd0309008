"""Meta-prompting: one conductor model splits a task into expert calls and answers.

Protocol (Suzgun & Kalai): the conductor writes `Expert <Name>:` and an instruction in triple
quotes; each expert is a fresh call that sees only that instruction (its persona comes from the
name); `Expert Python` code runs in the sandbox and its output comes back; the conductor is told
when it reaches its last round; the answer follows `>> FINAL ANSWER:` in triple quotes.

A conductor turn ends at the closing triple quotes of its expert call or final answer (stop strings;
the quotes are put back), and a run ends at the first of: a final answer, `max_rounds`, `max_seconds`
of wall time, `max_total_tokens`. The defaults fit a first run of the embedded 135M model on a
2-core CPU, where a 192-token conductor turn takes about 15 s (13 new tokens a second, a few times
slower on a busy machine): 192 new tokens hold a short plan and one call, 160 a worked expert
answer; 6 such rounds and the 90 s budget keep the whole command under 2 minutes.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, Field

from agentmeta.errors import ConfigError
from agentmeta.models import Model, get_model
from agentmeta.models.types import GenerateResponse, Usage
from agentmeta.prompts import prompt_line, render

_FINAL = re.compile(r">>\s*FINAL\s+ANSWER\s*:?\s*(?:\"\"\"(.*?)(?:\"\"\"|$)|(.+))", re.S | re.I)
_EXPERT = re.compile(
    r"Expert\s+([A-Za-z][\w .'-]{0,60}?)\s*:\s*\"\"\"(.*?)(?:\"\"\"|(?=\n\s*Expert\s+[A-Za-z][\w .'-]{0,60}?\s*:)|$)",
    re.S,
)
_CODE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)

CONDUCTOR_STOP = ('"""\n\n', '\'s output:\n"""')
"""Where a conductor turn ends. A stop string cannot tell an opening `\"\"\"` from a closing one, so
each is what follows only a closing one: a blank line after it (the end of a call or answer in the
protocol; a small model goes on to invent the expert's reply or the next call there), or the
`Expert <Name>'s output:` header of an invented reply."""
CODE_STOP = ("```\n\n",)
"""Where Expert Python's code-writing call ends: the blank line after the closing code fence. Other
experts answer in free text with no protocol marker to end it, so they get no stop string (one could
cut a real answer); `expert_max_tokens` and the budgets bound them."""
MIN_CALL_TOKENS = 16
"""A call that the time left allows fewer new tokens than this is not started."""
_INVENTED_HEADER = re.compile(r"(\"\"\")\s*\n[ \t]*Expert\s+[A-Za-z][\w .'-]{0,60}$")


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
    """Why an unfinished run ended (rounds, time or token budget) and what it returned."""
    elapsed_s: float = 0.0
    """Wall time of the run, in seconds."""


def parse_final(text: str) -> str | None:
    m = _FINAL.search(text)
    if not m:
        return None
    answer = (m.group(1) if m.group(1) is not None else m.group(2) or "").strip()
    return answer or None


def close_turn(text: str) -> str:
    """A conductor turn cut at a stop string, with the closing quotes the stop string removed put
    back (and the `Expert <Name>` of an invented reply header dropped), so the transcript and the
    conversation the conductor sees next keep the protocol's form."""
    text = _INVENTED_HEADER.sub(r"\1", text.rstrip())
    if text.count('"""') % 2:
        text += '\n"""'
    return text


def parse_experts(text: str) -> list[tuple[str, str]]:
    """Every `Expert <Name>: \"\"\"...\"\"\"` call in order, tolerating a missing closing quote."""
    calls = []
    for m in _EXPERT.finditer(text):
        name, instruction = m.group(1).strip(), m.group(2).strip()
        if instruction:
            calls.append((name, instruction))
    return calls


OnTurn = Callable[[Turn, float], None]
"""A progress callback: each turn as it is added to the transcript, with the seconds since the run
started (`on_turn=` of `Conductor.run`)."""


class _OutOfBudget(Exception):
    """The time or token budget leaves no room for the next call."""


class _Run:
    """One run's clock, usage and budgets (runs of one conductor may go on at once in `run_batch`)."""

    def __init__(
        self, max_seconds: float | None, max_total_tokens: int | None, on_turn: OnTurn | None
    ) -> None:
        self.start = time.monotonic()
        self.max_seconds = max_seconds
        self.max_total_tokens = max_total_tokens
        self.on_turn = on_turn
        self.usage = Usage()
        self.transcript: list[Turn] = []
        self.out_of: str = ""
        """"time" or "tokens" once a budget has run out."""
        self._gen_tokens = 0
        self._gen_seconds = 0.0
        self._last_rate = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def add(self, turn: Turn) -> None:
        self.transcript.append(turn)
        if self.on_turn is not None:
            self.on_turn(turn, self.elapsed())

    def seconds_left(self) -> float | None:
        return None if self.max_seconds is None else self.max_seconds - self.elapsed()

    def tokens_for(self, max_tokens: int) -> int:
        """`max_tokens` for the next call: shrunk to what the time left allows at the speed of this
        run's calls (new tokens per second of call, prompt processing included; the slower of the
        last call and all so far, as the conversation and so each call's prompt grows), so that no
        call runs far past the time budget; raises `_OutOfBudget` when no useful call fits."""
        if self.max_total_tokens is not None and self.usage.total_tokens >= self.max_total_tokens:
            self.out_of = "tokens"
            raise _OutOfBudget
        left = self.seconds_left()
        if left is None:
            return max_tokens
        rate = min(self._gen_tokens / self._gen_seconds, self._last_rate) if self._gen_seconds > 0 else 0.0
        fits = max_tokens if self._gen_seconds <= 0 else int(left * rate)
        if left <= 0 or fits < min(max_tokens, MIN_CALL_TOKENS):
            self.out_of = "time"
            raise _OutOfBudget
        return min(max_tokens, fits)

    def record(self, resp: GenerateResponse) -> None:
        self.usage.add(resp)
        if not resp.cached and resp.latency_s > 0:
            self._gen_tokens += sum(resp.completion_tokens)
            self._gen_seconds += resp.latency_s
            self._last_rate = sum(resp.completion_tokens) / resp.latency_s


class Conductor:
    """A conductor model that calls experts (fresh calls of `expert_model`) until it answers.

    Budgets: `max_rounds` conductor turns; `max_seconds` of wall time per run (None: no limit), after
    which the run returns its best available answer with a note; `max_total_tokens` (prompt and new
    tokens of every call of the run; None: no limit), checked before each call.
    """

    def __init__(
        self,
        model: str | Model | None = None,
        expert_model: str | Model | None = None,
        max_rounds: int = 6,
        python_expert: bool = True,
        seed: int = 0,
        max_tokens: int = 192,
        expert_max_tokens: int = 160,
        temperature: float = 0.0,
        template: str = "conductor",
        allowed_experts: list[str] | None = None,
        python_timeout_s: float = 20.0,
        max_seconds: float | None = 90.0,
        max_total_tokens: int | None = None,
    ) -> None:
        if max_rounds < 1:
            raise ConfigError(f"max_rounds must be >= 1; got {max_rounds}")
        if max_seconds is not None and max_seconds <= 0:
            raise ConfigError(f"max_seconds must be > 0 (None: no time limit); got {max_seconds}")
        if max_total_tokens is not None and max_total_tokens < 1:
            raise ConfigError(f"max_total_tokens must be >= 1 (None: no token limit); got {max_total_tokens}")
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
        self.max_seconds = max_seconds
        self.max_total_tokens = max_total_tokens

    def system_prompt(self) -> str:
        note = render("conductor-python-note").rstrip("\n") if self.python_expert else ""
        return render(self.template, python_note=note, max_rounds=self.max_rounds)

    # -- experts -------------------------------------------------------------------------
    def _expert(self, name: str, instruction: str, rnd: int, run: _Run) -> tuple[str, str]:
        if name.lower() == "python" and self.python_expert:
            return "python", self._python(instruction, rnd, run)
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
            max_tokens=run.tokens_for(self.expert_max_tokens),
            temperature=self.temperature,
            seed=self.seed * 1009 + rnd,
        )
        run.record(resp)
        return "expert", resp.text.strip()

    def _python(self, instruction: str, rnd: int, run: _Run) -> str:
        blocks = _CODE.findall(instruction)
        code = "\n".join(blocks)
        if not code.strip():
            messages = [
                {
                    "role": "system",
                    "content": prompt_line("expert-python-system"),
                },
                {"role": "user", "content": instruction},
            ]
            resp = self.expert_model.generate(
                messages,
                max_tokens=run.tokens_for(self.expert_max_tokens),
                temperature=0.0,
                seed=self.seed * 1009 + rnd,
                stop=list(CODE_STOP),
            )
            run.record(resp)
            found = _CODE.findall(resp.text + ("\n```" if resp.text.count("```") % 2 else ""))
            code = "\n".join(found) if found else resp.text
        from agentmeta.sandbox import run_code

        timeout = self.python_timeout_s
        left = run.seconds_left()
        if left is not None:
            if left <= 0:
                run.out_of = "time"
                raise _OutOfBudget
            timeout = min(timeout, max(1.0, left))
        res = run_code(code, timeout=timeout)
        out = (res.stdout or "").strip()
        if res.ok:
            return f"Code:\n```python\n{code.strip()}\n```\nOutput:\n{out or '(nothing printed)'}"
        return f"Code:\n```python\n{code.strip()}\n```\nOutput:\n{out}\nError ({res.error_kind}): {(res.error or '')[-800:]}"

    # -- the loop ------------------------------------------------------------------------
    def run(self, question: str, on_turn: OnTurn | None = None) -> ConductorResult:
        """Answer `question`. `on_turn(turn, elapsed_s)` is called with each turn as it comes (the
        conductor's message, each expert's answer, a reminder), for live progress."""
        if not question or not question.strip():
            raise ConfigError("the question is empty: give the conductor a task")
        run = _Run(self.max_seconds, self.max_total_tokens, on_turn)
        messages = [
            {"role": "system", "content": self.system_prompt()},
            {
                "role": "user",
                "content": f"Question: {question.strip()}\n\nLet's first come up with a "
                "plan, then call the experts.",
            },
        ]
        rnd = 0
        try:
            for rnd in range(1, self.max_rounds + 1):
                if rnd == self.max_rounds:
                    messages[-1]["content"] += (
                        "\n\nThis is the last round: give your >> FINAL ANSWER: now, in triple quotes."
                    )
                resp = self.model.generate(
                    messages,
                    max_tokens=run.tokens_for(self.max_tokens),
                    temperature=self.temperature,
                    seed=self.seed * 7919 + rnd,
                    stop=list(CONDUCTOR_STOP),
                )
                run.record(resp)
                text = close_turn(resp.text.strip())
                run.add(Turn(role="conductor", content=text, round=rnd))
                messages.append({"role": "assistant", "content": text})
                calls = parse_experts(text)
                final = parse_final(text)
                if final is not None and not calls:
                    return self._result(run, final, rnd)
                if not calls:
                    previous = [t.content for t in run.transcript if t.role == "conductor"][-2:-1]
                    if previous == [text]:  # the reminder changed nothing: it would go on repeating
                        why = f"the conductor repeated its message of round {rnd - 1} word for word"
                        return self._unfinished(run, rnd, why)
                    reminder = (
                        "Please call an expert (Expert <Name>: followed by the instruction in triple "
                        "quotes) or give the >> FINAL ANSWER: in triple quotes."
                    )
                    run.add(Turn(role="system", content=reminder, round=rnd))
                    messages.append({"role": "user", "content": reminder})
                    continue
                replies = []
                for name, instruction in calls:
                    role, output = self._expert(name, instruction, rnd, run)
                    run.add(Turn(role=role, name=name, content=output, round=rnd))  # type: ignore[arg-type]
                    replies.append(f'Expert {name}\'s output:\n"""\n{output}\n"""')
                if final is not None:  # an answer written after expert calls in the same turn
                    return self._result(run, final, rnd)
                messages.append({"role": "user", "content": "\n\n".join(replies)})
        except _OutOfBudget:
            if run.out_of == "time":
                why = f"the time budget of {self.max_seconds:g} s ran out in round {rnd}"
            else:
                why = f"the token budget of {self.max_total_tokens} tokens ran out in round {rnd}"
            done = sum(t.role == "conductor" for t in run.transcript)  # round `rnd` may not have begun
            return self._unfinished(run, done, why)
        return self._unfinished(run, self.max_rounds, f"no final answer after {self.max_rounds} rounds")

    def _result(self, run: _Run, answer: str, rounds: int) -> ConductorResult:
        return ConductorResult(
            answer=answer, transcript=run.transcript, rounds=rounds, usage=run.usage, elapsed_s=run.elapsed()
        )

    def _unfinished(self, run: _Run, rounds: int, why: str) -> ConductorResult:
        """The best available answer: the last expert's output, else the conductor's last message."""
        last_expert = next(
            (t.content for t in reversed(run.transcript) if t.role in ("expert", "python")), ""
        )
        last_conductor = next((t.content for t in reversed(run.transcript) if t.role == "conductor"), "")
        best = last_expert or last_conductor
        what = "expert output" if last_expert else "conductor message" if last_conductor else "nothing"
        return ConductorResult(
            answer=best,
            transcript=run.transcript,
            rounds=rounds,
            usage=run.usage,
            finished=False,
            note=f"{why}; returned the last {what}" if best else f"{why}; there is no answer",
            elapsed_s=run.elapsed(),
        )

    async def arun(self, question: str, on_turn: OnTurn | None = None) -> ConductorResult:
        return await asyncio.to_thread(self.run, question, on_turn)

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
