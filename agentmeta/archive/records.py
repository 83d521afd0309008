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

from pydantic import BaseModel, Field, computed_field, field_validator, model_validator

from agentmeta.errors import ArchiveError
from agentmeta.models.types import Usage
from agentmeta.registry import registry

Status = Literal["pending", "ok", "invalid", "error"]
CampaignStatus = Literal["running", "done", "failed", "stopped"]

Outcome = Literal["scored", "agent_error", "infra_error"]

ARCHIVE_KINDS: tuple[str, ...] = ("model",)
"""Kinds the archive stores besides the registered agent kinds: `model` (a trained adapter)."""
STATUSES: tuple[str, ...] = ("pending", "ok", "invalid", "error")
ID_LENGTH = 12
ID_PATTERN = r"^[A-Za-z0-9_.-]{0,32}$"
ANSWER_MAX_BYTES = 4096
"""Longest answer kept per sample (UTF-8 bytes, truncation marker included)."""
TRUNCATED = "[... truncated: {chars} characters in all]"
"""Marker ending an answer cut to `ANSWER_MAX_BYTES`."""
FITNESS_INFRA_KEY = "fitness_infra"
"""Candidate metadata key describing the infrastructure errors of the evaluation behind `fitness`
(`suite`, `split`, `stage`, `n`, `n_infra`, `incomplete`); absent when there were none."""
SUBSET_STAGE = "subset"
"""The cheap first stage of a staged evaluation (a few samples)."""
FULL_STAGE = "full"
"""The full validation stage: what a search ranks and selects on."""
CONFIRM_STAGE = "confirm"
"""Stage of a confirmation on held-out test samples (split `test`; never primary, never selected on)."""
PRELIMINARY_STAGES: tuple[str, ...] = (SUBSET_STAGE,)
"""Stages whose scores are a cheap first pass: a candidate whose score comes from one of these only
is ranked after every candidate scored on another stage, never above one (`LeaderboardEntry.subset_only`)."""


def per_sample(tokens: int, samples: int) -> float | None:
    """`tokens` spread over `samples` samples (None when there is no sample)."""
    return tokens / samples if samples > 0 else None


def known_kinds() -> list[str]:
    """The kinds a new record may have: every registered agent kind (`code`, `graph`, `prompt`,
    `conductor`, plugins') plus `ARCHIVE_KINDS`. Reading is not limited to these: a stored record
    whose plugin is not installed still reads."""
    return [*registry.names("kind"), *(k for k in ARCHIVE_KINDS if not registry.has("kind", k))]


def check_kind(kind: str) -> str:
    """`kind` if a new record may have it, else `ArchiveError` naming the kinds that exist."""
    if kind not in known_kinds():
        raise ArchiveError(
            f"unknown kind {kind!r}; expected one of {known_kinds()} "
            "(a plugin's agent kind needs its package installed)"
        )
    return kind


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


