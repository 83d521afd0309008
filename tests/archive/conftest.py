from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer

from agentmeta.archive import Archive, Candidate
from agentmeta.cli.archive import register
from tests.postgres import Cluster, cluster

PG_URL_ENV = "AGENTMETA_TEST_PG_URL"


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    with Archive(tmp_path / "a.db") as a:
        yield a


def make_candidate(name: str, **kw: object) -> Candidate:
    """A small code candidate."""
    fields: dict[str, object] = {
        "thought": f"why {name}",
        "source": f"def forward(self, task):\n    return {name!r}\n",
        **kw,
    }
    return Candidate(name=name, **fields)


@pytest.fixture
def make() -> Callable[..., Candidate]:
    return make_candidate


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster | None]:
    """One throw-away PostgreSQL cluster for the whole run (None when AGENTMETA_TEST_PG_URL names
    a server to use instead). Without PostgreSQL binaries: skipped, or failed when
    AGENTMETA_REQUIRE_SYSTEM=1 (CI, where the server must be tested)."""
    if os.environ.get(PG_URL_ENV):
        yield None
        return
    with cluster() as c:
        if c is None:
            reason = (
                "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin; "
                f"install the postgresql package or set {PG_URL_ENV} to a scratch database"
            )
            if os.environ.get("AGENTMETA_REQUIRE_SYSTEM") == "1":
                pytest.fail(f"AGENTMETA_REQUIRE_SYSTEM=1 but {reason}", pytrace=False)
            pytest.skip(reason)
        yield c


@pytest.fixture
def pg(pg_cluster: Cluster | None) -> Iterator[str]:
    """The URL of an empty PostgreSQL database for one test: a new database on the throw-away
    cluster, or the scratch database of AGENTMETA_TEST_PG_URL with every table dropped."""
    if pg_cluster is not None:
        with pg_cluster.database() as url:
            yield url
        return
    url = os.environ[PG_URL_ENV]
    _drop_tables(url)
    yield url
    _drop_tables(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A not yet created archive, once on each backend: an SQLite path, an empty PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "target.db")
    return request.getfixturevalue("pg")


@pytest.fixture
def cli() -> typer.Typer:
    """A typer app with the `archive` command group."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    register(app)
    return app


def _drop_tables(url: str) -> None:
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for name in inspect(conn).get_table_names():
                conn.execute(text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    finally:
        engine.dispose()
