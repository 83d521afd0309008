"""Bayesian optimization over a declared design space (the `bayes` strategy), in the manner of DSPy's
MIPROv2: Optuna's TPE sampler proposes combinations, minibatch scores feed it back.

The space is declared for one slot of the campaign's best seed (by full-stage validation score):
its first slot (`agentmeta.agents.slots`; a graph's llm or sample node) that asks the task alone.
Any kind with slots can be searched; a parameter its slot cannot set stays at the seed's own value.
Parameters:

- `demo_set`: 0 (no demonstrations) or one of `demo_sets` sets bootstrapped from the train split
  (`bootstrap.bootstrap_demos`: the seed run on a different random pool of train samples, its own
  outputs on the ones it solved, shown as chat turns); built the first time TPE picks it;
- `n_demos`: how many of the set (1, 2, 4 or 8; fewer if the set is smaller);
- `instruction`: 0 (the node's own prompt) or one of `operators.INSTRUCTIONS`;
- `role`: 0 (the node's own) or one of `operators.ROLES`;
- `temperature`: the node's own, 0.0, 0.3 or 0.7;
- `model`: the node's own (the task model) or one of the campaign's other models
  (`SearchConfig.models`; only when it names some);
- `votes`: 1 (one call) or 3 or 5 samples with a majority vote (graph-capable kinds, where the node
  is the graph's output);
  off by default (`BayesSearch(votes=True)`): under a token budget a 5-vote candidate costs five
  candidates, and a search that draws them affords few others;
- `compute` (only with `SearchConfig.adaptive`): the node as it is, as a `tree_search` over its
  answers (AB-MCTS, 5 answers, agreement verifier; it keeps the node's prompt and demonstrations),
  or as a `bandit` over chain-of-thought, program-of-thought and a direct answer (its statistics
  learned on the train split, `search.adaptive.learn_bandit`); where the node is the graph's output.

Each proposal fits a `TPESampler` (seeded by the campaign's seed and the iteration, multivariate)
on every earlier trial of the campaign, valued by its subset-stage validation score (the same first
validation samples for every candidate, so the values are comparable; an invalid or failed trial
counts 0), with the seed itself as the trial at its own settings. The study is rebuilt from the
archive on every proposal (`Candidate.metadata["params"]`), so a resumed campaign goes on where it
was and no other state is kept. A combination whose graph is already in the campaign is told its
known value and another is asked for; the campaign's usual paired rule promotes a child to the
full stage against the seed it was made from.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

from agentmeta.agents.base import AgentSpec, get_kind
from agentmeta.agents.graph import GraphSpec, parse_spec
from agentmeta.agents.kinds import set_slot, slots_of
from agentmeta.agents.slots import Slot
from agentmeta.errors import require
from agentmeta.search.adaptive import learn_bandits
from agentmeta.search.bootstrap import bootstrap_slot
from agentmeta.search.operators import INSTRUCTIONS, ROLES, NotApplicable, _dump
from agentmeta.search.programs import graph_spec, named, slots_or_none, spec_key, spec_of
from agentmeta.search.selection import best_seeds, subset_score
from agentmeta.search.strategy import NoNewCandidateError, Proposal, ProposalContext

N_DEMOS = (1, 2, 4, 8)
TEMPERATURES = (None, 0.0, 0.3, 0.7)
"""None: the node's own temperature."""
VOTES = (1, 3, 5)
COMPUTE = (None, "tree_search", "bandit")
BANDIT_ARMS = ["cot", "program_of_thought", "direct"]
BASE_PARAMS = {
    "demo_set": 0,
    "n_demos": 1,
    "instruction": 0,
    "role": 0,
    "temperature": 0,
    "votes": 0,
    "model": 0,
}
"""The seed's own settings, as indices into each parameter's choices (`compute`, in the space only
with `adaptive`, is 0 for the node as it is)."""


def _space(demo_sets: int, votes: bool = False, models: int = 0, adaptive: bool = False) -> dict[str, Any]:
    optuna = require("optuna", "pip install 'agentmeta[bayes]'", "the bayes strategy's optuna")
    cat = optuna.distributions.CategoricalDistribution
    space = {
        "demo_set": cat(list(range(demo_sets + 1))),
        "n_demos": cat(list(range(len(N_DEMOS)))),
        "instruction": cat(list(range(len(INSTRUCTIONS) + 1))),
        "role": cat(list(range(len(ROLES) + 1))),
        "temperature": cat(list(range(len(TEMPERATURES)))),
        "votes": cat(list(range(len(VOTES))) if votes else [0]),
        "model": cat(list(range(models + 1))),
    }
    if adaptive:  # only then: a campaign without it samples exactly what it always did
        space["compute"] = cat(list(range(len(COMPUTE))))
    return space


