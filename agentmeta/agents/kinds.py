"""Agent kinds: what a candidate's source is, how it becomes an agent, and how a meta-agent writes one.

A kind is an `AgentKind` in the registry's "kind" category. agentmeta registers `code`, `graph` and
`prompt` here and `conductor` in `agentmeta.conductor.agent`; a plugin adds its own the same way
(from a module its `agentmeta.plugins` entry point names)::

    from agentmeta.agents.kinds import AgentKind, register_kind

    register_kind(AgentKind(
        name="regex",
        build=lambda spec: RegexAgent(spec.source, name=spec.name),   # run(task_input, model) -> str
        description="a regular expression whose first match is the answer",
        suffixes=(".regex",),
        load=lambda path, text: AgentSpec(kind="regex", name=path.stem, source=text),
    ))

Every part of agentmeta asks the registry for kinds: `AgentSpec` validates and builds through it,
agent files are read by the kind that claims their suffix, the archive stores any registered kind,
and a search can write any kind with a `proposal_schema` and `from_proposal`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentmeta.agents.base import Agent, AgentSpec, get_kind, kind_names
from agentmeta.agents.code import CodeAgent
from agentmeta.agents.graph import ANSWER_HINT, GraphAgent, spec_from_steps
from agentmeta.agents.loader import SeedFiles, code_spec
from agentmeta.agents.prompt import PromptAgent
from agentmeta.errors import ConfigError, InvalidAgentError
from agentmeta.registry import registry

KIND_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,15}$")
"""A kind's name: lowercase, at most 16 characters (the archive stores it in a 16-character column)."""


def _no_seeds() -> list[AgentSpec]:
    return []


@dataclass(frozen=True)
class AgentKind:
    """One kind of agent: how its source builds, which files hold it, how a meta-agent proposes one."""

    name: str
    """The kind's name, as `AgentSpec.kind` and the archive store it (`code`, `graph`, ...)."""
    build: Callable[[AgentSpec], Agent]
    """Compile a spec into a runnable agent; raise `InvalidAgentError` if the source is not valid."""
    description: str
    """One line about it (listed by `agentmeta plugins`, shown to a meta-agent)."""
    suffixes: tuple[str, ...] = ()
    """Agent-file suffixes this kind reads (`.py`; `.yaml`, `.yml`, `.json`)."""
    markers: tuple[str, ...] = ()
    """For YAML/JSON files: top-level keys that mark a file as this kind (any one of them). A file's
    own `kind:` key always wins over markers."""
    load: Callable[[Path, str], AgentSpec] | None = None
    """Read an agent file's text into a spec. None: the file is a YAML/JSON mapping whose `name`,
    `thought` and `kind` keys are metadata and whose other keys are the spec (stored as JSON)."""
    filename: str = ""
    """The source's file name in an exported folder (default `<name>.txt`)."""
    seeds: Callable[[], list[AgentSpec]] = _no_seeds
    """The hand-designed agents a search of this kind starts from."""
    proposal_schema: dict[str, Any] | None = None
    """JSON schema of a meta-agent's reply proposing one (None: a search cannot write this kind)."""
    proposal_max_tokens: int = 512
    """Completion budget of one meta-agent reply."""
    from_proposal: Callable[[dict[str, Any]], AgentSpec] | None = None
    """Turn a meta-agent's reply (a dict matching `proposal_schema`) into a spec; raise
    `InvalidAgentError` if it cannot."""
    proposal_prompt: str | None = None
    """The meta-agent's task prompt, a template with the slots {task_description}, {archive} and
    {parent}. None: agentmeta's `proposal_template`, else a generic prompt built from the
    description and the schema's fields."""
    proposal_template: str | None = None
    """Name of a template in agentmeta's prompts/ (the built-in kinds' prompts)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not KIND_NAME.match(self.name):
            raise ConfigError(
                f"agent kind name {self.name!r} is not valid; expected lowercase letters, digits, '-' or '_', "
                "at most 16 characters, starting with a letter"
            )
        bad = [s for s in self.suffixes if not s.startswith(".")]
        if bad:
            raise ConfigError(f"agent kind {self.name!r}: suffixes must start with '.', got {bad}")
        if (self.proposal_schema is None) != (self.from_proposal is None):
            raise ConfigError(
                f"agent kind {self.name!r}: give both proposal_schema and from_proposal (to be searchable) "
                "or neither"
            )
        if not self.filename:
            object.__setattr__(self, "filename", f"{self.name}.txt")
        # what the registry shows for the entry: this kind's line, the module that builds it
        object.__setattr__(self, "__doc__", self.description)
        object.__setattr__(self, "__module__", getattr(self.build, "__module__", None) or __name__)

    @property
    def searchable(self) -> bool:
        """True if a meta-agent can write this kind (it has a proposal schema and `from_proposal`)."""
        return self.proposal_schema is not None and self.from_proposal is not None


def register_kind(kind: AgentKind, *, replace: bool = False) -> AgentKind:
    """Register `kind` in the registry's "kind" category (a name is taken once unless `replace`)."""
    if not isinstance(kind, AgentKind):
        raise ConfigError(f"register_kind takes an AgentKind; got {type(kind).__name__}")
    return registry.add("kind", kind.name, kind, kind.description, replace=replace)  # type: ignore[no-any-return]


