"""Prompt agents: one templated call, the unit of prompt evolution."""

from __future__ import annotations

import json
import string
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from agentmeta.agents.answers import extract_answer
from agentmeta.agents.slots import Demo, render_demo
from agentmeta.errors import InvalidAgentError

if TYPE_CHECKING:
    from agentmeta.models import Model


class PromptSpec(BaseModel):
    """A prompt agent as data."""

    system: str = "You are a helpful assistant."
    """The system message."""
    template: str = "{input}\n\nEnd with a line 'Answer: <your answer>'."
    """The user message; must contain {input}."""
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=256, ge=1, le=4096)
    demos: list[Demo] = Field(default_factory=list, max_length=8)
    """Solved examples sent before the template as user/assistant turns (train split only)."""

    def source(self) -> str:
        """The spec as an agent's source (JSON; no `demos` key while it has none)."""
        return self.model_dump_json(indent=2, exclude=None if self.demos else {"demos"})


def parse_prompt_spec(source: str | dict[str, Any]) -> PromptSpec:
    try:
        data = json.loads(source) if isinstance(source, str) else source
        spec = PromptSpec.model_validate(data)
    except (ValueError, ValidationError) as e:
        raise InvalidAgentError(f"prompt spec is not valid: {str(e).splitlines()[0]}") from e
    fields = {f for _, f, _, _ in string.Formatter().parse(spec.template) if f is not None}
    if "input" not in fields:
        raise InvalidAgentError("prompt template must contain {input}")
    if fields - {"input"}:
        raise InvalidAgentError(f"prompt template uses unknown variable(s) {sorted(fields - {'input'})}")
    return spec


class PromptAgent:
    kind = "prompt"

    def __init__(self, spec: PromptSpec, name: str = "prompt-agent") -> None:
        self.spec = spec
        self.name = name
        self.source = spec.source()

    @classmethod
    def from_source(cls, source: str | dict[str, Any], name: str = "prompt-agent") -> PromptAgent:
        return cls(parse_prompt_spec(source), name=name)

    def trace(self, task_input: str, model: Model) -> tuple[str, dict[str, str]]:
        """The answer and the call's whole completion (as `{"template": text}`)."""
        messages = [{"role": "system", "content": self.spec.system}]
        for demo in self.spec.demos:
            messages.append({"role": "user", "content": render_demo(self.spec.template, demo.input)})
            messages.append({"role": "assistant", "content": demo.reply()})
        messages.append({"role": "user", "content": self.spec.template.format(input=task_input)})
        resp = model.generate(messages, temperature=self.spec.temperature, max_tokens=self.spec.max_tokens)
        return extract_answer(resp.text), {"template": resp.text}

    def run(self, task_input: str, model: Model) -> str:
        return self.trace(task_input, model)[0]
