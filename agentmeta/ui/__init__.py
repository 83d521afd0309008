"""See a campaign: `agentmeta ui` (a local web app over an archive) and `agentmeta report` (one
self-contained HTML file). Both read the archive only; plots are inline SVG drawn in Python.

`create_app(archive)` gives the FastAPI app (the `ui` extra: fastapi, uvicorn, jinja2);
`write_report(archive, campaign, out)` writes the report (jinja2 only).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "render_report", "serve", "write_report"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "serve"):
        from agentmeta.ui import app

        return getattr(app, name)
    if name in ("render_report", "write_report"):
        from agentmeta.ui import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
