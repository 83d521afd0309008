"""The record of looks at the test split: every confirmation appends one `TestLook` (which
candidates, with what settings, on which samples, what it found, when); none is ever changed or
removed. `confirm` counts the earlier looks at the samples it is about to use, refuses a look with
other settings unless asked for a new one, and the UI and report list them."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agentmeta.archive.records import as_utc, utcnow

if TYPE_CHECKING:  # SQLAlchemy loads with the store, not with the record types
    from sqlalchemy import Connection, RowMapping


class TestLook(BaseModel):
    """One look at a suite's test split, as recorded."""

    __test__ = False  # not a pytest test class

    id: int | None = None
    """Order of the look in this archive (set when recorded)."""
    suite: str
    """Suite spec whose test split was looked at."""
    split: str = "test"
    campaign: str | None = None
    """Campaign id the look confirmed, if any."""
    candidates: list[str] = Field(default_factory=list)
    """Candidates whose test scores the look produced or showed."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """What decides the outcome besides the candidates: model, seed, limit, margin."""
    sample_ids: list[str] = Field(default_factory=list)
    """The test samples, in order."""
    result: dict[str, Any] = Field(default_factory=dict)
    """What it found: verdict, confirmed, savings, and per candidate its test mean, CI, paired
    difference with the best seed and per-sample scores (so a later look replacing a stored
    evaluation loses nothing)."""
    evaluated: list[str] = Field(default_factory=list)
    """Candidates evaluated on the test samples by this look (the rest were stored already)."""
    repeat: bool = False
    """Nothing new: the same campaign, settings and samples as an earlier look, every evaluation
    stored. Not counted as another look."""
    created_at: datetime = Field(default_factory=utcnow)


class TestLooksMixin:
    """Test-look methods of `Archive` (which provides `_read`, `_write` and `location`)."""

    __test__ = False

    location: str

    if TYPE_CHECKING:

        def _read(self) -> AbstractContextManager[Connection]: ...

        def _write(self) -> AbstractContextManager[Connection]: ...

    @staticmethod
    def _test_look(row: RowMapping) -> TestLook:
        data = dict(row)
        data["created_at"] = as_utc(data["created_at"])
        return TestLook.model_validate(data)

    def add_test_look(self, look: TestLook) -> int:
        """Append a look to the record; returns its id. Looks are never updated or deleted."""
        from sqlalchemy import insert

        from agentmeta.archive import schema as t

        row = look.model_dump(mode="json", exclude={"id", "created_at"})
        row["created_at"] = look.created_at
        with self._write() as conn:
            result = conn.execute(insert(t.test_looks), [row])
            pk = result.inserted_primary_key
        return int(pk[0]) if pk else -1

    def test_looks(self, *, suite: str | None = None, campaign: str | None = None) -> list[TestLook]:
        """Recorded looks at test splits, oldest first; only this suite's or campaign's if given."""
        from sqlalchemy import select

        from agentmeta.archive import schema as t

        q = select(t.test_looks).order_by(t.test_looks.c.id)
        if suite is not None:
            q = q.where(t.test_looks.c.suite == suite)
        if campaign is not None:
            q = q.where(t.test_looks.c.campaign == campaign)
        with self._read() as conn:
            rows = conn.execute(q).mappings().all()
        return [self._test_look(r) for r in rows]


def looks_at(looks: list[TestLook], sample_ids: list[str]) -> list[TestLook]:
    """The looks (repeats left out) that used any of these samples."""
    wanted = set(sample_ids)
    return [look for look in looks if not look.repeat and wanted.intersection(look.sample_ids)]
