"""Find agents: the seed archive, files on disk, archive candidates."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from agentmeta._paths import data_dir
from agentmeta.agents.base import AgentSpec
from agentmeta.errors import ConfigError, InvalidAgentError

_META_RE = re.compile(r"^#\s*(name|thought):\s*(.+)$", re.M)


def _code_spec(path: Path, text: str) -> AgentSpec:
    meta = {k: v.strip() for k, v in _META_RE.findall(text)}
    return AgentSpec(
        kind="code", name=meta.get("name", path.stem), thought=meta.get("thought", ""), source=text
    )


def _structured_spec(path: Path, text: str) -> AgentSpec:
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidAgentError(f"{path}: not valid YAML/JSON: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise InvalidAgentError(f"{path}: expected a mapping")
    if "nodes" in data:
        kind = "graph"
    elif "template" in data:
        kind = "prompt"
    elif "conductor" in data or data.get("kind") == "conductor":
        kind = "conductor"
    else:
        raise InvalidAgentError(
            f"{path}: not an agent spec (a graph needs 'nodes', a prompt needs 'template')"
        )
    name = str(data.pop("name", path.stem))
    thought = str(data.pop("thought", ""))
    data.pop("kind", None)
    return AgentSpec(kind=kind, name=name, thought=thought, source=json.dumps(data, indent=2))  # type: ignore[arg-type]


def spec_from_file(path: str | Path) -> AgentSpec:
    """An agent from a `.py` file (defining forward) or a `.yaml`/`.json` graph or prompt spec."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"agent file {str(p)!r} does not exist")
    text = p.read_text()
    if p.suffix == ".py":
        return _code_spec(p, text)
    if p.suffix in (".yaml", ".yml", ".json"):
        return _structured_spec(p, text)
    raise ConfigError(f"agent file {p.name!r}: expected .py (code agent) or .yaml/.json (graph/prompt spec)")


def seed_agents(kind: str | None = None) -> list[AgentSpec]:
    """The hand-designed seeds shipped in `archive/` (optionally one kind)."""
    root = data_dir("archive")
    out: list[AgentSpec] = []
    for sub, pattern in (("code", "*.py"), ("graph", "*.y*ml"), ("prompt", "*.json")):
        if kind is not None and kind != sub:
            continue
        for path in sorted((root / sub).glob(pattern)):
            out.append(spec_from_file(path))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def find_seed(name: str) -> AgentSpec | None:
    """A seed by file stem or name, case- and punctuation-insensitive (`self_refine`, `Self-Refine`)."""
    want = _slug(name)
    root = data_dir("archive")
    for spec, path in ((s, p) for s, p in _seed_paths(root)):
        if want in (_slug(path.stem), _slug(spec.name), _slug(f"{path.parent.name}/{path.stem}")):
            return spec
    return None


def _seed_paths(root: Path) -> list[tuple[AgentSpec, Path]]:
    pairs = []
    for sub, pattern in (("code", "*.py"), ("graph", "*.y*ml"), ("prompt", "*.json")):
        for path in sorted((root / sub).glob(pattern)):
            pairs.append((spec_from_file(path), path))
    return pairs


def seed_names() -> list[str]:
    return [f"{p.parent.name}/{p.stem}" for _, p in _seed_paths(data_dir("archive"))]
