"""`agentmeta search`: run or resume a search campaign with a live progress display, ending with a
confirmation on held-out test samples; `agentmeta confirm`: that confirmation on demand."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from agentmeta.cli import make_console, options
from agentmeta.cli.options import UnsafeSandbox, apply_unsafe_sandbox

console = make_console()
err = make_console(stderr=True)


def _fmt(mean: float | None, lo: float | None, hi: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else f"{mean:.2f}"


def _tok(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def leaderboard_table(entries: list[Any], title: str) -> Table:
    """The leaderboard (full-stage candidates first; subset-only ones after them, marked)."""
    table = Table(title=title)
    cols = ("rank", "id", "name", "kind", "fitness [95% CI]", "n", "tok/sample", "stage", "status", "gen")
    for col in (*cols, "parents"):
        table.add_column(col)
    for e in entries:
        parents = getattr(e, "parent_ids", None) or []
        table.add_row(
            str(e.rank),
            e.id,
            escape(e.name[:40]),
            e.kind,
            _fmt(e.fitness, e.ci_low, e.ci_high),
            str(e.n or "-"),
            _tok(getattr(e, "tokens_per_sample", None)),
            "subset only" if getattr(e, "subset_only", False) else (e.stage or "-"),
            e.status,
            str(e.generation),
            ",".join(p[:6] for p in parents) or "-",
        )
    return table


def _signed_ci(lo: float | None, hi: float | None) -> str:
    return "-" if lo is None or hi is None else f"[{lo:.2f}, {hi:.2f}]"


def confirmation_table(conf: Any) -> Table:
    """The confirmation's rows: validation vs test score, cost, and the paired gain over the best seed."""
    table = Table(title=f"confirmation on {conf.n} held-out test samples ({conf.suite}, model {conf.model})")
    cols = ("role", "id", "name", "validation", "test [95% CI]", "n", "tok/sample", "vs best seed [95% CI]")
    for col in (*cols, "P(better)", "drop"):
        table.add_column(col)
    for r in conf.rows:
        table.add_row(
            ", ".join(r.roles),
            r.id,
            escape(r.name[:40]),
            _fmt(r.validation, None, None),
            _fmt(r.test, r.test_ci_low, r.test_ci_high),
            str(r.test_n) + (f" ({r.n_infra} infra)" if r.n_infra else ""),
            _tok(r.tokens_per_sample),
            "-" if r.diff is None else f"{r.diff:+.2f} {_signed_ci(r.diff_ci_low, r.diff_ci_high)}",
            "-" if r.p_better is None else f"{r.p_better:.2f}",
            "-" if r.drop is None else f"{r.drop:+.2f}",
        )
    return table


P_BETTER = (
    "P(better): the share of 10,000 seeded paired-bootstrap resamples of the test samples in which the "
    "candidate's mean beats the best seed's (ties count half); not a posterior probability"
)


def looks_line(earlier: int, campaign: int) -> str:
    """How often the test samples about to be used were looked at before."""
    if not earlier:
        return "these test samples had no earlier look"
    mine = f" ({campaign} by this campaign)" if campaign else " (by other campaigns)"
    return f"these test samples had {earlier} earlier look{'s' if earlier != 1 else ''}{mine}: not fresh"


def print_confirmation(conf: Any) -> None:
    """The confirmation table, then its one-line verdict (the last line printed)."""
    if conf.skipped:
        console.print(escape(conf.verdict), soft_wrap=True)
        return
    console.print(confirmation_table(conf))
    console.print(
        f"[dim]{P_BETTER}; a saving: at most 1/3 of the best seed's tokens and shown not worse by "
        f"{conf.margin:g} or more (Holm over the {sum(not r.seed for r in conf.rows)} candidates)[/dim]"
    )
    console.print(looks_line(conf.earlier_looks, conf.earlier_campaign_looks) + (
        f"; recorded as look {conf.look}" if conf.look is not None and not conf.repeat else
        "; the same look as before (nothing evaluated anew)" if conf.repeat else ""))  # fmt: skip
    if conf.reused:
        stored = f"{len(conf.reused)} of {len(conf.rows)} test evaluations were stored already"
        console.print(f"[dim]{stored}[/dim]")
    style = "bold green" if conf.confirmed else "bold"
    console.print(f"[{style}]{escape(conf.verdict)}[/{style}]", soft_wrap=True)  # one line, never wrapped


