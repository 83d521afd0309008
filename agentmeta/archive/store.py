"""`Archive`: every candidate, evaluation and campaign, in SQLite (default) or PostgreSQL.

One transaction per record: a killed campaign loses at most the candidate in flight. Writes
from threads of one process are serialized by a lock; other processes wait on the database
lock (SQLite: WAL, busy timeout, BEGIN IMMEDIATE), and readers never block writers.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, RowMapping, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from agentmeta.archive import schema as t
from agentmeta.archive.campaigns import CampaignsMixin
from agentmeta.archive.conductor_runs import ConductorRunsMixin
from agentmeta.archive.queries_mixin import QueriesMixin
from agentmeta.archive.records import (
    FITNESS_INFRA_KEY,
    STATUSES,
    Candidate,
    Evaluation,
    ImportResult,
    SampleScore,
    as_utc,
    check_kind,
    key_id,
    known_kinds,
    new_id,
    utcnow,
)
from agentmeta.archive.test_looks import TestLooksMixin
from agentmeta.errors import ArchiveError
from agentmeta.models.types import Usage

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

DEFAULT_ARCHIVE = "agentmeta-archive.db"
ARCHIVE_ENV = "AGENTMETA_ARCHIVE"


def default_archive_path() -> str:
    """`$AGENTMETA_ARCHIVE` if set, else `./agentmeta-archive.db`."""
    return os.environ.get(ARCHIVE_ENV) or DEFAULT_ARCHIVE


def _usage_sum(a: Usage, b: Usage, sign: int = 1) -> Usage:
    return Usage(
        calls=max(0, a.calls + sign * b.calls),
        prompt_tokens=max(0, a.prompt_tokens + sign * b.prompt_tokens),
        completion_tokens=max(0, a.completion_tokens + sign * b.completion_tokens),
        cached_calls=max(0, a.cached_calls + sign * b.cached_calls),
    )


def _as_set(value: str | Iterable[str] | None, allowed: Sequence[str], what: str) -> set[str] | None:
    if value is None:
        return None
    values = {value} if isinstance(value, str) else set(value)
    bad = values - set(allowed)
    if bad:
        raise ArchiveError(f"unknown {what} {sorted(bad)}; expected one of {list(allowed)}")
    return values


def _eval_key(candidate_id: str, suite: str, split: str, stage: str) -> ColumnElement[bool]:
    e = t.evaluations.c
    return and_(e.candidate_id == candidate_id, e.suite == suite, e.split == split, e.stage == stage)


def _sample_score(record: Any) -> SampleScore:
    """The archived part of an `EvalResult` record: no target, no scorer explanation."""
    outcome = getattr(record, "outcome", None)
    if outcome in (None, "scored") and record.error:
        outcome = "agent_error"  # a result saved before outcomes existed
    return SampleScore(
        sample_id=record.id,
        score=record.score,
        error=record.error,
        outcome=outcome or "scored",
        answer=record.answer,
        attempts=getattr(record, "attempts", 1),
    )


class Archive(QueriesMixin, CampaignsMixin, ConductorRunsMixin, TestLooksMixin):
    """A persistent archive of candidates.

    `Archive("runs/a.db")` or `Archive("postgresql+psycopg://host/db")`. A missing SQLite file
    is created (unless `create=False`); a corrupt or foreign file raises `ArchiveError` and is
    left byte-for-byte unchanged.
    """

    def __init__(self, url_or_path: str | Path | None = None, *, create: bool = True) -> None:
        target = url_or_path if url_or_path is not None else default_archive_path()
        self._engine, self.location = t.open_engine(target, create=create)
        self._lock = threading.RLock()

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release every pooled connection (a later call opens new ones)."""
        self._engine.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Archive({self.location!r})"

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise ArchiveError(f"archive {self.location}: read failed: {str(e).splitlines()[0]}") from e

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction: committed on exit, rolled back on any error."""
        with self._lock:
            try:
                with (
                    self._engine.connect().execution_options(agentmeta_write=True) as conn,
                    conn.begin(),
                ):
                    yield conn
            except IntegrityError as e:
                raise t.WriteConflict(
                    f"archive {self.location}: conflicting write: {str(e).splitlines()[0]}"
                ) from e
            except SQLAlchemyError as e:
                raise ArchiveError(f"archive {self.location}: write failed: {str(e).splitlines()[0]}") from e

    # -- row conversion ---------------------------------------------------------------------

    @staticmethod
    def _candidate(row: RowMapping, evaluations: list[Evaluation] | None = None) -> Candidate:
        data = dict(row)
        data["created_at"] = as_utc(data["created_at"])
        data["updated_at"] = as_utc(data["updated_at"])
        data["evaluations"] = evaluations or []
        return Candidate.model_validate(data)

    @staticmethod
    def _evaluation(row: RowMapping) -> Evaluation:
        data = {k: v for k, v in row.items() if k != "id"}
        data["created_at"] = as_utc(data["created_at"])
        return Evaluation.model_validate(data)

    @staticmethod
    def _candidate_row(c: Candidate) -> dict[str, Any]:
        data = c.model_dump(mode="json", exclude={"evaluations", "created_at", "updated_at"})
        data["created_at"] = c.created_at
        data["updated_at"] = c.updated_at
        return data

    @staticmethod
    def _evaluation_row(e: Evaluation) -> dict[str, Any]:
        derived = {"tokens_per_sample", "completion_tokens_per_sample"}  # from `usage`, not stored twice
        data = e.model_dump(mode="json", exclude={"created_at", *derived})
        data["created_at"] = e.created_at
        return data

    # -- candidates -------------------------------------------------------------------------

    def add(self, candidate: Candidate) -> str:
        """Store a candidate (and any evaluations it carries) in one transaction; return its id.

        Idempotent: if `candidate.key` or `candidate.id` is already in the archive, the existing
        id is returned and nothing is written. The id is `candidate.id`, else derived from
        `candidate.key`, else random. Parents must already be in the archive.
        """
        return self._add(candidate)[0]

    def _add(self, candidate: Candidate) -> tuple[str, bool]:
        check_kind(candidate.kind)  # writing validates; reading takes any stored kind
        cid = candidate.id or (key_id(candidate.key) if candidate.key else new_id())
        record = candidate.model_copy(update={"id": cid})
        for ev in record.evaluations:
            if ev.candidate_id not in ("", cid):
                raise ArchiveError(f"evaluation of {ev.candidate_id!r} attached to candidate {cid!r}")
        try:
            with self._write() as conn:
                existing = self._existing_id(conn, cid, record.key)
                if existing is not None:
                    return existing, False
                if record.parent_ids:
                    found = set(
                        conn.execute(
                            select(t.candidates.c.id).where(t.candidates.c.id.in_(record.parent_ids))
                        ).scalars()
                    )
                    missing = [p for p in record.parent_ids if p not in found]
                    if missing:
                        raise ArchiveError(
                            f"parent ids {missing} of candidate {record.name!r} are not in the archive; "
                            "add parents before their children"
                        )
                conn.execute(insert(t.candidates), [self._candidate_row(record)])
                if record.parent_ids:
                    conn.execute(
                        insert(t.parents),
                        [
                            {"child_id": cid, "parent_id": p, "position": i}
                            for i, p in enumerate(dict.fromkeys(record.parent_ids))
                        ],
                    )
                if record.evaluations:
                    conn.execute(
                        insert(t.evaluations),
                        [
                            self._evaluation_row(ev.model_copy(update={"candidate_id": cid}))
                            for ev in record.evaluations
                        ],
                    )
        except t.WriteConflict as e:
            # Another writer (thread of another Archive object, or another process) won the race.
            with self._read() as conn:
                existing = self._existing_id(conn, cid, record.key)
            if existing is None:
                raise ArchiveError(f"cannot add candidate {cid}: {e}") from e
            return existing, False
        log.debug("archived candidate %s (%s)", cid, record.name)
        return cid, True

    @staticmethod
    def _existing_id(conn: Connection, cid: str, key: str | None) -> str | None:
        cond = t.candidates.c.id == cid
        if key is not None:
            cond = or_(cond, t.candidates.c.key == key)
        rows = conn.execute(select(t.candidates.c.id, t.candidates.c.key).where(cond)).all()
        for rid, rkey in rows:  # a key match wins: that is what the caller meant
            if key is not None and rkey == key:
                return str(rid)
        return str(rows[0][0]) if rows else None

    def get(self, candidate_id: str, *, with_evaluations: bool = True) -> Candidate:
        """The candidate with this id (or unique id prefix); raises `ArchiveError` if absent."""
        cid = self.resolve_id(candidate_id)
        with self._read() as conn:
            row = conn.execute(select(t.candidates).where(t.candidates.c.id == cid)).mappings().one()
            evs = self._evaluations_of(conn, [cid]).get(cid, []) if with_evaluations else []
        return self._candidate(row, evs)

    def __contains__(self, candidate_id: object) -> bool:
        if not isinstance(candidate_id, str):
            return False
        with self._read() as conn:
            hit = conn.execute(select(t.candidates.c.id).where(t.candidates.c.id == candidate_id)).first()
        return hit is not None

    def resolve_id(self, id_or_prefix: str) -> str:
        """The full id matching an id or a unique prefix of one."""
        with self._read() as conn:
            exact = conn.execute(select(t.candidates.c.id).where(t.candidates.c.id == id_or_prefix)).first()
            if exact is not None:
                return str(exact[0])
            prefix = id_or_prefix.replace("\\", "").replace("%", "").replace("_", "")
            hits = (
                conn.execute(select(t.candidates.c.id).where(t.candidates.c.id.startswith(prefix)).limit(3))
                .scalars()
                .all()
                if prefix
                else []
            )
        if len(hits) == 1:
            return str(hits[0])
        if not hits:
            raise ArchiveError(f"no candidate with id {id_or_prefix!r} in {self.location}")
        raise ArchiveError(
            f"id prefix {id_or_prefix!r} is ambiguous ({', '.join(hits)}, ...); give more characters"
        )

    def update_status(self, candidate_id: str, status: str, error: str | None = None) -> None:
        """Set a candidate's status (pending, ok, invalid, error) and error message."""
        _as_set(status, STATUSES, "status")
        with self._write() as conn:
            res = conn.execute(
                update(t.candidates)
                .where(t.candidates.c.id == candidate_id)
                .values(status=status, error=error, updated_at=utcnow())
            )
            if res.rowcount == 0:
                raise ArchiveError(f"no candidate with id {candidate_id!r} in {self.location}")

    def update_metadata(self, candidate_id: str, **values: Any) -> None:
        """Merge `values` into a candidate's metadata."""
        with self._write() as conn:
            row = conn.execute(
                select(t.candidates.c.metadata)
                .where(t.candidates.c.id == candidate_id)
                .with_for_update(key_share=True)
            ).first()
            if row is None:
                raise ArchiveError(f"no candidate with id {candidate_id!r} in {self.location}")
            merged = {**(row[0] or {}), **values}
            conn.execute(
                update(t.candidates)
                .where(t.candidates.c.id == candidate_id)
                .values(metadata=merged, updated_at=utcnow())
            )

    def candidates(
        self,
        *,
        campaign: str | None = None,
        status: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        generation: int | None = None,
        with_evaluations: bool = False,
    ) -> list[Candidate]:
        """Candidates in the order they were added, filtered by campaign (id or name), status,
        kind and generation."""
        q = select(t.candidates).order_by(t.candidates.c.created_at, t.candidates.c.id)
        statuses = _as_set(status, STATUSES, "status")
        with self._read() as conn:
            kinds = None if kind is None else _as_set(kind, self._kinds(conn), "kind")
            if campaign is not None:
                # Candidates name their campaign by id, or by name when tagged by hand.
                q = q.where(t.candidates.c.campaign.in_({campaign, self._campaign_id(conn, campaign)}))
            if statuses is not None:
                q = q.where(t.candidates.c.status.in_(sorted(statuses)))
            if kinds is not None:
                q = q.where(t.candidates.c.kind.in_(sorted(kinds)))
            if generation is not None:
                q = q.where(t.candidates.c.generation == generation)
            rows = conn.execute(q).mappings().all()
            evs = self._evaluations_of(conn, [r["id"] for r in rows]) if with_evaluations else {}
        return [self._candidate(r, evs.get(r["id"])) for r in rows]

    @staticmethod
    def _kinds(conn: Connection) -> list[str]:
        """Kinds a filter may name: the known ones and any stored (a plugin's that is not installed)."""
        stored = conn.execute(select(t.candidates.c.kind).distinct()).scalars()
        return list(dict.fromkeys([*known_kinds(), *sorted(stored)]))

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.candidates())

    def __len__(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(t.candidates)).scalar_one())

    # -- evaluations ------------------------------------------------------------------------

    def record_evaluation(
        self,
        candidate_id: str,
        suite: str,
        scores: Sequence[SampleScore | dict[str, Any]] = (),
        *,
        split: str = "validation",
        stage: str = "full",
        n: int | None = None,
        mean: float | None = None,
        ci_low: float | None = None,
        ci_high: float | None = None,
        usage: Usage | None = None,
        wall_s: float = 0.0,
        primary: bool | None = None,
        n_infra: int | None = None,
        incomplete: bool = False,
    ) -> Evaluation:
        """Store one evaluation (replacing an earlier one of the same suite, split and stage).

        `mean` defaults to the mean of the `scores` that count (infrastructure errors left out);
        `n_infra` defaults to the number of scores with outcome `infra_error`. A primary
        evaluation sets the candidate's fitness, CI and n, and turns a pending candidate ok;
        `primary=None` means primary unless `split == "test"`, so test scores never drive
        selection. An `incomplete` primary evaluation (too many infrastructure errors) clears the
        fitness instead, so that nothing selects on it; `Candidate.incomplete` then says so.
        Usage adds to the candidate's.
        """
        ev = Evaluation(
            candidate_id=candidate_id,
            suite=suite,
            split=split,
            stage=stage,
            n=n or 0,
            mean=mean,
            ci_low=ci_low,
            ci_high=ci_high,
            scores=[s if isinstance(s, SampleScore) else SampleScore.model_validate(s) for s in scores],
            n_infra=n_infra or 0,
            incomplete=incomplete,
            usage=usage or Usage(),
            wall_s=wall_s,
        )
        is_primary = (split != "test") if primary is None else primary
        e = t.evaluations.c
        with self._write() as conn:
            c = t.candidates.c
            # FOR NO KEY UPDATE (PostgreSQL): a concurrent writer of this candidate's evaluations
            # waits here, so neither the usage sum nor the evaluation replaced is lost between two
            # processes; children may still be added meanwhile (their parent check takes a key share).
            row = conn.execute(
                select(c.usage, c.status, c.metadata)
                .where(c.id == candidate_id)
                .with_for_update(key_share=True)
            ).first()
            if row is None:
                raise ArchiveError(f"no candidate with id {candidate_id!r} in {self.location}")
            total = Usage.model_validate(row[0] or {})
            where = _eval_key(candidate_id, suite, split, stage)
            old = conn.execute(select(e.usage).where(where)).first()
            if old is not None:
                total = _usage_sum(total, Usage.model_validate(old[0] or {}), -1)
                conn.execute(delete(t.evaluations).where(where))
            conn.execute(insert(t.evaluations), [self._evaluation_row(ev)])
            values: dict[str, Any] = {
                "usage": _usage_sum(total, ev.usage).model_dump(mode="json"),
                "updated_at": utcnow(),
            }
            if is_primary:
                complete = not ev.incomplete
                values.update(
                    fitness=ev.mean if complete else None,
                    ci_low=ev.ci_low if complete else None,
                    ci_high=ev.ci_high if complete else None,
                    n=ev.n if complete else None,
                    fitness_suite=suite,
                    fitness_stage=stage,
                )
                if row[1] == "pending":
                    values["status"] = "ok"
                meta = dict(row[2] or {})
                if ev.n_infra or ev.incomplete:
                    meta[FITNESS_INFRA_KEY] = {
                        "suite": suite, "split": split, "stage": stage, "n": ev.n,
                        "n_infra": ev.n_infra, "incomplete": ev.incomplete,
                    }  # fmt: skip
                else:
                    meta.pop(FITNESS_INFRA_KEY, None)
                if meta != (row[2] or {}):
                    values["metadata"] = meta
            conn.execute(update(t.candidates).where(t.candidates.c.id == candidate_id).values(**values))
        return ev

    def record_result(
        self,
        candidate_id: str,
        result: Any,
        *,
        stage: str = "full",
        primary: bool | None = None,
        suite: str | None = None,
    ) -> Evaluation:
        """Store an `EvalResult` as one evaluation: per sample its id, score, error, outcome,
        answer (cut to `ANSWER_MAX_BYTES` with a marker) and attempts; then mean, CI, n, n_infra,
        incomplete, usage and wall time. Targets are not stored (they live in the suite).

        The usage is the result's: the sum of its per-sample records' token counts, as the runner
        recorded them (every attempt counted; a call served by the call cache counts 0 tokens). The
        evaluation's `tokens_per_sample` and `completion_tokens_per_sample` derive from it.

        `suite` overrides the key the evaluation is stored under (default: the result's suite).
        """
        scores = [_sample_score(r) for r in result.records]
        return self.record_evaluation(
            candidate_id, suite or result.suite, scores, split=result.split, stage=stage, n=result.n,
            mean=result.mean, ci_low=result.ci_low, ci_high=result.ci_high, usage=result.usage,
            wall_s=result.wall_s, primary=primary, n_infra=getattr(result, "n_infra", 0),
            incomplete=bool(getattr(result, "incomplete", False)),
        )  # fmt: skip

    def get_evaluation(
        self, candidate_id: str, suite: str, split: str = "validation", stage: str = "full"
    ) -> Evaluation | None:
        """The stored evaluation for (candidate, suite, split, stage), or None."""
        with self._read() as conn:
            row = (
                conn.execute(select(t.evaluations).where(_eval_key(candidate_id, suite, split, stage)))
                .mappings()
                .first()
            )
        return None if row is None else self._evaluation(row)

    def is_evaluated(
        self, candidate_id: str, suite: str, split: str = "validation", stage: str = "full"
    ) -> bool:
        """True if this (candidate, suite, split, stage) evaluation is already stored (resume)."""
        with self._read() as conn:
            hit = conn.execute(
                select(t.evaluations.c.id).where(_eval_key(candidate_id, suite, split, stage))
            ).first()
        return hit is not None

    def evaluations(self, candidate_id: str | None = None, *, suite: str | None = None) -> list[Evaluation]:
        """Stored evaluations, oldest first, for one candidate and/or one suite."""
        q = select(t.evaluations).order_by(t.evaluations.c.created_at, t.evaluations.c.id)
        if candidate_id is not None:
            q = q.where(t.evaluations.c.candidate_id == candidate_id)
        if suite is not None:
            q = q.where(t.evaluations.c.suite == suite)
        with self._read() as conn:
            return [self._evaluation(r) for r in conn.execute(q).mappings()]

    def _evaluations_of(self, conn: Connection, ids: list[str]) -> dict[str, list[Evaluation]]:
        out: dict[str, list[Evaluation]] = {}
        for i in range(0, len(ids), 500):
            q = (
                select(t.evaluations)
                .where(t.evaluations.c.candidate_id.in_(ids[i : i + 500]))
                .order_by(t.evaluations.c.created_at, t.evaluations.c.id)
            )
            for r in conn.execute(q).mappings():
                out.setdefault(r["candidate_id"], []).append(self._evaluation(r))
        return out

    # -- import / export (agentmeta/archive/io.py) ------------------------------------------

    def export_json(self, path: str | Path | None = None, *, campaign: str | None = None) -> str:
        """The archive (or one campaign) as JSON text; also written to `path` if given."""
        from agentmeta.archive.io import export_json

        return export_json(self, path, campaign=campaign)

    def import_json(self, path: str | Path, *, campaign: str | None = None) -> ImportResult:
        """Import an ADAS archive (`[{thought, name, code, fitness}]`) or an agentmeta export.

        The format is detected from the content; the file is validated before anything is
        written; re-importing the same file adds nothing. `campaign` tags ADAS entries.
        """
        from agentmeta.archive.io import import_json

        return import_json(self, path, campaign=campaign)

    def export_candidate(self, candidate_id: str, directory: str | Path) -> Path:
        """Write a readable folder: `candidate.json`, the source file (`agent.py`, `graph.yaml`,
        `prompt.txt`, ...) and `evaluations.json`. Returns the folder."""
        from agentmeta.archive.io import export_candidate

        return export_candidate(self, candidate_id, directory)
