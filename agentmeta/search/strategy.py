"""The strategy protocol: how a search proposes the next candidate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from agentmeta.agents.base import AgentSpec
from agentmeta.errors import InvalidAgentError
from agentmeta.models.types import Usage

if TYPE_CHECKING:
    from agentmeta.archive import Archive, Candidate
    from agentmeta.eval import EvalResult, Sample
    from agentmeta.models import Model

TrainEvaluator = Callable[[AgentSpec, "Sequence[Sample]"], "EvalResult"]
"""`evaluate(spec, samples)`: the candidate `spec` run and scored on `samples`, which must come from
the suite's train split, with the campaign's task model, seed and concurrency."""


class NoNewCandidateError(InvalidAgentError):
    """The strategy made no new candidate this iteration (every child was known, or none passed
    the strategy's own test); the campaign records the iteration as `no-proposal-<i>` and goes on."""


@dataclass
class ProposalContext:
    """What a strategy sees when it proposes."""

    archive: Archive
    campaign: str
    kind: str
    task_description: str
    iteration: int
    seed: int
    meta_model: Model
    candidates: list[Candidate]
    """This campaign's candidates so far (seeds included), oldest first."""
    train_samples: list[Sample] = field(default_factory=list)
    """Samples of the suite's train split (never validation or test): what a strategy may show a
    model as demonstrations. Empty when the suite has no train split."""
    suite: str = ""
    """The suite spec the campaign selects on (its validation evaluations are stored under it)."""
    objective: str = "score"
    """`score` (parents by validation score) or `pareto` (parents from the score x tokens-per-sample
    Pareto front): see `SearchConfig.objective`."""
    trace: Callable[[AgentSpec, Sample], dict[str, Any]] | None = None
    """`trace(spec, sample)`: a graph candidate's node outputs on one train sample, from the same
    seeded calls as `evaluate` (replayed from the call cache when it is on); None where the campaign
    offers none."""
    models: list[str] = field(default_factory=list)
    """Other model specs candidates' nodes may use (`SearchConfig.models`)."""
    task_model: str = ""
    """The spec of the model candidates run on."""
    evaluate: TrainEvaluator | None = None
    """Runs a spec on train samples (`TrainEvaluator`); None where the campaign offers none. A
    reflective strategy reads the scorer's feedback on these runs; validation and test samples
    are refused."""
    demos: str = "bootstrap"
    """How demonstrations are made from the train split (`SearchConfig.demos`): `bootstrap` (one
    draw) or `reprompt` (Gibbs-style rounds, `agentmeta.search.reprompt`)."""
    meta_prompt: str = "fixed"
    """The campaign's meta-prompt policy (`SearchConfig.meta_prompt`, `agentmeta.search.meta_prompt`)."""
    adaptive: bool = False
    """Whether the operators and `bayes` may make adaptive-compute nodes (`SearchConfig.adaptive`)."""


@dataclass
class Proposal:
    """A proposed candidate, with the conversation that produced it (for debug rounds)."""

    spec: AgentSpec
    parent_ids: list[str]
    messages: list[dict[str, str]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    raw: dict[str, Any] = field(default_factory=dict)


class Strategy(Protocol):
    name: str

    def propose(self, ctx: ProposalContext) -> Proposal: ...

    def debug(self, ctx: ProposalContext, proposal: Proposal, error: str, attempt: int) -> Proposal | None:
        """Return a repaired proposal for `error`, or None to give up."""
        ...