def searchable_kinds() -> list[str]:
    """The registered kinds a meta-agent can write."""
    return [name for name in kind_names() if get_kind(name).searchable]


def searchable_kind(name: str) -> AgentKind:
    """The kind `name` if a search can write it; `ConfigError` naming the kinds that can otherwise."""
    kind = get_kind(name)
    if not kind.searchable:
        raise ConfigError(
            f"agent kind {name!r} cannot be searched (it has no proposal_schema and from_proposal); "
            f"searchable kinds: {', '.join(searchable_kinds())}"
        )
    return kind


def proposal_name_thought(data: dict[str, Any]) -> tuple[str, str]:
    """The `name` (at most 60 characters, `unnamed` if missing) and `thought` of a proposal."""
    name = str(data.get("name") or "unnamed").strip()[:60] or "unnamed"
    return name, str(data.get("thought") or "").strip()


def _text(max_len: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_len}


# ----------------------------------------------------------------------------- code


def _code_from_proposal(data: dict[str, Any]) -> AgentSpec:
    name, thought = proposal_name_thought(data)
    code = str(data.get("code") or "")
    if not code.strip():
        raise InvalidAgentError("the reply has no code")
    return AgentSpec(kind="code", name=name, thought=thought, source=code)


CODE = AgentKind(
    name="code",
    build=lambda spec: CodeAgent(spec.source, name=spec.name),
    description="ADAS-style Python source defining forward(self, taskInfo), run in the sandbox",
    suffixes=(".py",),
    load=code_spec,
    filename="agent.py",
    seeds=SeedFiles("code", "*.py"),
    proposal_schema={
        "type": "object",
        "properties": {"thought": _text(500), "name": _text(60), "code": _text(3000)},
        "required": ["thought", "name", "code"],
        "additionalProperties": False,
    },
    proposal_max_tokens=1200,
    from_proposal=_code_from_proposal,
    proposal_template="meta-agent-code",
)


# ----------------------------------------------------------------------------- graph


GRAPH_STEP_TYPES = ("llm", "sample_vote", "reflect", "program_of_thought", "demos")
"""Step types of the meta-agent's graph proposals (see `spec_from_steps`)."""

_demo_pool: ContextVar[list[dict[str, str]] | None] = ContextVar("agentmeta_demo_pool", default=None)


@contextlib.contextmanager
def proposal_demos(pool: list[dict[str, str]]) -> Iterator[None]:
    """Inside this block, a graph proposal's `demos` steps take their examples (`{input, answer}`
    dicts, train split only) from `pool`, in order. Outside it, a `demos` step shows none."""
    token = _demo_pool.set(list(pool))
    try:
        yield
    finally:
        _demo_pool.reset(token)


def _graph_from_proposal(data: dict[str, Any]) -> AgentSpec:
    name, thought = proposal_name_thought(data)
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise InvalidAgentError("the reply has no steps")
    spec = spec_from_steps(name, thought, steps, demos_pool=_demo_pool.get())
    return AgentSpec(
        kind="graph", name=name, thought=thought, source=spec.model_dump_json(indent=2, exclude_defaults=True)
    )


GRAPH = AgentKind(
    name="graph",
    build=lambda spec: GraphAgent.from_source(spec.source, name=spec.name),
    description="a declarative node/edge spec compiled to a LangGraph StateGraph",
    suffixes=(".yaml", ".yml", ".json"),
    markers=("nodes",),
    filename="graph.json",
    seeds=SeedFiles("graph", "*.y*ml"),
    proposal_schema={
        "type": "object",
        "properties": {
            "thought": _text(150),
            "name": _text(32),
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"enum": list(GRAPH_STEP_TYPES)},
                        "role": _text(32),
                        "instruction": _text(150),
                    },
                    "required": ["type", "role", "instruction"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["thought", "name", "steps"],
        "additionalProperties": False,
    },
    proposal_max_tokens=300,
    from_proposal=_graph_from_proposal,
    proposal_template="meta-agent-graph",
)


# ----------------------------------------------------------------------------- prompt


def _prompt_from_proposal(data: dict[str, Any]) -> AgentSpec:
    name, thought = proposal_name_thought(data)
    instruction = str(data.get("instruction") or "").replace("{", "(").replace("}", ")").strip()
    system = str(data.get("system") or "You are a helpful assistant.").strip()
    source = json.dumps({"system": system, "template": "{input}\n\n" + instruction + "\n\n" + ANSWER_HINT})
    return AgentSpec(kind="prompt", name=name, thought=thought, source=source)


PROMPT = AgentKind(
    name="prompt",
    build=lambda spec: PromptAgent.from_source(spec.source, name=spec.name),
    description="one templated call (a system message and a template over {input})",
    suffixes=(".json", ".yaml", ".yml"),
    markers=("template",),
    filename="prompt.json",
    seeds=SeedFiles("prompt", "*.json"),
    proposal_schema={
        "type": "object",
        "properties": {
            "thought": _text(300),
            "name": _text(60),
            "system": _text(300),
            "instruction": _text(400),
        },
        "required": ["thought", "name", "system", "instruction"],
        "additionalProperties": False,
    },
    proposal_max_tokens=260,
    from_proposal=_prompt_from_proposal,
    proposal_template="meta-agent-prompt",
)

for _kind in (CODE, GRAPH, PROMPT):
    register_kind(_kind)
