"""Evaluation and search on a real two-node Ray cluster (`ray.cluster_utils.Cluster`), all on
127.0.0.1: results equal a local run's with the same seed, even when an actor dies mid-way or the
driver itself is killed and the campaign resumed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentmeta.eval.ray_executor import LOOPBACK_ENV

# Before Ray is imported anywhere in this process: pin every node and the driver to 127.0.0.1.
os.environ.update(LOOPBACK_ENV)
ray = pytest.importorskip("ray")

from agentmeta import get_model  # noqa: E402
from agentmeta.archive import Archive  # noqa: E402
from agentmeta.eval import evaluate  # noqa: E402
from agentmeta.eval.ray_executor import RayExecutor  # noqa: E402
from agentmeta.search import Campaign, SearchConfig  # noqa: E402
from tests.ray_script import DELAY, DIE_ON  # noqa: E402
from tests.search.conftest import PROBLEMS, graph_meta_reply, write_suite  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASK_MODEL = "mock/tests.ray_script:arith"
LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1")


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each, on 127.0.0.1, no dashboard; this process is the driver."""
    from ray.cluster_utils import Cluster

    saved = os.environ.get("PYTHONPATH")
    # the nodes' workers import the tests' model script (tests.ray_script) from this checkout
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved]))
    node = {"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"}
    c = Cluster(initialize_head=True, head_node_args=node)
    c.worker = c.add_node(**node)
    c.wait_for_nodes()
    ray.init(address=c.address, include_dashboard=False)
    yield c
    ray.shutdown()
    c.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


@pytest.fixture
def suite_file(tmp_path: Path) -> str:
    return write_suite(tmp_path)


def _executor(tmp_path: Path, die_on: str | None = None, delay: float = 0.02) -> RayExecutor:
    env = {"OMP_NUM_THREADS": "1", "AGENTMETA_CALL_CACHE": "0", DELAY: str(delay)}
    if die_on is not None:
        env[DIE_ON] = f"{die_on}|{tmp_path / 'died'}"
    return RayExecutor(env=env)


def _records(result) -> list[dict]:
    return [r.model_dump(exclude={"latency_s"}) for r in result.records]


