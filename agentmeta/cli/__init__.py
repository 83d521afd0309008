"""The `agentmeta` command. Subcommands import their heavy dependencies only when run.

Every `AgentMetaError` becomes one line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentmeta.errors import AgentMetaError

app = typer.Typer(
    name="agentmeta",
    help="Meta-agent search, evaluation, a conductor and training loops for LLM agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def make_console(stderr: bool = False, **kwargs: object) -> Console:
    """A rich console; piped output gets 160 columns so table rows stay whole instead of wrapping at 80."""
    console = Console(stderr=stderr, **kwargs)  # type: ignore[arg-type]
    return console if console.is_terminal else Console(stderr=stderr, width=160, **kwargs)  # type: ignore[arg-type]


console = make_console()
err_console = make_console(stderr=True)

# Subcommand modules that add themselves to `app` through a `register(app)` function.
_SUBCOMMAND_MODULES = (
    "agentmeta.cli.eval",
    "agentmeta.cli.search",
    "agentmeta.cli.conduct",
    "agentmeta.cli.archive",
    "agentmeta.cli.train",
    "agentmeta.cli.ui",
    "agentmeta.cli.serve",
)


def _quiet_transformers() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_model_for_cli(spec: str | None):  # noqa: ANN201
    """get_model with a status line while the backend loads (the first embedded load is slow)."""
    from agentmeta import config
    from agentmeta.models import get_model

    spec = spec or config.DEFAULT_MODEL
    if spec in ("smollm2", "default"):
        from agentmeta.models.hf import dense_dir

        if not (dense_dir() / "config.json").is_file():
            err_console.print("[dim]first use: de-quantizing the embedded model once (about 30 s)...[/dim]")
    _quiet_transformers()
    with err_console.status(f"loading {spec}...", spinner="dots"):
        return get_model(spec)


@app.command("models")
def models_cmd() -> None:
    """List the model providers and the default."""
    from agentmeta import config
    from agentmeta.models import list_providers

    table = Table(title="model providers")
    table.add_column("spec")
    table.add_column("what")
    for p in list_providers():
        table.add_row(escape(p["spec"]), escape(p["what"]))
    console.print(table)
    console.print(f"default: [bold]{config.DEFAULT_MODEL}[/bold]")


@app.command("plugins")
def plugins_cmd(
    category: Annotated[
        str | None, typer.Argument(help="Only this category: provider, suite, scorer, kind, agent, strategy.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List everything registered (providers, suites, scorers, agent kinds, agents, strategies) and
    where each came from: agentmeta itself or a plugin package (entry-point group agentmeta.plugins)."""
    import json

    from agentmeta.errors import AgentMetaError
    from agentmeta.registry import ENTRY_POINT_GROUP, registry

    try:
        entries = registry.entries(category)
    except AgentMetaError as e:
        err_console.print(f"error: {e}")
        raise typer.Exit(code=2) from None
    if json_output:
        rows = [{"category": e.category, "name": e.name, "origin": e.origin, "doc": e.doc} for e in entries]
        typer.echo(json.dumps({"entries": rows, "plugin_errors": registry.plugin_errors}, indent=2))
        return
    table = Table(title=f"registered (plugins: entry-point group {ENTRY_POINT_GROUP})")
    for col in ("category", "name", "from", "what"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(e.category, escape(e.name), escape(e.origin), escape(e.doc))
    console.print(table)
    for message in registry.plugin_errors:
        err_console.print(f"[red]plugin failed to load[/red]: {escape(message)}")


@app.command("generate")
def generate_cmd(
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model spec (default: smollm2).")] = None,
    n: Annotated[int, typer.Option("-n", help="Number of completions.", min=1, max=128)] = 1,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).", min=0.0)] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.", min=0.0, max=1.0)] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="Most new tokens per completion.", min=1)] = 256,
    seed: Annotated[int | None, typer.Option(help="Sampling seed (seeded calls are cached).")] = None,
    system: Annotated[str | None, typer.Option(help="Optional system message.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full response as JSON.")] = False,
) -> None:
    """Print completions of PROMPT."""
    if not prompt.strip():
        raise AgentMetaError("PROMPT is empty: give the text to complete")
    m = load_model_for_cli(model)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    resp = m.generate(messages, n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    if as_json:
        print(json.dumps(resp.model_dump(mode="json"), indent=2))
        return
    for i, text in enumerate(resp.texts):
        if len(resp.texts) > 1:
            console.print(f"[bold]--- completion {i + 1} ({resp.finish_reasons[i]})[/bold]")
        print(text)
    err_console.print(
        f"[dim]{resp.model}: {resp.prompt_tokens} prompt + {sum(resp.completion_tokens)} completion tokens, "
        f"{resp.latency_s:.2f} s{' (cached)' if resp.cached else ''}[/dim]"
    )


def _register_subcommands() -> None:
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.register(app)


_register_subcommands()


def main() -> None:
    """Entry point: run the app, turning agentmeta errors into one line and exit code 2."""
    logging.basicConfig(
        level=os.environ.get("AGENTMETA_LOG", "WARNING").upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        rv = app(standalone_mode=False)
    except AgentMetaError as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except ValidationError as e:  # settings the CLI passed through to a pydantic model
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())) or e.title
        err_console.print(
            f"[red]error:[/red] {escape(f'invalid {where}: ' + str(first.get('msg', e)))}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    except Exception as e:
        # Usage errors of the (vendored) click arrive here with standalone_mode=False.
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            sys.exit(2)
        if type(e).__name__ == "Abort":
            sys.exit(130)
        raise
    if isinstance(rv, int) and rv:
        sys.exit(rv)
