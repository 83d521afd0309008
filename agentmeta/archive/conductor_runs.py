"""Saved conductor runs: `agentmeta conduct --archive PATH` keeps the question, the answer and the
whole transcript, so the UI can show how the conductor got there."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agentmeta.archive.records import as_utc, new_id, utcnow
from agentmeta.errors import ArchiveError
from agentmeta.models.types import Usage

if TYPE_CHECKING:  # SQLAlchemy loads with the store, not with the record types
    from sqlalchemy import Connection, RowMapping


class ConductorRun(BaseModel):
    """One conductor run as saved in the archive."""

    id: str = ""
    question: str
    answer: str
    finished: bool = True
    """False if the conductor stopped without a final answer (the answer is its best available)."""
    rounds: int = 0
    models: dict[str, str] = Field(default_factory=dict)
    """Model specs: `conductor` and `expert`."""
    transcript: list[dict[str, Any]] = Field(default_factory=list)
    """The turns: role (conductor, expert, python, system), name, content, round."""
    usage: Usage = Field(default_factory=Usage)
    note: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class ConductorRunsMixin:
    """Conductor-run methods of `Archive` (which provides `_read`, `_write` and `location`)."""

    location: str

    if TYPE_CHECKING:

        def _read(self) -> AbstractContextManager[Connection]: ...

        def _write(self) -> AbstractContextManager[Connection]: ...

    @staticmethod
    def _conductor_run(row: RowMapping) -> ConductorRun:
        data = dict(row)
        data["created_at"] = as_utc(data["created_at"])
        return ConductorRun.model_validate(data)

    def add_conductor_run(self, result: Any, question: str, models: dict[str, str] | None = None) -> str:
        """Save a `ConductorResult` (or a `ConductorRun`) for `question`; return the run's id."""
        run = ConductorRun(
            id=new_id(), question=question, answer=result.answer, finished=result.finished,
            rounds=result.rounds, models=dict(models or {}),
            transcript=[turn.model_dump(mode="json") for turn in result.transcript], usage=result.usage,
            note=result.note,
        )  # fmt: skip
        from sqlalchemy import insert

        from agentmeta.archive import schema as t

        row = run.model_dump(mode="json", exclude={"created_at"})
        row["created_at"] = run.created_at
        with self._write() as conn:
            conn.execute(insert(t.conductor_runs), [row])
        return run.id

    def conductor_runs(self, limit: int | None = 200) -> list[ConductorRun]:
        """Saved conductor runs, newest first."""
        from sqlalchemy import select

        from agentmeta.archive import schema as t

        q = select(t.conductor_runs).order_by(t.conductor_runs.c.created_at.desc())
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            rows = conn.execute(q).mappings().all()
        return [self._conductor_run(r) for r in rows]

    def get_conductor_run(self, run_id: str) -> ConductorRun:
        """One saved conductor run; raises `ArchiveError` if absent."""
        from sqlalchemy import select

        from agentmeta.archive import schema as t

        with self._read() as conn:
            row = conn.execute(select(t.conductor_runs).where(t.conductor_runs.c.id == run_id)).mappings().first()
        if row is None:
            raise ArchiveError(f"no conductor run {run_id!r} in {self.location}")
        return self._conductor_run(row)
