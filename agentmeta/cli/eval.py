"""`agentmeta eval` and `agentmeta suites`. The main app calls `register(app)` to add them."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agentmeta.cli import options
from agentmeta.cli.options import UnsafeSandbox, apply_unsafe_sandbox
from agentmeta.errors import AgentMetaError

if TYPE_CHECKING:
    from rich.console import Console

    from agentmeta.eval.types import EvalResult


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _fmt_tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def _load_model(spec: str | None):  # noqa: ANN202
    """The main CLI's loader (status line, quiet transformers) when present, else plain get_model."""
    try:
        from agentmeta.cli import load_model_for_cli
    except ImportError:
        from agentmeta.models import get_model

        return get_model(spec)
    return load_model_for_cli(spec)


def _console(stderr: bool = False) -> Console:
    from agentmeta.cli import make_console

    return make_console(stderr=stderr)


def eval_command(
    ctx: typer.Context,
    agent: Annotated[
        str | None,
        typer.Argument(
            help="A registered agent (direct, cot, cot-sc; `agentmeta plugins agent` lists them), a seed "
            "(graph/self_refine), an agent file (.py/.yaml/.json, or a plugin kind's), or an archive "
            "candidate id (with --archive)."
        ),
    ] = None,
    suite: Annotated[
        list[str] | None,
        typer.Option(
            "--suite", "-s", help="Suite spec (repeat for several): gsm8k, rg/countdown, data.jsonl?..."
        ),
    ] = None,
    config_file: Annotated[Path | None, options.config_option("evaluation")] = None,
    split: Annotated[str, typer.Option(help="train, validation, test or all.")] = "validation",
    limit: Annotated[int | None, typer.Option(help="At most this many samples per suite.")] = None,
    model: Annotated[str | None, typer.Option(help="Model spec; default: the embedded smollm2.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of sample choice and model calls.")] = 0,
    concurrency: Annotated[int, typer.Option(help="Samples run at once.")] = 16,
    max_tokens: Annotated[int | None, typer.Option(help="Cap on completion tokens per call.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the full results (per-sample records) as JSON.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summaries as JSON instead of a table.")
    ] = False,
    archive: Annotated[
        str | None,
        typer.Option(help="Archive holding the candidate AGENT names; its evaluation is recorded there."),
    ] = None,
    unsafe_sandbox: UnsafeSandbox = False,
    ray: options.RayFlag = False,
    ray_address: options.RayAddress = None,
    ray_actors: options.RayActors = None,
    ray_gpus: options.RayGpus = 0.0,
) -> None:
    """Evaluate an agent on one or more suites: score, exact 95% CI, errors, tokens, wall time.

    With --ray the samples run on Ray actors, each building the model from its spec on its node;
    the scores equal a local run's with the same seed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from agentmeta.errors import ConfigError
    from agentmeta.eval.runner import evaluate
    from agentmeta.eval.suites import load_suite

    given = dict(agent=agent, suite=suite, split=split, limit=limit, model=model, seed=seed,
                 concurrency=concurrency, max_tokens=max_tokens, out=out, archive=archive)  # fmt: skip
    values = options.merge_config(ctx, given, config_file)
    agent, split, limit, model, seed = values["agent"], values["split"], values["limit"], values["model"], values["seed"]
    concurrency, max_tokens, archive = values["concurrency"], values["max_tokens"], values["archive"]
    out = Path(values["out"]) if values["out"] is not None else None
    suite = [values["suite"]] if isinstance(values["suite"], str) else values["suite"]
    if not agent or not suite:
        raise ConfigError(f"give {'AGENT' if not agent else '--suite'}, on the command line or in --config")
    apply_unsafe_sandbox(unsafe_sandbox)
    err_console = Console(stderr=True)
    results: list[EvalResult] = []
    runnable: object = agent
    arch = candidate_id = executor = None
    try:
        if archive is not None:
            from agentmeta.archive import Archive

            runnable, _, cand = options.load_agent(agent, archive)
            arch = Archive(archive, create=False)
            candidate_id = cand.id  # type: ignore[attr-defined]
        suites = [load_suite(spec, split=split, limit=limit, seed=seed) for spec in suite]
        executor = options.ray_executor(ray, ray_address, ray_actors, ray_gpus)
        # with Ray the actors load the model; here only its spec and usage are needed
        resolved = executor.model_for(model) if executor is not None else _load_model(model)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        ) as progress:
            for s in suites:
                task = progress.add_task(f"{agent} on {s.name}", total=len(s.samples))

                def advance(done: int, total: int, record: object, task: TaskID = task) -> None:
                    progress.update(task, completed=done)

                results.append(
                    evaluate(
                        runnable,  # type: ignore[arg-type]
                        s,
                        model=resolved,
                        concurrency=concurrency,
                        seed=seed,
                        max_tokens=max_tokens,
                        progress=advance,
                        executor=executor,
                    )
                )
        if arch is not None and candidate_id is not None:
            for r in results:
                arch.record_result(candidate_id, r, primary=False)
    except AgentMetaError as e:
        raise _fail(str(e)) from None
    finally:
        if executor is not None:
            executor.close()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = (
            results[0].model_dump(mode="json")
            if len(results) == 1
            else [r.model_dump(mode="json") for r in results]
        )
        out.write_text(json.dumps(payload, indent=2))
    if json_output:
        typer.echo(json.dumps([r.summary() for r in results], indent=2, default=str))
        return
    _print_table(results, _console())
    spent = getattr(resolved, "usage", None)
    if spent is not None and spent.calls:
        Console(stderr=True).print(
            f"model calls: {spent.calls}, {spent.cached_calls} of them served by the call cache"
        )
    if out is not None:
        Console(stderr=True).print(f"wrote {out}")


def _print_table(results: list[EvalResult], console: Console) -> None:
    from rich.table import Table

    first = results[0]
    table = Table(title=f"{first.agent} on {first.model} ({first.split}, seed {first.seed})")
    for col in ("suite", "n", "score", "95% CI", "hits", "errors", "infra", "tokens", "wall"):
        table.add_column(col, justify="left" if col == "suite" else "right", no_wrap=col != "suite")
    for r in results:
        table.add_row(
            r.suite,
            str(r.n),
            f"{r.mean:.3f}" + (" [red](incomplete)[/red]" if r.incomplete else ""),
            f"[{r.ci_low:.3f}, {r.ci_high:.3f}]",
            str(r.n_hits),
            str(r.n_errors) if not r.n_errors else f"[red]{r.n_errors}[/red]",
            str(r.n_infra) if not r.n_infra else f"[red]{r.n_infra}[/red]",
            _fmt_tokens(r.usage.total_tokens),
            f"{r.wall_s:.1f}s",
        )
    console.print(table)
    for r in results:
        for message, count in list(r.errors.items())[:3]:
            console.print(f"[red]{r.suite}[/red]: {count} sample(s) failed with {message}")
        if r.n_infra:
            console.print(
                f"[red]{r.suite}[/red]: {r.n_infra} sample(s) lost to infrastructure errors after retries: "
                "not scored, left out of n and the mean"
                + ("; too many: the result is incomplete" if r.incomplete else "")
            )
        if r.dropped:
            shown = ", ".join(f"{k} {v}" for k, v in r.dropped.items())
            console.print(
                f"{r.suite}: {sum(r.dropped.values())} item(s) left out by label checks ({shown}); "
                f"`agentmeta suites check '{r.suite}'` lists them"
            )


suites_app = typer.Typer(
    help="List the defined suites with their split sizes; `suites check SPEC` audits a suite's labels.",
    no_args_is_help=False,
    invoke_without_command=True,
)


@suites_app.callback()
def suites_command(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the defined suites with their train, validation and test split sizes."""
    if ctx.invoked_subcommand is not None:
        return
    from agentmeta.eval.suites import describe_suites

    try:
        rows = describe_suites()
    except AgentMetaError as e:
        raise _fail(str(e)) from None
    if json_output:
        typer.echo(json.dumps([r.model_dump() for r in rows], indent=2))
        return
    from rich.table import Table

    table = Table(title="suites (also: a path to a .jsonl or .csv file)")
    sizes = ("train", "validation", "test")
    for col in ("suite", *sizes, "scorer", "description"):
        table.add_column(col, justify="right" if col in sizes else "left", overflow="fold")
    for r in rows:
        shown = [str(v) if v is not None else "-" for v in (r.train, r.validation, r.test)]
        desc = r.description if r.status == "ok" else f"{r.description} [red]({r.status})[/red]"
        table.add_row(r.name, *shown, r.scorer, desc)
    _console().print(table)


