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
and strategies ask a kind for what it can do, never for its name (`AgentKind.capabilities`):

- `proposals` (`proposal_schema` and `from_proposal`): a meta-agent can write one (`meta-agent`);
- `slots` (`slots` and `set_slot`, `agentmeta.agents.slots`): its model calls can be tuned one by
  one (instruction, demonstrations, role, temperature, model) by `prompt` and `bayes`;
- `operators` (`graph=True`): its source is a graph spec, so the graph operators apply (`evolve`,
  `random`, `tree`, and `bayes`'s votes).
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
from agentmeta.agents.graph import ANSWER_HINT, POT_CODE, GraphAgent, GraphSpec, parse_spec, spec_from_steps
from agentmeta.agents.loader import SeedFiles, code_spec
from agentmeta.agents.prompt import PromptAgent, parse_prompt_spec
from agentmeta.agents.slots import ANSWER_LINE, Slot, check_changes, instruction_prompt, template_fields
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
    slots: Callable[[AgentSpec], list[Slot]] | None = None
    """The model calls of a spec that a search may tune (`agentmeta.agents.slots`); raise
    `InvalidAgentError` if the source does not parse. None: `prompt` and `bayes` cannot search it."""
    set_slot: Callable[[AgentSpec, int, dict[str, Any]], AgentSpec] | None = None
    """A new spec with slot `index` changed (`agentmeta.agents.slots.SLOT_CHANGES`, plus `name` and
    `thought`)."""
    graph: bool = False
    """Its source is a graph spec (`agentmeta.agents.graph.GraphSpec`): the graph operators apply."""
    key: Callable[[AgentSpec], str] | None = None
    """Two specs that behave the same share a key (duplicates are not evaluated twice). None: the
    kind's name and the source text (graphs: `agentmeta.search.operators.canonical`)."""

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
        if (self.slots is None) != (self.set_slot is None):
            raise ConfigError(
                f"agent kind {self.name!r}: give both slots and set_slot (to be tuned) or neither"
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

    @property
    def capabilities(self) -> frozenset[str]:
        """What strategies may do with it: `proposals`, `slots`, `operators` (see the module)."""
        caps = {"proposals"} if self.searchable else set()
        if self.slots is not None:
            caps.add("slots")
        if self.graph:
            caps.add("operators")
        return frozenset(caps)


CAPABILITIES = {
    "proposals": "proposals (a meta-agent writes it: proposal_schema, from_proposal)",
    "slots": "slots (model calls a search tunes: slots, set_slot)",
    "operators": "graph operators (graph=True: its source is a graph spec)",
}
"""Each capability in words, for errors and `agentmeta plugins`."""


def kinds_with(capability: str) -> list[str]:
    """The registered kinds that have `capability`."""
    return [name for name in kind_names() if capability in get_kind(name).capabilities]


def require_capability(kind: str, capability: str, who: str) -> AgentKind:
    """The kind `kind` if it has `capability`; else `ConfigError` saying who needs it and which
    registered kinds have it."""
    if capability not in CAPABILITIES:
        raise ConfigError(f"unknown kind capability {capability!r}; known: {', '.join(CAPABILITIES)}")
    found = get_kind(kind)
    if capability not in found.capabilities:
        raise ConfigError(
            f"{who} needs a kind with {CAPABILITIES[capability]}; --kind {kind} has none "
            f"(kinds with them: {', '.join(kinds_with(capability)) or 'none'})"
        )
    return found


def slots_of(spec: AgentSpec) -> list[Slot]:
    """The slots of `spec` (none if its kind has no slots)."""
    kind = get_kind(spec.kind)
    return kind.slots(spec) if kind.slots is not None else []


def set_slot(spec: AgentSpec, index: int, **changes: Any) -> AgentSpec:
    """`spec` with slot `index` changed (`InvalidAgentError` if the kind has no slots, there is no
    such slot, or the slot cannot take a change)."""
    kind = get_kind(spec.kind)
    if kind.slots is None or kind.set_slot is None:
        raise InvalidAgentError(f"agent kind {spec.kind!r} has no slots to set")
    slot = next((s for s in kind.slots(spec) if s.index == index), None)
    if slot is None:
        raise InvalidAgentError(f"{spec.name!r} has no slot {index}")
    try:
        check_changes(slot, changes)
    except ValueError as e:
        raise InvalidAgentError(str(e)) from e
    return kind.set_slot(spec, index, changes)


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


def graph_slots(graph: GraphSpec) -> list[Slot]:
    """A graph's llm and sample nodes (program-of-thought's expression node keeps its instruction)."""
    nodes = graph.nodes
    out = []
    for i, n in enumerate(nodes):
        if n.type not in ("llm", "sample"):
            continue
        pot = (
            n.type == "llm"
            and i + 1 < len(nodes)
            and nodes[i + 1].type == "python"
            and nodes[i + 1].code == POT_CODE
        )
        out.append(Slot(
            index=i, name=f"node {n.id}", prompt=n.prompt, role=n.role, temperature=n.temperature,
            demos=tuple(d.model_dump(mode="json") for d in n.demos), model=n.model,
            task_only=set(template_fields(n.prompt)) <= {"input"}, rewrite=not pot, trace_key=n.id,
        ))  # fmt: skip
    return out


def _graph_slots(spec: AgentSpec) -> list[Slot]:
    return graph_slots(parse_spec(spec.source))


def _graph_set_slot(spec: AgentSpec, index: int, changes: dict[str, Any]) -> AgentSpec:
    graph = parse_spec(spec.source)
    nodes = [n.model_dump(mode="json") for n in graph.nodes]
    node = dict(nodes[index])
    for key, value in changes.items():
        if key == "instruction":
            node["prompt"] = instruction_prompt(node["prompt"], value)
        elif key == "demos":
            node["demos"] = [dict(d) for d in value]
        elif key not in ("name", "thought"):
            node[key] = value
    nodes[index] = node
    meta = {k: changes[k] for k in ("name", "thought") if k in changes}
    data: dict[str, Any] = {**graph.model_dump(mode="json"), **meta, "nodes": nodes}
    new = parse_spec(data)
    return AgentSpec(
        kind=spec.kind, name=meta.get("name", spec.name), thought=meta.get("thought", spec.thought),
        source=new.model_dump_json(indent=2, exclude_defaults=True),
    )  # fmt: skip


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
    slots=_graph_slots,
    set_slot=_graph_set_slot,
    graph=True,
)


# ----------------------------------------------------------------------------- prompt


def _prompt_from_proposal(data: dict[str, Any]) -> AgentSpec:
    name, thought = proposal_name_thought(data)
    instruction = str(data.get("instruction") or "").replace("{", "(").replace("}", ")").strip()
    system = str(data.get("system") or "You are a helpful assistant.").strip()
    source = json.dumps({"system": system, "template": "{input}\n\n" + instruction + "\n\n" + ANSWER_HINT})
    return AgentSpec(kind="prompt", name=name, thought=thought, source=source)


def _prompt_slots(spec: AgentSpec) -> list[Slot]:
    """A prompt agent's one call: its template (instruction, demonstrations, temperature)."""
    p = parse_prompt_spec(spec.source)
    return [Slot(
        index=0, name="template", prompt=p.template, settable=frozenset({"instruction", "prompt", "temperature", "demos"}),
        temperature=p.temperature, demos=tuple(d.model_dump(mode="json") for d in p.demos), trace_key="template",
    )]  # fmt: skip


def _prompt_set_slot(spec: AgentSpec, index: int, changes: dict[str, Any]) -> AgentSpec:
    p = parse_prompt_spec(spec.source)
    data = p.model_dump(mode="json")
    for key, value in changes.items():
        if key == "instruction":
            data["template"] = "{input}\n\n" + value + "\n\n" + ANSWER_LINE
        elif key == "prompt":
            data["template"] = value
        elif key in ("temperature", "demos"):
            data[key] = [dict(d) for d in value] if key == "demos" else value
    return AgentSpec(
        kind=spec.kind, name=changes.get("name", spec.name), thought=changes.get("thought", spec.thought),
        source=parse_prompt_spec(data).source(),
    )  # fmt: skip


def _prompt_key(spec: AgentSpec) -> str:
    return "prompt:" + json.dumps(parse_prompt_spec(spec.source).model_dump(mode="json"), sort_keys=True)


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
    slots=_prompt_slots,
    set_slot=_prompt_set_slot,
    key=_prompt_key,
)

for _kind in (CODE, GRAPH, PROMPT):
    register_kind(_kind)
