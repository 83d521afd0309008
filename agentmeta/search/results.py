"""What a campaign run returns, and the full-stage ranking `best` and the confirmation choose from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CampaignResult:
    campaign: str
    archive: str
    stop_reason: str
    new_candidates: list[str] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)
    """Candidate ids evaluated by this run (stage:id)."""
    skipped: list[str] = field(default_factory=list)
    """Candidate ids whose work was already stored (resume)."""
    best: Any = None
    """The best candidate by validation: the first entry of `full_stage_board` (None if no
    candidate reached the full stage)."""
    tokens: int = 0
    """Tokens this run spent, the confirmation's included."""
    search_tokens: int = 0
    """Tokens the campaign had spent (over all its runs) when its search stopped, before the
    confirmation: what the token budget limits."""
    wall_s: float = 0.0
    confirmation: Any = None
    """The `Confirmation` on held-out test samples (None when `SearchConfig.confirm` is off)."""


def full_stage_board(archive: Any, campaign: str, suite: str) -> list[Any]:
    """A campaign's candidates ranked by their full-stage validation score on `suite` (best first;
    status ok, complete evaluations only): what `best` and the confirmation choose from. A
    subset-only score is never compared with these."""
    ok = {c.id for c in archive.candidates(campaign=campaign, status="ok")}
    board = archive.leaderboard(suite, campaign=campaign, split="validation", stage="full")
    return [e for e in board if e.id in ok and e.fitness is not None]