def truncate_answer(text: str, limit: int = ANSWER_MAX_BYTES) -> str:
    """`text` if it fits in `limit` UTF-8 bytes, else its head plus a marker, `limit` bytes in all."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    marker = "\n" + TRUNCATED.format(chars=len(text))
    room = max(0, limit - len(marker.encode("utf-8")))
    head = data[:room].decode("utf-8", "ignore")  # never splits a character
    return head + marker


def _finite(v: float | None) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError(f"expected a finite number, got {v!r}")
    return v


class SampleScore(BaseModel):
    """The score of one sample of a suite, with the agent's answer (never the target)."""

    sample_id: str
    """Id of the sample inside its suite."""
    score: float
    """Its score (1.0 right, 0.0 wrong, or a partial credit such as F1)."""
    error: str | None = None
    """Why the candidate failed on this sample (exception, timeout), if it did."""
    outcome: Outcome = "scored"
    """scored, agent_error (scored 0) or infra_error (not scored, left out of the mean).
    Entries stored without one read as agent_error if they have an error, else scored."""
    answer: str | None = None
    """The agent's answer (at most `ANSWER_MAX_BYTES`, cut with a marker), or None."""
    attempts: int = 1
    """How many times the sample was run (an infrastructure error is retried)."""

    @model_validator(mode="before")
    @classmethod
    def _default_outcome(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("outcome") is None:
            data = {**data, "outcome": "agent_error" if data.get("error") else "scored"}
        return data

    @field_validator("sample_id", mode="before")
    @classmethod
    def _str_id(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @field_validator("score")
    @classmethod
    def _finite_score(cls, v: float) -> float:
        return _finite(v)  # type: ignore[return-value]

    @field_validator("answer")
    @classmethod
    def _short_answer(cls, v: str | None) -> str | None:
        return None if v is None else truncate_answer(v)

    @property
    def counted(self) -> bool:
        """True unless the sample was lost to an infrastructure error."""
        return self.outcome != "infra_error"


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
    """Number of samples that count in the mean (infrastructure errors left out)."""
    mean: float | None = None
    """Mean score over the samples that count."""
    ci_low: float | None = None
    """Lower bound of the 95% bootstrap confidence interval of the mean."""
    ci_high: float | None = None
    """Upper bound of the 95% bootstrap confidence interval of the mean."""
    scores: list[SampleScore] = Field(default_factory=list)
    """Per-sample scores, outcomes and answers, in sample order."""
    n_infra: int = 0
    """Samples lost to infrastructure errors: not scored, not in `n` or the mean."""
    incomplete: bool = False
    """Too many samples were lost to infrastructure errors: the mean is not comparable, and
    neither the candidate's fitness nor a leaderboard ever comes from this evaluation."""
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
        counted = [s.score for s in self.scores if s.counted]
        if self.scores and self.n == 0:
            self.n = len(counted)
        if self.scores and self.n_infra == 0:
            self.n_infra = len(self.scores) - len(counted)
        if self.mean is None and counted:
            self.mean = sum(counted) / len(counted)
        return self

    @property
    def answers(self) -> dict[str, str | None]:
        """The stored answer of each sample, by sample id."""
        return {s.sample_id: s.answer for s in self.scores}

    @property
    def outcomes(self) -> dict[str, str]:
        """The outcome of each sample (scored, agent_error, infra_error), by sample id."""
        return {s.sample_id: s.outcome for s in self.scores}

    def score_by_id(self) -> dict[str, float]:
        """Scores by sample id, of the samples that count (infrastructure errors left out)."""
        return {s.sample_id: s.score for s in self.scores if s.counted}

    @property
    def samples_run(self) -> int:
        """Samples the evaluation ran (those lost to infrastructure errors included)."""
        return len(self.scores) or self.n + self.n_infra

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tokens_per_sample(self) -> float | None:
        """Prompt plus completion tokens per sample run: `usage` (the sum of the per-sample records'
        token counts, every attempt included) over `samples_run`. A call served by the call cache
        counts the tokens it cost when it ran, so a resumed or replayed evaluation shows what the
        agent costs, the same as a cold run."""
        return per_sample(self.usage.prompt_tokens + self.usage.completion_tokens, self.samples_run)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def completion_tokens_per_sample(self) -> float | None:
        """Completion tokens per sample run (cached calls counted as in `tokens_per_sample`)."""
        return per_sample(self.usage.completion_tokens, self.samples_run)


class Candidate(BaseModel):
    """One candidate agent, prompt, conductor design or model adapter, with its scores."""

    id: str = Field(default="", pattern=ID_PATTERN)
    """Short id (12 hex characters); set by `Archive.add` when empty."""
    key: str | None = Field(default=None, min_length=1, max_length=500)
    """Caller-supplied deterministic key: adding the same key twice returns the same record."""
    kind: str = "code"
    """What `source` holds: a registered agent kind (code, graph, prompt, conductor or a plugin's)
    or model. `Archive.add` checks it (`known_kinds`); reading accepts any stored kind."""
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

    @property
    def incomplete(self) -> bool:
        """True when its latest primary evaluation was incomplete (then `fitness` is None)."""
        info = self.metadata.get(FITNESS_INFRA_KEY)
        return isinstance(info, dict) and bool(info.get("incomplete"))

    @property
    def n_infra(self) -> int:
        """Samples of the evaluation behind `fitness` lost to infrastructure errors."""
        info = self.metadata.get(FITNESS_INFRA_KEY)
        return int(info.get("n_infra") or 0) if isinstance(info, dict) else 0


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
    """Mean score used for ranking (None when unscored or incomplete)."""
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
    n_infra: int = 0
    """Samples of the evaluation shown lost to infrastructure errors."""
    incomplete: bool = False
    """The candidate's evaluation is incomplete (too many infrastructure errors): it is not
    ranked, has no fitness, and is listed after every ranked candidate."""
    subset_only: bool = False
    """The score comes from a cheap first stage only (`PRELIMINARY_STAGES`: `subset`): not
    comparable with full-stage scores, so it is listed after every candidate scored on another
    stage, never above one."""
    tokens_per_sample: float | None = None
    """Prompt plus completion tokens per sample of the evaluation shown (cached calls count 0)."""
    completion_tokens_per_sample: float | None = None
    """Completion tokens per sample of the evaluation shown (cached calls count 0)."""


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
