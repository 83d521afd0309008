"""`agentmeta archive ...`: leaderboard, one candidate, lineage, export and import.

The main app calls `register(app)`. The archive package is imported only when a command runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from agentmeta.errors import AgentMetaError

if TYPE_CHECKING:
    from agentmeta.archive import Archive, Candidate

F = TypeVar("F", bound=Callable[..., Any])

ARCHIVE_HELP = "Archive file or database URL (default ./agentmeta-archive.db, or $AGENTMETA_ARCHIVE)."
ArchiveOpt = Annotated[
    str | None,
    typer.Option("--archive", "-a", envvar="AGENTMETA_ARCHIVE", help=ARCHIVE_HELP, show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

_NO_SOURCE: Any = {"ancestors": {"__all__": {"source"}}, "children": {"__all__": {"source"}}}

archive_app = typer.Typer(
    name="archive",
    help="Inspect, export and import the archive of candidates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


@contextmanager
def _open(path: str | None, *, create: bool = False) -> Iterator[Archive]:
    """Open the archive; any agentmeta or file error becomes one line on stderr and exit code 2."""
    from agentmeta.archive import Archive, default_archive_path

    try:
        with Archive(path or default_archive_path(), create=create) as archive:
            yield archive
    except AgentMetaError as e:
        raise _fail(str(e)) from None
    except OSError as e:
        raise _fail(f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")) from None


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _ci(lo: float | None, hi: float | None, sep: str = ", ") -> str:
    return "-" if lo is None or hi is None else f"[{lo:.3f}{sep}{hi:.3f}]"


def _console() -> Any:
    from agentmeta.cli import make_console

    return make_console(highlight=False)


@archive_app.command("ls")
def ls_command(
    archive: ArchiveOpt = None,
    suite: Annotated[str | None, typer.Option(help="Rank by this suite's evaluations.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many rows.", min=1)] = 20,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign (id or name).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also list candidates with no fitness yet.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Leaderboard: best candidates by fitness, then by the low end of the 95% CI."""
    from rich.markup import escape
    from rich.table import Table

    with _open(archive) as a:
        rows = a.leaderboard(suite, limit, campaign, include_unscored=all_)
        where = a.location
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=1))
        return
    table = Table(
        title=f"{where}" + (f" - {suite}" if suite else ""),
        box=None,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        header_style="bold",
    )
    # only name and parents shrink on a narrow terminal; the numbers never wrap
    for col in ("#", "id", "name", "kind", "fitness", "95% CI", "n", "stage", "status", "gen", "parents"):
        table.add_column(
            col,
            justify="right" if col in ("#", "fitness", "n", "gen") else "left",
            no_wrap=col not in ("name", "parents"),
            min_width={"name": 10, "parents": 7}.get(col),
            overflow="fold",
        )
    for r in rows:
        table.add_row(
            str(r.rank),
            r.id,
            escape(r.name),
            r.kind,
            _num(r.fitness),
            _ci(r.ci_low, r.ci_high, sep=","),
            "-" if r.n is None else str(r.n),
            r.stage or "-",
            r.status,
            str(r.generation),
            ",".join(p[:8] for p in r.parent_ids) or "-",
        )
    console = _console()
    console.print(table)
    if not rows:
        console.print("no scored candidates" + ("" if all_ else " (use --all to list unscored ones)"))


def _describe(c: Candidate) -> list[tuple[str, str]]:
    usage = c.usage
    return [
        ("id", c.id),
        ("name", c.name),
        ("kind", c.kind),
        ("status", c.status + (f": {c.error}" if c.error else "")),
        (
            "fitness",
            f"{_num(c.fitness)}  95% CI {_ci(c.ci_low, c.ci_high)}  n={c.n if c.n is not None else '-'}",
        ),
        ("from", f"{c.fitness_suite or '-'} ({c.fitness_stage or '-'})"),
        ("generation", str(c.generation)),
        ("parents", ", ".join(c.parent_ids) or "-"),
        ("campaign", c.campaign or "-"),
        ("models", ", ".join(f"{k}={v}" for k, v in c.model_specs.items()) or "-"),
        (
            "tokens",
            f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion in {usage.calls} calls",
        ),
        ("created", c.created_at.isoformat(timespec="seconds")),
        ("updated", c.updated_at.isoformat(timespec="seconds")),
    ]


