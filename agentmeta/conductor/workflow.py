"""Workflow conductor: the conductor emits a plan (worker, subtask, access) as constrained JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from agentmeta.agents.answers import extract_answer
from agentmeta.errors import ConfigError
from agentmeta.models import get_model
from agentmeta.models.types import Usage
from agentmeta.prompts import render

if TYPE_CHECKING:
    from agentmeta.conductor.core import Conductor


class Step(BaseModel):
    worker: int = Field(ge=0)
    """Index of the worker model in the workers list."""
    subtask: str
    """What this worker is asked to do."""
    access: list[int] = Field(default_factory=list)
    """Indices of earlier steps whose outputs this worker sees."""


class Workflow(BaseModel):
    steps: list[Step] = Field(min_length=1)


class WorkflowResult(BaseModel):
    answer: str
    outputs: list[str]
    usage: Usage = Field(default_factory=Usage)


def workflow_schema(n_workers: int, max_steps: int = 4) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_steps,
                "items": {
                    "type": "object",
                    "properties": {
                        "worker": {"enum": list(range(n_workers))},
                        "subtask": {"type": "string", "minLength": 1, "maxLength": 400},
                        "access": {
                            "type": "array",
                            "items": {"enum": list(range(max_steps))},
                            "maxItems": max_steps,
                        },
                    },
                    "required": ["worker", "subtask", "access"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["steps"],
        "additionalProperties": False,
    }


def validate_workflow(wf: Workflow, n_workers: int) -> Workflow:
    for i, step in enumerate(wf.steps):
        if step.worker >= n_workers:
            raise ConfigError(f"step {i} names worker {step.worker}; there are {n_workers}")
        # a step may only see earlier steps: drop forward references rather than fail the plan
        step.access = sorted({a for a in step.access if 0 <= a < i})
    return wf


def parse_workflow(text: str | dict[str, Any], n_workers: int) -> Workflow:
    try:
        data = json.loads(text) if isinstance(text, str) else text
        return validate_workflow(Workflow.model_validate(data), n_workers)
    except (ValueError, ValidationError) as e:
        raise ConfigError(f"workflow is not valid: {str(e).splitlines()[0]}") from e


def plan(conductor: Conductor, question: str, workers: list[Any]) -> Workflow:
    if not workers:
        raise ConfigError("plan needs at least one worker model spec")
    if not question.strip():
        raise ConfigError("the question is empty: give the conductor a task")
    listing = "\n".join(f"{i}: {getattr(w, 'spec', w)}" for i, w in enumerate(workers))
    prompt = render("workflow-plan", workers=listing, question=question.strip())
    resp = conductor.model.generate(
        prompt,
        json_schema=workflow_schema(len(workers)),
        max_tokens=400,
        temperature=conductor.temperature,
        seed=conductor.seed,
    )
    return parse_workflow(resp.text, len(workers))


def run_workflow(
    conductor: Conductor, question: str, workflow: Workflow, workers: list[str] | None = None
) -> WorkflowResult:
    specs = workers or [conductor.expert_model]
    validate_workflow(workflow, len(specs))
    models = [get_model(s) for s in specs]
    usage = Usage()
    outputs: list[str] = []
    for i, step in enumerate(workflow.steps):
        context = "".join(f"\n\nOutput of step {a}:\n{outputs[a]}" for a in step.access)
        last = i == len(workflow.steps) - 1
        prompt = f"Overall task: {question}\n\nYour subtask: {step.subtask}{context}" + (
            "\n\nEnd with a line 'Answer: <the final answer>'." if last else ""
        )
        resp = models[step.worker].generate(
            prompt,
            max_tokens=conductor.expert_max_tokens,
            temperature=conductor.temperature,
            seed=conductor.seed + i,
        )
        usage.add(resp)
        outputs.append(resp.text.strip())
    return WorkflowResult(answer=extract_answer(outputs[-1]), outputs=outputs, usage=usage)
