"""Bootstrapped demonstrations, in the manner of DSPy's BootstrapFewShot: a node is shown its own
outputs on train samples that the whole agent solved.

`bootstrap_demos(ctx, spec, index, rng)` runs the graph on up to `pool` train samples
(`ProposalContext.evaluate`), keeps the ones it scored 1 on, reads node `index`'s output on each
(`ProposalContext.trace`, which replays the same seeded calls: no new model call when the call cache
is on) and returns the graph with up to `k` of them as that node's demonstrations, sent verbatim
(`Demo.verbatim`): program-of-thought's expression node learns to write `Expression: 3 + 4`, a
chain-of-thought node sees worked solutions that reached the right answer. Only train samples are
used, and a caller that tests the child on a minibatch passes its ids in `exclude` so that no
demonstration is one of the samples it is judged on. A campaign with `SearchConfig.demos =
"reprompt"` goes on from that one draw with Gibbs-style rounds (`agentmeta.search.reprompt`).
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from agentmeta.agents.base import AgentSpec
from agentmeta.agents.graph import GraphSpec, parse_spec
from agentmeta.agents.kinds import graph_slots, set_slot, slots_of
from agentmeta.agents.slots import Slot
from agentmeta.registry import registry
from agentmeta.search.operators import NotApplicable
from agentmeta.search.programs import graph_spec

BOOTSTRAP = "bootstrap_demos"
"""The operator name of a child whose demonstrations were bootstrapped."""
REPROMPT = "reprompt_demos"
"""The operator name of a child whose bootstrapped demonstrations went through Reprompting's rounds
(drawn instead of `bootstrap_demos` in a campaign with `SearchConfig.demos = "reprompt"`)."""


@dataclass(frozen=True)
class TrainOperator:
    """An operator that runs the candidate on train samples (so it needs the campaign, not only the
    graph): listed in the registry's "operator" category, group `train`; the strategies that draw
    operators apply it themselves (`bootstrap_demos`)."""

    doc: str
    group: str = "train"


def demo_operator(ctx: Any) -> str | None:
    """The demonstration operator a campaign draws: `reprompt_demos` with `demos = "reprompt"`,
    `bootstrap_demos` otherwise, None where it runs nothing on train samples."""
    if ctx.evaluate is None or ctx.trace is None or not ctx.train_samples:
        return None
    return REPROMPT if getattr(ctx, "demos", "bootstrap") == "reprompt" else BOOTSTRAP


def _takes_bootstrapped_demos(slot: Slot) -> bool:
    """A slot whose prompt uses only the task (`{input}`), so that a demonstration's user turn is
    complete, and that takes demonstrations."""
    return slot.task_only and slot.takes("demos")


def bootstrap_targets(spec: GraphSpec) -> list[int]:
    """Nodes of a graph a demonstration can be bootstrapped for (its llm/sample nodes that read only
    the task)."""
    return [s.index for s in graph_slots(spec) if _takes_bootstrapped_demos(s)]


def slot_targets(spec: AgentSpec) -> list[Slot]:
    """The slots of any kind a demonstration can be bootstrapped for (the same rule)."""
    return [s for s in slots_of(spec) if _takes_bootstrapped_demos(s)]


def demo_of(ctx: Any, spec: AgentSpec, slot: Slot, sample: Any, answer: str) -> dict[str, Any] | None:
    """A demonstration from a train sample `spec` solved: the slot's own output on it, sent verbatim
    (`ctx.trace`, replayed from the call cache), or for a kind without a trace the agent's `answer`
    as an `Answer:` turn. None if that is empty."""
    if slot.trace_key is None:
        text, verbatim = answer.strip(), False
    else:
        out = ctx.trace(spec, sample).get(slot.trace_key)
        text, verbatim = (out[0] if isinstance(out, list) and out else str(out or "")).strip(), True
    if not text:
        return None
    return {"input": str(sample.input)[:4000], "answer": text[:2000], "verbatim": verbatim}


def bootstrap_slot(
    ctx: Any, spec: AgentSpec, index: int, rng: random.Random, *, exclude: Collection[str] = (),
    k: int = 3, pool: int = 8,
) -> tuple[AgentSpec, dict[str, Any]]:  # fmt: skip
    """`spec` with slot `index` showing up to `k` of its own outputs on solved train samples (see
    the module; a kind without a trace shows the agent's answers). `NotApplicable` when the campaign
    offers no train runs, the slot cannot take demonstrations, or the agent solved none of the
    samples tried."""
    if ctx.evaluate is None or ctx.trace is None:
        raise NotApplicable("the campaign runs no candidate on train samples")
    slot = next((s for s in slot_targets(spec) if s.index == index), None)
    if slot is None:
        raise NotApplicable("the node cannot show bootstrapped demonstrations")
    samples = [s for s in ctx.train_samples if s.id not in set(exclude)]
    if not samples:
        raise NotApplicable("no train samples to bootstrap from")
    picks = rng.sample(samples, min(pool, len(samples)))
    result = ctx.evaluate(spec, picks)
    scores = {r.id: r.score for r in result.records if r.outcome == "scored"}
    answers = {r.id: getattr(r, "answer", "") for r in result.records}
    solved = [s for s in picks if scores.get(s.id, 0.0) >= 1.0][:k]
    if not solved:
        raise NotApplicable(f"the graph solved none of {len(picks)} train samples: nothing to bootstrap")
    demos = [d for d in (demo_of(ctx, spec, slot, s, str(answers.get(s.id) or "")) for s in solved) if d]
    if not demos:
        raise NotApplicable("the solved samples left no output of the node")
    if list(slot.demos) == demos:
        raise NotApplicable("the node already shows these demonstrations")
    where = slot.trace_key or slot.name
    info = {"node": where, "demos_from": [s.id for s in solved], "tried": len(picks), "solved": len(solved)}
    child = set_slot(spec, index, demos=demos)
    if getattr(ctx, "demos", "bootstrap") == "reprompt":
        from agentmeta.search.reprompt import reprompt_slot

        try:
            return reprompt_slot(ctx, spec, index, rng, child, info, exclude=exclude)
        except NotApplicable as e:
            info["reprompt"] = {"skipped": str(e)}
    return child, info


def bootstrap_demos(
    ctx: Any, spec: GraphSpec, index: int, rng: random.Random, *, exclude: Collection[str] = (),
    k: int = 3, pool: int = 8,
) -> tuple[GraphSpec, dict[str, Any]]:  # fmt: skip
    """`bootstrap_slot` on a graph of the campaign's (graph-capable) kind: node `index`."""
    child, info = bootstrap_slot(ctx, graph_spec(spec, ctx.kind), index, rng, exclude=exclude, k=k, pool=pool)
    return parse_spec(child.source), info


registry.add("operator", BOOTSTRAP, TrainOperator("a node shown its own outputs on train samples the graph solved (BootstrapFewShot)"))
registry.add(
    "operator", REPROMPT,
    TrainOperator("bootstrap_demos followed by Reprompting's Gibbs rounds over the train split (--demos reprompt)"),
)  # fmt: skip