def describe(params: dict[str, int], models: list[str] | None = None) -> str:
    """The parameters in words, for a candidate's name and thought."""
    parts = []
    if params.get("model") and models:
        parts.append(f"model {models[params['model'] - 1]}")
    if params["demo_set"]:
        parts.append(f"{N_DEMOS[params['n_demos']]} demos from set {params['demo_set']}")
    if params["instruction"]:
        parts.append(f"instruction {INSTRUCTIONS[params['instruction'] - 1]!r}")
    if params["role"]:
        parts.append(f"role {ROLES[params['role'] - 1]!r}")
    if TEMPERATURES[params["temperature"]] is not None:
        parts.append(f"temperature {TEMPERATURES[params['temperature']]}")
    if VOTES[params["votes"]] > 1:
        parts.append(f"{VOTES[params['votes']]} votes")
    if params.get("compute"):
        parts.append(f"as a {COMPUTE[params['compute']]}")
    return ", ".join(parts) or "the seed's own settings"


def _with_votes(spec: GraphSpec, index: int, n: int) -> GraphSpec:
    """Node `index` sampled `n` times, a majority vote after it; only where it is the graph's output."""
    nodes = _dump(spec)
    if index != len(nodes) - 1 or spec.edges or nodes[index]["type"] != "llm":
        raise NotApplicable("votes apply to an llm node that is the graph's output")
    node = nodes[index]
    nodes[index] = {**node, "type": "sample", "n": n, "temperature": node.get("temperature") or 0.8}
    nodes.append({"id": f"{node['id']}_vote", "type": "vote", "source": node["id"]})
    return GraphSpec.model_validate({**spec.model_dump(exclude_defaults=True), "nodes": nodes})


def _with_compute(spec: GraphSpec, index: int, what: str) -> GraphSpec:
    """Node `index` (an llm node, the graph's output) as a tree_search or a bandit node."""
    nodes = _dump(spec)
    if index != len(nodes) - 1 or spec.edges or nodes[index]["type"] != "llm":
        raise NotApplicable("adaptive compute applies to an llm node that is the graph's output")
    node = nodes[index]
    if what == "tree_search":
        nodes[index] = {**node, "type": "tree_search", "n": 5, "verifier": "agreement"}
    else:
        keep = ("id", "role", "max_tokens", "model")
        nodes[index] = {**{k: node[k] for k in keep if k in node}, "type": "bandit", "arms": BANDIT_ARMS}
    return GraphSpec.model_validate({**spec.model_dump(exclude_defaults=True), "nodes": nodes})


def _capabilities(spec: AgentSpec) -> frozenset[str]:
    return get_kind(spec.kind).capabilities


