"""Agent kinds come from the registry: a kind registered from outside the package is buildable,
loadable from files, storable in the archive, evaluable and searchable like the built-in ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from agentmeta import get_model
from agentmeta.agents import AgentKind, AgentSpec, get_kind, kind_names, register_kind, spec_from_file
from agentmeta.agents.answers import extract_answer
from agentmeta.agents.kinds import searchable_kind, searchable_kinds
from agentmeta.errors import ArchiveError, ConfigError, InvalidAgentError
from agentmeta.eval import Sample, Suite, evaluate
from agentmeta.eval.types import ScorerSpec
from agentmeta.registry import registry


class EchoAgent:
    """A plugin's agent: one call with `prefix` before the task."""

    def __init__(self, prefix: str, name: str) -> None:
        self.prefix = prefix
        self.name = name

    def run(self, task_input: str, model: Any) -> str:
        return extract_answer(model.generate(self.prefix + task_input, max_tokens=32).text)


def _build(spec: AgentSpec) -> EchoAgent:
    if "!" in spec.source:
        raise InvalidAgentError("an echo prefix may not shout")
    return EchoAgent(spec.source, spec.name)


def _load(path: Path, text: str) -> AgentSpec:
    return AgentSpec(kind="echo", name=path.stem, source=text)


def _from_proposal(data: dict[str, Any]) -> AgentSpec:
    if not data.get("prefix"):
        raise InvalidAgentError("the reply has no prefix")
    return AgentSpec(kind="echo", name=str(data.get("name") or "echo"), source=str(data["prefix"]))


ECHO = AgentKind(
    name="echo",
    build=_build,
    description="a fixed prefix before the task, one call",
    suffixes=(".echo",),
    load=_load,
    seeds=lambda: [AgentSpec(kind="echo", name="Plain Echo", source="")],
    proposal_schema={
        "type": "object",
        "properties": {
            "thought": {"type": "string"},
            "name": {"type": "string"},
            "prefix": {"type": "string"},
        },
        "required": ["thought", "name", "prefix"],
    },
    proposal_max_tokens=64,
    from_proposal=_from_proposal,
)


@pytest.fixture
def echo_kind() -> Iterator[AgentKind]:
    register_kind(ECHO)
    try:
        yield ECHO
    finally:
        registry.remove("kind", "echo")


def suite(n: int = 4) -> Suite:
    samples = [Sample(id=f"s{i}", input=f"w{i}", target=f"w{i}") for i in range(n)]
    return Suite(name="words", split="validation", samples=samples, scorer=ScorerSpec(name="contains"))


def test_builtin_kinds_are_registered_with_what_they_read() -> None:
    assert kind_names()[:4] == ["code", "graph", "prompt", "conductor"]
    assert searchable_kinds()[:3] == ["code", "graph", "prompt"] and "conductor" not in searchable_kinds()
    assert get_kind("code").filename == "agent.py" and ".py" in get_kind("code").suffixes
    with pytest.raises(ConfigError, match="cannot be searched"):
        searchable_kind("conductor")
    entry = registry.entry("kind", "graph")
    assert entry.origin == "agentmeta" and "LangGraph" in entry.doc


def test_an_unknown_kind_is_one_error_listing_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as err:
        AgentSpec(kind="nope", name="x", source="")
    assert "unknown agent kind 'nope'" in str(err.value) and "code, graph, prompt, conductor" in str(
        err.value
    )


def test_kind_definitions_are_checked() -> None:
    with pytest.raises(ConfigError, match="not valid"):
        AgentKind(name="Bad Name", build=_build, description="x")
    with pytest.raises(ConfigError, match="both proposal_schema and from_proposal"):
        AgentKind(name="half", build=_build, description="x", proposal_schema={"type": "object"})
    with pytest.raises(ConfigError, match="already registered"):
        register_kind(AgentKind(name="code", build=_build, description="not the real one"))


