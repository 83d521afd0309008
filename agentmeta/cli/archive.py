"""`agentmeta archive ...`: leaderboard, one candidate, lineage, diff of two, export and import,
schema migration.

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
    """Leaderboard: best candidates by fitness, then by the low end of the 95% CI.

    Scores of different stages are not comparable: candidates scored on the cheap subset stage only
    come after every fully evaluated one (stage `subset only`). `tok/sample` is the prompt plus
    completion tokens per sample of the evaluation shown (calls served by the call cache count 0).
    Candidates whose evaluation is incomplete (too many infrastructure errors) are never ranked:
    they come after the ranked ones, with no fitness and the status `incomplete (k infra errors)`.
    """
    from rich.markup import escape
    from rich.table import Table

    with _open(archive) as a:
        rows = a.leaderboard(suite, limit, campaign, include_unscored=all_, include_incomplete=True)
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
    cols = (
        "#",
        "id",
        "name",
        "kind",
        "fitness",
        "95% CI",
        "n",
        "tok/sample",
        "stage",
        "status",
        "gen",
        "parents",
    )
    for col in cols:
        table.add_column(
            col,
            justify="right" if col in ("#", "fitness", "n", "tok/sample", "gen") else "left",
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
            tokens_cell(r.tokens_per_sample),
            stage_cell(r.stage, r.subset_only),
            _status(r.status, r.n_infra, r.incomplete),
            str(r.generation),
            ",".join(p[:8] for p in r.parent_ids) or "-",
        )
    console = _console()
    console.print(table)
    if not rows:
        console.print("no scored candidates" + ("" if all_ else " (use --all to list unscored ones)"))
    partial = sum(r.subset_only for r in rows)
    if partial:
        console.print(f"{partial} {SUBSET_ONLY_NOTE}")
    lost = sum(r.incomplete for r in rows)
    if lost:
        console.print(
            f"{lost} incomplete: too many samples lost to infrastructure errors; not ranked, listed last"
        )


SUBSET_ONLY_NOTE = (
    "subset only: scored on the cheap first stage only, not comparable with full-stage scores; "
    "listed after every fully evaluated candidate"
)


def tokens_cell(tokens: float | None) -> str:
    """A tokens-per-sample figure for a table cell."""
    return "-" if tokens is None else f"{tokens:.0f}"


def stage_cell(stage: str | None, subset_only: bool) -> str:
    """The stage column of a leaderboard: a subset-only score is marked as such."""
    return "subset only" if subset_only else (stage or "-")


def _status(status: str, n_infra: int, incomplete: bool) -> str:
    if incomplete:
        return f"incomplete ({n_infra} infra error{'' if n_infra == 1 else 's'})"
    return f"{status} ({n_infra} infra)" if n_infra else status


def _describe(c: Candidate) -> list[tuple[str, str]]:
    usage = c.usage
    return [
        ("id", c.id),
        ("name", c.name),
        ("kind", c.kind),
        ("status", c.status + (f": {c.error}" if c.error else "")),
        (
            "fitness",
            f"- (incomplete evaluation: {c.n_infra} infra errors; never ranked)"
            if c.incomplete
            else f"{_num(c.fitness)}  95% CI {_ci(c.ci_low, c.ci_high)}  n={c.n if c.n is not None else '-'}"
            + (f"  ({c.n_infra} infra errors left out)" if c.n_infra else ""),
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
        cols = ("suite", "split", "stage", "n", "mean", "95% CI", "errors", "infra", "tokens", "tok/sample")
        for col in (*cols, "compl./sample", "wall s"):
            table.add_column(col)
        for e in c.evaluations:
            errors = sum(1 for s in e.scores if s.outcome == "agent_error")
            tokens = e.usage.prompt_tokens + e.usage.completion_tokens
            mean = _num(e.mean) + (" incomplete" if e.incomplete else "")
            row = (e.suite, e.split, e.stage, str(e.n), mean, _ci(e.ci_low, e.ci_high), str(errors))
            table.add_row(
                *map(escape, row), str(e.n_infra), str(tokens), tokens_cell(e.tokens_per_sample),
                tokens_cell(e.completion_tokens_per_sample), f"{e.wall_s:.1f}",
            )  # fmt: skip
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


def _line(text: str | None, width: int) -> str:
    """One line of at most `width` characters."""
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(0, width - 3)] + "..."


@archive_app.command("diff")
def diff_command(
    a_id: Annotated[str, typer.Argument(metavar="A", help="Candidate A: id or a unique prefix.")],
    b_id: Annotated[str, typer.Argument(metavar="B", help="Candidate B: id or a unique prefix.")],
    archive: ArchiveOpt = None,
    suite: Annotated[str | None, typer.Option(help="Compare on this suite's evaluation.")] = None,
    split: Annotated[str | None, typer.Option(help="... of this split (e.g. validation).")] = None,
    stage: Annotated[str | None, typer.Option(help="... and this stage (e.g. full, subset).")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many differing samples.", min=1)] = 50,
    width: Annotated[int, typer.Option(help="Characters shown of each answer.", min=10)] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Compare two candidates sample by sample on an evaluation they share: the samples where
    their scores differ, wins/losses/ties, and the paired bootstrap 95% CI of A - B."""
    from rich.markup import escape
    from rich.table import Table

    with _open(archive) as arch:
        d = arch.diff(a_id, b_id, suite=suite, split=split, stage=stage, seed=seed)
    if as_json:
        typer.echo(json.dumps(d.model_dump(mode="json"), indent=1))
        return
    console = _console()
    console.print(f"A  {d.a}  {escape(d.name_a)}")
    console.print(f"B  {d.b}  {escape(d.name_b)}")
    console.print(f"on {escape(d.suite)} {d.split}/{d.stage}")
    if d.note:
        console.print(escape(d.note))
    for side, flag in (("A", d.incomplete_a), ("B", d.incomplete_b)):
        if flag:
            console.print(
                f"[yellow]{side}'s evaluation is incomplete (too many infrastructure errors)[/yellow]"
            )
    if d.samples:
        table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, header_style="bold")
        for col in ("sample", "A", "B", "A's answer", "B's answer"):
            table.add_column(col, justify="right" if col in ("A", "B") else "left", no_wrap=True)
        for s in d.samples[:limit]:
            table.add_row(
                escape(_line(s.sample_id, 24)),
                _num(s.score_a),
                _num(s.score_b),
                escape(_line(s.answer_a if s.answer_a is not None else s.error_a, width)),
                escape(_line(s.answer_b if s.answer_b is not None else s.error_b, width)),
            )
        console.print(table)
        if len(d.samples) > limit:
            console.print(f"... and {len(d.samples) - limit} more differing samples (--limit, or --json)")
    else:
        console.print("no sample scored differently")
    console.print(f"A wins {d.wins}, loses {d.losses}, ties {d.ties} (of {d.n} samples compared)")
    if d.mean_diff is not None:
        pct = round(d.confidence * 100)
        console.print(
            f"A - B: {d.mean_diff:+.3f}  {pct}% CI [{d.ci_low:+.3f}, {d.ci_high:+.3f}]  "
            f"(A {_num(d.mean_a)}, B {_num(d.mean_b)}; P(A better) {d.p_better:.2f})"
        )
    else:
        console.print("A - B: no sample scored on both sides, no CI")
    if d.left_out:
        parts = [
            f"{k} {what}"
            for k, what in (
                (d.only_a, "only in A"),
                (d.only_b, "only in B"),
                (d.infra, "lost to infrastructure errors"),
            )
            if k
        ]
        console.print(f"left out: {d.left_out} samples ({', '.join(parts)})")


