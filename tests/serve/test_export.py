"""`agentmeta export ID`: one file that eval and serve take unchanged, scores and lineage in comments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentmeta import get_model
from agentmeta.agents.loader import spec_from_file
from agentmeta.archive import Archive, Candidate
from agentmeta.archive.export import export_file
from agentmeta.cli import app
from agentmeta.cli.options import load_agent
from agentmeta.eval import evaluate
from agentmeta.search import Campaign, SearchConfig
from tests.search.conftest import task_reply, write_suite


def _campaign(tmp_path: Path) -> tuple[Archive, Campaign, str]:
    suite = write_suite(tmp_path)
    archive = Archive(tmp_path / "a.db")
    config = SearchConfig(
        suite=suite, kind="graph", strategy="random", seeds=["cot"], iterations=2, subset=2, full=4
    )
    camp = Campaign(
        config, archive, model=get_model("mock", outputs=task_reply), meta_model=get_model("mock")
    )
    camp.run()
    return archive, camp, suite


def test_an_exported_graph_evaluates_like_the_archived_candidate(tmp_path):
    archive, camp, suite = _campaign(tmp_path)
    child = next(
        c for c in archive.candidates(campaign=camp.record.id) if c.generation > 0 and c.status == "ok"
    )
    res = CliRunner().invoke(
        app, ["export", child.id[:8], "--archive", str(tmp_path / "a.db"), "-o", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    path = next(tmp_path.glob(f"*-{child.id}.yaml"))
    text = path.read_text()
    assert f"# candidate {child.id} (graph)" in text and "# lineage (nearest first): " in text
    assert "# validation subset on" in text and text.count("\n#") >= 5
    spec = spec_from_file(str(path))
    assert spec.kind == "graph" and spec.name == child.name
    assert json.loads(spec.source)["nodes"] == json.loads(child.source)["nodes"]
    model = get_model("mock", outputs=task_reply)
    from_file = evaluate(str(path), suite, model=model, seed=1)
    from_archive = evaluate(load_agent(child.id, str(tmp_path / "a.db"))[0], suite, model=model, seed=1)
    assert [r.answer for r in from_file.records] == [r.answer for r in from_archive.records]


def test_an_exported_code_agent_runs_from_its_file_and_is_served(tmp_path):
    source = (Path(__file__).resolve().parents[2] / "archive" / "code" / "chain_of_thought.py").read_text()
    archive = Archive(tmp_path / "c.db")
    cid = archive.add(Candidate(kind="code", name="my cot", thought="reasons first", source=source))
    path, text = export_file(archive, cid, tmp_path / "cot.py")
    assert text.startswith("# name: my cot\n# thought: reasons first\n# exported by agentmeta")
    spec = spec_from_file(str(path))
    assert spec.kind == "code" and spec.name == "my cot"

    def reply(req) -> str:
        return json.dumps({"thinking": "4", "answer": "4"})

    result = evaluate(str(path), write_suite(tmp_path), model=get_model("mock", outputs=reply), limit=2)
    assert result.n_errors == 0 and [r.answer for r in result.records] == ["4", "4"]
    # ...and `agentmeta serve FILE` serves it
    openai = pytest.importorskip("openai")
    from agentmeta.serve import create_app
    from tests.serve.test_serve import Server

    agent, _, _ = load_agent(str(path), None)
    with Server(create_app(agent, get_model("mock", outputs=reply), name="my-cot")) as srv:
        out = openai.OpenAI(base_url=srv.url, api_key="x").chat.completions.create(
            model="my-cot", messages=[{"role": "user", "content": "What is 2 + 2?"}]
        )
    assert out.choices[0].message.content == "4"


def test_export_of_an_unknown_id_is_one_line(tmp_path):
    Archive(tmp_path / "e.db").close()
    res = CliRunner().invoke(app, ["export", "nope", "--archive", str(tmp_path / "e.db")])
    assert res.exit_code != 0 and "nope" in str(res.exception or res.output)
