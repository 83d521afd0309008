"""Campaigns on scripted models: the loop, parents and CIs, debug rounds, hostile code, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentmeta import get_model
from agentmeta.agents import seed_agents
from agentmeta.archive import Archive
from agentmeta.search import Campaign, SearchConfig
from tests.search.conftest import graph_meta_reply, task_reply

ROOT = Path(__file__).resolve().parents[2]


def test_graph_campaign_archives_seeds_and_candidates_with_parents_and_cis(tmp_path, suite_file):
    archive = Archive(tmp_path / "a.db")
    events: list[dict] = []
    config = SearchConfig(suite=suite_file, kind="graph", iterations=4, subset=4, full=8, reflexion_rounds=2)
    camp = Campaign(
        config,
        archive,
        model=get_model("mock", outputs=task_reply),
        meta_model=get_model("mock", outputs=graph_meta_reply([0])),
        progress=events.append,
    )
    result = camp.run()
    cands = archive.candidates(campaign=camp.record.id)
    seeds = [c for c in cands if c.generation == 0]
    new = [c for c in cands if c.generation > 0]
    assert len(seeds) == len(seed_agents("graph")) == 4 and len(new) == 4
    for c in new:
        assert c.parent_ids and all(p in {x.id for x in cands} for p in c.parent_ids)
        assert c.status == "ok" and c.fitness is not None
        assert c.ci_low is not None and c.ci_low <= c.fitness <= c.ci_high
    # a sloppy pipeline scores 0 and stays on the cheap stage; a careful one reaches the full stage
    by_name = {c.name: c for c in new}
    assert by_name["pipeline-3"].fitness == 0.0 and by_name["pipeline-3"].fitness_stage == "subset"
    assert by_name["pipeline-6"].fitness == 1.0 and by_name["pipeline-6"].fitness_stage == "full"
    assert result.stop_reason == "iterations done"
    assert any(e["event"] == "evaluated" for e in events)
    assert archive.get_campaign(camp.record.id).status == "done"


def test_promotion_rule(tmp_path, suite_file):
    config = SearchConfig(suite=suite_file, kind="graph", iterations=0, subset=2, full=4, promote_margin=0.1)
    camp = Campaign(config, Archive(tmp_path / "a.db"), model=get_model("mock"), meta_model=get_model("mock"))
    assert camp.promising(0.0, None)  # the first candidate has nothing to lose against
    assert camp.promising(0.0, 0.0)  # nothing solved anything yet: the subset says nothing
    assert not camp.promising(0.0, 0.05)  # solves nothing while another candidate does
    assert camp.promising(0.5, 0.55) and camp.promising(0.9, 0.5)
    assert not camp.promising(0.4, 0.55)


def test_each_sample_runs_once_across_dry_run_subset_and_full_stages(tmp_path, suite_file):
    """Without the call cache, the stages reuse each other's records instead of running again."""
    from collections import Counter

    asked: Counter[str] = Counter()

    def counting(req) -> str:
        asked[" ".join(m.content for m in req.messages)] += 1
        return task_reply(req)

    proposals = iter(range(100))

    def careful(req) -> str:  # a new prompt each time, so every (agent, sample) prompt is distinct
        i = next(proposals)
        return json.dumps(
            {"thought": "t", "name": f"careful-{i}", "system": "You add.", "instruction": f"Add ({i})."}
        )

    archive = Archive(tmp_path / "a.db")
    config = SearchConfig(suite=suite_file, kind="prompt", iterations=2, subset=2, full=4)
    camp = Campaign(
        config,
        archive,
        model=get_model("mock", outputs=counting, cache=False),
        meta_model=get_model("mock", outputs=careful, cache=False),
    )
    camp.run()
    new = [c for c in archive.candidates(campaign=camp.record.id) if c.generation > 0]
    assert len(new) == 2 and all(c.fitness_stage == "full" and c.n == 4 for c in new)
    for c in archive.candidates(campaign=camp.record.id):
        stages = {e.stage: e for e in archive.evaluations(c.id)}
        subset_ids = [s.sample_id for s in stages["subset"].scores]
        assert subset_ids == [s.sample_id for s in stages["full"].scores][:2]
    assert asked and max(asked.values()) == 1, [k[:80] for k, v in asked.items() if v > 1]