class BayesSearch:
    """TPE over demonstrations, instruction, role, temperature and votes of the best seed's slot."""

    name = "bayes"

    def __init__(
        self,
        demo_sets: int = 3,
        pool: int = 8,
        startup_trials: int = 4,
        max_tries: int = 40,
        votes: bool = False,
        adaptive: bool = False,
    ) -> None:
        self.demo_sets = demo_sets
        self.votes = votes
        self.adaptive = adaptive
        self.pool = pool
        self.startup_trials = startup_trials
        self.max_tries = max_tries
        self._sets: dict[tuple[str, int], list[dict[str, Any]]] = {}

    # -- the base and its demonstration sets ------------------------------------------------
    @staticmethod
    def _base(ctx: ProposalContext) -> tuple[Any, AgentSpec, Slot]:
        seeds = best_seeds(ctx, slots_or_none)
        if not seeds:
            raise NoNewCandidateError("no seed has a full-stage score to build the design space on")
        for c in seeds:
            targets = [s for s in slots_or_none(c) or [] if s.task_only]
            if targets:
                return c, spec_of(c), targets[0]
        raise NoNewCandidateError("no seed has a call (a slot) that asks the task alone")

    def _demo_set(
        self, ctx: ProposalContext, base: Any, spec: AgentSpec, slot: Slot, j: int
    ) -> list[dict[str, Any]]:
        if (base.id, j) not in self._sets:
            rng = random.Random(f"{ctx.seed}:demo-set:{j}")
            try:
                child, _ = bootstrap_slot(ctx, spec, slot.index, rng, k=max(N_DEMOS), pool=self.pool)
                demos = next(list(s.demos) for s in slots_of(child) if s.index == slot.index)
            except NotApplicable:
                demos = []
            self._sets[(base.id, j)] = demos
        return self._sets[(base.id, j)]

    def build(
        self, ctx: ProposalContext, base: Any, spec: AgentSpec, slot: Slot, params: dict[str, int]
    ) -> tuple[AgentSpec, dict[str, int]]:
        """The base with `params` applied to `slot`, and the parameters in effect (an empty
        demonstration set is no demonstrations; what the slot cannot set, or votes where the slot is
        not a graph's output, the seed's own)."""
        effective = dict(params)
        changes: dict[str, Any] = {}
        takes_demos = slot.takes("demos")
        demos = (
            self._demo_set(ctx, base, spec, slot, params["demo_set"])
            if params["demo_set"] and takes_demos
            else []
        )
        if demos:
            changes["demos"] = demos[: N_DEMOS[params["n_demos"]]]
        else:
            effective.update(demo_set=0, n_demos=BASE_PARAMS["n_demos"])
        settings = {
            "instruction": INSTRUCTIONS[params["instruction"] - 1] if params["instruction"] else None,
            "role": ROLES[params["role"] - 1] if params["role"] else None,
            "temperature": TEMPERATURES[params["temperature"]],
            "model": ctx.models[params["model"] - 1] if params.get("model") else None,
        }
        for name, value in settings.items():
            if value is None:
                continue
            if slot.takes(name):
                changes[name] = value
            else:
                effective[name] = BASE_PARAMS[name]
        child = set_slot(spec, slot.index, **changes) if changes else spec
        if VOTES[params["votes"]] > 1:
            try:
                if "operators" not in _capabilities(spec):
                    raise NotApplicable("votes apply to graph agents")
                voted = _with_votes(parse_spec(child.source), slot.index, VOTES[params["votes"]])
                child = graph_spec(voted, spec.kind, name=child.name, thought=child.thought)
            except NotApplicable:
                effective["votes"] = BASE_PARAMS["votes"]
        if params.get("compute"):
            try:
                if "operators" not in _capabilities(spec) or effective["votes"]:
                    raise NotApplicable("adaptive compute applies to a graph's llm node")
                graph = _with_compute(parse_spec(child.source), slot.index, COMPUTE[params["compute"]])
                child = graph_spec(graph, spec.kind, name=child.name, thought=child.thought)
                if COMPUTE[params["compute"]] == "bandit":  # the bandit's arms keep none of the slot's settings but its role
                    effective.update(demo_set=0, n_demos=BASE_PARAMS["n_demos"], instruction=0, temperature=0)
            except NotApplicable:
                effective["compute"] = 0
        return child, effective

    # -- the study, rebuilt from the archive -------------------------------------------------
    def _study(self, ctx: ProposalContext, base: Any) -> Any:
        optuna = require("optuna", "pip install 'agentmeta[bayes]'", "the bayes strategy's optuna")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=(ctx.seed * 100_003 + ctx.iteration) % 2**31, n_startup_trials=self.startup_trials,
                multivariate=True,
            )  # fmt: skip
        study = optuna.create_study(direction="maximize", sampler=sampler)
        space = _space(self.demo_sets, self.votes, len(ctx.models), self.adaptive)
        trials = [(BASE_PARAMS, subset_score(ctx, base))]
        trials += [  # a parameter added since a trial was stored takes the seed's own value
            ({**BASE_PARAMS, **c.metadata["params"]}, subset_score(ctx, c))
            for c in ctx.candidates
            if isinstance(c.metadata.get("params"), dict) and set(c.metadata["params"]) <= set(space)
        ]
        for params, value in trials:
            params = {k: params.get(k, 0) for k in space}  # `compute` absent: the node as it is
            if all(params[k] in space[k].choices for k in space):  # stored under another space: skipped
                study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=value))
        return study, space

    def propose(self, ctx: ProposalContext) -> Proposal:
        base, spec, slot = self._base(ctx)
        study, space = self._study(ctx, base)
        optuna = require("optuna", "pip install 'agentmeta[bayes]'")
        known = {
            spec_key(c): subset_score(ctx, c) for c in ctx.candidates if c.kind == base.kind and c.source
        }
        for _ in range(self.max_tries):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial = study.ask(space)
            params = {k: int(v) for k, v in trial.params.items()}
            child, effective = self.build(ctx, base, spec, slot, params)
            key = spec_key(child)
            if key in known:  # already evaluated: tell TPE what it scored and ask again
                study.tell(trial, known[key])
                continue
            if effective.get("compute"):  # a new bandit: its statistics learned on train (after the duplicate check)
                graph, _ = learn_bandits(ctx, parse_spec(child.source), random.Random(f"{ctx.seed}:bandit:{key}"))
                child = graph_spec(graph, child.kind, name=child.name, thought=child.thought)
            what = describe(effective, ctx.models)
            name = f"bayes ({what}) of {base.name}"[:200]
            proposal = named(child, name, f"TPE trial on {slot.name}: {what}")
            return Proposal(
                spec=proposal, parent_ids=[base.id], raw={"params": params, "operators": ["bayes"]}
            )
        raise NoNewCandidateError(f"TPE proposed only known graphs in {self.max_tries} tries")

    def debug(self, ctx: ProposalContext, proposal: Proposal, error: str, attempt: int) -> Proposal | None:
        return None  # a combination that fails is a 0 for the study, not something to repair
