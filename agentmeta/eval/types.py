"""The persisted types of evaluation: samples, scores, suites and results (pydantic, JSON round-trip)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field, PrivateAttr

from agentmeta.models.types import Usage

SplitName = Literal["validation", "test", "all"]
SPLITS: tuple[str, ...] = ("validation", "test", "all")


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


class SplitSizes(BaseModel):
    """Default sizes of the two disjoint splits of a suite."""

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
    _scorer_fn: Callable[[str, Sample], Score] | None = PrivateAttr(default=None)

    def __len__(self) -> int:
        return len(self.samples)

    def score(self, answer: str, sample: Sample) -> Score:
        """Score `answer` with this suite's scorer (built from `scorer` on first use)."""
        if self._scorer_fn is None:
            from agentmeta.eval.scorers import build_scorer

            self._scorer_fn = build_scorer(self.scorer)
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
    """The score; 0 for a failed sample."""
    explanation: str = ""
    """The scorer's explanation."""
    error: str | None = None
    """`Type: message` of the exception that failed this sample (agent or scorer), else None."""
    prompt_tokens: int = 0
    """Prompt tokens spent on this sample (cached calls count 0)."""
    completion_tokens: int = 0
    """Completion tokens spent on this sample (cached calls count 0)."""
    calls: int = 0
    """Model calls made for this sample."""
    latency_s: float = 0.0
    """Wall time of this sample (agent plus scorer)."""


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
    """Mean score over all samples (failed samples count 0)."""
    ci_low: float
    """Lower end of the 95% bootstrap CI of the mean."""
    ci_high: float
    """Upper end of the 95% bootstrap CI of the mean."""
    n: int
    """Samples evaluated."""
    n_hits: int
    """Samples with score >= 1."""
    n_errors: int
    """Samples that raised (scored 0)."""
    errors: dict[str, int] = Field(default_factory=dict)
    """Error messages (first line, truncated) with how many samples raised each."""
    usage: Usage = Field(default_factory=Usage)
    """Model calls and tokens over the whole run."""
    wall_s: float = 0.0
    """Wall time of the run, in seconds."""
    concurrency: int = 1
    """Worker threads used."""

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.records]

    def score_by_id(self) -> dict[str, float]:
        return {r.id: r.score for r in self.records}

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