def _rungs(text: str | None) -> list[int]:
    """`--race 12,24` as [12, 24]; a bad value is a one-line error."""
    from agentmeta.errors import ConfigError

    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"--race takes sample counts separated by commas (e.g. 16 or 12,24); got {text!r}"
        ) from None


def looks_table(looks: list[Any], title: str) -> Table:
    """The recorded looks at a test split: when, which settings, how many samples, what was found."""
    table = Table(title=title)
    for col in ("look", "when (UTC)", "samples", "settings", "evaluated", "verdict"):
        table.add_column(col)
    for look in looks:
        settings = ", ".join(f"{k} {v}" for k, v in look.settings.items())
        table.add_row(
            str(look.id) + (" (repeat)" if look.repeat else ""),
            look.created_at.strftime("%Y-%m-%d %H:%M"),
            str(len(look.sample_ids)),
            escape(settings),
            str(len(look.evaluated)),
            escape(str(look.result.get("verdict", ""))[:120]),
        )
    return table


def resolve_config(ctx: typer.Context, values: dict[str, Any], path: Path | None) -> Any:
    """The campaign's `SearchConfig`: the command line's values, or with `--config` the file's
    settings with the options given on the command line (or through the environment) on top."""
    from agentmeta.errors import ConfigError
    from agentmeta.search import SearchConfig

    if path is None:
        if values.get("suite") is None:
            raise ConfigError("give --suite, or --config with a suite")
        return SearchConfig(**values)
    from agentmeta.cli.options import given_on_command_line, read_config_file

    data = read_config_file(path, SearchConfig.model_fields)
    merged = {**data, **{k: values[k] for k in given_on_command_line(ctx, values)}}
    if merged.get("suite") is None:
        raise ConfigError(f"--config {path}: no suite (give it in the file or with --suite)")
    return SearchConfig(**merged)


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search_cmd(
        ctx: typer.Context,
        suite: Annotated[
            str | None, typer.Option("--suite", help="Suite spec to search on (validation split).")
        ] = None,
        config_file: Annotated[
            Path | None,
            typer.Option(
                "--config",
                help="A YAML or JSON file of the campaign's settings (the options below, by their "
                "Python names: suite, strategy, kind, max_tokens, ...); options given on the command "
                "line override it. `agentmeta archive config CAMPAIGN` writes a campaign's.",
            ),
        ] = None,
        strategy: Annotated[
            str, typer.Option(help="Search strategy (`agentmeta plugins strategy` lists them).")
        ] = "meta-agent",
        kind: Annotated[
            str,
            typer.Option(help="Candidate kind the strategy writes (`agentmeta plugins` lists agent kinds)."),
        ] = "code",
        iterations: Annotated[int, typer.Option(help="New candidates to propose.", min=0)] = 5,
        archive: Annotated[str, typer.Option(help="Archive path or SQLAlchemy URL.")] = os.environ.get(
            "AGENTMETA_ARCHIVE", "agentmeta-archive.db"
        ),
        model: Annotated[str | None, typer.Option(help="Model the candidates run on.")] = None,
        meta_model: Annotated[
            str | None, typer.Option(help="Model of the meta-agent (default: --model).")
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of sampling, selection and splits.")] = 0,
        subset: Annotated[int, typer.Option(help="Samples in the cheap first stage.", min=1)] = 8,
        full: Annotated[int, typer.Option(help="Samples in the full validation stage.", min=1)] = 32,
        objective: Annotated[
            str,
            typer.Option(help="Parent selection: score, or pareto (the score x tokens-per-sample front)."),
        ] = "score",
        seeds: Annotated[
            str | None,
            typer.Option(
                help="Comma-separated seed agents to start from (names as `agentmeta agents` shows; default: all of the kind)."
            ),
        ] = None,
        promote_margin: Annotated[
            float, typer.Option(help="Full stage if the subset score is within this of the best.", min=0.0)
        ] = 0.1,
        models: Annotated[
            str | None,
            typer.Option(
                help="Comma-separated other model specs graph nodes may use (per-node models, cascades "
                "that start with --model); default: none."
            ),
        ] = None,
        race: Annotated[
            str | None,
            typer.Option(
                help="Racing rungs between the subset and the full stage, e.g. 16 or 12,24: a promoted "
                "candidate is dropped at a rung once its paired 95% CI against the best lies below 0."
            ),
        ] = None,
        demos: Annotated[
            Literal["bootstrap", "reprompt"],
            typer.Option(
                help="How demonstrations are made from the train split: bootstrap (one draw of the "
                "agent's own solved outputs) or reprompt (Gibbs-style rounds that keep a recipe when "
                "the set solves as many other train samples)."
            ),
        ] = "bootstrap",
        adaptive: Annotated[
            bool,
            typer.Option(
                "--adaptive/--no-adaptive",
                help="Let the search make adaptive-compute nodes: bandits over reasoning strategies "
                "(statistics learned on train) and tree search over answers (AB-MCTS).",
            ),
        ] = False,
        meta_prompt: Annotated[
            str,
            typer.Option(
                help="How the meta-agent's and reflector's own instructions are chosen: fixed, or evolve "
                "(candidates scored by how often their proposals beat their parents on train).",
            ),
        ] = "fixed",
        max_tokens: Annotated[int | None, typer.Option(help="Token budget of the campaign.")] = None,
        max_wall_s: Annotated[float | None, typer.Option(help="Wall-clock budget in seconds.")] = None,
        concurrency: Annotated[int, typer.Option(help="Samples evaluated at once.", min=1)] = 8,
        parallel: Annotated[
            int,
            typer.Option(
                help="Candidates evaluated at once: each round proposes this many, then evaluates "
                "them together (the engine batches their samples).",
                min=1,
                max=64,
            ),
        ] = 1,
        name: Annotated[
            str | None, typer.Option(help="Campaign name (re-run the same name to resume).")
        ] = None,
        confirm: Annotated[
            bool,
            typer.Option(
                "--confirm/--no-confirm",
                help="End with a confirmation of the best candidate vs the best seed on held-out test samples.",
            ),
        ] = True,
        confirm_limit: Annotated[
            int, typer.Option(help="Test samples of the confirmation (all if the split is smaller).", min=1)
        ] = 64,
        confirm_margin: Annotated[
            float,
            typer.Option(
                help="Non-inferiority margin of a saving in the confirmation (see `agentmeta confirm --margin`).",
                min=0.0,
                max=0.99,
            ),
        ] = 0.05,
        unsafe_sandbox: UnsafeSandbox = False,
        ray: options.RayFlag = False,
        ray_address: options.RayAddress = None,
        ray_actors: options.RayActors = None,
        ray_gpus: options.RayGpus = 0.0,
    ) -> None:
        """Run (or resume) a search campaign, print the leaderboard, then confirm the best
        candidate against the best seed on held-out test samples (printed last).

        With --ray the candidates' samples run on Ray actors across the cluster; proposals and every
        archive write stay in this process. A killed run resumes with the same command."""
        from agentmeta.archive import Archive
        from agentmeta.cli import load_model_for_cli
        from agentmeta.search import Campaign

        apply_unsafe_sandbox(unsafe_sandbox)
        values = dict(
            suite=suite,
            strategy=strategy,
            kind=kind,
            iterations=iterations,
            model=model,
            meta_model=meta_model,
            seed=seed,
            subset=subset,
            full=full,
            objective=objective,
            seeds=[x.strip() for x in seeds.split(",") if x.strip()] if seeds else None,
            promote_margin=promote_margin,
            race=_rungs(race),
            models=[m.strip() for m in (models or "").split(",") if m.strip()],
            max_tokens=max_tokens,
            max_wall_s=max_wall_s,
            concurrency=concurrency,
            parallel=parallel,
            demos=demos,
            adaptive=adaptive,
            meta_prompt=meta_prompt,
            name=name,
            confirm=confirm,
            confirm_limit=confirm_limit,
            confirm_margin=confirm_margin,
        )
        config = resolve_config(ctx, values, config_file)
        iterations, model, meta_model = config.iterations, config.model, config.meta_model
        arch = Archive(archive)
        task_model = load_model_for_cli(model)
        meta = task_model if meta_model in (None, model) else load_model_for_cli(meta_model)
        start = time.monotonic()

        def say(text: str) -> None:
            s = int(time.monotonic() - start)
            err.print(f"[dim]{s // 60:02d}:{s % 60:02d}[/dim] {text}")

        def progress(ev: dict[str, Any]) -> None:
            kind_ = ev["event"]
            if kind_ == "seed":
                say(f"[dim]seed[/dim] {escape(ev['name'])} ({ev['id']})")
            elif kind_ == "propose":
                say(f"[bold]iteration {ev['iteration'] + 1}/{iterations}[/bold]: proposing...")
            elif kind_ == "proposed":
                say(f"  proposed {escape(ev['name'])} ({ev['tokens']} tokens); dry run on the subset...")
            elif kind_ == "resume":
                say(
                    f"[bold]iteration {ev['iteration'] + 1}/{iterations}[/bold]: resuming {escape(ev['name'])}"
                )
            elif kind_ == "candidate":
                say(
                    f"  candidate [cyan]{escape(ev['name'])}[/cyan] ({ev['id']}), parents "
                    f"{', '.join(p[:6] for p in ev['parents']) or '-'}"
                )
            elif kind_ == "debug":
                say(f"  [yellow]debug round {ev['round']}[/yellow]: {escape(ev['error'][:120])}")
            elif kind_ in ("invalid", "error"):
                say(f"  [red]{kind_}[/red]: {escape(str(ev.get('error'))[:160])}")
            elif kind_ == "not_promoted":
                if ev.get("basis") == "parent":
                    say(
                        f"  stays on the subset stage ({ev['mean']:.3f} vs its parent {ev['parent'][:6]}'s "
                        f"{ev['parent_mean']:.3f} on the same {ev['n']} samples)"
                    )
                else:
                    best_subset = _fmt(ev.get("best_subset"), None, None)
                    say(f"  stays on the subset stage (best subset score so far {best_subset})")
            elif kind_ == "confirm":
                say(f"[bold]confirmation[/bold]: {len(ev['ids'])} candidates on {ev['n']} test samples")
            elif kind_ == "looks":
                say(f"  {looks_line(ev['earlier'], ev['campaign'])}")
            elif kind_ == "dropped":
                say(
                    f"  [yellow]dropped[/yellow] at {ev['dropped_at']} samples: {ev['diff']:+.2f} "
                    f"[{ev['low']:.2f}, {ev['high']:.2f}] against the best ({ev['vs'][:6]}) on {ev['n']} samples"
                )
            elif kind_ == "warning":
                say(f"[yellow]warning[/yellow]: {escape(ev['message'])}")
            elif kind_ == "confirmed":
                stored = " (stored)" if ev["reused"] else ""
                mean = _fmt(ev["mean"], ev["ci_low"], ev["ci_high"])
                say(f"  test   {ev['id']}: {mean} n={ev['n']}{stored}")
            elif kind_ == "evaluated":
                best = max(  # over the whole campaign, so a resumed one starts from what it has
                    (
                        c.fitness
                        for c in arch.candidates(campaign=camp.record.id)
                        if c.fitness is not None and c.fitness_stage == "full"
                    ),
                    default=None,
                )
                errs = f", {ev['errors']} errors" if ev["errors"] else ""
                if ev.get("infra"):
                    errs += f", {ev['infra']} lost to infrastructure errors"
                say(
                    f"  {ev['stage']:<6} {ev['id']}: {_fmt(ev['mean'], ev['ci_low'], ev['ci_high'])} "
                    f"n={ev['n']}{errs}   best so far: {_fmt(best, None, None)}"
                )

        executor = options.ray_executor(ray, ray_address, ray_actors, ray_gpus)
        try:
            camp = Campaign(
                config, arch, model=task_model, meta_model=meta, progress=progress, executor=executor
            )
            result = camp.run()
        finally:
            if executor is not None:
                executor.close()
        board = arch.leaderboard(campaign=camp.record.id, limit=15)
        console.print(leaderboard_table(board, f"leaderboard: {result.campaign}"))
        if any(e.subset_only for e in board):
            console.print(
                "[dim]subset only: scored on the cheap first stage only, not comparable with full-stage "
                "scores; listed after every fully evaluated candidate[/dim]"
            )
        console.print(
            f"{len(result.new_candidates)} new candidates, {len(result.evaluated)} evaluations, "
            f"{result.tokens} tokens, {result.wall_s:.0f} s ({result.stop_reason}); archive: {archive}"
        )
        state = arch.get_campaign(camp.record.id).state
        if state.get("spent_tokens") and state["spent_tokens"] != result.tokens:
            console.print(
                f"campaign total over all its runs: {state['spent_tokens']} tokens, "
                f"{state.get('spent_wall_s', 0):.0f} s (what --max-tokens / --max-wall-s count)"
            )
        if result.confirmation is not None:  # the last thing printed: the held-out verdict
            print_confirmation(result.confirmation)

    @app.command("confirm")
    def confirm_cmd(
        ctx: typer.Context,
        campaign: Annotated[str | None, typer.Argument(metavar="CAMPAIGN", help="Campaign name or id.")] = None,
        config_file: Annotated[Path | None, options.config_option("confirmation")] = None,
        archive: Annotated[str, typer.Option(help="Archive path or SQLAlchemy URL.")] = os.environ.get(
            "AGENTMETA_ARCHIVE", "agentmeta-archive.db"
        ),
        limit: Annotated[int, typer.Option(help="Test samples (all if the split is smaller).", min=1)] = 64,
        model: Annotated[
            str | None, typer.Option(help="Model the candidates run on (default: the campaign's).")
        ] = None,
        concurrency: Annotated[int, typer.Option(help="Samples evaluated at once.", min=1)] = 8,
        margin: Annotated[
            float,
            typer.Option(
                help="Non-inferiority margin of a saving: a cheaper candidate must be shown worse than the "
                "best seed by less than this.",
                min=0.0,
                max=0.99,
            ),
        ] = 0.05,
        new_look: Annotated[
            bool,
            typer.Option(
                "--new-look",
                help="Take another look at the test split with other settings than the campaign's last "
                "confirmation (limit, model, seed, margin); it is recorded.",
            ),
        ] = False,
        unsafe_sandbox: UnsafeSandbox = False,
    ) -> None:
        """Confirm a campaign on held-out test samples: its best candidate by validation, its best seed
        and its score x tokens Pareto front, on the same test samples (stored as split test, stage
        confirm; what is stored is reused), with the paired gain over the best seed and a verdict.
        Every confirmation is recorded as a look at the test split; once a campaign is confirmed, a
        look with other settings needs --new-look."""
        from agentmeta.archive import Archive
        from agentmeta.cli import load_model_for_cli
        from agentmeta.errors import ConfigError
        from agentmeta.search.confirm import confirm

        given = dict(campaign=campaign, archive=archive, limit=limit, model=model, concurrency=concurrency,
                     margin=margin, new_look=new_look)  # fmt: skip
        values = options.merge_config(ctx, given, config_file)
        campaign, archive, limit, model = values["campaign"], values["archive"], values["limit"], values["model"]
        concurrency, margin, new_look = values["concurrency"], values["margin"], values["new_look"]
        if not campaign:
            raise ConfigError("give CAMPAIGN, on the command line or in --config")
        apply_unsafe_sandbox(unsafe_sandbox)
        arch = Archive(archive, create=False)
        record = arch.get_campaign(campaign)
        task_model = load_model_for_cli(model or record.config.get("model"))
        start = time.monotonic()

        def progress(ev: dict[str, Any]) -> None:
            s = int(time.monotonic() - start)
            clock = f"[dim]{s // 60:02d}:{s % 60:02d}[/dim]"
            if ev["event"] == "confirm":
                err.print(f"{clock} {len(ev['ids'])} candidates on {ev['n']} test samples")
            elif ev["event"] == "looks":
                err.print(f"{clock} {looks_line(ev['earlier'], ev['campaign'])}")
            elif ev["event"] == "confirmed":
                stored = " (stored)" if ev["reused"] else ""
                mean = _fmt(ev["mean"], ev["ci_low"], ev["ci_high"])
                err.print(f"{clock}   {ev['id']}: {mean} n={ev['n']}{stored}")

        conf = confirm(
            arch, record, test_limit=limit, model=task_model, concurrency=concurrency, progress=progress,
            margin=margin, new_look=new_look,
        )  # fmt: skip
        looks = [x for x in arch.test_looks(campaign=record.id) if not x.repeat]
        if len(looks) > 1:
            console.print(looks_table(looks, f"looks at the test split of campaign {record.name}"))
        print_confirmation(conf)
