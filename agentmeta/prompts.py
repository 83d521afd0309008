"""Prompt templates: one file each in `prompts/`, `{name}` slots, a missing value is an error."""

from __future__ import annotations

import re
from functools import lru_cache

from agentmeta._paths import data_dir
from agentmeta.errors import ConfigError

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@lru_cache(maxsize=64)
def load_template(name: str) -> str:
    path = data_dir("prompts") / f"{name}.txt"
    if not path.is_file():
        raise ConfigError(f"prompt template {name!r} not found (expected {path})")
    return path.read_text(encoding="utf-8")


def prompt_line(name: str) -> str:
    """A one-line prompt text (an instruction, a hint): `prompts/<name>.txt` without its newline."""
    return load_template(name).strip("\n")


def prompt_lines(name: str) -> tuple[str, ...]:
    """A library of one-line texts (roles, instructions): the non-empty lines of `prompts/<name>.txt`."""
    return tuple(line for line in load_template(name).splitlines() if line.strip())


def template_variables(name: str) -> set[str]:
    return set(_VAR.findall(load_template(name)))


def render(name: str, **variables: object) -> str:
    """Fill the `{var}` slots of `prompts/<name>.txt`; a slot with no value is an error."""
    return render_text(load_template(name), name, **variables)


def render_text(template: str, what: str = "template", **variables: object) -> str:
    """Fill the `{var}` slots of a template given as text (`what` names it in errors)."""
    missing = sorted({m for m in _VAR.findall(template) if m not in variables})
    if missing:
        raise ConfigError(
            f"prompt {what!r} needs {', '.join(missing)}; got {', '.join(sorted(variables)) or 'nothing'}"
        )
    return _VAR.sub(lambda m: str(variables[m.group(1)]), template)
