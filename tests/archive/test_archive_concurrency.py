"""Two processes writing one archive at the same time, on SQLite and on PostgreSQL.

Each test starts two worker processes that open the same (not yet created) archive and wait at a
barrier, so that schema creation, inserts of the same keys, evaluations of the same candidates
and merges into the same metadata really race. Afterwards every record is there exactly once and
nothing a worker wrote is lost.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import traceback
from pathlib import Path
from typing import Any

import pytest

from agentmeta.archive import Archive, Candidate
from agentmeta.models.types import Usage
from tests.search import conftest as search_fixtures

ROUNDS = 25
WORKERS = 2
ITERATIONS = 3

suite_file = search_fixtures.suite_file  # the campaign tests' suite of additions


def _spawn(target_fn: Any, args_per_worker: list[tuple[Any, ...]], tmp_path: Path) -> list[Any]:
    """Run `target_fn(barrier, *args)` in one fresh process per args tuple; their JSON results.

    A worker's exception fails the test with its traceback (written to a file by the worker).
    """
    ctx = multiprocessing.get_context("spawn")  # no inherited engine, lock or model state
    barrier = ctx.Barrier(len(args_per_worker))
    procs = []
    for i, args in enumerate(args_per_worker):
        out = tmp_path / f"worker-{i}.json"
        procs.append((ctx.Process(target=_worker, args=(target_fn, barrier, out, args)), out))
    for p, _ in procs:
        p.start()
    for p, _ in procs:
        p.join(timeout=600)
    docs = []
    for p, out in procs:
        if p.is_alive():
            p.kill()
        docs.append(json.loads(out.read_text()) if out.exists() else {"error": f"no output ({p.exitcode})"})
    errors = [d["error"] for d in docs if "error" in d]
    assert not errors, "\n".join(errors)
    assert [p.exitcode for p, _ in procs] == [0] * len(procs)
    return [d["result"] for d in docs]


def _worker(target_fn: Any, barrier: Any, out: Path, args: tuple[Any, ...]) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        doc = {"result": target_fn(barrier, *args)}
    except BaseException:  # noqa: BLE001 - reported to the parent
        doc = {"error": traceback.format_exc()}
        barrier.abort()  # the other worker stops waiting for this one
    out.write_text(json.dumps(doc))


# -- the same records from two processes -------------------------------------------------------


def _race_records(barrier: Any, url: str, me: int) -> dict[str, Any]:
    """Both workers add the same keyed chain, evaluate the same candidates, merge into the same
    metadata and campaign state, and add records of their own."""
    barrier.wait(timeout=120)
    with Archive(url) as a:  # both create the schema at once
        barrier.wait(timeout=120)
        camp = a.start_campaign("shared", {"suite": "s"})
        root = a.add(Candidate(name="root", key="shared/root", campaign=camp.id))
        prev = root
        for i in range(ROUNDS):
            barrier.wait(timeout=120)  # every round starts at the same time in both workers
            cid = a.add(Candidate(name=f"shared-{i}", key=f"shared/{i}", parent_ids=[prev], generation=i + 1))
            a.add(Candidate(name=f"own-{me}-{i}", key=f"own/{me}/{i}", parent_ids=[cid]))
            scores = [{"sample_id": str(j), "score": float((i + j + me) % 2)} for j in range(4)]
            usage = Usage(calls=4, prompt_tokens=100 * (me + 1) + i, completion_tokens=10 * (me + 1))
            a.record_evaluation(cid, "s", scores, n=4, mean=sum(s["score"] for s in scores) / 4, usage=usage)
            a.update_metadata(root, **{f"w{me}-{i}": i})
            a.update_campaign("shared", state={f"w{me}-{i}": i})
            prev = cid
        return {"campaign": camp.id, "root": root}


def test_two_processes_write_the_same_records(target: str, tmp_path: Path) -> None:
    results = _spawn(_race_records, [(target, me) for me in range(WORKERS)], tmp_path)
    assert len({r["campaign"] for r in results}) == 1 and len({r["root"] for r in results}) == 1
    with Archive(target, create=False) as a:
        cands = a.candidates(with_evaluations=True)
        keys = [c.key for c in cands]
        assert len(keys) == len(set(keys)) == 1 + ROUNDS + WORKERS * ROUNDS
        by_key = {c.key: c for c in cands}
        for i in range(ROUNDS):
            shared = by_key[f"shared/{i}"]
            assert shared.parent_ids == [by_key["shared/root" if i == 0 else f"shared/{i - 1}"].id]
            assert len(shared.evaluations) == 1  # the later write replaced the earlier one
            ev = shared.evaluations[0]
            # the candidate's usage is that of the evaluation that stayed, not a mix of both writes
            assert shared.usage == ev.usage and shared.fitness == ev.mean and shared.status == "ok"
            for me in range(WORKERS):
                assert by_key[f"own/{me}/{i}"].parent_ids == [shared.id]
        expected = {f"w{me}-{i}": i for me in range(WORKERS) for i in range(ROUNDS)}
        assert by_key["shared/root"].metadata == expected  # no merge lost to the other process
        assert a.get_campaign("shared").state == expected
        assert len(a.campaigns()) == 1 and len(a.evaluations()) == ROUNDS


# -- two campaigns from two processes ----------------------------------------------------------


def _run_campaign(barrier: Any | None, url: str, name: str, suite: str, shared_export: str) -> dict[str, Any]:
    """Import the shared export (the same records in both workers), then run campaign `name`."""
    from agentmeta import get_model
    from agentmeta.search import Campaign, SearchConfig

    if barrier is not None:
        barrier.wait(timeout=120)
    with Archive(url) as a:
        imported = a.import_json(shared_export)
        config = SearchConfig(suite=suite, kind="graph", iterations=ITERATIONS, subset=4, full=8, name=name)
        camp = Campaign(
            config, a, model=get_model("mock", outputs=search_fixtures.task_reply),
            meta_model=get_model("mock", outputs=search_fixtures.graph_meta_reply([0])),
        )  # fmt: skip
        result = camp.run()
        return {
            "imported": imported.added + imported.existing,
            "stop": result.stop_reason,
            "id": camp.record.id,
        }


def _summary(a: Archive, campaign_id: str) -> list[tuple[Any, ...]]:
    """A campaign's candidates and evaluations without ids and times (comparable across archives)."""
    cands = a.candidates(campaign=campaign_id, with_evaluations=True)
    key_of = {c.id: (c.key or "").split(":", 1)[1] for c in cands}
    return sorted(
        (
            key_of[c.id],
            c.name,
            c.status,
            c.generation,
            c.fitness,
            c.fitness_stage,
            tuple(key_of[p] for p in c.parent_ids),
            tuple(
                sorted(
                    (e.stage, e.split, e.n, e.mean, tuple(s.score for s in e.scores)) for e in c.evaluations
                )
            ),
        )  # fmt: skip
        for c in cands
    )


