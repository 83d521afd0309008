"""Schema versions: an archive of an older version is refused unchanged, `migrate` upgrades it in
one transaction (SQLite: after a backup), and every record reads and writes afterwards; on SQLite
and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    inspect,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from typer.testing import CliRunner

from agentmeta.archive import Archive, ArchiveError, Candidate
from agentmeta.archive import schema as t
from agentmeta.archive.migrations import MIGRATIONS, migrate
from agentmeta.models.types import Usage

# -- a version-1 archive ---------------------------------------------------------------------------


def _v1_metadata() -> MetaData:
    """The version-1 tables: those version 2 kept as they were, and version 1's evaluations (no
    `n_infra` and `incomplete` columns: they rode inside the `usage` JSON)."""
    v1 = MetaData()
    for table in (t.meta_table, t.campaigns, t.candidates, t.parents):
        table.to_metadata(v1)
    Table(
        "agentmeta_evaluations",
        v1,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("candidate_id", String(32), ForeignKey("agentmeta_candidates.id"), nullable=False),
        Column("suite", String(500), nullable=False),
        Column("split", String(64), nullable=False),
        Column("stage", String(64), nullable=False),
        Column("n", Integer, nullable=False),
        Column("mean", Float),
        Column("ci_low", Float),
        Column("ci_high", Float),
        Column("scores", JSON, nullable=False),
        Column("usage", JSON, nullable=False),
        Column("wall_s", Float, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("candidate_id", "suite", "split", "stage", name="uq_agentmeta_evaluation"),
    )
    return v1


def _source(path: Path) -> Archive:
    """An archive with a campaign, a lineage, infrastructure errors, an incomplete evaluation, a
    test-split evaluation and metadata: what a version-1 archive may hold."""
    a = Archive(path)
    camp = a.start_campaign("old-run", {"suite": "s"})
    root = a.add(Candidate(name="root", key="k/root", campaign=camp.id, source="x"))
    kid = a.add(Candidate(name="kid", key="k/kid", parent_ids=[root], generation=1, campaign=camp.id))
    lost = {"sample_id": "3", "score": 0.0, "outcome": "infra_error", "attempts": 3}
    scores = [{"sample_id": "1", "score": 1.0, "answer": "2"}, {"sample_id": "2", "score": 0.0}, lost]
    a.record_evaluation(kid, "s", scores, usage=Usage(calls=3, prompt_tokens=30, completion_tokens=6))
    a.record_evaluation(root, "s", [{"sample_id": "1", "score": 0.0}, lost, lost], incomplete=True)
    a.record_evaluation(
        root, "s", [{"sample_id": "1", "score": 1.0}], stage="subset", usage=Usage(calls=1), primary=False
    )
    a.record_evaluation(kid, "s", [{"sample_id": "9", "score": 1.0}], split="test", stage="confirm")
    a.update_metadata(kid, promotion={"promote": True})
    a.update_campaign("old-run", status="done", state={"iterations_done": 1})
    return a


def write_v1(source: Archive, url: str) -> None:
    """Copy `source` into a new version-1 archive at `url`, evaluations laid out as version 1
    wrote them (a row without the keys, as written before they existed, reads as 0 and False)."""
    v1 = _v1_metadata()
    src = source._engine
    engine = create_engine(t.to_url(url))
    with src.connect() as read, engine.begin() as conn:
        v1.create_all(conn)
        conn.execute(v1.tables[t.meta_table.name].insert(), [
            {"key": "schema", "value": t.SCHEMA_MARKER}, {"key": "version", "value": "1"},
        ])  # fmt: skip
        for name in (t.campaigns.name, t.candidates.name, t.parents.name, t.evaluations.name):
            table = t.metadata.tables[name]
            rows = [dict(r) for r in read.execute(select(table).order_by(*table.primary_key)).mappings()]
            if name == t.evaluations.name:
                for r in rows:
                    del r["id"]  # numbered by the database, as version 1 inserted them
                    n_infra, incomplete = r.pop("n_infra"), r.pop("incomplete")
                    if n_infra or incomplete:
                        r["usage"] = {**r["usage"], "n_infra": n_infra, "incomplete": incomplete}
            conn.execute(v1.tables[name].insert(), rows)
    engine.dispose()


def _export(a: Archive) -> dict[str, Any]:
    doc = json.loads(a.export_json())
    doc.pop("exported_at")
    return doc


def _stored_version(url: str) -> str:
    engine = create_engine(t.to_url(url))
    with engine.connect() as conn:
        marker = dict(conn.execute(select(t.meta_table.c.key, t.meta_table.c.value)).tuples().all())
        columns = {c["name"] for c in inspect(conn).get_columns(t.evaluations.name)}
    engine.dispose()
    assert ("n_infra" in columns) == (marker["version"] != "1")
    return marker["version"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- tests -------------------------------------------------------------------------------------------


def test_v1_archive_refused_unchanged_then_migrated(target: str, tmp_path: Path) -> None:
    with _source(tmp_path / "source.db") as source:
        write_v1(source, target)
        expected = _export(source)
        board = source.leaderboard("s", include_incomplete=True)
    sqlite_file = None if "://" in target else Path(target)
    before = _digest(sqlite_file) if sqlite_file else None
    with pytest.raises(ArchiveError, match=r"schema version 1; this agentmeta uses version 2; left unchanged; "
                       r"upgrade it with `agentmeta archive migrate --archive "):  # fmt: skip
        Archive(target)
    assert _stored_version(target) == "1"
    if sqlite_file:
        assert _digest(sqlite_file) == before

    res = migrate(target)
    assert (res.from_version, res.to_version, res.migrated) == (1, 2, True)
    assert _stored_version(target) == "2"
    if sqlite_file:
        assert res.backup == sqlite_file.with_name("target.db.v1.bak")
        assert _stored_version(str(res.backup)) == "1"  # the backup is the version-1 archive
    else:
        assert res.backup is None

    with Archive(target) as a:
        assert _export(a) == expected  # every record, sample score and usage survived
        assert a.leaderboard("s", include_incomplete=True) == board
        root, kid = (a.resolve_id(c.id) for c in a.candidates())
        assert a.get(root).incomplete and a.get_evaluation(root, "s").n_infra == 2  # type: ignore[union-attr]
        assert a.get_evaluation(kid, "s").usage == Usage(calls=3, prompt_tokens=30, completion_tokens=6)  # type: ignore[union-attr]
        # the new code writes the migrated archive: a re-evaluation replaces the incomplete one
        a.record_evaluation(root, "s", [{"sample_id": "1", "score": 1.0}], usage=Usage(calls=1))
        assert a.get(root).fitness == 1.0 and not a.get(root).incomplete
        new = a.add(Candidate(name="new", parent_ids=[kid], generation=2))
        assert [c.name for c in a.lineage(new).ancestors] == ["kid", "root"]
        a.export_json(tmp_path / "after.json")
    with Archive(tmp_path / "fresh.db") as fresh:  # the export of a migrated archive imports
        assert fresh.import_json(tmp_path / "after.json").added == 3
        assert fresh.get(root).fitness == 1.0 and fresh.get_evaluation(kid, "s").n_infra == 1  # type: ignore[union-attr]

    again = migrate(target)
    assert (again.from_version, again.to_version, again.migrated, again.backup) == (2, 2, False, None)


def test_a_failed_migration_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _source(tmp_path / "source.db") as source:
        write_v1(source, str(tmp_path / "old.db"))

    def half_done(conn: Any) -> None:
        MIGRATIONS_BEFORE[1](conn)  # the columns are added and backfilled ...
        raise SQLAlchemyError("disk full")  # ... then something fails

    MIGRATIONS_BEFORE = dict(MIGRATIONS)
    monkeypatch.setitem(MIGRATIONS, 1, half_done)
    with pytest.raises(ArchiveError, match=r"cannot migrate archive .*old.db: disk full; left unchanged"):
        migrate(tmp_path / "old.db")
    assert _stored_version(str(tmp_path / "old.db")) == "1"  # rolled back: no column, old marker
    assert not (tmp_path / "old.db.v1.bak").exists()


def test_migrate_refuses_foreign_newer_and_missing(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    before = _digest(foreign)
    with pytest.raises(ArchiveError, match="another application"):
        migrate(foreign)
    assert _digest(foreign) == before and not list(tmp_path.glob("*.bak"))

    newer = tmp_path / "newer.db"
    Archive(newer).close()
    conn = sqlite3.connect(newer)
    with conn:
        conn.execute("UPDATE agentmeta_meta SET value = '3' WHERE key = 'version'")
    conn.close()
    with pytest.raises(ArchiveError, match="version '3'; this agentmeta reads version 2; upgrade agentmeta"):
        migrate(newer)
    with pytest.raises(ArchiveError, match="no archive at"):
        migrate(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_migrate_command(tmp_path: Path, cli: typer.Typer) -> None:
    runner = CliRunner()
    old = tmp_path / "old.db"
    with _source(tmp_path / "source.db") as source:
        write_v1(source, str(old))

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["archive", *args, "--archive", str(old)], env={"COLUMNS": "200"})

    refused = run("ls")
    assert refused.exit_code == 2 and "agentmeta archive migrate --archive" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    done = run("migrate")
    assert done.exit_code == 0, done.output
    assert f"migrated {old} from schema version 1 to 2" in done.output
    assert f"backup of the version 1 archive: {old}.v1.bak" in done.output
    listed = run("ls", "--json")
    assert listed.exit_code == 0 and [(r["name"], r["incomplete"]) for r in json.loads(listed.output)] == [
        ("kid", False),
        ("root", True),
    ]
    noop = run("migrate")
    assert noop.exit_code == 0 and f"{old} is already at schema version 2; nothing to do" in noop.output
    conn = sqlite3.connect(old)
    with conn:
        conn.execute("UPDATE agentmeta_meta SET value = '9' WHERE key = 'version'")
    conn.close()
    newer = run("migrate")
    assert newer.exit_code == 2 and "upgrade agentmeta" in newer.output