def test_seeds_get_the_full_stage_even_when_they_score_zero(tmp_path, suite_file):
    archive = Archive(tmp_path / "a.db")
    events: list[dict] = []
    config = SearchConfig(suite=suite_file, kind="graph", iterations=0, subset=2, full=4)
    # every answer is wrong: all subset scores are 0, yet every seed is a baseline scored on the full stage
    camp = Campaign(
        config,
        archive,
        model=get_model("mock", outputs=lambda r: "Answer: 99"),
        meta_model=get_model("mock"),
        progress=events.append,
    )
    camp.run()
    seeds = archive.candidates(campaign=camp.record.id)
    assert len(seeds) == len(seed_agents("graph"))
    for c in seeds:
        stages = {e.stage: e for e in archive.evaluations(c.id)}
        assert set(stages) == {"subset", "full"}
        assert c.fitness_stage == "full" and c.n == 4 and c.fitness == 0.0
        assert [(s.sample_id, s.score) for s in stages["subset"].scores] == [
            (s.sample_id, s.score) for s in stages["full"].scores
        ][:2]
    assert not any(e["event"] == "not_promoted" for e in events)


def code_meta(code: str):
    return lambda req: json.dumps({"thought": "t", "name": "hostile", "code": code})


def test_invalid_code_goes_through_debug_rounds_and_is_recorded(tmp_path, suite_file):
    archive = Archive(tmp_path / "a.db")
    replies = iter(
        [
            json.dumps({"thought": "t", "name": "broken", "code": "def forward(self, taskInfo)\n  return 1"}),
            json.dumps({"thought": "t", "name": "broken", "code": "def forward(self, taskInfo)\n  return 1"}),
            json.dumps({"thought": "t", "name": "still broken", "code": "def nothing():\n  pass"}),
            json.dumps(
                {"thought": "t", "name": "fixed", "code": "def forward(self, taskInfo):\n    return '3'"}
            ),
        ]
    )
    config = SearchConfig(suite=suite_file, kind="code", iterations=1, subset=2, full=2, reflexion_rounds=1)
    camp = Campaign(
        config,
        archive,
        model=get_model("mock", outputs=task_reply),
        meta_model=get_model("mock", outputs=lambda r: next(replies)),
    )
    camp.run_iteration(0)
    [c] = [
        c
        for c in archive.candidates(campaign=camp.record.id)
        if c.generation > 0 or c.metadata.get("iteration") == 0
    ]
    assert c.name == "fixed" and c.metadata["debug_rounds"] == 2
    debug_prompts = [
        r for r in camp.meta_model.provider.requests if "failed when it was run" in r.messages[-1].content
    ]
    assert len(debug_prompts) == 2
    assert "syntax error" in debug_prompts[0].messages[-1].content


@pytest.mark.parametrize(
    "code,reason",
    [
        ("def forward(self, taskInfo):\n    while True:\n        pass", "timeout"),
        ("def forward(self, taskInfo):\n    import os\n    os.kill(os.getppid(), 9)\n    return 'x'", ""),
        (
            "def forward(self, taskInfo):\n    return open('/etc/passwd').read()[:0] + __import__('os').environ.get('SECRET_TOKEN', 'none')",
            "",
        ),
    ],
)
def test_hostile_candidate_is_contained_and_campaign_goes_on(tmp_path, suite_file, monkeypatch, code, reason):
    monkeypatch.setenv("SECRET_TOKEN", "s3cr3t")
    archive = Archive(tmp_path / "a.db")
    config = SearchConfig(
        suite=suite_file, kind="code", iterations=1, subset=2, full=2, reflexion_rounds=0, debug_rounds=0
    )
    from agentmeta.sandbox import Sandbox, SandboxLimits

    camp = Campaign(
        config,
        archive,
        model=get_model("mock", outputs=task_reply),
        meta_model=get_model("mock", outputs=code_meta(code)),
    )
    import agentmeta.sandbox as sb

    monkeypatch.setattr(sb, "_default", Sandbox(SandboxLimits(wall_seconds=3, cpu_seconds=2)))
    camp.run_iteration(0)
    [c] = [c for c in archive.candidates(campaign=camp.record.id) if c.metadata.get("iteration") == 0]
    answers = []
    if c.status == "ok":
        answers = [s.error for e in archive.evaluations(c.id) for s in e.scores]
    else:
        assert reason in (c.error or "")
    assert "s3cr3t" not in json.dumps(archive.get(c.id).model_dump(mode="json"))
    assert all("s3cr3t" not in (a or "") for a in answers)
    assert os.getpid() > 0  # still here


