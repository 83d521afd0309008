"""The Jinja environment shared by the web app and the report (autoescaping on everywhere)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


@lru_cache(maxsize=1)
def environment() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every value from the archive is text, never markup
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["css"] = _css()
    return env


def _css() -> Any:
    from markupsafe import Markup

    return Markup((TEMPLATES / "style.css").read_text())  # our own stylesheet, inlined as is


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
