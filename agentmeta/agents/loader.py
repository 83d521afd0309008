"""Find agents: the seed archive, files on disk.

Which file is which kind comes from the registered kinds: each names the suffixes it reads
(`.py`; `.yaml`/`.yml`/`.json`) and, for structured files, the top-level keys that mark one of its
specs (`nodes`, `template`, `conductor`); a file's own `kind:` key always wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from agentmeta._paths import data_dir
from agentmeta.agents.base import AgentSpec, get_kind, kind_names
from agentmeta.errors import ConfigError, InvalidAgentError

if TYPE_CHECKING:
    from agentmeta.agents.kinds import AgentKind

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
"""Files that may hold a spec record (`kind`, `name`, `thought`, `source`) of any kind."""
_META_RE = re.compile(r"^#\s*(name|thought):\s*(.+)$", re.M)


def _kinds() -> list[AgentKind]:
    return [get_kind(name) for name in kind_names()]


def agent_file_suffixes() -> tuple[str, ...]:
    """Every suffix an agent file may have (`.py`, `.yaml`, `.yml`, `.json`, plugins' suffixes)."""
    return tuple(dict.fromkeys([*(s for k in _kinds() for s in k.suffixes), *SPEC_SUFFIXES]))


def code_spec(path: Path, text: str, kind: str = "code") -> AgentSpec:
    """A code agent file: the source, with `# name:` and `# thought:` comment lines as metadata."""
    meta = {k: v.strip() for k, v in _META_RE.findall(text)}
    return AgentSpec(
        kind=kind, name=meta.get("name", path.stem), thought=meta.get("thought", ""), source=text
    )


def structured_spec(path: Path, data: dict[str, Any], kind: str) -> AgentSpec:
    """A YAML/JSON agent file: `name`, `thought` and `kind` are metadata, the rest is the spec."""
    data = dict(data)
    name = str(data.pop("name", path.stem))
    thought = str(data.pop("thought", ""))
    data.pop("kind", None)
    return AgentSpec(kind=kind, name=name, thought=thought, source=json.dumps(data, indent=2))


def _parse_mapping(path: Path, text: str) -> dict[str, Any]:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidAgentError(f"{path}: not valid YAML/JSON: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise InvalidAgentError(f"{path}: expected a mapping")
    return data


def spec_from_file(path: str | Path) -> AgentSpec:
    """An agent from a file: a `.py` file defining forward, a `.yaml`/`.json` graph, prompt or
    conductor spec, a file a plugin's kind reads, or, for any kind, a `.yaml`/`.json` spec record
    (`kind`, `name`, `thought`, `source`: an `AgentSpec` as data)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"agent file {str(p)!r} does not exist")
    kinds = _kinds()
    claiming = [k for k in kinds if p.suffix in k.suffixes]
    if not claiming and p.suffix not in SPEC_SUFFIXES:
        by_suffix = "; ".join(f"{'/'.join(k.suffixes)} ({k.name})" for k in kinds if k.suffixes)
        raise ConfigError(f"agent file {p.name!r}: expected one of {by_suffix}")
    text = p.read_text()
    structured = [k for k in claiming if k.load is None]
    readers = [k for k in claiming if k.load is not None]
    data: dict[str, Any] | None = None
    if structured or p.suffix in SPEC_SUFFIXES:
        try:
            data = _parse_mapping(p, text)
        except InvalidAgentError:
            if not readers:
                raise
    if data is not None:
        named = data.get("kind")
        if named is not None:  # the file says which kind it is
            kind = get_kind(str(named))  # ConfigError listing the registered kinds
            if isinstance(data.get("source"), str):
                return AgentSpec(
                    kind=kind.name,
                    name=str(data.get("name") or p.stem),
                    thought=str(data.get("thought") or ""),
                    source=data["source"],
                )
            return kind.load(p, text) if kind.load is not None else structured_spec(p, data, kind.name)
        for k in structured:
            if any(marker in data for marker in k.markers):
                return structured_spec(p, data, k.name)
    if readers:
        return readers[0].load(p, text)  # type: ignore[misc]
    needs = ", ".join(
        f"a {k.name} needs {' or '.join(map(repr, k.markers))}" for k in structured if k.markers
    )
    raise InvalidAgentError(f"{p}: not an agent spec ({needs}; any kind: 'kind' and 'source')")


@dataclass(frozen=True)
class SeedFiles:
    """A kind's seeds shipped as files in the seed archive: `archive/<folder>/<pattern>`."""

    folder: str
    pattern: str

    def paths(self) -> list[Path]:
        return sorted((data_dir("archive") / self.folder).glob(self.pattern))

    def __call__(self) -> list[AgentSpec]:
        return [spec_from_file(path) for path in self.paths()]


def seed_agents(kind: str | None = None) -> list[AgentSpec]:
    """The hand-designed seeds of every kind (or of one kind), as each kind lists them."""
    kinds = [get_kind(kind)] if kind is not None else _kinds()
    return [spec for k in kinds for spec in k.seeds()]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _seeds() -> Iterator[tuple[str, str, AgentSpec]]:
    """(qualified name `kind/stem`, stem, spec) of every seed."""
    for k in _kinds():
        if isinstance(k.seeds, SeedFiles):
            for path in k.seeds.paths():
                yield f"{path.parent.name}/{path.stem}", path.stem, spec_from_file(path)
        else:
            for spec in k.seeds():
                stem = _slug(spec.name).replace("-", "_")
                yield f"{k.name}/{stem}", stem, spec


def find_seed(name: str) -> AgentSpec | None:
    """A seed by file stem or name, case- and punctuation-insensitive (`self_refine`, `Self-Refine`)."""
    want = _slug(name)
    for qualified, stem, spec in _seeds():
        if want in (_slug(stem), _slug(spec.name), _slug(qualified)):
            return spec
    return None


def seed_names() -> list[str]:
    """Every seed's qualified name (`code/self_refine`, `graph/self_consistency`, ...)."""
    return [qualified for qualified, _, _ in _seeds()]
