"""Corrupt and foreign files are refused untouched; concurrent writers lose nothing; a killed
writer leaves every committed record intact."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentmeta.archive import Archive, ArchiveError, Candidate
from agentmeta.archive.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _siblings(path: Path) -> set[str]:
    return {p.name for p in path.parent.iterdir()}


def test_random_bytes_are_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(os.urandom(8192))
    before, files = _digest(path), _siblings(path)
    with pytest.raises(ArchiveError, match="not an SQLite database") as err:
        Archive(path)
    assert "\n" not in str(err.value)
    assert _digest(path) == before and _siblings(path) == files


def test_truncated_sqlite_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    good = tmp_path / "good.db"
    with Archive(good) as a:
        a.add(Candidate(name="x"))
    data = good.read_bytes()
    path = tmp_path / "broken.db"
    path.write_bytes(data[:100] + os.urandom(len(data) - 100))
    before = _digest(path)
    with pytest.raises(ArchiveError):
        Archive(path)
    assert _digest(path) == before


def test_foreign_sqlite_db_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before, files = _digest(path), _siblings(path)
    with pytest.raises(ArchiveError, match="another application.*users.*left unchanged"):
        Archive(path)
    assert _digest(path) == before and _siblings(path) == files
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # never switched to WAL
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    Archive(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE agentmeta_meta SET value = ? WHERE key = 'version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(ArchiveError, match="upgrade agentmeta"):
        Archive(path)


def test_missing_or_directory(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no archive at"):
        Archive(tmp_path / "none.db", create=False)
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(ArchiveError, match="is a directory"):
        Archive(tmp_path)
    nested = tmp_path / "deep" / "er" / "a.db"
    Archive(nested).close()
    assert nested.is_file()


def test_wal_mode_and_marker(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    Archive(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert dict(conn.execute("SELECT key, value FROM agentmeta_meta").fetchall()) == {
        "schema": "agentmeta-archive",
        "version": str(SCHEMA_VERSION),
    }
    conn.close()


def test_eight_threads_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    per_thread = 25
    errors: list[BaseException] = []
    with Archive(path) as archive:
        root = archive.add(Candidate(name="root"))
        other = Archive(path)  # a second handle in the same process races on the same keys

        def work(t: int) -> None:
            try:
                for i in range(per_thread):
                    target = other if i % 2 else archive
                    cid = target.add(Candidate(name=f"t{t}-{i}", parent_ids=[root], key=f"t{t}/{i}"))
                    target.record_evaluation(cid, "s", [{"sample_id": "a", "score": (t + i) % 2}])
                    # every thread also adds one shared key: exactly one record must result
                    target.add(Candidate(name="shared", key="shared"))
            except BaseException as e:  # noqa: BLE001 - surfaced by the assert below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        other.close()
        assert errors == []
        assert len(archive) == 1 + 8 * per_thread + 1
        assert archive.children_count(root) == 8 * per_thread
        assert len(archive.evaluations(suite="s")) == 8 * per_thread
        assert sum(c.name == "shared" for c in archive) == 1
        assert all(c.status == "ok" for c in archive.candidates(kind="code") if c.name.startswith("t"))


READER = """
import json, sys
from agentmeta.archive import Archive
with Archive(sys.argv[1], create=False) as a:
    print(json.dumps({"n": len(a), "names": sorted(c.name for c in a), "top": a.leaderboard()[0].name}))
"""


def test_another_process_reads_while_archive_is_open_and_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with Archive(path) as archive:
        for name, fit in [("a", 0.2), ("b", 0.9)]:
            archive.add(Candidate(name=name, fitness=fit, status="ok"))
        # hold an uncommitted write transaction open while the other process reads
        holder = sqlite3.connect(path, timeout=30)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE agentmeta_candidates SET name = 'uncommitted'")
        try:
            out = subprocess.run(
                [sys.executable, "-c", READER, str(path)],
                capture_output=True,
                text=True,
                env=_env(),
                timeout=60,
            )
        finally:
            holder.rollback()
            holder.close()
        assert out.returncode == 0, out.stderr
        import json

        assert json.loads(out.stdout) == {"n": 2, "names": ["a", "b"], "top": "b"}
        archive.add(Candidate(name="c"))  # and the first process still writes afterwards
        assert len(archive) == 3


WRITER = """
import sys
from agentmeta.archive import Archive, Candidate
a = Archive(sys.argv[1])
i = 0
while True:
    cid = a.add(Candidate(key=f"k{i}", name=f"n{i}", source="x" * (1000 + i), thought=str(i)))
    a.record_evaluation(cid, "s", [{"sample_id": str(j), "score": j % 2} for j in range(20)])
    print(cid, i, flush=True)
    i += 1
"""


def test_sigkill_loses_at_most_the_record_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    assert proc.stdout is not None
    committed: list[tuple[str, int]] = []
    deadline = time.monotonic() + 60
    while len(committed) < 40 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        cid, i = line.split()
        committed.append((cid, int(i)))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(committed) >= 40, "writer did not get going"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Archive(path) as archive:
        # everything reported committed is there, whole; at most the one in flight is missing
        assert len(archive) >= len(committed)
        for cid, i in committed:
            c = archive.get(cid)
            assert (c.key, c.name, c.source, c.thought) == (f"k{i}", f"n{i}", "x" * (1000 + i), str(i))
            assert c.fitness == 0.5 and c.n == 20 and len(c.evaluations[0].scores) == 20
        archive.add(Candidate(name="after the crash"))


MULTI_WRITER = """
import sys
from agentmeta.archive import Archive, Candidate
with Archive(sys.argv[1]) as a:
    for i in range(30):
        cid = a.add(Candidate(key=f"{sys.argv[2]}/{i}", name=f"{sys.argv[2]}-{i}"))
        a.record_evaluation(cid, "s", [{"sample_id": "0", "score": 1.0}])
        a.add(Candidate(key="shared", name="shared"))
"""


def test_writers_in_several_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    Archive(path).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MULTI_WRITER, str(path), f"p{k}"], env=_env(), stderr=subprocess.PIPE
        )
        for k in range(2)
    ]
    with Archive(path) as archive:
        for i in range(30):
            archive.add(Candidate(key=f"main/{i}", name=f"main-{i}"))
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
        assert len(archive) == 3 * 30 + 1
        assert len(archive.evaluations(suite="s")) == 2 * 30
