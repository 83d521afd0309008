"""`agentmeta serve AGENT`: the agent behind the OpenAI chat-completions API."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from agentmeta.cli import make_console
from agentmeta.cli.options import UnsafeSandbox, apply_unsafe_sandbox, load_agent

err = make_console(stderr=True)


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        agent: Annotated[
            str,
            typer.Argument(
                metavar="AGENT",
                help="A registered agent, a seed, an agent file, `conductor`, or an archive candidate id "
                "(with --archive).",
            ),
        ],
        model: Annotated[
            str | None, typer.Option(help="Model spec the agent runs on (default: embedded).")
        ] = None,
        archive: Annotated[
            str | None, typer.Option(help="Archive holding the candidate AGENT names.")
        ] = None,
        name: Annotated[
            str | None, typer.Option(help="Model name clients ask for (default: the agent's name or id).")
        ] = None,
        host: Annotated[
            str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only).")
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
        api_key: Annotated[
            str | None,
            typer.Option(
                help="Require `Authorization: Bearer KEY` (default: AGENTMETA_SERVE_KEY, else none)."
            ),
        ] = os.environ.get("AGENTMETA_SERVE_KEY"),
        seed: Annotated[int, typer.Option(help="Seed of a request's model calls when it sends none.")] = 0,
        concurrency: Annotated[int, typer.Option(help="Requests the agent answers at once.", min=1)] = 16,
        max_request_bytes: Annotated[int, typer.Option(help="Largest request body.", min=1024)] = 1_000_000,
        timeout_s: Annotated[
            float, typer.Option(help="Longest an answer may take (then 504).", min=1.0)
        ] = 600.0,
        unsafe_sandbox: UnsafeSandbox = False,
    ) -> None:
        """Serve an agent as an OpenAI-compatible endpoint: POST /v1/chat/completions (the last user
        message is the task, the agent's answer the reply, usage the tokens it spent; streaming with
        "stream": true) and GET /v1/models. Concurrent requests share the model, whose engine
        batches their calls."""
        from agentmeta.cli import load_model_for_cli
        from agentmeta.errors import require

        for module in ("fastapi", "uvicorn"):
            require(module, "pip install 'agentmeta[ui]'", f"{module} (for `agentmeta serve`)")
        from agentmeta.serve import create_app

        apply_unsafe_sandbox(unsafe_sandbox)
        built, shown, cand = load_agent(agent, archive)
        served = name or (cand.id if cand is not None else agent)  # type: ignore[attr-defined]
        spec = model or (cand.model_specs.get("task") if cand is not None else None)  # type: ignore[attr-defined]
        task_model = load_model_for_cli(spec)
        app_ = create_app(
            built, task_model, name=served, api_key=api_key, seed=seed, concurrency=concurrency,
            max_request_bytes=max_request_bytes, timeout_s=timeout_s,
        )  # fmt: skip
        if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
            err.print(
                f"[yellow]listening on {host} without --api-key: anyone who can reach this port can use it[/yellow]"
            )
        shown_host = "127.0.0.1" if host == "localhost" else host
        err.print(
            f"serving {shown} as model [bold]{served}[/bold] on {task_model.spec} at "
            f"[bold]http://{shown_host}:{port}/v1[/bold]; Ctrl-C stops it"
        )
        import uvicorn

        uvicorn.run(app_, host=host, port=port, log_level="warning")

    @app.command("export")
    def export_cmd(
        candidate: Annotated[str, typer.Argument(metavar="ID", help="Candidate id (or a unique prefix).")],
        archive: Annotated[str, typer.Option(help="Archive path or SQLAlchemy URL.")] = os.environ.get(
            "AGENTMETA_ARCHIVE", "agentmeta-archive.db"
        ),
        out: Annotated[
            str | None, typer.Option("--out", "-o", help="File or folder to write (default: this folder).")
        ] = None,
    ) -> None:
        """Write a candidate as one agent file that `agentmeta eval FILE` and `agentmeta serve FILE`
        take unchanged (a .py code agent or a .yaml spec), its scores, lineage and test looks in a
        comment header."""
        from agentmeta.archive import Archive
        from agentmeta.archive.export import export_file

        arch = Archive(archive, create=False)
        path, _ = export_file(arch, arch.resolve_id(candidate), out)
        err.print(f"wrote {path}")
