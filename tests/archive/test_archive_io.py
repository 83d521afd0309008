from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentmeta.archive import Archive, ArchiveError, parse_adas_fitness
from agentmeta.errors import DataError
from agentmeta.models.types import Usage

ADAS = [
    {
        "thought": "Step by step.",
        "name": "Chain-of-Thought",
        "code": "def forward(self, taskInfo):\n    return taskInfo\n",
        "fitness": "95% Bootstrap Confidence Interval: (12.3%, 25.6%), Median: 18.9%",
        "generation": "initial",
    },
    {
        "thought": "Refine it.",
        "name": "Self-Refine",
        "code": "def forward(self, taskInfo):\n    return 1\n",
        "fitness": "95% Bootstrap Confidence Interval: (-3.1%, 4.0%), Median: 0.5%",
        "generation": 3,
        "test_fitness": "95% Bootstrap Confidence Interval: (40.0%, 50.0%), Median: 45.0%",
        "debug_thought": "fixed a typo",
    },
    {"thought": "", "name": "Unscored", "code": "def forward(self, taskInfo):\n    return 2\n"},
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("95% Bootstrap Confidence Interval: (12.3%, 25.6%), Median: 18.9%", (0.189, 0.123, 0.256)),
        ("95% Bootstrap Confidence Interval: (-3.1%, 4.0%), Median: 0.5%", (0.005, -0.031, 0.04)),
        ("95% bootstrap confidence interval: (0.0%, 100.0%),   Median: 100%", (1.0, 0.0, 1.0)),
        ("Median: 42.0%", (0.42, None, None)),
        ("42.5%", (0.425, None, None)),
        (0.37, (0.37, None, None)),
        (37, (0.37, None, None)),
    ],
)
def test_parse_adas_fitness(text: str | float, expected: tuple) -> None:
    got = parse_adas_fitness(text)
    assert isinstance(got.value, float)
    for g, e in zip(got, expected, strict=True):
        assert g == (None if e is None else pytest.approx(e))


@pytest.mark.parametrize("bad", ["", "great", "95% Bootstrap Confidence Interval: (1%, 2%)", True])
def test_parse_adas_fitness_rejects(bad: object) -> None:
    with pytest.raises(DataError, match="expected"):
        parse_adas_fitness(bad)  # type: ignore[arg-type]


def test_import_adas_parses_fitness_and_is_idempotent(tmp_path: Path, archive: Archive) -> None:
    src = tmp_path / "adas.json"
    src.write_text(json.dumps(ADAS))
    res = archive.import_json(src, campaign="adas-mgsm")
    assert (res.format, res.added, res.existing, len(res.ids)) == ("adas", 3, 0, 3)
    cot, refine, unscored = (archive.get(i) for i in res.ids)
    assert (cot.fitness, cot.ci_low, cot.ci_high) == pytest.approx((0.189, 0.123, 0.256))
    assert cot.kind == "code" and cot.status == "ok" and cot.generation == 0 and cot.campaign == "adas-mgsm"
    assert cot.source == ADAS[0]["code"] and cot.thought == "Step by step."
    assert refine.generation == 3 and refine.fitness == pytest.approx(0.005)
    assert refine.metadata["test_fitness"]["value"] == pytest.approx(0.45)
    assert refine.metadata["adas_extra"] == {"debug_thought": "fixed a typo"}
    assert unscored.fitness is None and unscored.status == "pending"
    assert [e.name for e in archive.leaderboard()] == ["Chain-of-Thought", "Self-Refine"]
    again = archive.import_json(src)
    assert (again.added, again.existing, again.ids) == (0, 3, res.ids)
    assert len(archive) == 3


def test_bad_adas_file_writes_nothing(tmp_path: Path, archive: Archive) -> None:
    bad = [*ADAS[:2], {**ADAS[0], "name": "Bad", "fitness": "ninety percent"}]
    src = tmp_path / "bad.json"
    src.write_text(json.dumps(bad))
    with pytest.raises(ArchiveError, match="entry 2.*cannot parse ADAS fitness"):
        archive.import_json(src)
    assert len(archive) == 0
    src.write_text(json.dumps([{"thought": "no code", "name": "X"}]))
    with pytest.raises(ArchiveError, match=r"entry 0 lacks.*\['code'\]"):
        archive.import_json(src)


