"""Tables of the archive, and opening a store without ever damaging a file that is not ours.

Every table name starts with `agentmeta_`, so an archive can share a PostgreSQL database with
other applications. `agentmeta_meta` holds the schema marker: an SQLite file that has tables but
no marker is foreign and is refused before anything writes to it (not even the WAL switch).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    false,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from agentmeta.errors import ArchiveError

log = logging.getLogger(__name__)

SCHEMA_MARKER = "agentmeta-archive"
SCHEMA_VERSION = 2
"""Version 2: evaluations have `n_infra` and `incomplete` columns (version 1 kept them inside the
`usage` JSON). `agentmeta archive migrate` upgrades older archives (agentmeta/archive/migrations.py)."""
BUSY_TIMEOUT_MS = 30_000
SCHEMA_LOCK_ID = 0x6167_6D65_7461  # "agmeta": the PostgreSQL advisory lock taken to change the schema
_SQLITE_MAGIC = b"SQLite format 3\x00"

metadata = MetaData()


class WriteConflict(ArchiveError):
    """A unique key was taken by a concurrent writer (another process, or another `Archive`)."""


meta_table = Table(
    "agentmeta_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

campaigns = Table(
    "agentmeta_campaigns",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("config", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("state", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

candidates = Table(
    "agentmeta_candidates",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key", String(500), unique=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(500), nullable=False),
    Column("thought", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("parent_ids", JSON, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("campaign", String(32)),
    Column("model_specs", JSON, nullable=False),
    Column("fitness", Float),
    Column("ci_low", Float),
    Column("ci_high", Float),
    Column("n", Integer),
    Column("fitness_suite", String(500)),
    Column("fitness_stage", String(64)),
    Column("usage", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("metadata", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_agentmeta_candidates_campaign", "campaign"),
    Index("ix_agentmeta_candidates_fitness", "fitness"),
)

# One row per (child, parent) edge: children queries without scanning JSON lists.
parents = Table(
    "agentmeta_parents",
    metadata,
    Column("child_id", String(32), ForeignKey("agentmeta_candidates.id"), primary_key=True),
    Column("parent_id", String(32), ForeignKey("agentmeta_candidates.id"), primary_key=True),
    Column("position", Integer, nullable=False),
    Index("ix_agentmeta_parents_parent", "parent_id"),
)

evaluations = Table(
    "agentmeta_evaluations",
    metadata,
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
    Column("n_infra", Integer, nullable=False, server_default="0"),
    Column("incomplete", Boolean, nullable=False, server_default=false()),
    Column("wall_s", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("candidate_id", "suite", "split", "stage", name="uq_agentmeta_evaluation"),
    Index("ix_agentmeta_evaluations_suite", "suite"),
)

# One row per saved conductor run (`agentmeta conduct --archive`): the question, the answer and
# the whole transcript, for the UI.
conductor_runs = Table(
    "agentmeta_conductor_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("finished", Boolean, nullable=False),
    Column("rounds", Integer, nullable=False),
    Column("models", JSON, nullable=False),
    Column("transcript", JSON, nullable=False),
    Column("usage", JSON, nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_agentmeta_conductor_runs_created", "created_at"),
)

# The record of every look at a suite's test split (`agentmeta confirm`): appended, never updated
# or deleted, so how often held-out samples were used stays countable.
test_looks = Table(
    "agentmeta_test_looks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("suite", String(500), nullable=False),
    Column("split", String(64), nullable=False),
    Column("campaign", String(32)),
    Column("candidates", JSON, nullable=False),
    Column("settings", JSON, nullable=False),
    Column("sample_ids", JSON, nullable=False),
    Column("result", JSON, nullable=False),
    Column("evaluated", JSON, nullable=False),
    Column("repeat", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_agentmeta_test_looks_suite", "suite"),
)

TABLE_NAMES = frozenset(metadata.tables)


def to_url(url_or_path: str | Path) -> str:
    """A SQLAlchemy URL from a URL or a plain file path (a path means SQLite)."""
    text = str(url_or_path)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def _sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL, or None for another backend or an in-memory database."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise ArchiveError(f"not a database URL or path: {url!r} ({e})") from e
    if parsed.get_backend_name() != "sqlite":
        return None
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def check_sqlite_file(path: Path, *, create: bool, older: bool = False) -> None:
    """Refuse, without writing a byte, a file that is not an agentmeta archive.

    Accepts: a missing file (if `create`), an empty file, an SQLite file with no tables, or an
    SQLite file with the agentmeta marker and a schema version this code can read (or, with
    `older`, one `agentmeta archive migrate` can upgrade).
    """
    if path.is_dir():
        raise ArchiveError(f"archive path {path} is a directory; expected an SQLite file path")
    if not path.exists():
        if not create:
            raise ArchiveError(f"no archive at {path}; run a search or `agentmeta archive import` first")
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    size = path.stat().st_size
    if size == 0:
        if not create:
            raise ArchiveError(f"{path} is an empty file, not an archive; expected an agentmeta archive")
        return
    with path.open("rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if head != _SQLITE_MAGIC:
        raise ArchiveError(
            f"{path} is not an SQLite database (corrupt or another file type); "
            "expected an agentmeta archive; left unchanged"
        )
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            marker = None
            if meta_table.name in names:
                marker = dict(conn.execute(f"SELECT key, value FROM {meta_table.name}").fetchall())
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise ArchiveError(f"{path} is a corrupt SQLite database ({e}); left unchanged") from e
    user_tables = {n for n in names if not n.startswith("sqlite_")}
    if not user_tables:
        return
    _check_marker(marker, where=str(path), foreign_tables=sorted(user_tables), older=older)


def _check_marker(
    marker: dict[str, str] | None, *, where: str, foreign_tables: list[str], older: bool = False
) -> int:
    """The schema version of an agentmeta archive; raises for a foreign database, a newer schema,
    or (unless `older`: the migration reads it) an older one."""
    if marker is None or marker.get("schema") != SCHEMA_MARKER:
        shown = ", ".join(foreign_tables[:5])
        raise ArchiveError(
            f"{where} is a database of another application (tables: {shown}) with no agentmeta "
            "archive marker; expected an agentmeta archive; left unchanged, pass another path"
        )
    try:
        version = int(marker.get("version", "0"))
    except ValueError:
        version = -1
    if version < 1 or version > SCHEMA_VERSION:
        raise ArchiveError(
            f"{where} has archive schema version {marker.get('version')!r}; this agentmeta reads "
            f"version {SCHEMA_VERSION}; upgrade agentmeta"
        )
    if version < SCHEMA_VERSION and not older:
        raise ArchiveError(
            f"{where} is an archive of schema version {version}; this agentmeta uses version "
            f"{SCHEMA_VERSION}; left unchanged; upgrade it with `agentmeta archive migrate --archive {where}`"
        )
    return version


def _set_wal(cur: Any) -> None:
    """Switch the file to WAL (persistent: a no-op once done). Changing the journal mode needs an
    exclusive lock and SQLite can report "database is locked" for it at once, without waiting on
    the busy timeout, while another process is creating or switching the same new file: retry
    until the busy timeout has passed."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _sqlite_events(engine: Engine) -> None:
    """WAL + busy timeout on every connection; BEGIN IMMEDIATE for writes, so concurrent writers
    from several processes wait for each other instead of failing on a lock upgrade."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let the "begin" hook below emit BEGIN
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _set_wal(cur)
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("agentmeta_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def connect(url_or_path: str | Path, *, create: bool, older: bool = False) -> tuple[Engine, str, Path | None]:
    """Check the target (an SQLite file without writing to it) and create its engine; return
    (engine, display name, SQLite file or None)."""
    url = to_url(url_or_path)
    path = _sqlite_file(url)
    if path is not None:
        check_sqlite_file(path, create=create, older=older)
    try:
        engine = create_engine(url)
    except (ArgumentError, SQLAlchemyError, ImportError) as e:
        raise ArchiveError(f"cannot open archive {url!r}: {e}") from e
    shown = str(path) if path is not None else engine.url.render_as_string(hide_password=True)
    if engine.dialect.name == "sqlite":
        _sqlite_events(engine)
    return engine, shown, path


def open_engine(url_or_path: str | Path, *, create: bool = True) -> tuple[Engine, str]:
    """Check the target, create the engine and the schema; return (engine, display name)."""
    engine, shown, _ = connect(url_or_path, create=create)
    try:
        _ensure_schema(engine, shown, create=create)
    except SQLAlchemyError as e:
        engine.dispose()
        raise ArchiveError(f"cannot open archive {shown}: {str(e).splitlines()[0]}") from e
    except ArchiveError:
        engine.dispose()
        raise
    return engine, shown


def _ensure_schema(engine: Engine, shown: str, *, create: bool) -> None:
    # Check with a plain read first: opening an existing archive must not wait for (or take)
    # the write lock that another process may be holding.
    with engine.connect() as conn, conn.begin():
        if _check_tables(conn, shown, create=create):
            return
    with engine.connect().execution_options(agentmeta_write=True) as conn, conn.begin():
        lock_schema(conn)
        if _check_tables(conn, shown, create=create):
            return  # another process created it meanwhile
        names = set(inspect(conn).get_table_names())
        metadata.create_all(conn)
        if meta_table.name not in names:
            conn.execute(
                meta_table.insert(),
                [
                    {"key": "schema", "value": SCHEMA_MARKER},
                    {"key": "version", "value": str(SCHEMA_VERSION)},
                ],
            )
            log.info("created agentmeta archive schema v%d in %s", SCHEMA_VERSION, shown)


def lock_schema(conn: Connection) -> None:
    """Serialize schema changes (creation, migration) between processes until the transaction ends.

    PostgreSQL: a transaction-level advisory lock, since concurrent `CREATE TABLE`s of the same
    name fail instead of waiting. SQLite needs nothing: a write transaction (BEGIN IMMEDIATE)
    already holds the database's only write lock.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SCHEMA_LOCK_ID})


def _check_tables(conn: Connection, shown: str, *, create: bool) -> bool:
    """True if the full schema is there; raises if the database is foreign, older, newer or absent."""
    stored_version(conn, shown, create=create)
    return set(inspect(conn).get_table_names()) & TABLE_NAMES == TABLE_NAMES


def stored_version(conn: Connection, shown: str, *, create: bool = False, older: bool = False) -> int | None:
    """The archive's schema version, or None for a database with no archive yet (if `create`).

    Raises for a database of another application, a newer schema, no archive (unless `create`),
    or an older schema (unless `older`).
    """
    names = set(inspect(conn).get_table_names())
    ours = names & TABLE_NAMES
    if meta_table.name in names:
        marker = dict(conn.execute(select(meta_table.c.key, meta_table.c.value)).tuples().all())
        return _check_marker(marker, where=shown, foreign_tables=sorted(ours), older=older)
    if ours:
        return _check_marker(None, where=shown, foreign_tables=sorted(ours))
    if conn.dialect.name == "sqlite" and names:
        return _check_marker(None, where=shown, foreign_tables=sorted(names))
    if not create:
        raise ArchiveError(f"no archive in {shown}; run a search or `agentmeta archive import` first")
    return None