def test_a_plugin_kind_builds_loads_and_exports(echo_kind: AgentKind, tmp_path: Path) -> None:
    assert "echo" in kind_names()
    agent = AgentSpec(kind="echo", name="e", source="Answer: ").build()
    assert agent.run("w1", get_model("mock")) == "w1"
    with pytest.raises(InvalidAgentError, match="shout"):
        AgentSpec(kind="echo", name="e", source="!").build()
    (tmp_path / "mine.echo").write_text("Answer: ")
    assert spec_from_file(tmp_path / "mine.echo").kind == "echo"
    record = tmp_path / "rec.json"  # a spec record works for any kind
    record.write_text(json.dumps({"kind": "echo", "name": "R", "source": "Answer: "}))
    spec = spec_from_file(record)
    assert (spec.kind, spec.name, spec.source) == ("echo", "R", "Answer: ")
    out = spec.export(tmp_path / "out")
    assert (out / "echo.txt").read_text() == "Answer: "
    assert json.loads((out / "agent.json").read_text())["file"] == "echo.txt"
    from agentmeta.agents import find_seed, seed_agents, seed_names

    assert [s.name for s in seed_agents("echo")] == ["Plain Echo"]
    assert "echo/plain_echo" in seed_names() and find_seed("echo/plain_echo").kind == "echo"


def test_a_plugin_kind_is_evaluated_from_a_file(echo_kind: AgentKind, tmp_path: Path) -> None:
    (tmp_path / "mine.echo").write_text("Answer: ")
    result = evaluate(str(tmp_path / "mine.echo"), suite(), model="mock")
    assert result.n == 4 and result.mean == 1.0 and result.n_errors == 0


def test_the_archive_stores_plugin_kinds_and_reads_them_without_the_plugin(tmp_path: Path) -> None:
    from agentmeta.archive import Archive, Candidate

    archive = Archive(tmp_path / "a.db")
    with pytest.raises(ArchiveError, match="unknown kind 'echo'"):
        archive.add(Candidate(kind="echo", name="e", source="x"))  # writing validates
    register_kind(ECHO)
    try:
        cid = archive.add(Candidate(kind="echo", name="e", source="Answer: "))
        assert [c.id for c in archive.candidates(kind="echo")] == [cid]
        app = typer.Typer(pretty_exceptions_enable=False)
        from agentmeta.cli.eval import register

        register(app)
        data = tmp_path / "words.jsonl"
        data.write_text("".join(json.dumps({"input": f"w{i}", "target": f"w{i}"}) + "\n" for i in range(4)))
        run = CliRunner().invoke(
            app,
            ["eval", cid, "--archive", str(tmp_path / "a.db"), "--suite", f"{data}?scorer=contains",
             "--split", "all", "--model", "mock", "--json"],
        )  # fmt: skip
        assert run.exit_code == 0, run.output
        assert json.loads(run.stdout)[0]["mean"] == 1.0
    finally:
        registry.remove("kind", "echo")
    # the plugin is gone: its records still read (and filter), new ones are refused
    again = Archive(tmp_path / "a.db")
    assert again.get(cid).kind == "echo" and [c.id for c in again.candidates(kind="echo")] == [cid]
    with pytest.raises(ArchiveError, match="unknown kind"):
        again.add(Candidate(kind="echo", name="f", source="x"))
    with pytest.raises(ConfigError, match="unknown agent kind 'echo'"):
        AgentSpec(kind="echo", name="e", source="")


def test_the_meta_agent_writes_any_searchable_kind(echo_kind: AgentKind, tmp_path: Path) -> None:
    from agentmeta.archive import Archive
    from agentmeta.search.meta_agent import MetaAgentSearch, reply_to_spec
    from agentmeta.search.strategy import ProposalContext

    replies = iter(
        [{"thought": "t", "name": "first", "prefix": "Answer: "}, {"thought": "t", "name": "fixed"}]
    )
    meta = get_model("mock", outputs=lambda r: json.dumps(next(replies)))
    ctx = ProposalContext(
        archive=Archive(tmp_path / "a.db"),
        campaign="c",
        kind="echo",
        task_description="repeat the word",
        iteration=0,
        seed=0,
        meta_model=meta,
        candidates=[],
    )
    proposal = MetaAgentSearch(reflexion_rounds=0).propose(ctx)
    assert proposal.spec.kind == "echo" and proposal.spec.source == "Answer: "
    request = meta.provider.requests[0]  # the generic prompt names the kind and the schema's fields
    assert request.json_schema == ECHO.proposal_schema and request.max_tokens == 64
    assert 'kind "echo"' in request.messages[-1].content and '"prefix"' in request.messages[-1].content
    with pytest.raises(InvalidAgentError, match="no prefix"):
        MetaAgentSearch(reflexion_rounds=0).debug(ctx, proposal, "boom", 1)
    assert reply_to_spec("prompt", {"name": "p", "instruction": "Be brief."}).kind == "prompt"
    with pytest.raises(ConfigError, match="cannot be searched"):
        reply_to_spec("conductor", {})
