"""`agentmeta conduct`: ask a conductor model, which calls experts, then answers."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from agentmeta.cli import make_console

console = make_console()
err = make_console(stderr=True)


def register(app: typer.Typer) -> None:
    @app.command("conduct")
    def conduct_cmd(
        question: Annotated[str, typer.Argument(help="The task for the conductor.")],
        model: Annotated[str | None, typer.Option(help="Conductor model spec (default: smollm2).")] = None,
        expert_model: Annotated[
            str | None, typer.Option(help="Expert model spec (default: --model).")
        ] = None,
        max_rounds: Annotated[int, typer.Option(help="Most conductor rounds.", min=1)] = 15,
        no_python: Annotated[
            bool, typer.Option("--no-python", help="Disable the sandboxed Python expert.")
        ] = False,
        seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
        transcript: Annotated[bool, typer.Option("--transcript", help="Print every round.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
        archive: Annotated[
            str | None,
            typer.Option(
                "--archive", help="Save the run (question, answer, transcript) in this archive, for `agentmeta ui`."
            ),
        ] = None,
    ) -> None:
        """Answer QUESTION with a conductor that calls experts (meta-prompting)."""
        from agentmeta.cli import load_model_for_cli
        from agentmeta.conductor import Conductor
        from agentmeta.errors import ConfigError

        if not question.strip():
            raise ConfigError("QUESTION is empty: give the conductor a task")
        m = load_model_for_cli(model)
        em = m if expert_model in (None, model) else load_model_for_cli(expert_model)
        c = Conductor(model=m, expert_model=em, max_rounds=max_rounds, python_expert=not no_python, seed=seed)
        store = None
        if archive is not None:  # opened first: a bad path fails before the model runs
            from agentmeta.archive import Archive

            store = Archive(archive)
        with err.status("conducting...", spinner="dots"):
            result = c.run(question)
        if store is not None:
            run_id = store.add_conductor_run(result, question, models={"conductor": m.spec, "expert": em.spec})
            err.print(f"[dim]saved as conductor run {run_id} in {escape(store.location)}[/dim]")
        if as_json:
            print(json.dumps(result.model_dump(mode="json"), indent=2))
            return
        if transcript:
            for t in result.transcript:
                who = {
                    "conductor": "[bold]Conductor[/bold]",
                    "expert": f"[cyan]Expert {escape(t.name)}[/cyan]",
                    "python": "[magenta]Expert Python[/magenta]",
                    "system": "[dim]system[/dim]",
                }[t.role]
                console.print(f"--- round {t.round}: {who}")
                console.print(escape(t.content), highlight=False)
            console.print("---")
        if not result.finished:
            err.print(f"[yellow]{escape(result.note)}[/yellow]")
        print(result.answer)
        err.print(
            f"[dim]{result.rounds} rounds, {result.usage.calls} calls, {result.usage.total_tokens} tokens[/dim]"
        )