@suites_app.command("check")
def suites_check_command(
    spec: Annotated[str, typer.Argument(help="Suite spec: gsm8k, rg/basic_arithmetic?max_digits=1, data.jsonl")],
    limit: Annotated[
        int | None, typer.Option(help="At most this many items per split (procedural suites: generated).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of a procedural suite's generator.")] = 0,
    show: Annotated[int, typer.Option(help="Bad items to list (0: counts only).")] = 20,
    json_output: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
) -> None:
    """Audit a suite's labels: every check on every split; list the bad items.

    Checks: empty targets, duplicates and conflicting targets, arithmetic expressions recomputed,
    the reference answer scoring 1 under the suite's own scorer, code reference solutions passing
    their tests (in the sandbox), inputs in two splits. Loading a suite drops the items that fail
    the built-in checks (all but the last two) and counts them.
    """
    from agentmeta.eval.audit import audit_suite

    err = _console(stderr=True)
    try:
        # some generators print while they work (reasoning-gym's bf): keep stdout for the report
        with contextlib.redirect_stdout(sys.stderr):
            report = audit_suite(spec, limit=limit, seed=seed, progress=lambda m: err.print(f"[dim]{m}[/dim]"))
    except AgentMetaError as e:
        raise _fail(str(e)) from None
    if json_output:
        typer.echo(report.model_dump_json(indent=2))
        return
    console = _console()
    splits = ", ".join(f"{k} {v}" for k, v in report.splits.items())
    console.print(f"{report.suite}: {report.items} items checked ({splits}); checks: {', '.join(report.checks)}")
    if not report.issues:
        console.print("no bad items found")
        return
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    console.print(f"[red]{report.bad_items} bad item(s)[/red]: {counts}")
    if show > 0:
        from rich.table import Table

        table = Table()
        for col in ("check", "id", "split", "input", "target", "detail"):
            table.add_column(col, overflow="fold")
        for i in report.issues[:show]:
            table.add_row(i.check, i.sample_id, i.split, i.input, i.target, i.detail)
        console.print(table)
        if len(report.issues) > show:
            console.print(f"... {len(report.issues) - show} more (--show N, or --json for all)")


def register(app: typer.Typer) -> None:
    """Add the `eval` and `suites` commands to `app`."""
    app.command("eval")(eval_command)
    app.add_typer(suites_app, name="suites")