def test_every_node_and_the_driver_stay_on_loopback(cluster):
    from ray._private import ray_constants

    assert ray_constants.ENABLE_RAY_CLUSTER is False  # what makes Ray keep 127.0.0.1 as given
    assert cluster.address.startswith("127.0.0.1:")
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2 and {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    import psutil

    listening = [
        (p.name(), conn.laddr.ip) for p in psutil.Process().children(recursive=True) for conn in _listening(p)
    ]
    assert any(name == "gcs_server" for name, _ in listening)
    assert [x for x in listening if x[1] not in LOOPBACK] == []


def _listening(p):
    import psutil

    try:
        return [c for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def test_evaluation_on_two_nodes_equals_local_even_when_an_actor_dies(cluster, tmp_path, suite_file):
    local = evaluate("cot", suite_file, model=get_model(TASK_MODEL, cache=False), concurrency=4, seed=3)
    model = get_model(TASK_MODEL, cache=False)
    with _executor(tmp_path, die_on="What is 9 + 1?") as executor:
        where = executor.start()
        assert len({a["node_id"] for a in where}) == 2  # one actor on each node
        assert {a["ip"] for a in where} == {"127.0.0.1"}
        seen: list[int] = []
        remote = evaluate(
            "cot", suite_file, model=model, concurrency=4, seed=3, executor=executor,
            progress=lambda done, total, rec: seen.append(done),
        )  # fmt: skip
        assert (tmp_path / "died").exists()  # an actor process really died mid-evaluation...
        assert executor.deaths == 1 and executor.resubmitted >= 1  # ...and its samples ran elsewhere
        assert seen == list(range(1, len(PROBLEMS) + 1))  # every sample reported once
        assert _records(remote) == _records(local)
        assert (remote.mean, remote.ci_low, remote.ci_high) == (local.mean, local.ci_low, local.ci_high)
        # the actors' calls are counted on the driver's model (the dead actor's finished ones too)
        assert model.usage.calls >= sum(r.calls for r in local.records)


def answer_directly(task_input: str, model) -> str:
    """An agent given as a plain function: Ray ships it to the actors by reference."""
    return model.generate(task_input, max_tokens=16).text


@pytest.mark.parametrize("agent", ["code/chain_of_thought", answer_directly], ids=["code-agent", "function"])
def test_code_agents_run_in_sandboxes_on_the_actors_nodes(cluster, tmp_path, suite_file, agent):
    local = evaluate(agent, suite_file, model=get_model(TASK_MODEL, cache=False), concurrency=4, seed=1)
    with _executor(tmp_path) as executor:
        remote = evaluate(agent, suite_file, model=TASK_MODEL, concurrency=4, seed=1, executor=executor)
    assert _records(remote) == _records(local)
    assert remote.n_errors == 0 and remote.mean == 1.0


def test_a_node_that_dies_mid_evaluation_has_its_samples_rerun_on_the_other(cluster, tmp_path, suite_file):
    local = evaluate("cot", suite_file, model=get_model(TASK_MODEL, cache=False), concurrency=2, seed=5)
    with _executor(tmp_path, delay=0.3) as executor:
        assert len({a["node_id"] for a in executor.start()}) == 2

        def remove_worker_node(done: int, total: int, record) -> None:
            if done == 2:  # both nodes have samples in flight: take one node away
                cluster.remove_node(cluster.worker)

        try:
            remote = evaluate(
                "cot", suite_file, model=TASK_MODEL, concurrency=2, seed=5,  # a spec: loaded on the actors only
                executor=executor, progress=remove_worker_node,
            )  # fmt: skip
        finally:
            cluster.worker = cluster.add_node(
                num_cpus=1, include_dashboard=False, node_ip_address="127.0.0.1"
            )
            cluster.wait_for_nodes()
        assert executor.deaths == 1 and executor.resubmitted >= 1
    assert _records(remote) == _records(local)


def _archive_view(archive: Archive, campaign: str) -> list[tuple]:
    """A campaign's candidates and per-sample scores, keyed by what identifies them across archives."""
    ids = {c.id: c.key.split(":", 1)[1] for c in archive.candidates(campaign=campaign)}
    out = []
    for c in archive.candidates(campaign=campaign):
        evals = sorted((e.stage, tuple(sorted(e.score_by_id().items()))) for e in archive.evaluations(c.id))
        parents = tuple(sorted(ids.get(p, p) for p in c.parent_ids))
        out.append((ids[c.id], c.name, c.status, c.fitness, c.fitness_stage, parents, tuple(evals)))
    return sorted(out)


def _campaign(tmp_path: Path, name: str, suite_file: str, executor=None) -> tuple[Archive, str]:
    config = SearchConfig(
        suite=suite_file, kind="graph", strategy="meta-agent", iterations=2, subset=4, full=8,
        reflexion_rounds=0, confirm=False, name="ray-check", concurrency=4,
    )  # fmt: skip
    archive = Archive(tmp_path / f"{name}.db")
    camp = Campaign(
        config,
        archive,
        model=get_model(TASK_MODEL, cache=False),
        meta_model=get_model("mock", outputs=graph_meta_reply([0]), cache=False),
        executor=executor,
    )
    camp.run()
    return archive, camp.record.id


def test_campaign_on_two_nodes_equals_local_even_when_an_actor_dies(cluster, tmp_path, suite_file):
    local, lid = _campaign(tmp_path, "local", suite_file)
    with _executor(tmp_path, die_on="What is 7 + 8?") as executor:
        remote, rid = _campaign(tmp_path, "ray", suite_file, executor)
        assert (tmp_path / "died").exists() and executor.deaths == 1
    view = _archive_view(remote, rid)
    assert view == _archive_view(local, lid)
    assert len(view) >= 5 and any(v[4] == "full" for v in view)  # seeds and proposals, both stages


def _stored_evaluations(db: Path) -> int:
    try:
        with sqlite3.connect(db) as con:
            return con.execute("select count(*) from agentmeta_evaluations").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_search_cli_resumes_after_its_driver_is_killed(cluster, tmp_path, suite_file):
    args = [
        sys.executable, "-m", "agentmeta", "search", "--suite", suite_file, "--strategy", "random",
        "--kind", "graph", "--model", TASK_MODEL, "--iterations", "3", "--subset", "4", "--full", "8",
        "--concurrency", "4", "--no-confirm", "--name", "resume-check",
    ]  # fmt: skip
    env = dict(os.environ, AGENTMETA_CALL_CACHE="0", OMP_NUM_THREADS="1")
    ray_args = [*args, "--archive", str(tmp_path / "ray.db"), "--ray-address", cluster.address]
    proc = subprocess.Popen(
        ray_args, env={**env, DELAY: "0.2"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while _stored_evaluations(tmp_path / "ray.db") < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the campaign ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _stored_evaluations(tmp_path / "ray.db")
    resumed = subprocess.run(ray_args, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    local = subprocess.run(
        [*args, "--archive", str(tmp_path / "local.db")], env=env, capture_output=True, text=True, timeout=240
    )
    assert local.returncode == 0, local.stderr[-2000:]
    a, b = Archive(tmp_path / "ray.db"), Archive(tmp_path / "local.db")
    (ca,), (cb,) = a.campaigns(), b.campaigns()
    assert _archive_view(a, ca.id) == _archive_view(b, cb.id)
    assert 0 < killed_at < len(a.evaluations())  # killed mid-way; nothing stored twice:
    assert len({(e.candidate_id, e.stage) for e in a.evaluations()}) == len(a.evaluations())


def test_eval_cli_with_ray_scores_as_a_local_run(cluster, tmp_path, suite_file):
    from typer.testing import CliRunner

    from agentmeta.cli import app

    args = ["eval", "cot", "--suite", suite_file, "--model", TASK_MODEL, "--seed", "2", "--json"]
    runner = CliRunner()
    local = runner.invoke(app, args)
    assert local.exit_code == 0, local.output
    remote = runner.invoke(app, [*args, "--ray-address", cluster.address, "--ray-actors", "2"])
    assert remote.exit_code == 0, remote.output
    (got,), (want,) = json.loads(remote.stdout), json.loads(local.stdout)
    assert got.pop("wall_s") > 0 and want.pop("wall_s") > 0
    assert got == want and got["n"] == len(PROBLEMS)
    scripted = runner.invoke(app, [*args[:-3], "--model", "mock", "--ray-address", cluster.address])
    assert scripted.exit_code == 2 and "mock/<module>:<function>" in scripted.output
