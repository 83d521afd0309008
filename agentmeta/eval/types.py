"""The persisted types of evaluation: samples, scores, suites and results (pydantic, JSON round-trip)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field, PrivateAttr

from agentmeta.errors import ConfigError
from agentmeta.models.types import Usage
from agentmeta.registry import registry

SplitName = Literal["train", "validation", "test", "all"]
SPLITS: tuple[str, ...] = ("train", "validation", "test", "all")
"""`train` (demonstrations, failures shown to proposers, training loops), `validation`
(selection), `test` (confirmation only), or `all` three."""

Outcome = Literal["scored", "agent_error", "infra_error"]
"""What happened on a sample: its answer was scored; the agent failed (its own exception,
timeout or limit: scored 0 with the reason); or the infrastructure failed (model, server or
sandbox, after retries: not scored, left out of the mean, counted)."""


class Sample(BaseModel):
    """One task instance: what the agent sees and what a scorer compares against."""

    id: str
    """Stable identifier, unique within a suite (paired comparisons align on it)."""
    input: str
    """The task text given to the agent."""
    target: str = ""
    """The reference answer (for code suites: the test program)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Anything else a scorer or an analysis needs (choices, entry point, source record)."""


class Score(BaseModel):
    """A scorer's verdict on one answer."""

    value: float = Field(ge=0.0, le=1.0)
    """The score, 0 (wrong) to 1 (right); partial credit in between."""
    explanation: str = ""
    """Why: what was extracted and what it was compared with (feedback for a meta-agent)."""
    extracted: str | None = None
    """The part of the answer the scorer judged, if it extracted one."""


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores an answer to a sample."""

    def __call__(self, answer: str, sample: Sample) -> Score: ...


class ScorerSpec(BaseModel):
    """A scorer by registry name plus arguments, so a suite can be rebuilt from JSON."""

    name: str = "exact"
    """Registered scorer name (see `agentmeta.eval.scorers.list_scorers`)."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the scorer factory."""

    def build(self) -> Callable[[str, Sample], Score]:
        """The scorer function: the registered factory called with `args` (`ConfigError` naming the
        registered scorers if there is none, or saying which arguments it rejects)."""
        factory = registry.get("scorer", self.name)
        try:
            return factory(**self.args)  # type: ignore[no-any-return]
        except TypeError as e:
            raise ConfigError(f"scorer {self.name!r}: bad arguments {self.args}: {e}") from e


class SplitSizes(BaseModel):
    """Sizes of the three disjoint splits of a suite."""

    train: int = Field(default=0, ge=0)
    """Samples in the train split (demonstrations, proposer feedback, training loops)."""
    validation: int = Field(ge=0)
    """Samples in the validation split (what search optimizes on)."""
    test: int = Field(ge=0)
    """Samples in the held-out test split."""


class Suite(BaseModel):
    """Samples of one split of a benchmark, plus the scorer that judges answers."""

    name: str
    """The spec the suite was loaded from, e.g. `gsm8k` or `rg/countdown`."""
    split: SplitName = "validation"
    """Which split these samples come from."""
    samples: list[Sample]
    """The samples, in evaluation order."""
    scorer: ScorerSpec = Field(default_factory=ScorerSpec)
    """How answers are scored."""
    sizes: SplitSizes | None = None
    """Full sizes of the validation and test splits (before any limit)."""
    description: str = ""
    """One line about the suite."""
    seed: int = 0
    """The seed that picked (or generated) these samples."""
    dropped: dict[str, int] = Field(default_factory=dict)
    """Items left out because they failed a built-in label check, by check name (see
    `agentmeta.eval.audit`); `agentmeta suites check` lists them."""
    _scorer_fn: Callable[[str, Sample], Score] | None = PrivateAttr(default=None)

    def __len__(self) -> int:
        return len(self.samples)

    def score(self, answer: str, sample: Sample) -> Score:
        """Score `answer` with this suite's scorer (built from `scorer` on first use)."""
        if self._scorer_fn is None:
            self._scorer_fn = self.scorer.build()
        return self._scorer_fn(answer, sample)

    def with_scorer(self, scorer: Callable[[str, Sample], Score], name: str = "custom") -> Suite:
        """A copy of this suite scored by `scorer` (a plain callable; recorded by `name` only)."""
        out = self.model_copy(update={"scorer": ScorerSpec(name=name)})
        out._scorer_fn = scorer
        return out