@pytest.mark.parametrize(
    ("content", "match"),
    [("{not json", "not JSON"), ('{"a": 1}', "expected an ADAS archive"), ("42", "is int")],
)
def test_import_unknown_format(tmp_path: Path, archive: Archive, content: str, match: str) -> None:
    src = tmp_path / "x.json"
    src.write_text(content)
    with pytest.raises(ArchiveError, match=match):
        archive.import_json(src)
    with pytest.raises(ArchiveError, match="no file"):
        archive.import_json(tmp_path / "missing.json")


def _fill(archive: Archive, make) -> list[str]:
    camp = archive.start_campaign("evo", {"suite": "rg/arith", "seeds": [1]})
    root = archive.add(make("root", campaign=camp.id, model_specs={"agent": "mock"}))
    kid = archive.add(make("kid", parent_ids=[root], generation=1, campaign=camp.id, key="evo/1/0"))
    bad = archive.add(make("bad", kind="prompt", parent_ids=[root, kid], generation=2))
    archive.record_evaluation(
        root, "rg/arith", [{"sample_id": "a", "score": 1.0}, {"sample_id": "b", "score": 0.0, "error": "Timeout"}],
        ci_low=0.0, ci_high=1.0, usage=Usage(calls=2, prompt_tokens=11, completion_tokens=3), wall_s=1.5,
    )  # fmt: skip
    archive.record_evaluation(kid, "rg/arith", [{"sample_id": "a", "score": 1.0}], stage="subset")
    archive.update_status(bad, "invalid", "SyntaxError: bad")
    archive.update_campaign(camp.id, state={"iteration": 2})
    return [root, kid, bad]


def test_export_import_round_trip(tmp_path: Path, archive: Archive, make) -> None:
    ids = _fill(archive, make)
    out = tmp_path / "export.json"
    text = archive.export_json(out)
    assert json.loads(out.read_text()) == json.loads(text)
    with Archive(tmp_path / "fresh.db") as fresh:
        res = fresh.import_json(out)
        assert (res.format, res.added, res.existing, res.ids) == ("agentmeta", 3, 0, ids)
        assert fresh.campaigns() == archive.campaigns()
        for i in ids:
            assert fresh.get(i) == archive.get(i)
        assert fresh.leaderboard() == archive.leaderboard()
        again = fresh.import_json(out)
        assert (again.added, again.existing) == (0, 3)
        a, b = json.loads(fresh.export_json()), json.loads(text)
        a.pop("exported_at"), b.pop("exported_at")
        assert a == b


def test_export_one_campaign(archive: Archive, make) -> None:
    root, kid, _ = _fill(archive, make)
    doc = json.loads(archive.export_json(campaign="evo"))
    assert [c["id"] for c in doc["candidates"]] == [root, kid]
    assert [c["name"] for c in doc["campaigns"]] == ["evo"]


def test_import_conflicting_campaign_name(tmp_path: Path, archive: Archive, make) -> None:
    _fill(archive, make)
    out = tmp_path / "e.json"
    archive.export_json(out)
    with Archive(tmp_path / "other.db") as other:
        other.start_campaign("evo", {"different": True})
        with pytest.raises(ArchiveError, match="campaign name 'evo' is used"):
            other.import_json(out)


def test_export_candidate_folder(tmp_path: Path, archive: Archive, make) -> None:
    root, kid, bad = _fill(archive, make)
    folder = archive.export_candidate(root, tmp_path / "root")
    meta = json.loads((folder / "candidate.json").read_text())
    assert meta["id"] == root and meta["source_file"] == "agent.py" and "source" not in meta
    assert (folder / "agent.py").read_text() == archive.get(root).source
    evs = json.loads((folder / "evaluations.json").read_text())
    assert evs[0]["scores"][1] == {
        "sample_id": "b", "score": 0.0, "error": "Timeout", "outcome": "agent_error", "answer": None, "attempts": 1,
    }  # fmt: skip
    assert "scores" not in meta["evaluations"][0] and meta["evaluations"][0]["mean"] == 0.5
    prompt_dir = archive.export_candidate(bad, tmp_path / "bad")
    assert (prompt_dir / "prompt.txt").is_file() and not (prompt_dir / "agent.py").exists()
    archive.export_candidate(root, folder)  # re-export of the same candidate is fine
    with pytest.raises(ArchiveError, match="another export"):
        archive.export_candidate(kid, folder)
