"""Meta Agent Search (ADAS): the archive in the prompt, two reflexion rounds, debug on error.

It writes any agent kind that has a proposal schema (`agentmeta.agents.kinds`): the meta-agent
replies with JSON in the kind's schema (`{thought, name, code}` for code agents; steps for graph
agents; a system message and instruction for prompt agents; a plugin kind's own fields), and the
kind turns the reply into a candidate. Replies are constrained to the schema by the model layer,
so even a small model produces parseable candidates. A graph reply's `demos` steps draw their
examples from the context's train samples (`ProposalContext.train_samples`), never from validation.
"""

from __future__ import annotations

import json
import random
from typing import Any

from agentmeta.agents.base import AgentSpec
from agentmeta.agents.graph import POT_CODE
from agentmeta.agents.kinds import AgentKind, proposal_demos, searchable_kind
from agentmeta.errors import InvalidAgentError
from agentmeta.models.types import Usage
from agentmeta.prompts import render, render_text
from agentmeta.search.meta_prompt import meta_prompts
from agentmeta.search.selection import cost_front
from agentmeta.search.strategy import Proposal, ProposalContext


def reply_to_spec(kind: str, data: dict[str, Any], demos: list[dict[str, str]] | None = None) -> AgentSpec:
    """Turn the meta-agent's JSON reply into an agent spec of `kind` (raises `InvalidAgentError`;
    `ConfigError` if no registered kind of that name can be searched). `demos`: the `{input, answer}`
    examples (train split only) a graph reply's `demos` steps show, in order."""
    with proposal_demos(demos or []):
        return searchable_kind(kind).from_proposal(data)  # type: ignore[misc]


def demo_pool(ctx: ProposalContext) -> list[dict[str, str]]:
    """The context's train samples as `{input, answer}` examples, in a seeded order (per iteration)."""
    pool = [{"input": s.input[:2000], "answer": s.target[:500]} for s in ctx.train_samples if s.input.strip()]
    random.Random(f"demos:{ctx.seed}:{ctx.iteration}").shuffle(pool)
    return pool


_POT_SOURCE = json.dumps(POT_CODE)[1:-1]


def proposal_prompt(kind: AgentKind, **slots: str) -> str:
    """The meta-agent's task prompt for `kind`, its slots (task_description, archive, parent) filled."""
    if kind.proposal_prompt is not None:
        return render_text(kind.proposal_prompt, f"proposal prompt of kind {kind.name}", **slots)
    if kind.proposal_template is not None:
        return render(kind.proposal_template, **slots)
    fields = list((kind.proposal_schema or {}).get("properties", {}))
    return render(
        "meta-agent-kind",
        kind=kind.name,
        description=kind.description,
        fields=", ".join(f'"{f}"' for f in fields) or "the kind's schema asks for",
        **slots,
    )


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
    if c.fitness is None:
        fit = "not evaluated"
    elif c.ci_low is None or c.ci_high is None:
        fit = f"{c.fitness:.2f} (n={c.n})"
    else:
        fit = f"{c.fitness:.2f} (95% CI {c.ci_low:.2f}-{c.ci_high:.2f}, n={c.n})"
    if c.fitness is not None and getattr(c, "fitness_stage", None) == "subset":
        fit += " (subset stage only: not comparable with full-stage scores)"
    text = f"Name: {c.name}\nFitness: {fit}\nIdea: {c.thought[:300]}"
    if with_source:
        source = c.source.replace(_POT_SOURCE, "<program-of-thought calculator>")
        text += f"\nSource:\n{source[:2500]}"
    return text


class MetaAgentSearch:
    """Propose with the archive in view; refine twice by reflexion; repair on error."""

    name = "meta-agent"

    def __init__(
        self, reflexion_rounds: int = 2, temperature: float = 0.8, archive_entries: int = 12,
        system: str | None = None,
    ) -> None:  # fmt: skip
        self.reflexion_rounds = reflexion_rounds
        self.temperature = temperature
        self.archive_entries = archive_entries
        self.system = system

    def select_parents(self, ctx: ProposalContext) -> list[Any]:
        """The best scored candidate, plus one other scored candidate for inspiration (seeded; with
        `objective` `pareto`, one on the score x tokens-per-sample front when there is one)."""
        scored = [c for c in ctx.candidates if c.status == "ok" and c.fitness is not None]
        scored = [
            c for c in scored if c.fitness_stage != "subset"
        ] or scored  # full-stage scores only, while any exist
        if not scored:
            return []
        best = max(scored, key=lambda c: (c.fitness, c.ci_low or 0.0, -ctx.candidates.index(c)))
        rng = random.Random(ctx.seed * 7919 + ctx.iteration)
        others = [c for c in scored if c.id != best.id]
        if ctx.objective == "pareto":
            front = set(cost_front(ctx, [c.id for c in scored]))
            others = [c for c in others if c.id in front] or others
        return [best] + ([rng.choice(others)] if others else [])

    def _archive_text(self, ctx: ProposalContext) -> str:
        entries = [c for c in ctx.candidates if c.status == "ok" and c.fitness is not None]
        entries.sort(key=lambda c: (c.fitness_stage == "subset", -(c.fitness or 0.0)))  # full stage first
        failed = [c for c in ctx.candidates if c.status in ("invalid", "error")][-2:]
        lines = [_describe(c, with_source=False) for c in entries[: self.archive_entries]]
        lines += [f"Name: {c.name}\nFailed: {(c.error or '')[:200]}" for c in failed]
        return "\n\n".join(lines) or "(empty)"

    def _call(self, ctx: ProposalContext, messages: list[dict[str, str]], round_: int, usage: Usage) -> str:
        kind = searchable_kind(ctx.kind)
        resp = ctx.meta_model.generate(
            messages,
            json_schema=kind.proposal_schema,
            max_tokens=kind.proposal_max_tokens,
            temperature=self.temperature,
            seed=ctx.seed * 1_000_003 + ctx.iteration * 101 + round_,
        )
        usage.add(resp)
        return resp.text

    def propose(self, ctx: ProposalContext, parents: list[Any] | None = None) -> Proposal:
        """A new candidate with the archive in view, built on `parents` (default: `select_parents`)."""
        parents = self.select_parents(ctx) if parents is None else parents
        parent_text = "\n\n".join(_describe(p) for p in parents) or "(none yet)"
        user = proposal_prompt(
            searchable_kind(ctx.kind),
            task_description=ctx.task_description,
            archive=self._archive_text(ctx),
            parent=parent_text,
        )
        usage = Usage()
        messages = [
            {"role": "system", "content": self.system if self.system is not None else meta_prompts(ctx, usage, "system").system},
            {"role": "user", "content": user},
        ]
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
        spec = reply_to_spec(ctx.kind, data, demo_pool(ctx))
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
        spec = reply_to_spec(ctx.kind, data, demo_pool(ctx))
        return Proposal(spec=spec, parent_ids=proposal.parent_ids, messages=messages, usage=usage, raw=data)