RUNNER = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from agentmeta import get_model
from agentmeta.archive import Archive
from agentmeta.search import Campaign, SearchConfig
from tests.search.conftest import graph_meta_reply, task_reply

def slow(fn, delay):
    def wrapped(req):
        time.sleep(delay)
        return fn(req)
    return wrapped

archive = Archive({db!r})
config = SearchConfig(suite={suite!r}, kind="graph", iterations=6, subset=3, full=4, reflexion_rounds=1)
camp = Campaign(config, archive, model=get_model("mock", outputs=slow(task_reply, {delay})),
                meta_model=get_model("mock", outputs=graph_meta_reply([0])),
                progress=lambda e: print(json.dumps(e), flush=True))
r = camp.run()
print(json.dumps({{"event": "done", "evaluated": r.evaluated, "skipped": r.skipped}}), flush=True)
"""


def test_sigkill_mid_campaign_then_resume_loses_and_repeats_nothing(tmp_path, suite_file):
    db = str(tmp_path / "a.db")
    env = dict(os.environ, AGENTMETA_CALL_CACHE="1")
    script = RUNNER.format(root=str(ROOT), db=db, suite=suite_file, delay=0.05)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    first: list[dict] = []
    deadline = time.time() + 120
    assert proc.stdout is not None
    for line in proc.stdout:
        first.append(json.loads(line))
        if sum(1 for e in first if e["event"] == "candidate") >= 2 or time.time() > deadline:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = {f"{e['stage']}:{e['id']}" for e in first if e["event"] == "evaluated"}
    assert done_before
    archive = Archive(db)
    before = {(e.candidate_id, e.stage): e.created_at for e in archive.evaluations()}

    second = subprocess.run(
        [sys.executable, "-c", script.replace("delay=0.05", "delay=0")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    final = json.loads(second.stdout.strip().splitlines()[-1])
    # nothing evaluated twice: the resumed run evaluated only what the killed one had not stored
    stored_before = {f"{stage}:{cid}" for cid, stage in before}
    assert not set(final["evaluated"]) & stored_before
    archive = Archive(db)
    cands = archive.candidates()
    keys = [c.key for c in cands]
    assert len(keys) == len(set(keys))
    iters = sorted(c.metadata["iteration"] for c in cands if "iteration" in c.metadata)
    assert iters == list(range(6))
    assert len([c for c in cands if c.generation == 0]) == len(seed_agents("graph"))
    # evaluations stored before the kill are untouched
    after = {(e.candidate_id, e.stage): e.created_at for e in archive.evaluations()}
    for k, t in before.items():
        assert after[k] == t


def test_cli_search_resumed_carries_the_best_score_over(tmp_path, suite_file):
    from typer.testing import CliRunner

    from agentmeta.cli import app

    args = ["search", "--suite", suite_file, "--kind", "prompt", "--archive", str(tmp_path / "c.db"),
            "--model", "mock", "--subset", "2", "--full", "3"]  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(app, [*args, "--iterations", "0"])  # the seeds only, on the full stage
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, [*args, "--iterations", "1"])
    assert again.exit_code == 0, again.output
    assert "subset" in again.output  # the new candidate was evaluated...
    assert (
        "best so far: 0.00" in again.output and "best so far: -" not in again.output
    )  # ...against the seeds


def test_cli_search_then_eval_archive_candidate(tmp_path, suite_file):
    from typer.testing import CliRunner

    from agentmeta.cli import app

    db = str(tmp_path / "cli.db")
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "search",
            "--suite",
            suite_file,
            "--kind",
            "prompt",
            "--iterations",
            "2",
            "--archive",
            db,
            "--model",
            "mock",
            "--subset",
            "2",
            "--full",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "leaderboard" in res.output
    assert "00:0" in res.output  # progress lines carry the elapsed time
    archive = Archive(db)
    new = [c for c in archive.candidates() if c.generation > 0]
    assert len(new) == 2
    cid = new[0].id
    res = runner.invoke(
        app,
        ["eval", cid, "--archive", db, "--suite", suite_file, "--model", "mock", "--split", "all", "--json"],
    )
    assert res.exit_code == 0, res.output
    evs = archive.evaluations(cid)
    assert any(e.split == "all" for e in evs)
    assert (
        archive.get(cid).fitness_stage != "full" or archive.get(cid).n != 12
    )  # the all-split run is not primary
    res = runner.invoke(app, ["archive", "ls", "--archive", db])
    assert res.exit_code == 0 and cid in res.output
    bad = runner.invoke(app, ["eval", "nosuchid", "--archive", db, "--suite", suite_file, "--model", "mock"])
    assert bad.exit_code == 2


def test_resumed_campaign_budget_counts_the_tokens_spent_before_a_kill(tmp_path, suite_file):
    db = str(tmp_path / "a.db")
    env = dict(os.environ, AGENTMETA_CALL_CACHE="1")
    script = RUNNER.format(root=str(ROOT), db=db, suite=suite_file, delay=0.05)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    events: list[dict] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        events.append(json.loads(line))
        if sum(1 for e in events if e["event"] == "candidate") >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    archive = Archive(db)
    (camp_record,) = archive.campaigns()
    spent = camp_record.state["spent_tokens"]
    assert spent > 0 and camp_record.state["spent_wall_s"] > 0
    # resumed with a budget the killed run already used up: it proposes nothing more
    config = SearchConfig(suite=suite_file, kind="graph", iterations=6, subset=3, full=4, reflexion_rounds=1,
                          max_tokens=spent)  # fmt: skip
    before = len(archive.candidates())
    meta = get_model("mock", outputs=graph_meta_reply([0]))
    result = Campaign(config, archive, model=get_model("mock", outputs=task_reply), meta_model=meta).run()
    assert result.stop_reason == "token budget"
    assert len(archive.candidates()) == before and not meta.provider.requests
    assert archive.get_campaign(camp_record.id).state["spent_tokens"] >= spent
    # with room for more it goes on, and the total keeps growing from what was spent before
    more = config.model_copy(update={"max_tokens": None})
    Campaign(more, archive, model=get_model("mock", outputs=task_reply),
             meta_model=get_model("mock", outputs=graph_meta_reply([0]))).run()  # fmt: skip
    assert archive.get_campaign(camp_record.id).state["spent_tokens"] > spent


def test_campaign_identity_includes_its_data(tmp_path, suite_file):
    from agentmeta.errors import ArchiveError

    archive = Archive(tmp_path / "a.db")
    config = SearchConfig(suite=suite_file, kind="graph", iterations=0, subset=2, full=4)
    Campaign(config, archive, model=get_model("mock", outputs=task_reply), meta_model=get_model("mock")).run()
    path = Path(suite_file.partition("?")[0])
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0].replace('"3"', '"4"'), *lines[1:]]) + "\n")  # a label fixed
    with pytest.raises(ArchiveError, match="differs in.*data"):
        Campaign(config, archive, model=get_model("mock"), meta_model=get_model("mock"))


def test_proposer_is_shown_train_examples_only(tmp_path):
    rows = [{"input": f"What is {i} + 1?", "target": str(i + 1), "split": "validation"} for i in range(6)]
    rows.append({"input": "What is 100 + 1?", "target": "101", "split": "train"})
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = SearchConfig(suite=f"{path}?scorer=numeric", kind="graph", iterations=1, subset=2, full=4,
                          reflexion_rounds=0, debug_rounds=0)  # fmt: skip
    meta = get_model("mock", outputs=graph_meta_reply([0]))
    Campaign(config, Archive(tmp_path / "a.db"), model=get_model("mock", outputs=task_reply), meta_model=meta).run()
    shown = "\n".join(m.content for r in meta.provider.requests for m in r.messages)
    assert "What is 100 + 1?" in shown and "101" in shown
    for r in rows[:-1]:
        assert r["input"] not in shown  # no validation item, so no validation target, reaches the proposer


def test_infrastructure_failure_stops_the_campaign_without_recording(tmp_path, suite_file):
    from agentmeta.errors import InfrastructureError, ModelCallError

    archive = Archive(tmp_path / "a.db")
    config = SearchConfig(suite=suite_file, kind="graph", iterations=1, subset=2, full=4)
    down = get_model("mock", outputs=task_reply, fail=lambda req: ModelCallError("server down"))
    camp = Campaign(config, archive, model=down, meta_model=get_model("mock"))
    import agentmeta.eval.runner as runner_mod

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner_mod.time, "sleep", lambda s: None)  # the retries' waits
        with pytest.raises(InfrastructureError, match="nothing was recorded.*resume"):
            camp.run()
    assert archive.evaluations() == []  # no seed was scored 0 for a server that was down
    assert all(c.status == "pending" for c in archive.candidates())
    assert archive.get_campaign(camp.record.id).status == "stopped"
