"""Reflective prompt evolution (the `prompt` strategy), in the manner of GEPA.

Each iteration:

1. **Parent** from the per-sample Pareto front of the campaign's candidates: for every validation
   sample some candidate solved, the candidates with the best score on it; candidates whose set of
   such samples is strictly inside another's are dropped; a parent is drawn with probability
   proportional to the number of samples it is best on (uniform while no sample is solved).
   Full-stage scores only (subset-only candidates are not compared with them), as in `evolve`.
   With `--objective pareto` the draw is further limited to the score x tokens-per-sample front.
2. **Minibatch** of `minibatch` samples of the suite's *train* split (never validation or test),
   drawn by the campaign's seed and the iteration. The parent runs on it with the task model.
3. **Mutation** of one module of the parent (round robin over the modules: the slots of its kind,
   `agentmeta.agents.slots`, e.g. a graph's llm and sample nodes or a prompt agent's template), by
   one of two moves:
   - *reflection*: the meta-model reads, for each minibatch item, the input, the parent's response
     and the scorer's feedback (right, or wrong with the expected answer: a train target), and
     writes a new instruction for the module;
   - *bootstrapped demonstrations* (slots that read only the task and take demonstrations, probability
     `bootstrap_rate`): the module is shown its own outputs on train samples outside the minibatch
     that the parent solved (`agentmeta.search.bootstrap`, as DSPy's BootstrapFewShot; MIPRO
     searches instructions and such demonstrations together).
4. **Acceptance**: the child runs on the same minibatch and is kept only if its total score there
   is strictly higher than the parent's; otherwise another parent, minibatch and module are tried
   (`max_tries` in all; a minibatch the parent solves completely is skipped, as there is nothing to
   learn from it). The campaign then evaluates the kept child on the validation stages as usual.
5. **Merge** (probability `merge_rate`): two front candidates of different lineages with a common
   ancestor are combined module by module — a module changed in one lineage only takes that
   lineage's version, one changed in both takes the better candidate's — and the merge is kept if
   it scores at least as well as the better parent on a minibatch.

Every call is seeded and cached, so a resumed iteration replays without new model calls. The
tokens spent on minibatches count toward the campaign's budget like any other.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentmeta.agents.base import AgentSpec
from agentmeta.agents.kinds import set_slot
from agentmeta.agents.slots import ANSWER_LINE, Slot
from agentmeta.errors import ConfigError
from agentmeta.models.types import Usage
from agentmeta.prompts import render_text
from agentmeta.search.bootstrap import BOOTSTRAP, bootstrap_slot, demo_operator, slot_targets
from agentmeta.search.meta_prompt import meta_prompts
from agentmeta.search.operators import NotApplicable, prompt_fields
from agentmeta.search.programs import named, slots_or_none, spec_key, spec_of
from agentmeta.search.selection import cost_front, full_stage_scores
from agentmeta.search.strategy import NoNewCandidateError, Proposal, ProposalContext

MAX_INSTRUCTION = 800
"""Longest instruction a reflection may write (characters)."""
SHOWN_RESPONSE = 600
"""Characters of each minibatch response shown to the reflection model."""


# ----------------------------------------------------------------------------- modules


@dataclass(frozen=True)
class Program:
    """A candidate the strategy can rewrite: its spec and its slots (where its instructions are)."""

    id: str
    name: str
    kind: str
    spec: AgentSpec
    slots: tuple[Slot, ...]
    fitness: float
    parent_ids: tuple[str, ...] = ()

    def modules(self) -> list[int]:
        """Indices of the rewritable modules: the slots whose instruction a reflection may rewrite
        (not program-of-thought's expression node)."""
        return [s.index for s in self.slots if s.rewrite and s.takes("instruction")]

    def slot(self, module: int) -> Slot:
        return next(s for s in self.slots if s.index == module)

    def text(self, module: int) -> str:
        """The module's prompt template."""
        return self.slot(module).prompt

    def key(self) -> str:
        return spec_key(self.spec)


def program_of(candidate: Any) -> Program | None:
    """A candidate with slots that parse as a `Program` (None otherwise)."""
    slots = slots_or_none(candidate)
    if slots is None:
        return None
    return Program(candidate.id, candidate.name, candidate.kind, spec_of(candidate), tuple(slots),
                   float(candidate.fitness), tuple(candidate.parent_ids))  # fmt: skip


def instruction_of(template: str) -> str:
    """What a template asks besides the task: its lines without `{...}` slots, slot headers or the
    answer-format line (the part a reflection rewrites)."""
    keep = []
    for line in template.splitlines():
        s = line.strip()
        if not s or prompt_fields(line) or s == ANSWER_LINE:
            continue
        if s.startswith(("Task:", "Previous step:", "Output of step ")) and s.endswith(":"):
            continue
        keep.append(s)
    return "\n".join(keep) or "(no instruction: the task only)"


def with_instruction(program: Program, module: int, instruction: str) -> AgentSpec:
    """The program with module `module` asking `instruction` (its kind keeps the task slots and the
    answer line)."""
    return set_slot(program.spec, module, instruction=instruction)


def clean_instruction(reply: str) -> str:
    """The instruction in a reflection's reply: the first non-empty ``` block (or the text after an
    unclosed one, or the whole reply), braces neutralised, at most `MAX_INSTRUCTION` characters."""
    blocks = [b.strip() for b in re.findall(r"```[a-zA-Z]*\n?(.*?)```", reply, flags=re.S)]
    text = next((b for b in blocks if b), "")
    if not text:
        text = reply.split("```", 1)[1] if "```" in reply else reply
    text = text.replace("{", "(").replace("}", ")").strip()
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip() != ANSWER_LINE]
    return "\n".join(lines).strip()[:MAX_INSTRUCTION].strip()


