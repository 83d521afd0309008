"""The archive: every candidate the search proposes, with its per-sample scores and lineage.

`Archive(path_or_url)` stores records in SQLite (WAL) or PostgreSQL; `Candidate`, `Evaluation`
and `Campaign` are the records; `Archive.diff` compares two candidates sample by sample
(`CandidateDiff`); ADAS archive JSON imports with its fitness strings parsed.
The store (and SQLAlchemy) load on first use of `Archive`, so the record types stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentmeta.archive.conductor_runs import ConductorRun
from agentmeta.archive.diff import CandidateDiff, SampleDiff
from agentmeta.archive.io import FitnessCI, parse_adas_fitness
from agentmeta.archive.records import (
    Campaign,
    Candidate,
    Evaluation,
    ImportResult,
    LeaderboardEntry,
    Lineage,
    SampleScore,
)
from agentmeta.archive.test_looks import TestLook
from agentmeta.errors import ArchiveError

if TYPE_CHECKING:
    from agentmeta.archive.store import ARCHIVE_ENV, DEFAULT_ARCHIVE, Archive, default_archive_path

_LAZY = {"ARCHIVE_ENV", "DEFAULT_ARCHIVE", "Archive", "default_archive_path"}

__all__ = [
    "ARCHIVE_ENV",
    "DEFAULT_ARCHIVE",
    "Archive",
    "ArchiveError",
    "Campaign",
    "Candidate",
    "CandidateDiff",
    "ConductorRun",
    "Evaluation",
    "FitnessCI",
    "ImportResult",
    "LeaderboardEntry",
    "Lineage",
    "SampleDiff",
    "SampleScore",
    "TestLook",
    "default_archive_path",
    "parse_adas_fitness",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("agentmeta.archive.store"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
