"""Upgrading an archive to the current schema version (`agentmeta archive migrate`).

An archive records its schema version in `agentmeta_meta`; code that finds an older one refuses
to open it (and leaves it unchanged) rather than guess. `migrate` runs every step from the stored
version to `SCHEMA_VERSION` in one transaction, so a failure leaves the archive as it was, under
the schema lock (PostgreSQL; SQLite's write lock serializes by itself). An SQLite file is first
copied next to itself (`<file>.v1.bak`). Stop the campaigns writing to an archive before migrating
it: processes running the older code do not check the version again.

Version history:
- 1: the first schema.
- 2: evaluations get `n_infra` and `incomplete` columns, backfilled from the keys of the same
  names that version 1 kept inside the `usage` JSON (which then holds token counts only).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from agentmeta.archive import schema as t
from agentmeta.errors import ArchiveError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MigrationResult:
    """What `migrate` did: the archive, its schema version before and after, the backup file."""

    location: str
    from_version: int
    to_version: int
    backup: Path | None = None

    @property
    def migrated(self) -> bool:
        return self.from_version != self.to_version


def split_usage(stored: dict[str, Any] | None) -> tuple[dict[str, Any], int, bool]:
    """A version-1 evaluation's `usage` JSON as (token usage, n_infra, incomplete); rows written
    before those keys existed read as 0 and False."""
    usage = dict(stored or {})
    n_infra = usage.pop("n_infra", None)
    incomplete = usage.pop("incomplete", None)
    return usage, int(n_infra or 0), bool(incomplete)


def _v1_to_v2(conn: Connection) -> None:
    """`n_infra` and `incomplete` leave the evaluations' usage JSON for columns of their own."""
    name = t.evaluations.name
    false = "0" if conn.dialect.name == "sqlite" else "false"
    conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN n_infra INTEGER NOT NULL DEFAULT 0")
    conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN incomplete BOOLEAN NOT NULL DEFAULT {false}")
    e = t.evaluations.c
    rows = []
    for row_id, usage in conn.execute(select(e.id, e.usage)).tuples():
        if usage and ("n_infra" in usage or "incomplete" in usage):
            clean, n_infra, incomplete = split_usage(usage)
            rows.append({"row_id": row_id, "usage": clean, "n_infra": n_infra, "incomplete": incomplete})
    if rows:
        conn.execute(update(t.evaluations).where(e.id == bindparam("row_id")), rows)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2}
"""The step that upgrades an archive from each version to the next."""


def _backup(path: Path, version: int) -> Path:
    """A consistent copy of an SQLite archive (SQLite's online backup: the WAL is included)."""
    target = path.with_name(f"{path.name}.v{version}.bak")
    i = 1
    while target.exists():  # never overwrite an earlier backup
        target = path.with_name(f"{path.name}.v{version}.{i}.bak")
        i += 1
    src = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=t.BUSY_TIMEOUT_MS / 1000)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return target


def migrate(url_or_path: str | Path, *, backup: bool = True) -> MigrationResult:
    """Upgrade the archive at `url_or_path` to `SCHEMA_VERSION` in one transaction.

    A no-op (`migrated` False) on an up-to-date archive. Raises `ArchiveError`, changing nothing,
    for a missing archive, a database of another application or a newer schema. An SQLite file
    is copied to `<file>.v<old version>.bak` first (unless `backup=False`).
    """
    engine, shown, path = t.connect(url_or_path, create=False, older=True)
    copy: Path | None = None
    try:
        with engine.connect().execution_options(agentmeta_write=True) as conn, conn.begin():
            t.lock_schema(conn)
            version = t.stored_version(conn, shown, older=True)
            assert version is not None  # create=False: no archive raised
            if version == t.SCHEMA_VERSION:
                return MigrationResult(shown, version, version)
            if path is not None and backup:
                copy = _backup(path, version)  # under the write lock: exactly what is migrated
            for step in range(version, t.SCHEMA_VERSION):
                MIGRATIONS[step](conn)
                log.info("migrated %s from schema version %d to %d", shown, step, step + 1)
            t.metadata.create_all(conn)  # tables added without a version change
            mc = t.meta_table.c
            conn.execute(update(t.meta_table).where(mc.key == "version").values(value=str(t.SCHEMA_VERSION)))
    except SQLAlchemyError as e:
        if copy is not None:
            copy.unlink(missing_ok=True)
        raise ArchiveError(f"cannot migrate archive {shown}: {str(e).splitlines()[0]}; left unchanged") from e
    finally:
        engine.dispose()
    return MigrationResult(shown, version, t.SCHEMA_VERSION, copy)
