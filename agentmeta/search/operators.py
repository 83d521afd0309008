"""Mutation and crossover operators over graph agents, for the `evolve`, `random` and `tree`
strategies. They are entries of the registry's "operator" category (`register_operator`), so a
plugin adds one the same way and the strategies draw it with the built-ins.

An operator is a pure function `(GraphSpec, rng, ctx) -> GraphSpec`: it never changes its input,
draws every choice from `rng` (a `random.Random`), needs no model, and returns a valid spec or
raises `NotApplicable` (e.g. removing the only step of a graph). `ctx` is an `OperatorContext`:
the train samples demonstrations come from, the second parent of a crossover, a size limit.

The library works on *units* of a chain graph (no explicit edges, entry or output): a node with
the nodes that depend on it (a sample node and its vote; program-of-thought's llm node and its
calculator), so that adding, removing, swapping and splicing units always gives a valid graph.
Parameter operators (role, instruction, temperature, n, max_tokens, demonstrations) apply to any
graph.

- structure: `add_cot`, `add_sample_vote`, `add_reflect`, `add_program_of_thought` (insert a unit
  after a random unit), `remove_node`, `swap_node` (replace a unit by another kind of unit);
- demonstrations: `add_demos` (1-3 train samples as chat turns on an llm/sample node),
  `drop_demos`;
- parameters: `change_role`, `change_instruction` (from small fixed lists), `change_temperature`,
  `change_n`, `change_max_tokens`;
- crossover (two parents): `crossover` (a prefix of the first + a suffix of the second),
  `crossover_demos` (the second parent's demonstrations on a node of the first).

`canonical(spec)` (`agentmeta.search.canonical`) is the key duplicates are detected by.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentmeta.agents.graph import POT_CODE, GraphSpec, parse_spec, pot_nodes, step_prompt
from agentmeta.agents.slots import instruction_prompt as _instruction_prompt
from agentmeta.agents.slots import template_fields as prompt_fields
from agentmeta.errors import ConfigError, InvalidAgentError
from agentmeta.prompts import prompt_line, prompt_lines
from agentmeta.registry import registry
from agentmeta.search.canonical import _dump, _rename
from agentmeta.search.canonical import canonical as canonical  # the duplicate key, used with the operators

Operator = Callable[[GraphSpec, random.Random, "OperatorContext"], GraphSpec]
NodeDict = dict[str, Any]
Unit = list[NodeDict]


class NotApplicable(Exception):
    """The operator does not apply to this graph (the caller tries another)."""


@dataclass(frozen=True)
class OperatorContext:
    """What an operator may use besides the graph and the random generator."""

    train_samples: Sequence[Any] = ()
    """Samples of the suite's train split (`.input`, `.target`): the only source of demonstrations."""
    partner: GraphSpec | None = None
    """The second parent of a crossover."""
    max_nodes: int = 8
    """Largest graph an operator may produce (nodes)."""
    models: Sequence[str] = ()
    """Other model specs a node may use (`SearchConfig.models`): what `change_model` and
    `add_cascade` draw from; empty, they do not apply."""
    task_model: str = ""
    """The spec of the model the campaign runs candidates on (a cascade's first model)."""


COT_HINT = prompt_line("cot-hint")
CHECK_PREVIOUS = prompt_line("check-previous")
ROLES = prompt_lines("roles")
"""Roles `change_role` and `bayes` choose from (`prompts/roles.txt`, one per line)."""
INSTRUCTIONS = prompt_lines("instructions")
"""Instructions `change_instruction` and `bayes` choose from (`prompts/instructions.txt`)."""
TEMPERATURES = (0.0, 0.3, 0.7, 1.0)
SAMPLE_TEMPERATURES = (0.5, 0.8, 1.0, 1.2)
SAMPLE_NS = (3, 5, 7, 9)
MAX_TOKENS = (96, 160, 256, 384, 512)
UNIT_KINDS = ("cot", "sample_vote", "reflect", "program_of_thought")
"""The units `add_*` and `swap_node` build."""
DEMO_MAX = 3
CALLING = ("llm", "sample")
"""Node types that send a prompt (and so can show demonstrations)."""


# ----------------------------------------------------------------------------- helpers


def _is_pot_python(n: NodeDict) -> bool:
    return n["type"] == "python" and n.get("code") == POT_CODE


def _is_pot_llm(nodes: list[NodeDict], i: int) -> bool:
    return nodes[i]["type"] == "llm" and i + 1 < len(nodes) and _is_pot_python(nodes[i + 1])


