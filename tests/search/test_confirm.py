"""Confirmation on held-out test samples: same samples for every row, stored as test/confirm, never
twice, never before the search is over; `agentmeta search` prints it last, `agentmeta confirm` runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentmeta import get_model
from agentmeta.archive import Archive
from agentmeta.cli import app
from agentmeta.errors import ConfigError
from agentmeta.eval import load_suite
from agentmeta.search import Campaign, SearchConfig
from agentmeta.search.confirm import Confirmation, confirm, pareto_front
from tests.search.scripted import PLAN, TEST, VALIDATION, Scripted, run_scripted, skill_reply, write_suite


@pytest.fixture
def split_suite(tmp_path: Path) -> str:
    return write_suite(tmp_path / "splits.jsonl")


def test_campaign_ends_with_a_confirmation_on_the_same_test_samples(tmp_path, split_suite):
    archive, camp, result, by_name, events = run_scripted(tmp_path, split_suite, confirm_limit=6)
    conf = result.confirmation
    assert isinstance(conf, Confirmation) and conf.skipped is None
    test_ids = [x.id for x in load_suite(split_suite, split="test", limit=6, seed=0).samples]
    assert conf.sample_ids == test_ids and conf.n == 6
    val_ids = {x.id for x in load_suite(split_suite, split="validation").samples}
    assert not set(test_ids) & val_ids
    a, seed = by_name["A-meticulous"], next(c for c in by_name.values() if c.generation == 0)
    assert (conf.best, conf.best_seed) == (a.id, seed.id)
    assert conf.rows[0].id == a.id and "best" in conf.rows[0].roles
    assert conf.rows[1].id == seed.id and "best seed" in conf.rows[1].roles
    # every other row is on the score x tokens Pareto front of the full-stage candidates
    board = [e for e in archive.leaderboard(split_suite, campaign=camp.record.id, stage="full")]
    front = pareto_front([(e.id, e.fitness, e.tokens_per_sample) for e in board])
    assert {r.id for r in conf.rows} == {a.id, seed.id, *front}
    for e in board:  # brute force: whoever is not on the front is dominated by someone
        others = [o for o in board if o.id != e.id]
        dominated = any(
            o.fitness >= e.fitness and o.tokens_per_sample <= e.tokens_per_sample
            and (o.fitness > e.fitness or o.tokens_per_sample < e.tokens_per_sample)
            for o in others
        )  # fmt: skip
        assert dominated == (e.id not in front)
    # stored as split test, stage confirm, on the same samples for every row; never primary
    for row in conf.rows:
        ev = archive.get_evaluation(row.id, split_suite, "test", "confirm")
        assert ev is not None and [s.sample_id for s in ev.scores] == test_ids
        assert (row.test, row.test_n, row.tokens_per_sample) == (ev.mean, ev.n, ev.tokens_per_sample)
        assert row.completion_tokens_per_sample == 2.0
        cand = archive.get(row.id, with_evaluations=False)
        assert cand.fitness_stage == "full" and cand.fitness == row.validation
        assert row.drop == pytest.approx(row.validation - row.test)
    best, base = conf.row(a.id), conf.row(seed.id)
    assert (best.test, base.test) == (1.0, 0.0)
    assert best.diff == 1.0 and best.diff_ci_low > 0 and best.p_better == 1.0 and best.paired_n == 6
    assert base.diff is None
    assert conf.confirmed
    assert conf.verdict.startswith(f"best candidate A-meticulous ({a.id}) vs best seed ")
    assert "on 6 test samples: +1.00 [" in conf.verdict and conf.verdict.endswith("— confirmed gain")
    assert set(conf.evaluated) == {r.id for r in conf.rows} and not conf.reused
    state = archive.get_campaign(camp.record.id).state["confirmation"]
    assert state["confirmed"] and state["best"] == a.id and state["n"] == 6
    assert [e["event"] for e in events].index("confirm") > max(
        i for i, e in enumerate(events) if e["event"] == "evaluated"
    )


def test_confirmation_is_never_evaluated_twice(tmp_path, split_suite):
    archive, camp, first, *_ = run_scripted(tmp_path, split_suite, confirm_limit=6)
    before = {(e.candidate_id, e.stage): e.created_at for e in archive.evaluations() if e.split == "test"}
    assert len(before) == len(first.confirmation.rows)
    # on demand, by campaign name, with a fresh model (no call cache shared): no model call at all
    fresh = get_model("mock", outputs=skill_reply)
    again = confirm(archive, camp.name, test_limit=6, model=fresh)
    assert fresh.provider.requests == []
    assert again.evaluated == [] and set(again.reused) == {r.id for r in again.rows}
    assert again.rows == [r.model_copy(update={"reused": True}) for r in first.confirmation.rows]
    assert again.verdict == first.confirmation.verdict
    # a resumed campaign skips its stored work and its stored confirmation
    model = get_model("mock", outputs=skill_reply)
    config = SearchConfig(
        suite=split_suite, kind="prompt", iterations=len(PLAN), subset=4, full=8, confirm_limit=6
    )
    result = Campaign(
        config, archive, model=model, meta_model=get_model("mock"), strategy=Scripted(PLAN)
    ).run()
    assert model.provider.requests == [] and result.evaluated == []
    assert result.confirmation.reused and not result.confirmation.evaluated
    after = {(e.candidate_id, e.stage): e.created_at for e in archive.evaluations() if e.split == "test"}
    assert after == before
    # other test samples (another limit) are another look at the test split: refused unless asked for
    with pytest.raises(ConfigError, match="already confirmed.*--new-look"):
        confirm(archive, camp.record.id, test_limit=3, model=get_model("mock", outputs=skill_reply))
    with pytest.raises(ConfigError, match="--new-look"):  # another margin re-reads the same samples
        confirm(archive, camp.record.id, test_limit=6, model=fresh, margin=0.1)
    other = confirm(
        archive, camp.record.id, test_limit=3, model=get_model("mock", outputs=skill_reply), new_look=True
    )
    assert other.n == 3 and set(other.evaluated) == {r.id for r in other.rows}
    assert other.earlier_looks == 1 and other.earlier_campaign_looks == 1  # the 3 samples were among the 6
    # the record is append-only: both looks are there (repeats marked), the first with its own scores
    looks = archive.test_looks(campaign=camp.record.id)
    assert [(x.settings["limit"], x.repeat) for x in looks] == [(6, False), (6, True), (6, True), (3, False)]
    assert looks[0].result["verdict"] == first.confirmation.verdict
    assert {len(r["scores"]) for r in looks[0].result["rows"]} == {6}
    assert looks[-1].evaluated == other.evaluated and looks[-1].sample_ids == [*other.sample_ids]


def test_test_samples_reach_no_model_before_the_confirmation(tmp_path, split_suite):
    """The meta-agent never sees a test input; the task model sees them only once the search is over."""
    task = get_model("mock", outputs=skill_reply)
    proposals = iter(range(100))

    def meta_reply(req) -> str:
        i = next(proposals)
        return json.dumps(
            {"thought": "t", "name": f"m-{i}", "system": "You are meticulous.", "instruction": f"Add ({i})."}
        )

    meta = get_model("mock", outputs=meta_reply)
    seen_at_confirm: list[int] = []

    def progress(ev: dict) -> None:
        if ev["event"] == "confirm":
            seen_at_confirm.append(len(task.provider.requests))

    config = SearchConfig(suite=split_suite, kind="prompt", iterations=2, subset=4, full=8, confirm_limit=10)
    result = Campaign(
        config, Archive(tmp_path / "a.db"), model=task, meta_model=meta, progress=progress
    ).run()
    assert result.confirmation.n == len(TEST) and seen_at_confirm
    test_inputs = [f"What is {a} + {b}?" for a, b in TEST]
    shown = "\n".join(m.content for r in meta.provider.requests for m in r.messages)
    assert meta.provider.requests and not any(t in shown for t in test_inputs)
    assert "What is 10 + " in shown  # a train item: what the proposer may see
    asked = [" ".join(m.content for m in r.messages) for r in task.provider.requests]
    before, after = asked[: seen_at_confirm[0]], asked[seen_at_confirm[0] :]
    assert before and not any(t in q for q in before for t in test_inputs)
    assert any(t in q for q in after for t in test_inputs)
    assert all(any(f"What is {a} + {b}?" in q for a, b in TEST) for q in after)  # only test samples after


def test_confirmation_is_skipped_without_a_test_split(tmp_path, suite_file):
    archive = Archive(tmp_path / "a.db")
    config = SearchConfig(suite=suite_file, kind="prompt", iterations=0, subset=2, full=4)
    result = Campaign(
        config, archive, model=get_model("mock", outputs=skill_reply), meta_model=get_model("mock")
    ).run()
    conf = result.confirmation
    assert conf.skipped and "no test split" in conf.skipped and conf.rows == []
    assert conf.verdict.startswith("confirmation skipped: ")
    assert not [e for e in archive.evaluations() if e.split == "test"]
    off = config.model_copy(update={"confirm": False})
    assert (
        Campaign(off, archive, model=get_model("mock"), meta_model=get_model("mock")).run().confirmation
        is None
    )


def test_confirm_refuses_a_campaign_whose_data_changed(tmp_path, split_suite):
    archive, camp, *_ = run_scripted(tmp_path, split_suite, confirm=False)
    path = Path(split_suite.partition("?")[0])
    a, b = VALIDATION[0]
    path.write_text(path.read_text().replace(f'"What is {a} + {b}?"', f'"What is {a} + {b} ?"'))
    with pytest.raises(ConfigError, match="differs from what campaign"):
        confirm(archive, camp.name, model=get_model("mock", outputs=skill_reply))
    assert not [e for e in archive.evaluations() if e.split == "test"]


def _last_line(output: str) -> str:
    return [line for line in output.splitlines() if line.strip()][-1]


def test_cli_search_prints_the_confirmation_last_and_confirm_runs_on_demand(tmp_path, split_suite):
    db = str(tmp_path / "cli.db")
    runner = CliRunner()
    args = ["search", "--suite", split_suite, "--kind", "prompt", "--model", "mock",
            "--subset", "4", "--full", "8", "--iterations", "1"]  # fmt: skip
    res = runner.invoke(app, [*args, "--archive", db, "--name", "cli-camp", "--confirm-limit", "5"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "tok/sample" in out
    assert out.index("leaderboard: cli-camp") < out.index("confirmation on 5 held-out test samples")
    assert out.index("new candidates") < out.index("confirmation on 5 held-out test samples")
    last = _last_line(out)
    assert "on 5 test samples" in last or "test samples: the search found nothing better" in last, last
    assert any(s in last for s in ("confirmed gain", "no gain to confirm")), last
    archive = Archive(db)
    tested = [e for e in archive.evaluations() if e.split == "test"]
    assert tested and {e.stage for e in tested} == {"confirm"} and {len(e.scores) for e in tested} == {5}
    # on demand: everything is stored already
    res = runner.invoke(app, ["confirm", "cli-camp", "--archive", db, "--limit", "5", "--model", "mock"])
    assert res.exit_code == 0, res.output
    assert "confirmation on 5 held-out test samples" in res.output and "stored already" in res.output
    assert _last_line(res.output) == last
    assert [e.created_at for e in Archive(db).evaluations() if e.split == "test"] == [
        e.created_at for e in tested
    ]
    # another limit is another look at the test split: refused in one line unless --new-look
    res = runner.invoke(app, ["confirm", "cli-camp", "--archive", db, "--limit", "3", "--model", "mock"])
    assert isinstance(res.exception, ConfigError) and "--new-look" in str(
        res.exception
    )  # main(): 1 line, exit 2
    res = runner.invoke(
        app, ["confirm", "cli-camp", "--archive", db, "--limit", "3", "--model", "mock", "--new-look"]
    )
    assert res.exit_code == 0, res.output
    assert "confirmation on 3 held-out test samples" in res.output
    assert "these test samples had 1 earlier look (1 by this campaign)" in res.output
    assert (
        "looks at the test split of campaign cli-camp" in res.output and "P(better): the share" in res.output
    )
    looks = [
        x for x in Archive(db).test_looks(campaign=Archive(db).get_campaign("cli-camp").id) if not x.repeat
    ]
    assert [len(x.sample_ids) for x in looks] == [5, 3]
    # extending the confirmed campaign says its test samples were used
    res = runner.invoke(app, [*args, "--archive", db, "--name", "cli-camp", "--confirm-limit", "3"])
    assert res.exit_code == 0, res.output
    assert "was confirmed before (2 look(s) at its test split" in res.output
    res = runner.invoke(app, [*args, "--archive", db, "--name", "cli-camp", "--confirm-limit", "4"])
    assert isinstance(res.exception, ConfigError) and "--new-look" in str(res.exception)  # before searching
    assert "leaderboard" not in res.output
    # --no-confirm: no confirmation, no test evaluation
    res = runner.invoke(app, [*args, "--archive", str(tmp_path / "b.db"), "--no-confirm"])
    assert res.exit_code == 0, res.output
    assert "confirmation" not in res.output
    assert not [e for e in Archive(tmp_path / "b.db").evaluations() if e.split == "test"]


KILL_RUNNER = r"""
import json, re, sys, time
sys.path.insert(0, {root!r})
from agentmeta import get_model
from agentmeta.archive import Archive
from agentmeta.search import Campaign, SearchConfig
from tests.search.scripted import PLAN, Scripted, skill_reply

