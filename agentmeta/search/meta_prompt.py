"""Meta-prompt policies: how the optimizer's own instructions are chosen (`SearchConfig.meta_prompt`).

Two texts steer the proposers: the reflector's template (`prompts/reflect-instruction.txt`, the
`prompt` strategy rewrites an instruction with it) and the meta-agent's system message
(`prompts/meta-agent-system.txt`, `meta-agent`). A policy is a registry entry of category
"meta_prompt" (a plugin adds one the same way) with `texts(ctx, usage, need) -> MetaPrompts`:

- `fixed`: the built-in texts.
- `evolve` (metaTextGrad's idea, optimizing the optimizer's prompts): the first time a strategy
  needs its text (`prompt` the reflector's, `meta-agent` the system message), the meta-model writes
  `VARIANTS` rewrites of it (of the reflector's closing directive; an empty or repeated rewrite is
  dropped); every variant, the built-in one included, then proposes a child of the campaign's best
  seed (the reflector from the minibatch's feedback; the meta-agent with the seed as its parent,
  its draw seeded per minibatch) on the same
  `TRIALS` train minibatches, and scores the share of its children that beat that seed on their
  minibatch (its promotion rate; paired: every variant sees the same minibatches). The variant
  with the most wins is used for the rest of the campaign if it has at least `MARGIN` more than
  the built-in text (else the built-in one). Variants,
  their wins and the choice are stored in the campaign's state in the archive, so a resumed
  campaign uses the same texts and never calibrates twice. Only train samples are run; the
  calibration's meta-model tokens are counted in the proposal that triggered it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentmeta.agents.base import AgentSpec
from agentmeta.models.types import Usage
from agentmeta.prompts import load_template
from agentmeta.registry import registry

VARIANTS = 2
"""Rewrites of each text tried besides the built-in one."""
TRIALS = 3
"""Train minibatches each variant proposes a child on."""
MINIBATCH = 3
MARGIN = 2
"""Wins a rewrite needs over the built-in text to replace it (one win of three is noise: measured
with the 135M model, a nonsense rewrite won so)."""
STATE_KEY = "meta_prompt"


@dataclass(frozen=True)
class MetaPrompts:
    """The texts the proposers use."""

    reflector: str
    """Template with `{instruction}` and `{examples}`: asks for a better instruction."""
    system: str
    """The meta-agent's system message."""


def builtin() -> MetaPrompts:
    return MetaPrompts(load_template("reflect-instruction"), load_template("meta-agent-system"))


class FixedMetaPrompt:
    """The built-in texts."""

    def texts(self, ctx: Any, usage: Usage | None = None, need: str = "reflector") -> MetaPrompts:
        return builtin()


def _split_reflector(template: str) -> tuple[str, str]:
    """(everything up to the examples, the directive after them)."""
    head, _, tail = template.partition("{examples}")
    return head + "{examples}", tail


def _rewrite(ctx: Any, text: str, what: str, k: int, usage: Usage) -> str:
    prompt = (
        f"Below is the {what}. Rewrite it so that the proposals it leads to are better more often: "
        "clearer steps, what to look for, what to avoid. Keep its purpose and keep it under 120 words. "
        "Reply with the rewritten text only, between ``` marks.\n\n```\n" + text.strip() + "\n```"
    )
    resp = ctx.meta_model.generate(
        [{"role": "user", "content": prompt}], max_tokens=220, temperature=0.9,
        seed=random.Random(f"meta-prompt:{ctx.seed}:{what}:{k}").randrange(2**31),
    )  # fmt: skip
    usage.add(resp)
    out = resp.text
    if "```" in out:
        parts = out.split("```")
        out = parts[1] if len(parts) > 1 else out
        out = out.split("\n", 1)[1] if out.split("\n", 1)[0].strip().isalpha() and "\n" in out else out
    return out.replace("{", "(").replace("}", ")").strip()[:1200]


def calibrate(
    ctx: Any, variants: list[str], make_child: Callable[[str, AgentSpec, Any, list[Any], Usage], AgentSpec | None],
    parent: AgentSpec, usage: Usage,
) -> list[dict[str, Any]]:  # fmt: skip
    """Each variant's children of `parent` on the same `TRIALS` train minibatches: its wins (the
    child scored more than the parent on the minibatch) and trials. `make_child(variant, parent,
    parent_result, batch, usage)` returns the child or None (counted as a loss)."""
    rng = random.Random(f"meta-prompt:{ctx.seed}:batches")
    batches = []
    for _ in range(TRIALS * 3):  # minibatches the parent has something to improve on
        if len(batches) == TRIALS:
            break
        batch = rng.sample(list(ctx.train_samples), min(MINIBATCH, len(ctx.train_samples)))
        before = ctx.evaluate(parent, batch)
        if sum(r.score for r in before.records) < len(before.records):
            batches.append((batch, before))
    rows = [{"text": v, "wins": 0, "trials": 0} for v in variants]
    for row in rows:
        for batch, before in batches:
            row["trials"] += 1
            child = make_child(row["text"], parent, before, batch, usage)
            if child is None:
                continue
            after = ctx.evaluate(child, batch)
            if sum(r.score for r in after.records) > sum(r.score for r in before.records):
                row["wins"] += 1
    return rows


