"""`agentmeta ui`: a local web app over an archive; `agentmeta report`: one campaign as one HTML file."""

from __future__ import annotations

from typing import Annotated

import typer

from agentmeta.cli import make_console
from agentmeta.cli.archive import ArchiveOpt

err = make_console(stderr=True)

UI_INSTALL = "pip install 'agentmeta[ui]'"


def register(app: typer.Typer) -> None:
    @app.command("ui")
    def ui_cmd(
        archive: ArchiveOpt = None,
        host: Annotated[
            str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only).")
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8765,
    ) -> None:
        """Browse an archive in the browser: campaigns, leaderboards with CIs, best-so-far and
        score x cost plots, lineage, candidates with per-sample answers, comparisons, the held-out
        confirmation and conductor runs. Pages refresh while a campaign writes to the archive."""
        from agentmeta.archive import Archive, default_archive_path
        from agentmeta.errors import require

        for module in ("fastapi", "uvicorn", "jinja2"):
            require(module, UI_INSTALL, f"{module} (for `agentmeta ui`)")
        from agentmeta.ui.app import create_app

        arch = Archive(archive or default_archive_path(), create=False)
        app_ = create_app(arch)
        if host not in ("127.0.0.1", "localhost", "::1"):
            err.print(f"[yellow]listening on {host}: anyone who can reach this port can read the archive[/yellow]")
        err.print(f"agentmeta ui on [bold]http://{'127.0.0.1' if host == 'localhost' else host}:{port}/[/bold] ({arch.location}); Ctrl-C stops it")
        import uvicorn

        uvicorn.run(app_, host=host, port=port, log_level="warning")

    @app.command("report")
    def report_cmd(
        campaign: Annotated[str, typer.Argument(metavar="CAMPAIGN", help="Campaign name or id.")],
        out: Annotated[str, typer.Option("--out", "-o", help="HTML file to write.")] = "report.html",
        archive: ArchiveOpt = None,
        detailed: Annotated[
            int, typer.Option(help="Best candidates shown with their per-sample answers (seeds and confirmed ones always).", min=0)
        ] = 10,
    ) -> None:
        """Write one campaign as one self-contained HTML file: the same plots and tables as the UI,
        readable offline (no script, nothing fetched)."""
        from agentmeta.archive import Archive, default_archive_path
        from agentmeta.errors import require

        require("jinja2", UI_INSTALL, "jinja2 (for `agentmeta report`)")
        from agentmeta.ui.report import write_report

        arch = Archive(archive or default_archive_path(), create=False)
        path = write_report(arch, campaign, out, detailed=detailed)
        err.print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