@archive_app.command("config")
def config_command(
    campaign: Annotated[str, typer.Argument(metavar="CAMPAIGN", help="Campaign id or name.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here (default: stdout).")] = None,
    archive: ArchiveOpt = None,
) -> None:
    """A campaign's settings as YAML, as its last run resolved them: `agentmeta search --config FILE`
    runs the same campaign again (in another archive: the same search; in this one: a resume)."""
    import yaml

    with _open(archive) as a:
        try:
            camp = a.get_campaign(campaign)
        except AgentMetaError as e:
            raise _fail(str(e)) from None
        config = (camp.state or {}).get("config")
    if not config:
        raise _fail(f"campaign {camp.name!r} has no stored settings (it ran before they were stored)")
    text = yaml.safe_dump(config, sort_keys=False)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote the settings of campaign {camp.name!r} to {out}", err=True)


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


@archive_app.command("migrate")
def migrate_command(
    archive: ArchiveOpt = None,
    backup: Annotated[
        bool,
        typer.Option("--backup/--no-backup", help="Copy an SQLite file to FILE.v<old version>.bak first."),
    ] = True,
) -> None:
    """Upgrade an archive written by an older agentmeta to the current schema version.

    One transaction: on any error the archive is left as it was. Nothing to do on an up-to-date
    archive; a database of another application or a newer schema is refused. Stop the campaigns
    writing to the archive first.
    """
    from agentmeta.archive import default_archive_path
    from agentmeta.archive.migrations import migrate

    try:
        res = migrate(archive or default_archive_path(), backup=backup)
    except AgentMetaError as e:
        raise _fail(str(e)) from None
    if not res.migrated:
        typer.echo(f"{res.location} is already at schema version {res.to_version}; nothing to do")
        return
    typer.echo(f"migrated {res.location} from schema version {res.from_version} to {res.to_version}")
    if res.backup is not None:
        typer.echo(f"backup of the version {res.from_version} archive: {res.backup}")


def register(app: typer.Typer) -> None:
    """Add the `archive` command group to `app`."""
    app.add_typer(archive_app, name="archive")