class EvolvedMetaPrompt:
    """Variants of the proposers' texts, the one whose proposals beat their parent most often kept."""

    def texts(self, ctx: Any, usage: Usage | None = None, need: str = "reflector") -> MetaPrompts:
        """The texts, `need` (`reflector` or `system`: the one the asking strategy uses) calibrated
        first if the campaign has not done so."""
        usage = usage if usage is not None else Usage()
        record: dict[str, Any] = dict(ctx.archive.get_campaign(ctx.campaign).state.get(STATE_KEY) or {})
        if need not in record and ctx.evaluate is not None and ctx.train_samples:
            done = self._calibrate(ctx, need, usage)
            if done is not None:
                record[need] = done
                ctx.archive.update_campaign(ctx.campaign, state={STATE_KEY: record})
        base = builtin()
        return MetaPrompts(
            record["reflector"]["chosen_text"] if "reflector" in record else base.reflector,
            record["system"]["chosen_text"] if "system" in record else base.system,
        )

    @staticmethod
    def _calibrate(ctx: Any, need: str, usage: Usage) -> dict[str, Any] | None:
        from agentmeta.search.programs import spec_of
        from agentmeta.search.selection import best_seeds

        seeds = best_seeds(ctx)
        if not seeds:
            return None  # nothing to propose children of yet: the built-in text meanwhile
        parent = spec_of(seeds[0])
        base = builtin()
        if need == "reflector":
            head, directive = _split_reflector(base.reflector)
            what = "closing directive of a prompt that asks for a better instruction"
            rewrites = [_rewrite(ctx, directive, what, k, usage) for k in range(VARIANTS)]
            variants = [base.reflector] + [head + r + "\n" for r in dict.fromkeys(rewrites) if r]
            maker = _reflector_child(ctx)
        else:
            what = "system message of an agent designer"
            rewrites = [_rewrite(ctx, base.system, what, k, usage) for k in range(VARIANTS)]
            variants = [base.system] + [r for r in dict.fromkeys(rewrites) if r and r != base.system]
            maker = _system_child(ctx, seeds[0])
        rows = calibrate(ctx, variants, maker, parent, usage)
        best = max(range(len(rows)), key=lambda i: (rows[i]["wins"], -i))
        if rows[best]["wins"] - rows[0]["wins"] < MARGIN:
            best = 0  # not clearly better than the built-in text: keep it
        return {"variants": rows, "chosen": best, "chosen_text": rows[best]["text"], "parent": seeds[0].id}


def _reflector_child(ctx: Any) -> Callable[..., AgentSpec | None]:
    from agentmeta.agents.kinds import set_slot
    from agentmeta.search.programs import slots_or_none
    from agentmeta.search.reflective import ReflectivePromptSearch

    reflector = ReflectivePromptSearch()

    def make(text: str, parent: AgentSpec, before: Any, batch: list[Any], usage: Usage) -> AgentSpec | None:
        slots = [s for s in slots_or_none(parent) or [] if s.rewrite]
        if not slots:
            return None
        instruction = reflector._reflect(ctx, slots[0].prompt, before, batch, usage, reflector=text)
        return set_slot(parent, slots[0].index, instruction=instruction) if instruction else None

    return make


def _system_child(ctx: Any, seed: Any) -> Callable[..., AgentSpec | None]:
    import copy
    import hashlib

    from agentmeta.errors import InvalidAgentError
    from agentmeta.search.meta_agent import MetaAgentSearch

    def make(text: str, parent: AgentSpec, before: Any, batch: list[Any], usage: Usage) -> AgentSpec | None:
        trial = copy.copy(ctx)  # each minibatch its own draw (the meta-agent seeds by the iteration)
        ids = ",".join(s.id for s in batch)
        trial.iteration = 100_000 + int(hashlib.sha256(ids.encode()).hexdigest()[:6], 16)
        try:
            proposal = MetaAgentSearch(reflexion_rounds=0, system=text).propose(trial, parents=[seed])
        except (InvalidAgentError, ValueError):
            return None
        usage.merge(proposal.usage)
        return proposal.spec

    return make


def meta_prompts(ctx: Any, usage: Usage | None = None, need: str = "reflector") -> MetaPrompts:
    """The texts of the campaign's meta-prompt policy (`ProposalContext.meta_prompt`); `need`: the
    one the asking strategy uses (`reflector` or `system`)."""
    policy = registry.get("meta_prompt", getattr(ctx, "meta_prompt", "fixed") or "fixed")
    return policy.texts(ctx, usage, need)


registry.add("meta_prompt", "fixed", FixedMetaPrompt(), "the built-in reflector template and meta-agent system message")
registry.add(
    "meta_prompt", "evolve", EvolvedMetaPrompt(),
    "rewrites of the reflector's and meta-agent's texts, the one whose proposals beat their parent most often on train kept",
)  # fmt: skip

__all__ = ["EvolvedMetaPrompt", "FixedMetaPrompt", "MetaPrompts", "calibrate", "meta_prompts"]
