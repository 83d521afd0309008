"""The same archive code on PostgreSQL: a throw-away cluster started for the test run (see
tests/postgres.py), or the scratch database named by AGENTMETA_TEST_PG_URL (e.g.
postgresql+psycopg://postgres@/scratch?host=/tmp/pgsock). Each test gets an empty database."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agentmeta.archive import Archive, ArchiveError, Candidate


def test_round_trip_queries_and_export(pg: str, tmp_path: Path) -> None:
    with Archive(pg) as a:
        camp = a.start_campaign("pg-run", {"suite": "s"})
        root = a.add(Candidate(name="root", key="r", campaign=camp.id, metadata={"x": [1]}))
        assert a.add(Candidate(name="again", key="r")) == root
        kid = a.add(Candidate(name="kid", parent_ids=[root], generation=1, campaign=camp.id))
        a.record_evaluation(kid, "s", [{"sample_id": "1", "score": 1.0}, {"sample_id": "2", "score": 0.0}])
        a.record_evaluation(root, "s", [{"sample_id": "1", "score": 0.0}], ci_low=0.0, ci_high=0.0)
        assert [e.name for e in a.leaderboard("s", campaign="pg-run")] == ["kid", "root"]
        assert [c.name for c in a.lineage(kid).ancestors] == ["root"] and a.children_count(root) == 1
        assert a.is_evaluated(kid, "s") and not a.is_evaluated(kid, "s", stage="subset")
        a.export_json(tmp_path / "e.json")
        with Archive(tmp_path / "copy.db") as copy:
            copy.import_json(tmp_path / "e.json")
            assert copy.get(kid) == a.get(kid) and copy.campaigns() == a.campaigns()


def test_threads_race_on_one_key(pg: str) -> None:
    with Archive(pg) as a, Archive(pg) as b:
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(10):
                    (a if i % 2 else b).add(Candidate(name=f"{t}-{i}", key=f"{t}/{i}"))
                    (b if i % 2 else a).add(Candidate(name="shared", key="shared"))
            except BaseException as e:  # noqa: BLE001 - surfaced below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == [] and len(a) == 81


def test_shared_database_and_foreign_tables(pg: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(pg)
    with engine.begin() as conn:  # another application's table: fine, the database is shared
        conn.execute(text("CREATE TABLE other_app_users (id int)"))
    Archive(pg).close()
    with engine.begin() as conn:  # our table names without our marker: refused
        conn.execute(text("DELETE FROM agentmeta_meta"))
    engine.dispose()
    with pytest.raises(ArchiveError, match="no agentmeta archive marker"):
        Archive(pg)


def test_answers_incomplete_and_diff(pg: str) -> None:
    with Archive(pg) as a:
        x = a.add(Candidate(name="x"))
        y = a.add(Candidate(name="y"))
        a.record_evaluation(
            x, "s", [{"sample_id": "1", "score": 1.0, "answer": "é" * 3000}, {"sample_id": "2", "score": 0.0}]
        )
        lost = {"sample_id": "2", "score": 0.0, "outcome": "infra_error", "attempts": 3}
        a.record_evaluation(y, "s", [{"sample_id": "1", "score": 0.0, "answer": "b"}, lost], incomplete=True)
        ev = a.get_evaluation(y, "s")
        assert ev is not None and (ev.n, ev.n_infra, ev.incomplete) == (1, 1, True)
        assert ev.scores[1].attempts == 3 and ev.outcomes["2"] == "infra_error"
        assert a.get_evaluation(x, "s").answers["1"].endswith("characters in all]")  # type: ignore[union-attr]
        assert [e.name for e in a.leaderboard("s")] == ["x"] and a.get(y).fitness is None
        assert [e.incomplete for e in a.leaderboard(include_incomplete=True)] == [False, True]
        d = a.diff(x, y)
        assert (d.n, d.wins, d.infra, d.incomplete_b, d.mean_diff) == (1, 1, 1, True, 1.0)
