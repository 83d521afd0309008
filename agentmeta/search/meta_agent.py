"""Meta Agent Search (ADAS): the archive in the prompt, two reflexion rounds, debug on error.

The meta-agent replies with JSON (`{thought, name, code}` for code agents; steps for graph
agents; a system message and instruction for prompt agents). Replies are constrained to the
JSON schema by the model layer, so even a small model produces parseable candidates.
"""

from __future__ import annotations

import json
import random
from typing import Any

from agentmeta.agents.base import AgentSpec
from agentmeta.agents.graph import ANSWER_HINT, spec_from_steps
from agentmeta.errors import InvalidAgentError
from agentmeta.models.types import Usage
from agentmeta.prompts import render
from agentmeta.search.strategy import Proposal, ProposalContext

_STR = {"type": "string"}


def _text(max_len: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_len}


SCHEMAS: dict[str, dict[str, Any]] = {
    "code": {
        "type": "object",
        "properties": {"thought": _text(500), "name": _text(60), "code": _text(3000)},
        "required": ["thought", "name", "code"],
        "additionalProperties": False,
    },
    "graph": {
        "type": "object",
        "properties": {
            "thought": _text(150),
            "name": _text(32),
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"enum": ["llm", "sample_vote", "reflect"]},
                        "role": _text(32),
                        "instruction": _text(150),
                    },
                    "required": ["type", "role", "instruction"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["thought", "name", "steps"],
        "additionalProperties": False,
    },
    "prompt": {
        "type": "object",
        "properties": {
            "thought": _text(300),
            "name": _text(60),
            "system": _text(300),
            "instruction": _text(400),
        },
        "required": ["thought", "name", "system", "instruction"],
        "additionalProperties": False,
    },
}
MAX_TOKENS = {"code": 1200, "graph": 300, "prompt": 260}


def reply_to_spec(kind: str, data: dict[str, Any]) -> AgentSpec:
    """Turn the meta-agent's JSON reply into an agent spec (raises `InvalidAgentError`)."""
    name = str(data.get("name") or "unnamed").strip()[:60] or "unnamed"
    thought = str(data.get("thought") or "").strip()
    if kind == "code":
        code = str(data.get("code") or "")
        if not code.strip():
            raise InvalidAgentError("the reply has no code")
        return AgentSpec(kind="code", name=name, thought=thought, source=code)
    if kind == "graph":
        steps = data.get("steps")
        if not isinstance(steps, list) or not steps:
            raise InvalidAgentError("the reply has no steps")
        spec = spec_from_steps(name, thought, steps)
        return AgentSpec(
            kind="graph",
            name=name,
            thought=thought,
            source=spec.model_dump_json(indent=2, exclude_defaults=True),
        )
    if kind == "prompt":
        instruction = str(data.get("instruction") or "").replace("{", "(").replace("}", ")").strip()
        system = str(data.get("system") or "You are a helpful assistant.").strip()
        source = json.dumps(
            {"system": system, "template": "{input}\n\n" + instruction + "\n\n" + ANSWER_HINT}
        )
        return AgentSpec(kind="prompt", name=name, thought=thought, source=source)
    raise InvalidAgentError(f"unknown candidate kind {kind!r}")


