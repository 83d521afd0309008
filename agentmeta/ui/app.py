"""`agentmeta ui`: a local web app over an archive (FastAPI, served by uvicorn on 127.0.0.1).

Read-only: it opens the archive without creating it and never writes. Pages poll a change token
(`/api/changes`) and reload when a running campaign adds candidates or evaluations. Every page is
sent with a Content-Security-Policy that allows only the app's own script file, so text from the
archive could not run as script even if it escaped the templates' autoescaping.
"""

from __future__ import annotations

import logging
from typing import Any

from agentmeta.archive import Archive
from agentmeta.errors import AgentMetaError
from agentmeta.ui import views
from agentmeta.ui.render import STATIC, render

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class UILinks(views.Links):
    def conductor(self, rid: str) -> str:
        return f"#run-{rid}" if self.report else f"/conductor/{rid}"


def create_app(archive: Archive | str) -> Any:
    """The web app over `archive` (an `Archive` or a path/URL of an existing one)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    arch = archive if isinstance(archive, Archive) else Archive(archive, create=False)
    targets = views.Targets()
    links = UILinks()
    app = FastAPI(title="agentmeta", docs_url=None, redoc_url=None, openapi_url=None)

    def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = render(
            template, links=links, report=False, archive_location=views.shown_location(arch),
            live_token=views.change_token(arch), **context,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(AgentMetaError)
    async def not_found(_request: Request, exc: AgentMetaError) -> HTMLResponse:
        return page("error.html", status=404, title="Not found", message=str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        return page("error.html", status=exc.status_code, title=f"Error {exc.status_code}", message=str(exc.detail))

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return page("index.html", rows=views.campaign_rows(arch), runs=arch.conductor_runs())

    @app.get("/campaign/{cid}", response_class=HTMLResponse)
    def campaign(cid: str) -> HTMLResponse:
        return page("campaign.html", v=views.campaign_view(arch, cid, links))

    @app.get("/candidate/{cid}", response_class=HTMLResponse)
    def candidate(cid: str, ev: int | None = None) -> HTMLResponse:
        return page("candidate.html", v=views.candidate_view(arch, cid, targets, evaluation=ev))

    @app.get("/compare", response_class=HTMLResponse)
    def compare(a: str, b: str, split: str | None = None, stage: str | None = None) -> HTMLResponse:
        return page("compare.html", v=views.compare_view(arch, a, b, split=split, stage=stage))

    @app.get("/conductor/{rid}", response_class=HTMLResponse)
    def conductor(rid: str) -> HTMLResponse:
        return page("conductor.html", run=arch.get_conductor_run(rid))

    @app.get("/api/changes")
    def changes() -> JSONResponse:
        return JSONResponse({"token": views.change_token(arch)}, headers={"Cache-Control": "no-store"})

    @app.get("/static/live.js")
    def live_js() -> FileResponse:
        return FileResponse(STATIC / "live.js", media_type="text/javascript")

    return app


def serve(archive: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Run the app until interrupted."""
    import uvicorn

    app = create_app(archive)
    uvicorn.run(app, host=host, port=port, log_level="warning")
