"""Public record types of the archive: candidates, their evaluations, campaigns.

Every persisted object is a pydantic model; fitness is always a float (a fraction in [0, 1]
for accuracy-like scores), never a formatted string.
"""

from __future__ import annotations

import hashlib
import math
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from agentmeta.models.types import Usage

Kind = Literal["code", "graph", "prompt", "conductor", "model"]
Status = Literal["pending", "ok", "invalid", "error"]
CampaignStatus = Literal["running", "done", "failed", "stopped"]

KINDS: tuple[str, ...] = ("code", "graph", "prompt", "conductor", "model")
STATUSES: tuple[str, ...] = ("pending", "ok", "invalid", "error")
ID_LENGTH = 12
ID_PATTERN = r"^[A-Za-z0-9_.-]{0,32}$"


def new_id() -> str:
    """A fresh random id: 12 hex characters."""
    return uuid.uuid4().hex[:ID_LENGTH]


def key_id(key: str) -> str:
    """The deterministic id of a caller-supplied key: the first 12 hex characters of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:ID_LENGTH]


_clock_lock = threading.Lock()
_last_now: datetime | None = None


def utcnow() -> datetime:
    """The current UTC time, strictly increasing within a process (records keep their order)."""
    global _last_now
    with _clock_lock:
        now = datetime.now(timezone.utc)
        if _last_now is not None and now <= _last_now:
            now = _last_now + timedelta(microseconds=1)
        _last_now = now
        return now


def as_utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands back naive ones; all are UTC)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _finite(v: float | None) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError(f"expected a finite number, got {v!r}")
    return v


class SampleScore(BaseModel):
    """The score of one sample of a suite."""

    sample_id: str
    """Id of the sample inside its suite."""
    score: float
    """Its score (1.0 right, 0.0 wrong, or a partial credit such as F1)."""
    error: str | None = None
    """Why the candidate failed on this sample (exception, timeout), if it did."""

    @field_validator("sample_id", mode="before")
    @classmethod
    def _str_id(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @field_validator("score")
    @classmethod
    def _finite_score(cls, v: float) -> float:
        return _finite(v)  # type: ignore[return-value]


class Evaluation(BaseModel):
    """One evaluation of one candidate on one suite, split and stage."""

    candidate_id: str
    """Id of the candidate evaluated."""
    suite: str
    """Spec of the suite (e.g. `reasoning-gym/arithmetic`)."""
    split: str = "validation"
    """Which split of the suite: train, validation or test."""
    stage: str = "full"
    """Stage of a staged evaluation, e.g. `subset` (cheap first pass) or `full`."""
    n: int = 0
    """Number of samples scored."""
    mean: float | None = None
    """Mean score over the samples."""
    ci_low: float | None = None
    """Lower bound of the 95% bootstrap confidence interval of the mean."""
    ci_high: float | None = None
    """Upper bound of the 95% bootstrap confidence interval of the mean."""
    scores: list[SampleScore] = Field(default_factory=list)
    """Per-sample scores, in sample order."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens and calls this evaluation spent."""
    wall_s: float = 0.0
    """Wall time of the evaluation, in seconds."""
    created_at: datetime = Field(default_factory=utcnow)
    """When the evaluation was recorded (UTC)."""

    @field_validator("mean", "ci_low", "ci_high")
    @classmethod
    def _finite_stats(cls, v: float | None) -> float | None:
        return _finite(v)

    @model_validator(mode="after")
    def _fill(self) -> Evaluation:
        if self.scores and self.n == 0:
            self.n = len(self.scores)
        if self.mean is None and self.scores:
            self.mean = sum(s.score for s in self.scores) / len(self.scores)
        return self


