"""Slots: the model calls of an agent that a search may tune without knowing the agent's kind.

A kind that lists its slots (`AgentKind.slots`) and sets them (`AgentKind.set_slot`) can be
searched by the `prompt` strategy (a reflection rewrites a slot's instruction from train-minibatch
feedback) and by `bayes` (TPE over a slot's demonstrations, instruction, role, temperature and
model). A graph's slots are its llm and sample nodes, a prompt agent's its one template; a plugin's
kind declares its own::

    Slot(index=0, name="template", prompt=spec_template, settable=frozenset({"instruction", "prompt"}))

`set_slot(spec, index, changes)` returns a new `AgentSpec`; `changes` holds some of
`SLOT_CHANGES` (only those in the slot's `settable`) and may hold `name` and `thought`, the new
spec's name and thought.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from agentmeta.prompts import prompt_line

ANSWER_LINE = prompt_line("answer-line")
"""The answer-format line an instruction rewrite keeps at the end of a prompt."""

SLOT_CHANGES = ("instruction", "prompt", "role", "temperature", "demos", "model")
"""What `set_slot` may change: the instruction (the kind keeps the task and the answer format
around it), the whole prompt template, the persona, the temperature, the demonstrations
(`{input, answer, verbatim}` dicts sent as chat turns before the prompt) and the model."""


@dataclass(frozen=True)
class Slot:
    """One model call of an agent, as a search sees it."""

    index: int
    """Its position in the kind's own terms (a graph's node index); what `set_slot` takes."""
    name: str
    """How candidates' names and thoughts call it (`node think`, `template`)."""
    prompt: str
    """Its prompt template (`{input}` is the task)."""
    settable: frozenset[str] = field(default_factory=lambda: frozenset(SLOT_CHANGES))
    """Which of `SLOT_CHANGES` `set_slot` accepts for it."""
    role: str = ""
    temperature: float = 0.0
    demos: tuple[dict[str, Any], ...] = ()
    model: str | None = None
    task_only: bool = True
    """Its prompt reads the task alone: a demonstration's user turn is complete, so demonstrations
    can be bootstrapped for it."""
    rewrite: bool = True
    """A reflection may rewrite its instruction (False: e.g. program-of-thought's expression prompt,
    which a calculator reads)."""
    trace_key: str | None = None
    """Where its completion is in the agent's `trace(task_input, model)[1]` (None: the agent has no
    trace; a bootstrapped demonstration then shows the agent's final answer)."""

    def takes(self, change: str) -> bool:
        return change in self.settable


def check_changes(slot: Slot, changes: dict[str, Any]) -> None:
    """`ValueError` if `changes` names something the slot cannot set."""
    bad = [k for k in changes if k not in ("name", "thought") and not slot.takes(k)]
    if bad:
        raise ValueError(f"slot {slot.name!r} cannot set {', '.join(sorted(bad))}")


class Demo(BaseModel):
    """A solved example shown before a call's prompt (a graph node's, a prompt agent's); from a
    suite's train split only."""

    input: str = Field(min_length=1, max_length=4000)
    """The example task."""
    answer: str = Field(max_length=2000)
    """Its reference answer (sent as `Answer: <answer>` unless it already has an `Answer:` line), or
    with `verbatim` the node's own output on it."""
    verbatim: bool = False
    """Send `answer` as the assistant turn exactly as written: a bootstrapped demonstration, i.e. the
    node's own output on a train sample the whole agent solved (e.g. program-of-thought's
    `Expression: 3 + 4`)."""

    def reply(self) -> str:
        """The assistant turn of this example."""
        if self.verbatim or "answer:" in self.answer.lower():
            return self.answer
        return f"Answer: {self.answer}"


class _Blank(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return ""


def render_demo(template: str, demo_input: str) -> str:
    """The user turn of a demonstration: `template` with `{input}` the example's input and every
    other variable empty."""
    return template.format_map(_Blank(input=demo_input))


def template_fields(template: str) -> list[str]:
    """The `{variables}` of a prompt template, in order, without repeats."""
    out: list[str] = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name and name not in out:
            out.append(name)
    return out


def instruction_prompt(old: str, instruction: str) -> str:
    """A graph node's prompt asking `instruction` instead: the task, the outputs `old` showed
    (`{last}`, earlier nodes'), the instruction, `ANSWER_LINE`."""
    fields = template_fields(old)
    refs = [f for f in fields if f not in ("input", "last")]
    return (
        "Task: {input}\n\n"
        + ("Previous step:\n{last}\n\n" if "last" in fields else "")
        + "".join(f"Output of step {f}:\n{{{f}}}\n\n" for f in refs)
        + instruction
        + "\n\n"
        + ANSWER_LINE
    )