@pytest.fixture(scope="module")
def shared_export(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An export with a campaign, a lineage and evaluations, imported by both workers."""
    folder = tmp_path_factory.mktemp("export")
    with Archive(folder / "src.db") as src:
        camp = src.start_campaign("imported", {"suite": "s"})
        root = src.add(Candidate(name="imported-root", key="imp/root", campaign=camp.id))
        kid = src.add(Candidate(name="imported-kid", key="imp/kid", parent_ids=[root], campaign=camp.id))
        src.record_evaluation(kid, "s", [{"sample_id": "1", "score": 1.0}], n=1, mean=1.0)
        src.export_json(folder / "shared.json")
    return str(folder / "shared.json")


def test_two_campaigns_in_two_processes_share_one_archive(
    target: str, tmp_path: Path, suite_file: str, shared_export: str
) -> None:
    names = [f"camp-{me}" for me in range(WORKERS)]
    results = _spawn(_run_campaign, [(target, name, suite_file, shared_export) for name in names], tmp_path)
    assert [r["stop"] for r in results] == ["iterations done"] * WORKERS
    assert [r["imported"] for r in results] == [2, 2]
    expected = {}
    for name in names:  # the same campaign alone, in this process, in an archive of its own
        ref = _run_campaign(None, str(tmp_path / f"ref-{name}.db"), name, suite_file, shared_export)
        with Archive(tmp_path / f"ref-{name}.db") as a:
            expected[name] = _summary(a, ref["id"])
    with Archive(target, create=False) as a:
        assert sorted(c.name for c in a.campaigns()) == ["camp-0", "camp-1", "imported"]
        assert all(c.status == "done" for c in a.campaigns() if c.name != "imported")
        for r, name in zip(results, names, strict=True):
            got = _summary(a, r["id"])
            assert got == expected[name] and len(got) == 4 + ITERATIONS
        imported = [c for c in a.candidates() if c.key in ("imp/root", "imp/kid")]
        assert len(imported) == 2 and len(a.evaluations(imported[-1].id)) == 1
        assert len(a) == WORKERS * (4 + ITERATIONS) + 2


# -- the journal-mode switch on a new SQLite file ---------------------------------------------


def _open_fresh(barrier: Any, paths: list[str]) -> int:
    """Open each new file as an archive at the same moment as the other workers."""
    from agentmeta.archive import schema

    for path in paths:
        barrier.wait(timeout=60)
        engine, _ = schema.open_engine(path)
        engine.dispose()
    return len(paths)


def test_many_processes_switching_a_new_file_to_wal_wait_instead_of_failing(tmp_path: Path) -> None:
    # SQLite can answer "database is locked" to `PRAGMA journal_mode = WAL` at once, without the
    # busy timeout, while another connection switches the same new file; with 8 processes this
    # failed about one round in five before the switch was retried.
    workers, rounds = 8, 30
    paths = [str(tmp_path / f"fresh-{r}.db") for r in range(rounds)]
    assert _spawn(_open_fresh, [(paths,)] * workers, tmp_path) == [rounds] * workers
    import sqlite3

    for path in paths:
        with sqlite3.connect(path) as c:
            assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Archive(paths[-1], create=False) as a:
        assert len(a) == 0