def _parse(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise InvalidAgentError("the meta-agent's reply is not JSON") from None
        try:
            data = json.loads(text[start : end + 1])
        except ValueError as e:
            raise InvalidAgentError(f"the meta-agent's reply is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidAgentError("the meta-agent's reply is not a JSON object")
    return data


def _describe(c: Any, with_source: bool = True) -> str:
    fit = (
        "not evaluated"
        if c.fitness is None
        else (f"{c.fitness:.2f} (95% CI {c.ci_low:.2f}-{c.ci_high:.2f}, n={c.n})")
    )
    text = f"Name: {c.name}\nFitness: {fit}\nIdea: {c.thought[:300]}"
    if with_source:
        text += f"\nSource:\n{c.source[:2500]}"
    return text


class MetaAgentSearch:
    """Propose with the archive in view; refine twice by reflexion; repair on error."""

    name = "meta-agent"

    def __init__(
        self, reflexion_rounds: int = 2, temperature: float = 0.8, archive_entries: int = 12
    ) -> None:
        self.reflexion_rounds = reflexion_rounds
        self.temperature = temperature
        self.archive_entries = archive_entries

    def select_parents(self, ctx: ProposalContext) -> list[Any]:
        """The best scored candidate, plus one other scored candidate for inspiration (seeded)."""
        scored = [c for c in ctx.candidates if c.status == "ok" and c.fitness is not None]
        if not scored:
            return []
        best = max(scored, key=lambda c: (c.fitness, c.ci_low or 0.0, -ctx.candidates.index(c)))
        rng = random.Random(ctx.seed * 7919 + ctx.iteration)
        others = [c for c in scored if c.id != best.id]
        return [best] + ([rng.choice(others)] if others else [])

    def _archive_text(self, ctx: ProposalContext) -> str:
        entries = [c for c in ctx.candidates if c.status == "ok" and c.fitness is not None]
        entries.sort(key=lambda c: c.fitness or 0.0, reverse=True)
        failed = [c for c in ctx.candidates if c.status in ("invalid", "error")][-2:]
        lines = [_describe(c, with_source=False) for c in entries[: self.archive_entries]]
        lines += [f"Name: {c.name}\nFailed: {(c.error or '')[:200]}" for c in failed]
        return "\n\n".join(lines) or "(empty)"

    def _call(self, ctx: ProposalContext, messages: list[dict[str, str]], round_: int, usage: Usage) -> str:
        resp = ctx.meta_model.generate(
            messages,
            json_schema=SCHEMAS[ctx.kind],
            max_tokens=MAX_TOKENS[ctx.kind],
            temperature=self.temperature,
            seed=ctx.seed * 1_000_003 + ctx.iteration * 101 + round_,
        )
        usage.add(resp)
        return resp.text

    def propose(self, ctx: ProposalContext) -> Proposal:
        parents = self.select_parents(ctx)
        parent_text = "\n\n".join(_describe(p) for p in parents) or "(none yet)"
        user = render(
            f"meta-agent-{ctx.kind}",
            task_description=ctx.task_description,
            archive=self._archive_text(ctx),
            parent=parent_text,
        )
        messages = [
            {"role": "system", "content": render("meta-agent-system")},
            {"role": "user", "content": user},
        ]
        usage = Usage()
        text = self._call(ctx, messages, 0, usage)
        data = _parse(text)
        messages.append({"role": "assistant", "content": text})
        for r in range(1, self.reflexion_rounds + 1):
            template = "reflexion-1" if r == 1 else "reflexion-2"
            messages.append({"role": "user", "content": render(template, proposal=json.dumps(data))})
            text = self._call(ctx, messages, r, usage)
            messages.append({"role": "assistant", "content": text})
            try:
                data = _parse(text)
            except InvalidAgentError:
                continue  # keep the previous round's proposal
        spec = reply_to_spec(ctx.kind, data)
        return Proposal(
            spec=spec, parent_ids=[p.id for p in parents], messages=messages, usage=usage, raw=data
        )

    def debug(self, ctx: ProposalContext, proposal: Proposal, error: str, attempt: int) -> Proposal | None:
        messages = list(proposal.messages)
        messages.append(
            {
                "role": "user",
                "content": render("debug", error=error[-1500:], proposal=json.dumps(proposal.raw)),
            }
        )
        usage = Usage()
        text = self._call(ctx, messages, 10 + attempt, usage)
        messages.append({"role": "assistant", "content": text})
        data = _parse(text)
        spec = reply_to_spec(ctx.kind, data)
        return Proposal(spec=spec, parent_ids=proposal.parent_ids, messages=messages, usage=usage, raw=data)