def slow(req):
    text = " ".join(m.content for m in req.messages)
    if {delay} and re.search(r"What is (2[1-9]|30) [+]", text):  # test samples only: the search runs at full speed
        time.sleep({delay})
    return skill_reply(req)

config = SearchConfig(suite={suite!r}, kind="prompt", iterations=len(PLAN), subset=4, full=8, confirm_limit=10)
camp = Campaign(config, Archive({db!r}), model=get_model("mock", outputs=slow), meta_model=get_model("mock"),
                strategy=Scripted(PLAN), progress=lambda e: print(json.dumps(e), flush=True))
r = camp.run()
c = r.confirmation
print(json.dumps({{"event": "done", "evaluated": r.evaluated, "confirmed": c.evaluated, "reused": c.reused}}),
      flush=True)
"""


def test_kill_during_the_confirmation_then_resume_repeats_nothing(tmp_path, split_suite):
    import os
    import signal
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[2])
    db = str(tmp_path / "k.db")
    env = dict(os.environ, AGENTMETA_CALL_CACHE="1")
    script = KILL_RUNNER.format(root=root, db=db, suite=split_suite, delay=0.05)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    confirmed = []
    for line in proc.stdout:
        ev = json.loads(line)
        if ev["event"] == "confirmed":
            confirmed.append(ev["id"])
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and confirmed
    archive = Archive(db)
    before = {e.candidate_id: e.created_at for e in archive.evaluations() if e.split == "test"}
    assert confirmed[0] in before
    done = subprocess.run(
        [sys.executable, "-c", KILL_RUNNER.format(root=root, db=db, suite=split_suite, delay=0)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    final = json.loads(done.stdout.strip().splitlines()[-1])
    assert final["evaluated"] == []  # the search was over: nothing of it runs again
    assert set(before) <= set(final["reused"]) and not set(before) & set(final["confirmed"])
    assert final["confirmed"]  # killed mid-confirmation: the rest was evaluated on resume
    after = {e.candidate_id: e.created_at for e in Archive(db).evaluations() if e.split == "test"}
    assert all(after[k] == t for k, t in before.items())


def _evaluation(cid: str, scores: list[float]):
    from agentmeta.archive.records import Evaluation, SampleScore

    return Evaluation(
        candidate_id=cid, suite="s", split="test", stage="confirm",
        scores=[SampleScore(sample_id=f"t{i}", score=v) for i, v in enumerate(scores)],
    )  # fmt: skip


def test_a_saving_must_be_shown_not_worse_by_the_margin_with_holm_over_the_rows():
    """0 wins and 3 losses in 8 samples at 0.27x the tokens passed the old rule (the CI of the
    difference reaches 0); against a margin of 0.05 it shows nothing. A candidate that ties the
    seed on 64 samples at a third of the tokens is a saving."""
    from agentmeta.search.confirm import Confirmation, ConfirmationRow, _cheaper, _saving_tests

    def row(cid, seed, tok, n):
        return ConfirmationRow(id=cid, name=cid, roles=[], seed=seed, validation=0.3, test=0.5, test_ci_low=0.0,
                               test_ci_high=1.0, test_n=n, tokens_per_sample=tok, completion_tokens_per_sample=tok,
                               drop=0.0)  # fmt: skip

    seed8 = [1, 1, 1, 1, 1, 0, 0, 0]
    lossy = [0, 0, 0, 1, 1, 0, 0, 0]  # 0 wins, 3 losses
    evs = {"cot": _evaluation("cot", seed8), "terse": _evaluation("terse", lossy)}
    rows = _saving_tests([row("cot", True, 150.0, 8), row("terse", False, 40.0, 8)], evs, "cot", 0.05, 0)
    from agentmeta.eval.stats import paired_ci

    assert paired_ci(lossy, seed8).high >= 0.0  # what used to qualify
    conf = Confirmation(
        campaign="c", campaign_name="c", suite="s", seed=0, limit=8, best_seed="cot", rows=rows
    )
    assert rows[1].saving_p is not None and rows[1].saving_p > 0.5 and _cheaper(conf) == []

    # 64 tied samples cannot show a loss under 0.05 (Tango's interval is +-0.055 there); 128 can
    assert _saving_tests([row("cot", True, 150.0, 64), row("same", False, 40.0, 64)],
                         {"cot": _evaluation("cot", [1.0, 0.0] * 32), "same": _evaluation("same", [1.0, 0.0] * 32)},
                         "cot", 0.05, 0)[1].saving_p > 0.025  # fmt: skip
    seed128 = [1.0, 0.0] * 64
    evs = {
        "cot": _evaluation("cot", seed128),
        "same": _evaluation("same", seed128),  # ties everywhere, 0.27x the tokens
        "near": _evaluation("near", [1.0, 0.0] * 62 + [0.0, 0.0, 1.0, 0.0]),  # one loss in 128
        "long": _evaluation("long", seed128),  # not worse, but 0.6x the tokens
    }
    rows = [row("cot", True, 150.0, 128), row("same", False, 40.0, 128), row("near", False, 45.0, 128),
            row("long", False, 90.0, 128)]  # fmt: skip
    rows = _saving_tests(rows, evs, "cot", 0.05, 0)
    by = {r.id: r for r in rows}
    assert by["same"].saving_p < 0.025 and by["near"].saving_p < 0.025  # each alone passes
    tie, near = by["same"].saving_p, by["near"].saving_p
    assert by["long"].saving_p == tie < near  # Holm: x3 for the smallest, x2, then x1, never decreasing
    assert by["same"].saving_p_holm == pytest.approx(3 * tie) and by["long"].saving_p_holm == pytest.approx(
        3 * tie
    )
    assert by["near"].saving_p_holm == pytest.approx(max(3 * tie, near))
    assert all(by[c].saving_p_holm >= by[c].saving_p for c in ("same", "near", "long"))
    conf = Confirmation(
        campaign="c", campaign_name="c", suite="s", seed=0, limit=128, best_seed="cot", rows=rows
    )
    expected = [c for c in ("same", "near") if by[c].saving_p_holm < 0.025]
    assert _cheaper(conf) == expected and "same" in expected  # never "long": 0.6x the tokens


def test_an_interrupted_confirmation_is_still_recorded_as_a_look(tmp_path, split_suite):
    from agentmeta.errors import InfrastructureError, ModelCallError

    archive, camp, *_ = run_scripted(tmp_path, split_suite, confirm=False)
    broken = get_model("mock", outputs=skill_reply, fail=lambda req: ModelCallError("server down"))
    with pytest.raises(InfrastructureError):
        confirm(archive, camp.record.id, test_limit=6, model=broken)
    looks = archive.test_looks(campaign=camp.record.id)
    assert len(looks) == 1 and looks[0].result["verdict"].startswith("interrupted: InfrastructureError")
    assert len(looks[0].sample_ids) == 6 and looks[0].settings["limit"] == 6
    # the same settings again go on (and are a second look at those samples)
    again = confirm(archive, camp.record.id, test_limit=6, model=get_model("mock", outputs=skill_reply))
    assert again.earlier_looks == 1 and again.rows
