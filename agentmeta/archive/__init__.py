"""The archive: every candidate the search proposes, with its per-sample scores and lineage.

`Archive(path_or_url)` stores records in SQLite (WAL) or PostgreSQL; `Candidate`, `Evaluation`
and `Campaign` are the records; ADAS archive JSON imports with its fitness strings parsed.
"""

from __future__ import annotations

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
from agentmeta.archive.store import ARCHIVE_ENV, DEFAULT_ARCHIVE, Archive, default_archive_path
from agentmeta.errors import ArchiveError

__all__ = [
    "ARCHIVE_ENV",
    "DEFAULT_ARCHIVE",
    "Archive",
    "ArchiveError",
    "Campaign",
    "Candidate",
    "Evaluation",
    "FitnessCI",
    "ImportResult",
    "LeaderboardEntry",
    "Lineage",
    "SampleScore",
    "default_archive_path",
    "parse_adas_fitness",
]