class Candidate(BaseModel):
    """One candidate agent, prompt, conductor design or model adapter, with its scores."""

    id: str = Field(default="", pattern=ID_PATTERN)
    """Short id (12 hex characters); set by `Archive.add` when empty."""
    key: str | None = Field(default=None, min_length=1, max_length=500)
    """Caller-supplied deterministic key: adding the same key twice returns the same record."""
    kind: Kind = "code"
    """What `source` holds: code, graph, prompt, conductor or model."""
    name: str = ""
    """Short human name, e.g. `Self-Refine`."""
    thought: str = ""
    """The proposer's reasoning for this design."""
    source: str = ""
    """Python source (code), YAML/JSON spec (graph, conductor), prompt text, or adapter reference (model)."""
    parent_ids: list[str] = Field(default_factory=list)
    """Ids of the candidates this one was derived from, in order of importance."""
    generation: int = 0
    """Search generation that produced it; 0 for seeds and imports."""
    campaign: str | None = None
    """Id of the campaign that produced it, if any."""
    model_specs: dict[str, str] = Field(default_factory=dict)
    """Model specs used, by role (e.g. `{"agent": "smollm2", "proposer": "openai/gpt-4o"}`)."""
    fitness: float | None = None
    """Mean score of the primary evaluation (None until evaluated)."""
    ci_low: float | None = None
    """Lower bound of the 95% confidence interval of `fitness`."""
    ci_high: float | None = None
    """Upper bound of the 95% confidence interval of `fitness`."""
    n: int | None = None
    """Number of samples behind `fitness`."""
    fitness_suite: str | None = None
    """Suite of the evaluation that `fitness` comes from."""
    fitness_stage: str | None = None
    """Stage of the evaluation that `fitness` comes from."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens and calls spent on this candidate: proposing it plus every recorded evaluation."""
    status: Status = "pending"
    """pending (not evaluated yet), ok, invalid (did not parse or validate) or error (failed to run)."""
    error: str | None = None
    """Error message when status is invalid or error."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Anything else worth keeping (JSON-serializable)."""
    created_at: datetime = Field(default_factory=utcnow)
    """When the record was added (UTC)."""
    updated_at: datetime = Field(default_factory=utcnow)
    """When the record last changed (UTC)."""
    evaluations: list[Evaluation] = Field(default_factory=list)
    """Every evaluation recorded for it (filled by `Archive.get`, empty in listings)."""

    @field_validator("fitness", "ci_low", "ci_high", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        if isinstance(v, str):
            raise ValueError(
                f"fitness must be a number, got the string {v!r}; "
                "parse ADAS strings with agentmeta.archive.parse_adas_fitness"
            )
        return v

    @field_validator("fitness", "ci_low", "ci_high")
    @classmethod
    def _finite_stats(cls, v: float | None) -> float | None:
        return _finite(v)


class Campaign(BaseModel):
    """A search campaign: its config and progress, so that a re-run resumes it."""

    id: str = Field(default="", pattern=ID_PATTERN)
    """Short id (12 hex characters); set by `Archive.start_campaign` when empty."""
    name: str = Field(min_length=1, max_length=200)
    """Unique human name; re-running a campaign by this name resumes it."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Config as JSON: suite, strategy, kind, seeds, budgets, ..."""
    status: CampaignStatus = "running"
    """running, done, failed or stopped."""
    state: dict[str, Any] = Field(default_factory=dict)
    """Progress the runner needs to resume (iteration, rng state, spent budget, ...)."""
    created_at: datetime = Field(default_factory=utcnow)
    """When the campaign was started (UTC)."""
    updated_at: datetime = Field(default_factory=utcnow)
    """When the campaign last changed (UTC)."""


class LeaderboardEntry(BaseModel):
    """One row of a leaderboard."""

    rank: int
    """1-based rank."""
    id: str
    """Candidate id."""
    name: str
    """Candidate name."""
    kind: str
    """Candidate kind."""
    fitness: float | None
    """Mean score used for ranking."""
    ci_low: float | None
    """Lower bound of the 95% CI."""
    ci_high: float | None
    """Upper bound of the 95% CI."""
    n: int | None
    """Samples behind the fitness."""
    suite: str | None
    """Suite the fitness comes from."""
    stage: str | None
    """Stage the fitness comes from."""
    status: str
    """Candidate status."""
    generation: int
    """Candidate generation."""
    parent_ids: list[str]
    """Candidate parents."""
    campaign: str | None
    """Candidate campaign id."""


class Lineage(BaseModel):
    """Where a candidate comes from and what came from it."""

    id: str
    """The candidate asked about."""
    ancestors: list[Candidate]
    """Every ancestor, nearest first (breadth-first over parent ids)."""
    depth: dict[str, int]
    """Distance from the candidate to each ancestor (parents are 1)."""
    children: list[Candidate]
    """Direct children, oldest first."""


class ImportResult(BaseModel):
    """What `Archive.import_json` did."""

    format: Literal["adas", "agentmeta"]
    """Detected format of the file."""
    added: int
    """Records added."""
    existing: int
    """Records already present (left unchanged)."""
    ids: list[str]
    """Candidate ids, in file order."""