def _fresh(prefix: str, taken: set[str]) -> str:
    k = 1
    while f"{prefix}{k}" in taken:
        k += 1
    taken.add(f"{prefix}{k}")
    return f"{prefix}{k}"


def _is_chain(spec: GraphSpec) -> bool:
    ids = [n.id for n in spec.nodes]
    return not spec.edges and spec.entry in (None, ids[0]) and spec.output in (None, ids[-1])


def units(spec: GraphSpec) -> list[Unit]:
    """The graph's units, in order: each node with the later nodes that depend on it (a vote with
    its sample node, a calculator with its expression, a prompt naming an earlier node's id).
    `NotApplicable` for a graph with explicit edges, entry or output."""
    if not _is_chain(spec):
        raise NotApplicable("the graph has explicit edges, entry or output: only parameter operators apply")
    nodes = _dump(spec)
    groups: list[Unit] = []
    owner: dict[str, int] = {}
    for i, n in enumerate(nodes):
        deps = {f for f in prompt_fields(n["prompt"]) if f not in ("input", "last")}
        if n["type"] == "vote" and i:
            deps.add(n.get("source") or nodes[i - 1]["id"])
        if _is_pot_python(n) and i:
            deps.add(nodes[i - 1]["id"])
        known = [owner[d] for d in deps if d in owner]
        if known:
            start = min(known)
            merged = [x for g in groups[start:] for x in g] + [n]
            groups[start:] = [merged]
        else:
            groups.append([n])
        for gi, g in enumerate(groups):
            for x in g:
                owner[x["id"]] = gi
    return groups


def unit_kind(unit: Unit) -> str:
    """cot (a single llm node), sample_vote, reflect, program_of_thought, or other."""
    types = [n["type"] for n in unit]
    if types == ["llm"]:
        return "cot"
    if types == ["sample", "vote"]:
        return "sample_vote"
    if types[-1:] == ["reflect"] and types in (["reflect"], ["llm", "reflect"]):
        return "reflect"
    if types == ["llm", "python"] and _is_pot_python(unit[1]):
        return "program_of_thought"
    return "other"


def make_unit(kind: str, rng: random.Random, previous: bool, taken: set[str]) -> Unit:
    """A new unit of the library; `previous`: it follows another unit (its prompt shows that output)."""
    head = step_prompt(CHECK_PREVIOUS if previous else "", previous, hint=COT_HINT)
    if kind == "cot":
        return [{"id": _fresh("cot", taken), "type": "llm", "prompt": head}]
    if kind == "sample_vote":
        sid = _fresh("sample", taken)
        return [
            {"id": sid, "type": "sample", "prompt": head, "n": rng.choice((3, 5)), "temperature": 0.8},
            {"id": _fresh("vote", taken), "type": "vote", "source": sid},
        ]
    if kind == "reflect":
        refl = {"id": _fresh("reflect", taken), "type": "reflect", "max_rounds": 1}
        return [refl] if previous else [{"id": _fresh("cot", taken), "type": "llm", "prompt": head}, refl]
    if kind == "program_of_thought":
        return pot_nodes(_fresh("expr", taken), _fresh("calc", taken), previous=previous)
    raise ValueError(f"unknown unit kind {kind!r}; known: {', '.join(UNIT_KINDS)}")


def _strip_previous(unit: Unit) -> Unit:
    """The unit as the graph's first: no reflect or vote first, no 'Previous step' block."""
    first = dict(unit[0])
    if first["type"] in ("reflect", "vote", "python"):
        raise NotApplicable(f"the graph would start with a {first['type']} node")
    first["prompt"] = first["prompt"].replace("Previous step:\n{last}\n\n", "")
    return [first, *unit[1:]]


def _build(spec: GraphSpec, groups: list[Unit], ctx: OperatorContext) -> GraphSpec:
    nodes = [n for g in groups for n in g]
    if not nodes:
        raise NotApplicable("the graph would have no node")
    if len(nodes) > ctx.max_nodes:
        raise NotApplicable(f"the graph would have {len(nodes)} nodes (most: {ctx.max_nodes})")
    data = {"name": spec.name, "thought": spec.thought, "nodes": nodes, "max_steps": spec.max_steps}
    return parse_spec(json.loads(json.dumps(data)))


def _with_nodes(spec: GraphSpec, nodes: list[NodeDict]) -> GraphSpec:
    data = spec.model_dump(mode="json")
    data["nodes"] = nodes
    return parse_spec(data)


