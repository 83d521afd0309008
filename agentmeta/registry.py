"""One registry for everything a user can add: model providers, suites, scorers, agent kinds,
built-in agents, search strategies, graph operators, graph node types and meta-prompt policies
(how the meta-agent's and reflector's own instructions are chosen).

Register with the decorator (or `add`), look up by name; an unknown name is a `ConfigError` that
lists what exists::

    from agentmeta.registry import register

    @register("scorer", "startswith")
    def startswith(): ...                   # a scorer factory

    registry.get("scorer", "startswith")

Third-party packages register through one entry-point group, `agentmeta.plugins`: each entry
point names a module (imported: its decorators register) or a callable (called with the
registry). Plugins load lazily, the first time any name is looked up or listed, so
`import agentmeta` stays light. `agentmeta plugins` lists every entry with where it came from.

agentmeta's own entries load the same way: the first lookup in a category imports the modules
that define that category's built-ins (`BUILTIN_MODULES`), so this module imports no other part
of the package and every layer can register here.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal, TypeVar, cast

from agentmeta.errors import ConfigError

log = logging.getLogger(__name__)

Category = Literal["provider", "suite", "scorer", "kind", "agent", "strategy", "operator", "node", "meta_prompt"]
CATEGORIES: tuple[Category, ...] = (
    "provider", "suite", "scorer", "kind", "agent", "strategy", "operator", "node", "meta_prompt",
)  # fmt: skip
ENTRY_POINT_GROUP = "agentmeta.plugins"

BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    "provider": ("agentmeta.models",),
    "suite": ("agentmeta.eval.suites",),
    "scorer": ("agentmeta.eval.scorers",),
    "kind": ("agentmeta.agents.kinds", "agentmeta.conductor.agent"),
    "agent": ("agentmeta.agents.builtin",),
    "strategy": ("agentmeta.search.strategies",),
    "operator": ("agentmeta.search.operators", "agentmeta.search.bootstrap", "agentmeta.search.adaptive"),
    "node": ("agentmeta.agents.graph", "agentmeta.agents.adaptive"),
    "meta_prompt": ("agentmeta.search.meta_prompt",),
}
"""Modules whose import registers agentmeta's own entries, per category."""

