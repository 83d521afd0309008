"""A campaign's settings (`SearchConfig`), its seed agents and the samples it runs on.

`SearchConfig.identity` is what a resumed campaign must match; budgets and reporting settings
(`NOT_IDENTITY`) may change between runs of the same campaign.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from agentmeta.agents.base import AgentSpec, get_kind
from agentmeta.agents.loader import seed_agents
from agentmeta.errors import ConfigError, DataError
from agentmeta.eval.types import Suite

NOT_IDENTITY = {
    "name", "iterations", "max_tokens", "max_wall_s", "concurrency", "confirm", "confirm_limit", "confirm_margin",
}  # fmt: skip
"""Settings that do not define what a campaign searches: a re-run may change them and resume."""
ADDED_LATER = ("models", "race", "parallel", "demos", "adaptive", "meta_prompt")
"""Identity settings newer than some stored campaigns: left out of the identity at their defaults."""


class SearchConfig(BaseModel):
    """A campaign's settings. Those that define *what* is searched identify it for resume."""

    suite: str
    """Suite spec the candidates are scored on (validation split)."""
    strategy: str = "meta-agent"
    kind: str = "code"
    """Candidate kind the strategy writes: a registered agent kind (`agentmeta plugins` lists them);
    the meta-agent writes any kind with a proposal schema (built-in: code, graph, prompt)."""
    model: str | None = None
    """Model the candidates run on (default: the embedded model)."""
    meta_model: str | None = None
    """Model of the meta-agent (default: same as `model`)."""
    seed: int = 0
    subset: int = Field(default=8, ge=1)
    """Samples in the cheap first evaluation stage."""
    full: int = Field(default=32, ge=1)
    """Samples in the full validation stage (seeds, and the candidates promoted from the subset):
    what `best`, parent selection and the confirmation's choice rank. 32 separates a 0.3 from a 0.6
    agent (their exact 95% CIs no longer overlap); a smaller full stage makes noise look like
    progress."""
    models: list[str] = Field(default_factory=list)
    """Other model specs the search may give a graph node (`change_model`, `add_cascade`; a cascade
    starts with the task model); empty: every node uses the task model."""
    race: list[int] = Field(default_factory=list)
    """Racing rungs between the subset and the full stage (e.g. [16]): a promoted candidate is
    evaluated on the first 16 full-stage samples and dropped there if its paired 95% interval
    against the incumbent lies below 0 (`agentmeta.search.racing`). Empty: straight to the full stage."""
    parallel: int = Field(default=1, ge=1, le=64)
    """Candidates evaluated at once (`agentmeta.search.parallel`): each round proposes `parallel`
    candidates one after the other from the archive as it stands, then evaluates them together, so
    the engine batches their samples; the round's candidates do not see each other's scores (a
    pending one counts as 0 to `bayes`), and replay stays exact. 1: one candidate per iteration."""
    demos: Literal["bootstrap", "reprompt"] = "bootstrap"
    """How demonstrations are made from the train split wherever a strategy makes them (`bayes`'s
    demonstration sets, `prompt`'s bootstrap move, the `bootstrap_demos` operator): `bootstrap`, one
    draw of the agent's own outputs on train samples it solved (DSPy's BootstrapFewShot);
    `reprompt`, that draw improved by Gibbs-style rounds that keep a recipe when the set solves at
    least as many other train samples (Reprompting; `agentmeta.search.reprompt`)."""
    adaptive: bool = False
    """Let the search make adaptive-compute nodes (`agentmeta.agents.adaptive`): `evolve`, `random`
    and `tree` also draw `add_bandit` and `add_tree_search` (a new bandit's statistics learned on
    the train split), and `bayes` adds a `compute` parameter (the slot as it is, as a `tree_search`
    over its answers, or as a bandit over reasoning strategies). Off: what they always drew."""
    meta_prompt: str = "fixed"
    """How the meta-agent's and the reflector's own instructions are chosen (a registered
    meta-prompt policy, `agentmeta plugins`): `fixed`, the built-in ones; `evolve`, candidates for
    them scored by how often their proposals beat their parents on train minibatches
    (metaTextGrad's idea; `agentmeta.search.meta_prompt`)."""
    objective: Literal["score", "pareto"] = "score"
    """What parents are selected for: `score` (validation score) or `pareto` (the score x
    tokens-per-sample Pareto front: `evolve` draws only from it, `prompt` limits its per-sample
    front to it, `meta-agent` takes its inspiration parent from it; `random` ignores it). The
    confirmation evaluates the front whatever the objective."""
    promote_margin: float = Field(default=0.1, ge=0.0)
    """Promotion from the subset stage to the full stage. A proposed candidate is compared, paired,
    with its parent (the first of its parents with a complete subset evaluation: seeds and every
    proposed candidate have one) on the subset samples both scored: it goes to the full stage if
    its mean there is within `promote_margin` of the parent's. When no parent has a comparable
    subset evaluation (no parent, or one from outside the campaign), the fallback rule compares
    its subset score with the best subset score so far, within the same margin. Either way a
    candidate that solves no subset sample is not promoted once some candidate has solved one.
    Seeds (the baselines) always get the full stage."""
    seeds: list[str] | None = None
    """The seed agents the campaign starts from: seed names of its kind (`cot`, `graph/cot`,
    `Self-Refine`) or agent files; default: every seed of the kind. Seeds are the baselines: they get
    the full stage, and the best of them is what the confirmation compares against."""
    reflexion_rounds: int = Field(default=2, ge=0, le=5)
    debug_rounds: int = Field(default=3, ge=0, le=10)
    name: str | None = None
    """Campaign name (default: derived from the settings above)."""
    # budgets: not part of the campaign's identity, so a re-run can extend them
    iterations: int = Field(default=5, ge=0)
    max_tokens: int | None = None
    """Stop when the campaign has spent this many tokens (task + meta model)."""
    max_wall_s: float | None = None
    concurrency: int = Field(default=8, ge=1)
    confirm: bool = True
    """End the campaign with a confirmation on held-out test samples (`agentmeta.search.confirm`):
    the best candidate by validation, the best seed and the score x tokens-per-sample Pareto front
    of the full-stage candidates, all on the same test samples, stored as split `test`, stage
    `confirm` (never twice). It runs after the search whatever stopped it (budgets included) and
    is skipped, with a reason, when the suite has no test split."""
    confirm_limit: int = Field(default=64, ge=1)
    """Test samples of the confirmation (the whole test split if it is smaller)."""
    confirm_margin: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Non-inferiority margin of a saving in the confirmation (`agentmeta.search.confirm`)."""

    @field_validator("race")
    @classmethod
    def _rungs(cls, v: list[int]) -> list[int]:
        if any(r < 1 for r in v):
            raise ValueError(f"racing rungs are sample counts >= 1; got {v}")
        return sorted(set(v))

    @field_validator("meta_prompt")
    @classmethod
    def _registered_meta_prompt(cls, v: str) -> str:
        from agentmeta.registry import registry

        registry.get("meta_prompt", v)  # ConfigError listing the registered policies
        return v

    @field_validator("kind")
    @classmethod
    def _registered_kind(cls, v: str) -> str:
        get_kind(v)  # ConfigError listing the registered kinds
        return v

    def seed_specs(self) -> list[AgentSpec]:
        """The seed agents of this campaign (`seeds`), in the order given."""
        return campaign_seeds(self.kind, self.seeds)

    def identity(self) -> dict[str, Any]:
        """What defines the campaign; settings added later (`models`, `race`, `parallel`) count only
        when not at their defaults, so a campaign stored before them resumes."""
        data = self.model_dump(exclude=NOT_IDENTITY)
        for key in ADDED_LATER:
            if key in data and data[key] == type(self).model_fields[key].get_default(call_default_factory=True):
                data.pop(key)
        return data

    def campaign_name(self) -> str:
        return self.name or f"{self.strategy}-{self.kind}-{self.suite}-s{self.seed}"


def campaign_seeds(kind: str, names: list[str] | None) -> list[AgentSpec]:
    """Seed agents of `kind` by name (`cot`, `graph/cot`, `Chain-of-Thought (graph)`) or agent file;
    all of the kind's seeds when `names` is None. `ConfigError` naming the seeds there are."""
    from pathlib import Path

    from agentmeta.agents.loader import find_seed, spec_from_file

    if names is None:
        return seed_agents(kind)
    if not names:
        raise ConfigError("a campaign needs at least one seed agent (--seeds)")
    out = []
    for name in names:
        spec = find_seed(f"{kind}/{name}") or find_seed(name)
        if spec is None and Path(name).is_file():
            spec = spec_from_file(Path(name))
        if spec is None or spec.kind != kind:
            known = ", ".join(s.name for s in seed_agents(kind)) or "none"
            raise ConfigError(f"seed {name!r} is not a {kind} seed or agent file (the {kind} seeds: {known})")
        out.append(spec)
    return out