def _set(spec: GraphSpec, index: int, **changes: Any) -> GraphSpec:
    nodes = _dump(spec)
    nodes[index] = {**nodes[index], **changes}
    return _with_nodes(spec, nodes)


def _pick_other(rng: random.Random, options: Sequence[Any], current: Any) -> Any:
    others = [o for o in options if o != current]
    if not others:
        raise NotApplicable("no other value to choose")
    return rng.choice(others)


def _indices(spec: GraphSpec, types: Sequence[str], pot_llm: bool = True) -> list[int]:
    nodes = _dump(spec)
    return [i for i, n in enumerate(nodes) if n["type"] in types and (pot_llm or not _is_pot_llm(nodes, i))]


# ----------------------------------------------------------------------------- structure


def _adder(kind: str) -> Operator:
    def add(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
        groups = units(spec)
        taken = {n.id for n in spec.nodes}
        at = rng.randint(1, len(groups))  # after a unit: the new unit sees that unit's output
        return _build(spec, [*groups[:at], make_unit(kind, rng, True, taken), *groups[at:]], ctx)

    add.__name__ = f"add_{kind}"
    add.__doc__ = f"Insert a {kind} unit after a random unit."
    return add


add_cot = _adder("cot")
add_sample_vote = _adder("sample_vote")
add_reflect = _adder("reflect")
add_program_of_thought = _adder("program_of_thought")


def remove_node(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Remove a random unit (never the only one)."""
    groups = units(spec)
    if len(groups) < 2:
        raise NotApplicable("the graph has a single unit")
    options = []
    for i in range(len(groups)):
        rest = groups[:i] + groups[i + 1 :]
        try:
            options.append([_strip_previous(rest[0]), *rest[1:]])
        except NotApplicable:
            continue
    if not options:
        raise NotApplicable("every removal would leave a graph starting with a reflect node")
    return _build(spec, rng.choice(options), ctx)


def swap_node(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Replace a random unit by another kind of unit from the library."""
    groups = units(spec)
    i = rng.randrange(len(groups))
    kind = _pick_other(rng, UNIT_KINDS, unit_kind(groups[i]))
    taken = {n["id"] for g in groups[:i] + groups[i + 1 :] for n in g}
    new = make_unit(kind, rng, previous=i > 0, taken=taken)
    return _build(spec, [*groups[:i], new, *groups[i + 1 :]], ctx)


# ----------------------------------------------------------------------------- demonstrations


def _demo_targets(spec: GraphSpec) -> list[int]:
    """llm/sample nodes that can show demonstrations; those that see the task only come first."""
    nodes = _dump(spec)
    calling = _indices(spec, CALLING, pot_llm=False)
    direct = [i for i in calling if set(prompt_fields(nodes[i]["prompt"])) <= {"input"}]
    return direct or calling


def add_demos(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Show 1-3 train samples (input, reference answer) as chat turns before a node's prompt."""
    train = [s for s in ctx.train_samples if str(s.input).strip()]
    if not train:
        raise NotApplicable("no train samples to take demonstrations from")
    targets = _demo_targets(spec)
    if not targets:
        raise NotApplicable("no llm or sample node to show demonstrations")
    i = rng.choice(targets)
    picks = rng.sample(train, rng.randint(1, min(DEMO_MAX, len(train))))
    demos = [{"input": str(s.input)[:2000], "answer": str(s.target)[:500]} for s in picks]
    if demos == _dump(spec)[i]["demos"]:
        raise NotApplicable("the node already shows these demonstrations")
    return _set(spec, i, demos=demos)


def drop_demos(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Remove the demonstrations of a node that has some."""
    with_demos = [i for i, n in enumerate(spec.nodes) if n.demos]
    if not with_demos:
        raise NotApplicable("no node shows demonstrations")
    return _set(spec, rng.choice(with_demos), demos=[])


# ----------------------------------------------------------------------------- parameters


def _change_field(
    spec: GraphSpec, rng: random.Random, types: Sequence[str], field: str,
    options: Callable[[Any], Sequence[Any]], what: str,
) -> GraphSpec:  # fmt: skip
    """Another value of `field`, from `options(node)`, on a node of one of `types` drawn by `rng`."""
    targets = _indices(spec, types)
    if not targets:
        raise NotApplicable(f"no node with {what}")
    i = rng.choice(targets)
    node = spec.nodes[i]
    return _set(spec, i, **{field: _pick_other(rng, options(node), getattr(node, field))})


def change_role(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Give a calling node another role from `ROLES`."""
    return _change_field(spec, rng, ("llm", "sample", "reflect"), "role", lambda node: ROLES, "a role")


def change_instruction(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Rewrite an llm/sample node's prompt around another instruction from `INSTRUCTIONS` (it keeps
    the task and the outputs the prompt showed)."""
    targets = _indices(spec, CALLING, pot_llm=False)
    if not targets:
        raise NotApplicable("no llm or sample node with an instruction")
    i = rng.choice(targets)
    old = spec.nodes[i].prompt
    options = [p for p in (_instruction_prompt(old, x) for x in INSTRUCTIONS) if p != old]
    return _set(spec, i, prompt=rng.choice(options))


def change_temperature(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Another sampling temperature for an llm, sample or reflect node."""
    return _change_field(
        spec, rng, ("llm", "sample", "reflect"), "temperature",
        lambda node: SAMPLE_TEMPERATURES if node.type == "sample" else TEMPERATURES, "a temperature",
    )  # fmt: skip


def change_n(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Another number of samples for a sample node."""
    return _change_field(spec, rng, ("sample",), "n", lambda node: SAMPLE_NS, "a number of samples")


def change_max_tokens(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Another completion budget for an llm, sample or reflect node."""
    return _change_field(
        spec, rng, ("llm", "sample", "reflect"), "max_tokens", lambda node: MAX_TOKENS, "a completion budget"
    )


# ----------------------------------------------------------------------------- crossover


def crossover(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """The first parent's first units followed by the second parent's last units (at least one of
    each, the second parent's never from its start: its first unit does not read a previous step)."""
    if ctx.partner is None:
        raise NotApplicable("crossover needs a second parent")
    a, b = units(spec), units(ctx.partner)
    options = [
        (i, j)
        for i in range(1, len(a) + 1)
        for j in range(1, len(b))
        if sum(map(len, a[:i])) + sum(map(len, b[j:])) <= ctx.max_nodes
    ]
    if not options:
        raise NotApplicable("the second parent has a single unit, or every splice is too large")
    i, j = rng.choice(options)
    prefix = a[:i]
    prefix_ids = {n["id"] for g in prefix for n in g}
    suffix_nodes = [n for g in b[j:] for n in g]
    taken = prefix_ids | {n["id"] for n in suffix_nodes}
    mapping = {
        n["id"]: _fresh(n["id"].rstrip("0123456789") or "n", taken)
        for n in suffix_nodes
        if n["id"] in prefix_ids
    }
    suffix = [_rename(g, mapping) for g in b[j:]]
    return _build(spec, [*prefix, *suffix], ctx)


def crossover_demos(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """The second parent's demonstrations (of one of its nodes) on a node of the first."""
    if ctx.partner is None:
        raise NotApplicable("crossover needs a second parent")
    donors = [n.demos for n in ctx.partner.nodes if n.demos]
    targets = _demo_targets(spec)
    if not donors or not targets:
        raise NotApplicable("the second parent shows no demonstrations, or the first has no node for them")
    i = rng.choice(targets)
    demos = [d.model_dump() for d in rng.choice(donors)]
    if demos == _dump(spec)[i]["demos"]:
        raise NotApplicable("the node already shows these demonstrations")
    return _set(spec, i, demos=demos)


def change_model(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Send a calling node's calls to another of the campaign's models (or back to the run's)."""
    if not ctx.models:
        raise NotApplicable("the campaign names no other model (SearchConfig.models)")
    targets = _indices(spec, ("llm", "sample", "reflect"))
    if not targets:
        raise NotApplicable("no calling node")
    i = rng.choice(targets)
    return _set(spec, i, model=_pick_other(rng, [None, *ctx.models], spec.nodes[i].model))


def add_cascade(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Make the graph's output llm node a cascade: the run's model first, another of the campaign's
    models when its samples disagree (`cascade` nodes in `agentmeta.agents.graph`)."""
    if not ctx.models or not ctx.task_model:
        raise NotApplicable("the campaign names no other model (SearchConfig.models)")
    nodes = _dump(spec)
    last = nodes[-1]
    if spec.edges or last["type"] != "llm" or last.get("demos") or last.get("model"):
        raise NotApplicable("the output node is not a plain llm node")
    nodes[-1] = {
        "id": last["id"], "type": "cascade", "prompt": last["prompt"], "role": last["role"],
        "max_tokens": last["max_tokens"], "n": rng.choice((3, 5)), "agree": rng.choice((0.6, 0.8)),
        "models": [ctx.task_model, rng.choice(list(ctx.models))],
    }  # fmt: skip
    return _with_nodes(spec, nodes)


MODEL_MUTATIONS: dict[str, Operator] = {"change_model": change_model, "add_cascade": add_cascade}
"""Operators that use the campaign's other models; drawn only when it names some."""
MUTATIONS: dict[str, Operator] = {
    "add_cot": add_cot,
    "add_sample_vote": add_sample_vote,
    "add_reflect": add_reflect,
    "add_program_of_thought": add_program_of_thought,
    "remove_node": remove_node,
    "swap_node": swap_node,
    "add_demos": add_demos,
    "drop_demos": drop_demos,
    "change_role": change_role,
    "change_instruction": change_instruction,
    "change_temperature": change_temperature,
    "change_n": change_n,
    "change_max_tokens": change_max_tokens,
}
"""Operators on one parent."""
CROSSOVERS: dict[str, Operator] = {"crossover": crossover, "crossover_demos": crossover_demos}
"""Operators on two parents (`OperatorContext.partner` is the second)."""
BUILTIN_OPERATORS: dict[str, Operator] = {**MUTATIONS, **MODEL_MUTATIONS, **CROSSOVERS}
"""agentmeta's own operators (the registry may hold plugins' too)."""

OperatorGroup = Literal["mutation", "model", "crossover", "adaptive"]
GROUPS: tuple[OperatorGroup, ...] = ("mutation", "model", "crossover", "adaptive")


@dataclass(frozen=True)
class GraphOperator:
    """A registered operator: the function and how strategies draw it."""

    fn: Operator
    group: OperatorGroup = "mutation"
    """`mutation` (one parent), `model` (one parent; drawn only when the campaign names other
    models), `adaptive` (one parent; drawn only in a campaign with `SearchConfig.adaptive`) or
    `crossover` (two parents: `OperatorContext.partner` is the second)."""

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ConfigError(f"operator group must be one of {', '.join(GROUPS)}; got {self.group!r}")
        if not callable(self.fn):
            raise ConfigError(
                f"an operator is a function (spec, rng, ctx) -> spec; got {type(self.fn).__name__}"
            )
        object.__setattr__(self, "__doc__", (getattr(self.fn, "__doc__", None) or "").strip())
        object.__setattr__(self, "__module__", getattr(self.fn, "__module__", None) or __name__)


def register_operator(
    name: str, fn: Operator, group: OperatorGroup = "mutation", doc: str = "", *, replace: bool = False
) -> Operator:
    """Register a graph operator in the registry's "operator" category, where `evolve`, `random` and
    `tree` draw from (a plugin adds one the same way)::

        from agentmeta.search.operators import register_operator

        def shorter(spec, rng, ctx):            # (GraphSpec, random.Random, OperatorContext) -> GraphSpec
            ...                                  # or raise NotApplicable

        register_operator("shorter", shorter)
    """
    registry.add("operator", name, GraphOperator(fn, group), doc, replace=replace)
    return fn


def operator_names(group: OperatorGroup) -> list[str]:
    """The registered operators of `group`, sorted by name (the order strategies draw from)."""
    return sorted(n for n in registry.names("operator") if registry.get("operator", n).group == group)


for _group, _table in (("mutation", MUTATIONS), ("model", MODEL_MUTATIONS), ("crossover", CROSSOVERS)):
    for _name, _fn in _table.items():
        register_operator(_name, _fn, _group)  # type: ignore[arg-type]


def apply(name: str, spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Apply the registered operator `name`; the child keeps the parent's name and thought (the
    strategy sets its own). `NotApplicable` if it does not apply; a child that is not a valid graph
    is reported as `NotApplicable` too, with the reason. `ConfigError` for an unknown name."""
    op: GraphOperator = registry.get("operator", name)
    if not isinstance(op, GraphOperator):
        raise ConfigError(f"operator {name!r} runs the candidate on train samples: the strategies apply it themselves")
    try:
        child = op.fn(spec, rng, ctx)
    except InvalidAgentError as e:
        raise NotApplicable(f"{name} made an invalid graph: {e}") from e
    if not isinstance(child, GraphSpec):
        raise NotApplicable(f"{name} returned {type(child).__name__}, not a graph spec")
    return child


__all__ = [
    "BUILTIN_OPERATORS",
    "CROSSOVERS",
    "MODEL_MUTATIONS",
    "MUTATIONS",
    "GraphOperator",
    "NotApplicable",
    "OperatorContext",
    "apply",
    "operator_names",
    "register_operator",
    "canonical",
    "make_unit",
    "unit_kind",
    "units",
]