_WHAT = {
    "provider": "model provider",
    "suite": "suite",
    "scorer": "scorer",
    "kind": "agent kind",
    "agent": "agent",
    "strategy": "search strategy",
    "operator": "graph operator",
    "node": "graph node type",
    "meta_prompt": "meta-prompt policy",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered thing."""

    category: str
    name: str
    obj: Any
    """The factory, class or definition."""
    doc: str
    """One line about it."""
    origin: str
    """Where it came from: `agentmeta`, a plugin (`dist-name (entry point NAME)`) or a module."""


class Registry:
    """Entries by category and name. Thread-safe; loads built-ins and plugins on first use."""

    def __init__(self, *, plugins: bool = True) -> None:
        self._entries: dict[str, dict[str, Entry]] = {c: {} for c in CATEGORIES}
        self._lock = threading.RLock()
        self._loaded: set[str] = set()
        self._plugins = plugins
        self._plugins_loaded = False
        self._origin: list[str] = []
        self.plugin_errors: list[str] = []
        """Plugins that failed to load: `name: error` (they are skipped, with a warning)."""

    # -- registering ------------------------------------------------------------------------
    def add(self, category: str, name: str, obj: Any, doc: str = "", *, replace: bool = False) -> Any:
        """Register `obj` under `category`/`name`; a second registration of a name is an error
        unless `replace=True` (a plugin cannot silently shadow a built-in)."""
        cat = self._category(category)
        if not name or not isinstance(name, str):
            raise ConfigError(f"a {_WHAT[cat]} needs a non-empty string name; got {name!r}")
        origin = self._origin[-1] if self._origin else _module_of(obj)
        line = doc or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
        with self._lock:
            old = self._entries[cat].get(name)
            if old is not None and not replace and old.obj is not obj:
                raise ConfigError(
                    f"{_WHAT[cat]} {name!r} is already registered (by {old.origin}); "
                    "pick another name or pass replace=True"
                )
            self._entries[cat][name] = Entry(cat, name, obj, line, origin)
        return obj

    def register(
        self, category: str, name: str | None = None, doc: str = "", *, replace: bool = False
    ) -> Callable[[T], T]:
        """Decorator form of `add`; the name defaults to the object's `__name__`."""

        def deco(obj: T) -> T:
            self.add(category, name or getattr(obj, "__name__", ""), obj, doc, replace=replace)
            return obj

        return deco

    def remove(self, category: str, name: str) -> None:
        """Forget an entry (tests, notebooks)."""
        with self._lock:
            self._entries[self._category(category)].pop(name, None)

    # -- looking up -------------------------------------------------------------------------
    def get(self, category: str, name: str) -> Any:
        """The registered object; `ConfigError` naming the ones that exist if absent."""
        return self.entry(category, name).obj

    def entry(self, category: str, name: str) -> Entry:
        cat = self._category(category)
        self._load(cat)
        found = self._entries[cat].get(name)
        if found is None:
            names = ", ".join(sorted(self._entries[cat])) or "none"
            raise ConfigError(f"unknown {_WHAT[cat]} {name!r}; registered: {names}")
        return found

    def has(self, category: str, name: str) -> bool:
        cat = self._category(category)
        self._load(cat)
        return name in self._entries[cat]

    def names(self, category: str) -> list[str]:
        """Registered names of a category, in registration order (built-ins first)."""
        cat = self._category(category)
        self._load(cat)
        return list(self._entries[cat])

    def entries(self, category: str | None = None) -> list[Entry]:
        cats = [self._category(category)] if category else list(CATEGORIES)
        out: list[Entry] = []
        for cat in cats:
            self._load(cat)
            out.extend(self._entries[cat].values())
        return out

    # -- loading ----------------------------------------------------------------------------
    def _category(self, category: str) -> Category:
        if category not in self._entries:
            raise ConfigError(f"unknown registry category {category!r}; use one of: {', '.join(CATEGORIES)}")
        return cast(Category, category)

    @contextmanager
    def origin(self, origin: str) -> Iterator[None]:
        """Entries registered inside this block are attributed to `origin`."""
        self._origin.append(origin)
        try:
            yield
        finally:
            self._origin.pop()

    def _load(self, category: str) -> None:
        """Built-ins of `category` on its first lookup; with plugins on, every category's built-ins
        and then the plugins on the very first lookup (so a plugin can never take a built-in's name
        before the built-in is registered)."""
        if category in self._loaded and (self._plugins_loaded or not self._plugins):
            return
        with self._lock:
            wanted = list(CATEGORIES) if self._plugins and not self._plugins_loaded else [category]
            for cat in wanted:
                if cat in self._loaded:
                    continue
                self._loaded.add(cat)
                with self.origin("agentmeta"):
                    for module in BUILTIN_MODULES.get(cat, ()):
                        importlib.import_module(module)
            if self._plugins and not self._plugins_loaded:
                self._plugins_loaded = True
                self.load_plugins()

    def load_plugins(self) -> None:
        """Load every `agentmeta.plugins` entry point (done once, lazily, by the first lookup)."""
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(getattr(ep, "dist", None), "name", None) or ep.value.split(":")[0]
            with self.origin(f"{dist} (entry point {ep.name})"):
                try:
                    loaded = ep.load()
                    if callable(loaded) and not isinstance(loaded, type(importlib)):
                        loaded(self)
                except Exception as e:  # noqa: BLE001 - a broken plugin must not break agentmeta
                    message = f"{ep.name} ({ep.value}): {type(e).__name__}: {e}"
                    self.plugin_errors.append(message)
                    log.warning("agentmeta plugin %s failed to load and is skipped", message)


def _module_of(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return "agentmeta" if module == "agentmeta" or module.startswith("agentmeta.") else module


registry = Registry()
"""The process-wide registry."""


def register(
    category: str, name: str | None = None, doc: str = "", *, replace: bool = False
) -> Callable[[T], T]:
    """Register into the process-wide registry (decorator). See `Registry.add`."""
    return registry.register(category, name, doc, replace=replace)


def get(category: str, name: str) -> Any:
    """Look up in the process-wide registry. See `Registry.get`."""
    return registry.get(category, name)


def names(category: str) -> list[str]:
    """Registered names of a category in the process-wide registry."""
    return registry.names(category)