@archive_app.command("show")
def show_command(
    candidate_id: Annotated[str, typer.Argument(metavar="ID", help="Candidate id (or a unique prefix).")],
    archive: ArchiveOpt = None,
    source: Annotated[bool, typer.Option("--source/--no-source", help="Print the source.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """One candidate: metadata, evaluations, thought and source."""
    from rich.markup import escape
    from rich.table import Table

    with _open(archive) as a:
        c = a.get(candidate_id)
    if as_json:
        typer.echo(json.dumps(c.model_dump(mode="json"), indent=1))
        return
    console = _console()
    for key, value in _describe(c):
        console.print(f"[bold]{key:>10}[/bold]  {escape(value)}")
    if c.evaluations:
        table = Table(title="evaluations")
        for col in ("suite", "split", "stage", "n", "mean", "95% CI", "errors", "tokens", "wall s"):
            table.add_column(col)
        for e in c.evaluations:
            errors = sum(1 for s in e.scores if s.error)
            tokens = e.usage.prompt_tokens + e.usage.completion_tokens
            row = (e.suite, e.split, e.stage, str(e.n), _num(e.mean), _ci(e.ci_low, e.ci_high), str(errors))
            table.add_row(*map(escape, row), str(tokens), f"{e.wall_s:.1f}")
        console.print(table)
    if c.thought:
        console.print("[bold]thought[/bold]")
        console.print(escape(c.thought))
    if source and c.source:
        console.print("[bold]source[/bold]")
        typer.echo(c.source.rstrip("\n"))


@archive_app.command("lineage")
def lineage_command(
    candidate_id: Annotated[str, typer.Argument(metavar="ID", help="Candidate id (or a unique prefix).")],
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ancestors (nearest first) and children of a candidate."""
    from rich.markup import escape

    with _open(archive) as a:
        me = a.get(candidate_id, with_evaluations=False)
        lin = a.lineage(me.id)
    if as_json:
        typer.echo(json.dumps(lin.model_dump(mode="json", exclude=_NO_SOURCE), indent=1))
        return
    console = _console()

    def line(c: Candidate, label: str) -> str:
        return f"{label:>12}  {c.id}  {escape(c.name)}  gen {c.generation}  fitness {_num(c.fitness)}  {c.status}"

    for anc in reversed(lin.ancestors):
        console.print(line(anc, f"ancestor -{lin.depth[anc.id]}"))
    console.print(f"[bold]{line(me, 'this')}[/bold]")
    for child in lin.children:
        console.print(line(child, "child"))
    if not lin.ancestors and not lin.children:
        console.print("no parents and no children")


@archive_app.command("export")
def export_command(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here (default: stdout).")] = None,
    archive: ArchiveOpt = None,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign (id or name).")] = None,
) -> None:
    """Export the archive (candidates, evaluations, campaigns) as JSON."""
    with _open(archive) as a:
        text = a.export_json(out, campaign=campaign)
        count = len(json.loads(text)["candidates"])
    if out is None:
        typer.echo(text)
    else:
        typer.echo(f"exported {count} candidates to {out}", err=True)


@archive_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="ADAS archive JSON or an agentmeta export.")],
    archive: ArchiveOpt = None,
    campaign: Annotated[
        str | None, typer.Option(help="Tag imported ADAS entries with this campaign.")
    ] = None,
) -> None:
    """Import an ADAS archive (fitness strings parsed) or an agentmeta export; re-imports add nothing."""
    with _open(archive, create=True) as a:
        res = a.import_json(file, campaign=campaign)
        where = a.location
    typer.echo(
        f"imported {res.added} new candidates ({res.existing} already present) from {file} [{res.format}] into {where}"
    )


def register(app: typer.Typer) -> None:
    """Add the `archive` command group to `app`."""
    app.add_typer(archive_app, name="archive")