TRAIN_SHOWN = 16
"""Train samples a campaign loads for its proposer (the example task, demonstrations)."""


def load_campaign_data(config: SearchConfig, suite: Suite | None = None) -> tuple[Suite, Suite]:
    """The samples a campaign runs on: (validation samples of the full stage, the train samples a
    proposer may be shown). Never the test split. `suite`: a `Suite` object searched instead of
    loading `config.suite` (its samples are the validation samples; it has no train split)."""
    from agentmeta.eval import load_suite

    size = max(config.full, config.subset)
    if suite is not None:
        if suite.split not in ("validation", "all"):
            raise ConfigError(
                f"search selects on validation samples; the Suite given is its {suite.split} split"
            )
        full = suite.model_copy(update={"samples": suite.samples[:size]})
    else:
        full = load_suite(config.suite, split="validation", limit=size, seed=config.seed)
    # what the proposer is shown comes from the train split only, never from validation/test
    try:
        if suite is not None:
            raise DataError("a Suite object carries no train split")
        train = load_suite(config.suite, split="train", limit=TRAIN_SHOWN, seed=config.seed)
    except DataError:  # a user file with no train rows: the proposer sees no example
        train = full.model_copy(update={"split": "train", "samples": []})
    return full, train


def data_digest(*suites: Suite) -> str:
    """A hash of the samples a campaign runs on (ids, inputs, targets): part of its identity, so an
    edited data file never resumes silently on other samples."""
    h = hashlib.sha256()
    for suite in suites:
        for x in suite.samples:
            h.update(f"{suite.split}\x1f{x.id}\x1f{x.input}\x1f{x.target}\x1e".encode())
    return h.hexdigest()[:16]