# ----------------------------------------------------------------------------- selection


def per_sample_front(scores: dict[str, dict[str, float]]) -> dict[str, int]:
    """GEPA's candidate selection weights: for each sample solved by some candidate (best score
    above 0), the candidates with that best score; candidates whose set of such samples is a
    strict subset of another's are dropped. Returns {id: number of samples it is best on}; empty
    when no sample is solved."""
    best_on: dict[str, set[str]] = {c: set() for c in scores}
    samples = sorted({s for per in scores.values() for s in per})
    for s in samples:
        top = max(per.get(s, 0.0) for per in scores.values())
        if top <= 0:
            continue
        for c, per in scores.items():
            if per.get(s, 0.0) >= top - 1e-12:
                best_on[c].add(s)
    kept = {
        c: won
        for c, won in best_on.items()
        if won and not any(won < other for d, other in best_on.items() if d != c)
    }
    return {c: len(won) for c, won in kept.items()}


def _ancestors(cid: str, parents: dict[str, tuple[str, ...]]) -> set[str]:
    out: set[str] = set()
    todo = list(parents.get(cid, ()))
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(parents.get(p, ()))
    return out


# ----------------------------------------------------------------------------- the strategy


class ReflectivePromptSearch:
    """GEPA-style reflective prompt evolution (instructions, and bootstrapped demonstrations) over
    graph or prompt agents."""

    name = "prompt"

    def __init__(self, *, minibatch: int = 3, max_tries: int = 3, merge_rate: float = 0.2,
                 reflection_tokens: int = 256, bootstrap_rate: float = 0.5) -> None:  # fmt: skip
        if minibatch < 1 or max_tries < 1:
            raise ConfigError("prompt strategy: minibatch and max_tries must be at least 1")
        self.minibatch = minibatch
        self.max_tries = max_tries
        self.merge_rate = merge_rate
        self.reflection_tokens = reflection_tokens
        self.bootstrap_rate = bootstrap_rate

    # -- programs ---------------------------------------------------------------------------------
    def programs(self, ctx: ProposalContext) -> list[Program]:
        """The campaign's valid candidates of the campaign's kind that parse, with a fitness."""
        out = []
        for c in ctx.candidates:
            if c.status != "ok" or c.kind != ctx.kind or c.fitness is None:
                continue
            program = program_of(c)
            if program is not None:
                out.append(program)
        return out

    def front(self, ctx: ProposalContext, programs: list[Program]) -> dict[str, int]:
        """Selection weights: the per-sample Pareto front of full-stage validation scores (all
        programs equally while none solves a sample), within the cost front under `pareto`."""
        scores = full_stage_scores(ctx, [p.id for p in programs])
        pool = list(scores) or [p.id for p in programs]
        if ctx.objective == "pareto":
            on_front = set(cost_front(ctx, pool))
            pool = [c for c in pool if c in on_front] or pool
        weights = per_sample_front({c: scores[c] for c in pool if c in scores})
        return weights or dict.fromkeys(pool, 1)

    # -- propose ----------------------------------------------------------------------------------
    def propose(self, ctx: ProposalContext) -> Proposal:
        if ctx.evaluate is None:
            raise ConfigError("the prompt strategy needs a campaign that can run candidates on train samples")
        if not ctx.train_samples:
            raise ConfigError(
                f"the prompt strategy reflects on train-split samples and suite {ctx.suite or ctx.kind!r} "
                "has none (give the data a train split, e.g. `?train=0.2`, or use another strategy)"
            )
        rng = random.Random(f"{self.name}:{ctx.seed}:{ctx.iteration}")
        programs = self.programs(ctx)
        if not programs:
            raise NoNewCandidateError("prompt: no valid candidate with a score to reflect on yet")
        weights = self.front(ctx, programs)
        by_id = {p.id: p for p in programs}
        seen = self._seen_keys(ctx)  # every candidate of the kind, valid or not
        usage = Usage()
        tried: list[str] = []
        if len(weights) > 1 and rng.random() < self.merge_rate:
            merged = self._merge(ctx, rng, weights, by_id, seen, usage, tried)
            if merged is not None:
                return merged
        options = sorted(weights)
        for attempt in range(1, self.max_tries + 1):
            parent = by_id[rng.choices(options, weights=[weights[c] for c in options])[0]]
            boot = [t.index for t in slot_targets(parent.spec)]
            bootstrap = bool(boot) and ctx.trace is not None and rng.random() < self.bootstrap_rate
            modules = boot if bootstrap else parent.modules()
            if not modules:
                tried.append(f"{parent.name}: no instruction to rewrite")
                continue
            children = sum(1 for c in ctx.candidates if parent.id in c.parent_ids)
            module = modules[(children + attempt - 1) % len(modules)]
            batch = rng.sample(list(ctx.train_samples), min(self.minibatch, len(ctx.train_samples)))
            before = ctx.evaluate(self._spec(parent.spec, parent.name, ""), batch)
            k = len(before.records)
            parent_sum = sum(r.score for r in before.records)
            if parent_sum >= k:
                tried.append(f"{parent.name} solved its minibatch ({k}/{k}): nothing to improve on")
                continue
            where = self._module_name(parent, module)
            extra: dict[str, Any]
            if bootstrap:
                try:
                    child, extra = bootstrap_slot(
                        ctx, parent.spec, module, rng, exclude={s.id for s in batch}
                    )
                except NotApplicable as e:
                    tried.append(f"bootstrap on {parent.name}: {e}")
                    continue
                op, what = demo_operator(ctx) or BOOTSTRAP, "bootstrapped demonstrations"
            else:
                instruction = self._reflect(ctx, parent.text(module), before, batch, usage)
                if not instruction:
                    tried.append("the reflection gave no instruction")
                    continue
                child = with_instruction(parent, module, instruction)
                op, what, extra = "reflect", "reflective rewrite", {"instruction": instruction}
            if spec_key(child) in seen:
                tried.append(f"the {what} duplicated a known candidate")
                continue
            seen.add(spec_key(child))
            label = "bootstrap" if bootstrap else "reflect"
            name = f"{label}[{where}] of {parent.name}"[:60]
            thought = f"{self.name}: {what} of {where} of {parent.name} [{parent.id}]."
            after = ctx.evaluate(self._spec(child, name, thought), batch)
            child_sum = sum(r.score for r in after.records)
            if child_sum > parent_sum:
                raw = {
                    "strategy": self.name, "operators": [op], "parents": [parent.id],
                    "module": where, "minibatch": [s.id for s in batch], "parent_minibatch": parent_sum,
                    "child_minibatch": child_sum, "attempts": attempt, **extra,
                }  # fmt: skip
                thought += f" Train minibatch: {child_sum:g}/{k} vs the parent's {parent_sum:g}/{k}."
                return Proposal(
                    spec=self._spec(child, name, thought), parent_ids=[parent.id], usage=usage, raw=raw
                )
            tried.append(f"{what} of {parent.name} scored {child_sum:g}/{k} vs {parent_sum:g}/{k}")
        raise NoNewCandidateError(
            f"prompt: no mutation beat its parent on a train minibatch in {self.max_tries} tries ("
            + "; ".join(tried[-3:])
            + ")"
        )

    def _seen_keys(self, ctx: ProposalContext) -> set[str]:
        """Keys of every candidate of the campaign's kind that parses (valid or not)."""
        return {spec_key(c) for c in ctx.candidates if c.kind == ctx.kind and slots_or_none(c) is not None}

    @staticmethod
    def _module_name(program: Program, module: int) -> str:
        return program.slot(module).name

    def _spec(self, spec: AgentSpec, name: str, thought: str) -> AgentSpec:
        return named(spec, name or spec.name, thought or spec.thought)

    def _reflect(self, ctx: ProposalContext, template: str, result: Any, batch: Sequence[Any],
                 usage: Usage, reflector: str | None = None) -> str:  # fmt: skip
        """Ask the meta-model for a new instruction, given the minibatch with feedback (`reflector`:
        the template that asks for it; default the campaign's meta-prompt policy's)."""
        by_id = {s.id: s for s in batch}
        parts = []
        for i, r in enumerate(result.records, 1):
            sample = by_id[r.id]
            response = (r.answer or f"(failed: {r.error})")[:SHOWN_RESPONSE]
            if r.score >= 1.0:
                feedback = "Correct."
            else:
                feedback = f"Wrong. The expected answer is {sample.target}."  # a train target
                if r.explanation:
                    feedback += f" Scorer: {r.explanation[:200]}"
            parts.append(
                f"### Example {i}\nInput: {sample.input}\nResponse: {response}\nFeedback: {feedback}"
            )
        reflector = reflector or meta_prompts(ctx, usage).reflector
        prompt = render_text(
            reflector, "reflector template", instruction=instruction_of(template), examples="\n\n".join(parts)
        )
        resp = ctx.meta_model.generate(
            [{"role": "user", "content": prompt}],
            max_tokens=self.reflection_tokens,
            temperature=0.7,
            seed=random.Random(f"reflect:{ctx.seed}:{ctx.iteration}:{prompt}").randrange(2**31),
        )
        usage.add(resp)
        return clean_instruction(resp.text)

    # -- merge ------------------------------------------------------------------------------------
    def _merge(self, ctx: ProposalContext, rng: random.Random, weights: dict[str, int],
               by_id: dict[str, Program], seen: set[str], usage: Usage, tried: list[str]) -> Proposal | None:  # fmt: skip
        """A merge of two front candidates with a common ancestor (None if no pair merges or the
        merge scores below the better parent on a train minibatch)."""
        parents = {c.id: tuple(c.parent_ids) for c in ctx.candidates}
        pairs = []
        for a, b in itertools.combinations(sorted(weights), 2):
            anc_a, anc_b = _ancestors(a, parents), _ancestors(b, parents)
            if a in anc_b or b in anc_a:
                continue
            common = [c for c in anc_a & anc_b if c in by_id]
            if common:
                pairs.append((a, b, max(common, key=lambda c: (by_id[c].fitness, c))))
        rng.shuffle(pairs)
        for a_id, b_id, anc_id in pairs:
            a, b, anc = by_id[a_id], by_id[b_id], by_id[anc_id]
            merged = merge_programs(a, b, anc)
            if merged is None or spec_key(merged) in seen:
                continue
            batch = rng.sample(list(ctx.train_samples), min(self.minibatch, len(ctx.train_samples)))
            name = f"merge of {a.name} + {b.name}"[:60]
            thought = (
                f"{self.name}: merge of {a.name} [{a.id}] and {b.name} [{b.id}] (common ancestor [{anc.id}])."
            )
            sums = [
                sum(r.score for r in ctx.evaluate(self._spec(p.spec, p.name, ""), batch).records)
                for p in (a, b)
            ]
            mine = sum(r.score for r in ctx.evaluate(self._spec(merged, name, thought), batch).records)
            if mine >= max(sums):
                raw = {"strategy": self.name, "operators": ["merge"], "parents": [a.id, b.id],
                       "ancestor": anc.id, "minibatch": [s.id for s in batch], "parent_minibatch": sums,
                       "child_minibatch": mine}  # fmt: skip
                return Proposal(
                    spec=self._spec(merged, name, thought), parent_ids=[a.id, b.id], usage=usage, raw=raw
                )
            tried.append(f"merge of {a.name} + {b.name} scored {mine:g} vs {max(sums):g}")
            return None
        return None

    def debug(self, ctx: ProposalContext, proposal: Proposal, error: str, attempt: int) -> Proposal | None:
        """A rewrite only changes instructions, so a failing child is not repaired: give up."""
        return None


def merge_programs(a: Program, b: Program, ancestor: Program) -> AgentSpec | None:
    """`a` with, module by module, `b`'s version where only `b`'s lineage changed it (where both
    changed it, the better of the two by fitness). None when the three do not share one kind and
    one layout of slots, or the merge equals `a` or `b`."""
    shape = [(s.index, s.name) for s in a.slots]
    if len({a.kind, b.kind, ancestor.kind}) > 1 or any(
        [(s.index, s.name) for s in p.slots] != shape for p in (b, ancestor)
    ):
        return None
    better = a if (a.fitness, a.id) >= (b.fitness, b.id) else b
    merged = a.spec
    for i in a.modules():
        va, vb, vo = a.text(i), b.text(i), ancestor.text(i)
        chosen = vb if va == vo else va if vb == vo else better.text(i)
        if chosen != va:
            merged = set_slot(merged, i, prompt=chosen)
    if spec_key(merged) in (a.key(), b.key()):
        return None
    return merged