class SampleRecord(BaseModel):
    """What happened on one sample."""

    id: str
    """The sample id."""
    answer: str | None = None
    """The agent's answer, or None if it failed."""
    target: str = ""
    """The reference answer, for reading results without the suite."""
    score: float = 0.0
    """The score; 0 for a failed sample (and for an infrastructure error, which is not counted)."""
    explanation: str = ""
    """The scorer's explanation."""
    error: str | None = None
    """`Type: message` of the exception that failed this sample (agent, scorer or infrastructure)."""
    outcome: Outcome = "scored"
    """scored, agent_error (scored 0) or infra_error (excluded from the mean)."""
    attempts: int = 1
    """How many times the sample was run (an infrastructure error is retried)."""
    prompt_tokens: int = 0
    """Prompt tokens of this sample's calls (a call served by the call cache counts the tokens it
    cost when it ran: this is what the agent costs, not what this run spent)."""
    completion_tokens: int = 0
    """Completion tokens of this sample's calls (cached calls counted as for `prompt_tokens`)."""
    calls: int = 0
    """Model calls made for this sample."""
    latency_s: float = 0.0
    """Wall time of this sample (agent plus scorer)."""
    tokens_by_model: dict[str, int] = Field(default_factory=dict)
    """Tokens per model spec, when the agent's calls went to more than one model (graph nodes with a
    `model` of their own, cascades); empty otherwise."""


class EvalResult(BaseModel):
    """One agent on one suite: per-sample records plus the aggregate with its bootstrap CI."""

    suite: str
    """Suite spec."""
    split: str
    """Split evaluated."""
    agent: str
    """Agent name."""
    model: str
    """Model spec."""
    seed: int = 0
    """Seed of sample selection, model calls and bootstrap."""
    records: list[SampleRecord]
    """One record per sample, in suite order."""
    mean: float
    """Mean score over the scored samples (agent errors count 0; infrastructure errors are left out)."""
    ci_low: float
    """Lower end of the 95% bootstrap CI of the mean."""
    ci_high: float
    """Upper end of the 95% bootstrap CI of the mean."""
    n: int
    """Samples that count in the mean (scored, or failed by the agent)."""
    n_hits: int
    """Samples with score >= 1."""
    n_errors: int
    """Samples whose agent (or scorer) failed: scored 0."""
    n_infra: int = 0
    """Samples lost to infrastructure errors after retries: not scored, not in `n` or the mean."""
    incomplete: bool = False
    """True when too many samples were lost to infrastructure errors (see `max_infra_share`):
    the mean is not comparable and a search never selects on it."""
    errors: dict[str, int] = Field(default_factory=dict)
    """Error messages (first line, truncated) with how many samples raised each."""
    dropped: dict[str, int] = Field(default_factory=dict)
    """Suite items left out by built-in label checks before the run, by check name."""
    usage: Usage = Field(default_factory=Usage)
    """Model calls and tokens over the whole run."""
    wall_s: float = 0.0
    """Wall time of the run, in seconds."""
    concurrency: int = 1
    """Worker threads used."""

    @property
    def scored_records(self) -> list[SampleRecord]:
        """The records that count (infrastructure errors left out)."""
        return [r for r in self.records if r.outcome != "infra_error"]

    @property
    def scores(self) -> list[float]:
        """Scores of the samples that count, in suite order."""
        return [r.score for r in self.scored_records]

    def score_by_id(self) -> dict[str, float]:
        """Scores by sample id, of the samples that count."""
        return {r.id: r.score for r in self.scored_records}

    def summary(self) -> dict[str, Any]:
        """The aggregate fields only (no per-sample records)."""
        return self.model_dump(exclude={"records"})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> EvalResult:
        return cls.model_validate_json(Path(path).read_text())


def load_results(path: str | Path) -> list[EvalResult]:
    """Read a file written by `agentmeta eval --out`: one result object or a list of them."""
    data = json.loads(Path(path).read_text())
    items = data if isinstance(data, list) else [data]
    return [EvalResult.model_validate(x) for x in items]
