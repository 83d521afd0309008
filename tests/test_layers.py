"""Layers only point down (ARCHITECTURE.md, "Extension points"):

    cli -> ui -> search / train / conductor -> eval -> agents -> sandbox -> models -> core

with archive beside search and train (it may use models and eval.stats). Every `agentmeta.*` import
counts: at module level, inside functions and under `if TYPE_CHECKING:`. A function-local import
that only delays a heavy third-party module is fine; one between subpackages must respect the
layers like any other, so none can hide a cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import agentmeta

PACKAGE = Path(agentmeta.__file__).parent
SUBPACKAGES = ("sandbox", "agents", "archive", "conductor", "eval", "models", "search", "train", "ui", "serve", "cli")
FACADE = {"agentmeta", "agentmeta.__main__"}
"""The top-level package (`agentmeta/__init__.py`: the curated public names) and `python -m`."""

ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "models": {"core"},
    "sandbox": {"core", "models"},  # the isolation boundary: below the agent kinds and the scorers
    "agents": {"core", "models", "sandbox"},
    "eval": {"core", "models", "sandbox", "agents"},
    "archive": {"core", "models", "eval"},  # eval: only eval.stats, see ARCHIVE_MAY_USE
    "conductor": {"core", "models", "sandbox", "agents", "eval", "archive"},
    "search": {"core", "models", "sandbox", "agents", "eval", "archive", "conductor", "train"},
    "train": {"core", "models", "sandbox", "agents", "eval", "archive", "conductor", "search"},
    "ui": {"core", "models", "sandbox", "agents", "eval", "archive", "conductor", "search"},
    "serve": {"core", "models", "sandbox", "agents", "eval", "archive", "conductor"},
    "cli": {"core", "models", "sandbox", "agents", "eval", "archive", "conductor", "search", "train", "ui", "serve"},
}
"""What each layer may import. Within the top layer (search, train, conductor) anything goes as
long as it makes no cycle."""
ARCHIVE_MAY_USE = ("agentmeta.eval.stats",)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    """The subpackage a module belongs to; top-level modules (errors, config, registry...) are core."""
    if module in FACADE:
        return "facade"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else "core"


def _targets(node: ast.AST, importer: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "agentmeta"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: resolve against the importing module's package
        package = importer.split(".")
        if not str(MODULES[importer]).endswith("__init__.py"):
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, node.module] if node.module else package)
    else:
        base = node.module or ""
    if base.split(".")[0] != "agentmeta":
        return []
    # `from agentmeta import config` imports the module agentmeta.config, not the package
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def imports() -> list[tuple[str, str, str]]:
    """(importer, imported module, where) for every agentmeta import in the package."""
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _targets(node, name):
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"  # type: ignore[attr-defined]
                found.append((name, target, where))
    return found


def layer_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for importer, target, where in imports():
        a, b = layer(importer), layer(target)
        if a != b:
            edges[(a, b)].append(f"{where} imports {target}")
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path `[a, b, ..., a]`, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_scan_sees_every_kind_of_import() -> None:
    found = {(i, t) for i, t, _ in imports()}
    assert ("agentmeta.models", "agentmeta.config") in found  # `from agentmeta import config`
    assert any(i.startswith("agentmeta.cli") and layer(t) == "search" for i, t in found)  # inside a function
    assert ("agentmeta.search.strategy", "agentmeta.archive") in found  # under TYPE_CHECKING


def test_no_cycle_between_subpackages() -> None:
    edges = layer_edges()
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    cycle = find_cycle(graph)
    if cycle:
        steps = [f"  {a} -> {b}: {edges[(a, b)][0]}" for a, b in zip(cycle, cycle[1:], strict=False)]
        raise AssertionError(
            "import cycle between subpackages: " + " -> ".join(cycle) + "\n" + "\n".join(steps)
        )


def test_layers_only_point_down() -> None:
    bad = []
    for (a, b), sites in sorted(layer_edges().items()):
        if a == "facade":
            continue
        if b == "facade":
            bad += [f"{s} (nothing inside the package imports the top-level facade)" for s in sites]
        elif b not in ALLOWED[a]:
            bad += [f"{s} ({a} may import only {', '.join(sorted(ALLOWED[a])) or 'nothing'})" for s in sites]
        elif a == "archive" and b == "eval":
            bad += [f"{s} (archive may use only {', '.join(ARCHIVE_MAY_USE)} of eval)"
                    for s in sites if not s.endswith(ARCHIVE_MAY_USE)]  # fmt: skip
    assert not bad, "imports that point up a layer:\n" + "\n".join(bad)
