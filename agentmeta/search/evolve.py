"""Open-ended archive evolution of graph agents (the `evolve` strategy), after the Darwin Gödel Machine.

Each iteration draws a parent from the campaign's archive with probability proportional to

    sigmoid(k * (score - midpoint)) * 1 / (1 + children)

(DGM's `score_child_prop`: k = 10, midpoint = 0.5), where `score` is the candidate's full-stage
validation score — subset scores are used only while no valid candidate has a full-stage one —
and `children` counts the campaign's candidates that name it as a parent: good agents are
explored more, agents already explored a lot less (with `--objective pareto`, only candidates on
the score x tokens-per-sample front are drawn). The child comes from a mutation operator of
`agentmeta.search.operators` (no model needed) or `bootstrap_demos` (a node shown its own outputs
on train samples the parent solved, `agentmeta.search.bootstrap`), from a crossover with a second parent drawn the
same way (`crossover_rate`), or, for a fraction `llm_rate` of children, from the meta-agent's
graph proposal with the parent in view (`MetaAgentSearch`; a reply that fails falls back to the
operators). A child whose canonical spec is already in the campaign (`operators.canonical`) is
rejected before any evaluation and another is made; after `max_tries` the iteration gives up with
`NoNewCandidateError`. Every draw comes from `random.Random` seeded by the campaign's seed and the
iteration, so the same seed gives the same proposals. The operators that made a child are in its
`thought` and in `Proposal.raw["operators"]`.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from agentmeta.agents.graph import GraphSpec, parse_spec
from agentmeta.errors import InvalidAgentError
from agentmeta.models.types import Usage
from agentmeta.search.adaptive import learn_bandits
from agentmeta.search.bootstrap import BOOTSTRAP, REPROMPT, bootstrap_demos, bootstrap_targets, demo_operator
from agentmeta.search.meta_agent import MetaAgentSearch
from agentmeta.search.operators import (
    NotApplicable,
    OperatorContext,
    apply,
    canonical,
    operator_names,
)
from agentmeta.search.programs import graph_of as graph_of  # re-exported: strategies import it from here
from agentmeta.search.programs import graph_spec
from agentmeta.search.selection import cost_front
from agentmeta.search.strategy import NoNewCandidateError, Proposal, ProposalContext

LLM_REWRITE = "llm_rewrite"
"""The operator name of a child written by the meta-agent."""


@dataclass(frozen=True)
class Parent:
    """A graph a child can be made from: an archived candidate, or a seed not in the archive."""

    spec: GraphSpec
    id: str | None
    name: str
    candidate: Any = None


def sigmoid(x: float) -> float:
    x = max(-60.0, min(60.0, x))
    return 1.0 / (1.0 + math.exp(-x))


def mutations(ctx: ProposalContext) -> list[str]:
    """The mutation operators a child can be made by: the registered ones (`operators.register_operator`,
    plugins' included), plus `bootstrap_demos` (`agentmeta.search.bootstrap`) when the campaign can
    run candidates on train samples, plus the model operators when it names other models, plus the
    adaptive-compute operators (`agentmeta.search.adaptive`) when it has `adaptive` on."""
    demo_op = demo_operator(ctx)
    extra = [demo_op] if demo_op else []
    models = operator_names("model") if getattr(ctx, "models", None) else []
    adaptive = operator_names("adaptive") if getattr(ctx, "adaptive", False) else []
    return operator_names("mutation") + extra + models + adaptive


def eligible_parents(candidates: Sequence[Any]) -> list[Any]:
    """Valid candidates (status ok) with a full-stage score; those with any score if none has one."""
    valid = [c for c in candidates if c.status == "ok" and c.fitness is not None]
    full = [c for c in valid if c.fitness_stage == "full"]
    return full or valid


def children_counts(candidates: Sequence[Any]) -> Counter[str]:
    """How many candidates name each id as a parent."""
    return Counter(p for c in candidates for p in set(c.parent_ids))


def parent_weights(candidates: Sequence[Any], k: float = 10.0, midpoint: float = 0.5) -> dict[str, float]:
    """Selection weight of each eligible parent: sigmoid(k * (score - midpoint)) / (1 + children),
    children counted over all of `candidates` (not normalized)."""
    children = children_counts(candidates)
    return {
        c.id: sigmoid(k * (float(c.fitness) - midpoint)) / (1 + children[c.id])
        for c in eligible_parents(candidates)
    }


def seen_keys(candidates: Sequence[Any]) -> set[str]:
    """Canonical keys of every graph in `candidates` (valid or not: none is worth proposing again)."""
    return {canonical(g) for g in (graph_of(c) for c in candidates) if g is not None}


def _seed_parents(kind: str) -> list[Parent]:
    from agentmeta.agents.loader import seed_agents

    return [Parent(parse_spec(s.source), None, s.name) for s in seed_agents(kind)]


class OperatorSearch:
    """Children by the operator library; subclasses choose the parents and the operator."""

    name = "operators"

    def __init__(self, max_tries: int = 25, max_nodes: int = 8) -> None:
        self.max_tries = max_tries
        self.max_nodes = max_nodes

    # -- what subclasses define ---------------------------------------------------------------
    def parents(self, ctx: ProposalContext) -> list[Parent]:
        raise NotImplementedError

    def choose(
        self, pool: list[Parent], ctx: ProposalContext, rng: random.Random
    ) -> tuple[str, Parent, Parent | None]:
        """(operator name, parent, second parent for a crossover or None)."""
        raise NotImplementedError

    # -- the loop -------------------------------------------------------------------------------
    def _rng(self, ctx: ProposalContext, salt: str = "") -> random.Random:
        return random.Random(f"{self.name}:{ctx.seed}:{ctx.iteration}{salt}")

    def propose(self, ctx: ProposalContext) -> Proposal:
        return self._breed(ctx, self._rng(ctx), exclude=set(), allow_llm=True)

    def _pool(self, ctx: ProposalContext) -> list[Parent]:
        return self.parents(ctx) or _seed_parents(ctx.kind)

    def _rewrite(
        self, ctx: ProposalContext, pool: list[Parent], rng: random.Random, seen: set[str], usage: Usage
    ) -> Proposal | None:
        """A child by the meta-agent (subclasses that use one); None to fall back to the operators."""
        return None

    def _breed(
        self, ctx: ProposalContext, rng: random.Random, exclude: set[str], allow_llm: bool
    ) -> Proposal:
        pool = self._pool(ctx)
        seen = seen_keys(ctx.candidates) | exclude
        usage = Usage()
        if allow_llm:
            found = self._rewrite(ctx, pool, rng, seen, usage)
            if found is not None:
                return found
        base = OperatorContext(
            train_samples=tuple(ctx.train_samples),
            max_nodes=self.max_nodes,
            models=tuple(ctx.models),
            task_model=ctx.task_model,
        )
        duplicates = not_applicable = 0
        for attempt in range(1, self.max_tries + 1):
            op, parent, partner = self.choose(pool, ctx, rng)
            extra: dict[str, Any] = {}
            try:
                if op in (BOOTSTRAP, REPROMPT):
                    targets = bootstrap_targets(parent.spec)
                    if not targets:
                        raise NotApplicable("no node can show bootstrapped demonstrations")
                    child, extra = bootstrap_demos(ctx, parent.spec, rng.choice(targets), rng)
                else:
                    child = apply(
                        op, parent.spec, rng, replace(base, partner=partner.spec if partner else None)
                    )
            except NotApplicable:
                not_applicable += 1
                continue
            if canonical(child) in seen:
                duplicates += 1
                continue
            child, learned = learn_bandits(ctx, child, rng)  # only for a child that is new
            extra.update(learned)
            raw = {"attempts": attempt, "duplicates": duplicates, "not_applicable": not_applicable, **extra}
            return self._proposal(ctx, child, [op], parent, partner, usage, raw)
        raise NoNewCandidateError(
            f"{self.name}: no new graph after {self.max_tries} tries ({duplicates} children duplicated a "
            f"graph the campaign already has, {not_applicable} times the operator did not apply); the "
            "operators may have exhausted these parents"
        )

    def _proposal(
        self,
        ctx: ProposalContext,
        child: GraphSpec,
        ops: list[str],
        parent: Parent,
        partner: Parent | None,
        usage: Usage,
        raw: dict[str, Any],
    ) -> Proposal:
        parents = [parent] + ([partner] if partner is not None else [])
        made = " + ".join(ops)
        thought = f"{self.name}: {made} applied to {parent.name}" + (f" [{parent.id}]" if parent.id else "")
        if partner is not None:
            thought += f", crossed with {partner.name}" + (f" [{partner.id}]" if partner.id else "")
        name = f"{'+'.join(ops)} of {parent.name}"[:60]
        child = child.model_copy(update={"name": name, "thought": thought + "."})
        spec = graph_spec(child, ctx.kind)
        return Proposal(
            spec=spec,
            parent_ids=[p.id for p in parents if p.id],
            usage=usage,
            raw={"strategy": self.name, "operators": ops, "parents": [p.id for p in parents], **raw},
        )

    def debug(self, ctx: ProposalContext, proposal: Proposal, error: str, attempt: int) -> Proposal | None:
        """Another child (a fresh seeded draw that never repeats the one that failed)."""
        failed: set[str] = set()
        with contextlib.suppress(InvalidAgentError):
            failed.add(canonical(parse_spec(proposal.spec.source)))
        try:
            return self._breed(ctx, self._rng(ctx, f":debug{attempt}"), exclude=failed, allow_llm=False)
        except NoNewCandidateError:
            return None


class EvolveSearch(OperatorSearch):
    """Open-ended archive evolution (DGM-style parent selection, operator mutations, crossover,
    optional meta-agent rewrites)."""

    name = "evolve"

    def __init__(
        self,
        *,
        k: float = 10.0,
        midpoint: float = 0.5,
        crossover_rate: float = 0.2,
        llm_rate: float = 0.2,
        reflexion_rounds: int = 0,
        max_tries: int = 25,
        max_nodes: int = 8,
    ) -> None:
        super().__init__(max_tries=max_tries, max_nodes=max_nodes)
        self.k = k
        self.midpoint = midpoint
        self.crossover_rate = crossover_rate
        self.llm_rate = llm_rate
        self.meta = MetaAgentSearch(reflexion_rounds=reflexion_rounds)

    def weights(self, ctx: ProposalContext) -> dict[str, float]:
        """Selection weights of the campaign's eligible graph candidates (see `parent_weights`); with
        `objective` `pareto`, only those on the score x tokens-per-sample front keep their weight."""
        weights = parent_weights(ctx.candidates, self.k, self.midpoint)
        if ctx.objective == "pareto" and weights:
            front = set(cost_front(ctx, list(weights)))
            if front:
                weights = {c: w for c, w in weights.items() if c in front}
        return weights

    def parents(self, ctx: ProposalContext) -> list[Parent]:
        weights = self.weights(ctx)
        out = []
        for c in ctx.candidates:
            graph = graph_of(c) if c.id in weights else None
            if graph is not None:
                out.append(Parent(graph, c.id, c.name, c))
        return out

    def select(
        self, pool: list[Parent], ctx: ProposalContext, rng: random.Random, exclude: Parent | None = None
    ) -> Parent:
        """One parent, drawn with probability proportional to its weight (uniform among seeds not in
        the archive)."""
        weights = self.weights(ctx)
        options = [p for p in pool if p is not exclude]
        w = [weights.get(p.id or "", 0.0) for p in options]
        if sum(w) <= 0:
            return rng.choice(options)
        return rng.choices(options, weights=w)[0]

    def choose(
        self, pool: list[Parent], ctx: ProposalContext, rng: random.Random
    ) -> tuple[str, Parent, Parent | None]:
        parent = self.select(pool, ctx, rng)
        if len(pool) > 1 and rng.random() < self.crossover_rate:
            partner = self.select(pool, ctx, rng, exclude=parent)
            return rng.choice(operator_names("crossover")), parent, partner
        return rng.choice(mutations(ctx)), parent, None

    def _rewrite(
        self, ctx: ProposalContext, pool: list[Parent], rng: random.Random, seen: set[str], usage: Usage
    ) -> Proposal | None:
        if self.llm_rate <= 0 or rng.random() >= self.llm_rate:
            return None
        parent = self.select(pool, ctx, rng)
        if parent.candidate is None:
            return None
        try:
            prop = self.meta.propose(ctx, parents=[parent.candidate])
            graph = parse_spec(prop.spec.source)
        except InvalidAgentError:
            return None  # an unusable reply: the operators make this child
        usage.merge(prop.usage)
        if canonical(graph) in seen:
            return None
        thought = f"{self.name}: {LLM_REWRITE} of {parent.name} [{parent.id}]. {prop.spec.thought}".strip()
        spec = prop.spec.model_copy(update={"thought": thought})
        return Proposal(
            spec=spec,
            parent_ids=[parent.id] if parent.id else [],
            messages=prop.messages,
            usage=usage,
            raw={
                "strategy": self.name,
                "operators": [LLM_REWRITE],
                "parents": [parent.id],
                "reply": prop.raw,
            },
        )

    def debug(self, ctx: ProposalContext, proposal: Proposal, error: str, attempt: int) -> Proposal | None:
        """A meta-agent child is repaired by the meta-agent; an operator child is replaced by another."""
        if proposal.raw.get("operators") != [LLM_REWRITE]:
            return super().debug(ctx, proposal, error, attempt)
        reply = Proposal(
            spec=proposal.spec,
            parent_ids=proposal.parent_ids,
            messages=proposal.messages,
            raw=proposal.raw.get("reply") or {},
        )
        fixed = self.meta.debug(ctx, reply, error, attempt)
        if fixed is None:
            return None
        return Proposal(
            spec=fixed.spec.model_copy(
                update={"thought": f"{self.name}: {LLM_REWRITE} (debugged). {fixed.spec.thought}"}
            ),
            parent_ids=fixed.parent_ids,
            messages=fixed.messages,
            usage=fixed.usage,
            raw={**proposal.raw, "reply": fixed.raw},
        )
