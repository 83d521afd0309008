"""`agentmeta conduct`: ask a conductor model, which calls experts, then answers.

Each round is shown on stderr as it comes (who was called with what, each answer, the seconds
since the start); stdout carries only the answer (or `--json`, or `--transcript`'s full rounds).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.text import Text

from agentmeta.cli import make_console

if TYPE_CHECKING:
    from agentmeta.conductor import Turn

console = make_console()
err = make_console(stderr=True)


def shorten(text: str, width: int = 72) -> str:
    """`text` on one line, whitespace collapsed, cut to `width` characters with an ellipsis."""
    line = re.sub(r"\s+", " ", text).strip()
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def turn_line(turn: Turn, elapsed_s: float) -> Text | None:
    """One progress line for a turn: the conductor's round (who it called with what, its final
    answer, or that it did neither) or an expert's answer. Model text is plain `Text`, never markup."""
    from agentmeta.conductor import parse_experts, parse_final

    when = f"{elapsed_s:6.1f} s  "
    if turn.role == "conductor":
        head = Text.assemble((f"round {turn.round}", "bold"), "  ", when)
        calls = parse_experts(turn.content)
        final = parse_final(turn.content)
        if calls:
            for i, (name, instruction) in enumerate(calls):
                head.append("; " if i else "")
                head.append(f"Expert {name}", style="cyan")
                head.append(f': "{shorten(instruction, 60)}"')
            return head
        if final is not None:
            return head.append("final answer: ", style="green").append(f'"{shorten(final)}"')
        return head.append("no expert call: ", style="yellow").append(f'"{shorten(turn.content)}"')
    if turn.role in ("expert", "python"):
        answer = turn.content
        if turn.role == "python":  # what the code printed (or its error), not the code again
            answer = answer.partition("\nOutput:\n")[2] or answer
        return Text.assemble(
            " " * len(f"round {turn.round}  "),
            when,
            (f"Expert {turn.name}", "cyan"),
            f' answered: "{shorten(answer)}"',
        )
    return None  # the reminder after a round with no call is implied by that round's line


def register(app: typer.Typer) -> None:
    @app.command("conduct")
    def conduct_cmd(
        question: Annotated[str, typer.Argument(help="The task for the conductor.")],
        model: Annotated[str | None, typer.Option(help="Conductor model spec (default: smollm2).")] = None,
        expert_model: Annotated[
            str | None, typer.Option(help="Expert model spec (default: --model).")
        ] = None,
        max_rounds: Annotated[int, typer.Option(help="Most conductor rounds.", min=1)] = 6,
        max_tokens: Annotated[int, typer.Option(help="Most new tokens per conductor turn.", min=1)] = 192,
        expert_max_tokens: Annotated[
            int, typer.Option(help="Most new tokens per expert answer.", min=1)
        ] = 160,
        max_seconds: Annotated[
            float,
            typer.Option(
                help="Wall-clock budget of the run in seconds (model loading not counted); then the best "
                "answer so far is returned. 0: no limit.",
                min=0,
            ),
        ] = 90.0,
        max_total_tokens: Annotated[
            int,
            typer.Option(
                help="Token budget of the run (prompt and new tokens of every call). 0: no limit.", min=0
            ),
        ] = 0,
        no_python: Annotated[
            bool, typer.Option("--no-python", help="Disable the sandboxed Python expert.")
        ] = False,
        seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
        transcript: Annotated[
            bool, typer.Option("--transcript", help="Print every round in full at the end.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
        archive: Annotated[
            str | None,
            typer.Option(
                "--archive",
                help="Save the run (question, answer, transcript) in this archive, for `agentmeta ui`.",
            ),
        ] = None,
    ) -> None:
        """Answer QUESTION with a conductor that calls experts (meta-prompting), showing each round."""
        from agentmeta.cli import load_model_for_cli
        from agentmeta.conductor import Conductor
        from agentmeta.errors import ConfigError

        if not question.strip():
            raise ConfigError("QUESTION is empty: give the conductor a task")
        m = load_model_for_cli(model)
        em = m if expert_model in (None, model) else load_model_for_cli(expert_model)
        c = Conductor(
            model=m,
            expert_model=em,
            max_rounds=max_rounds,
            python_expert=not no_python,
            seed=seed,
            max_tokens=max_tokens,
            expert_max_tokens=expert_max_tokens,
            max_seconds=max_seconds or None,
            max_total_tokens=max_total_tokens or None,
        )
        store = None
        if archive is not None:  # opened first: a bad path fails before the model runs
            from agentmeta.archive import Archive

            store = Archive(archive)
        with err.status(
            f"round 1 of at most {max_rounds}: the conductor is writing...", spinner="dots"
        ) as status:

            def on_turn(turn: Turn, elapsed_s: float) -> None:
                line = turn_line(turn, elapsed_s)
                if line is not None:
                    err.print(line, highlight=False, soft_wrap=True)
                nxt = turn.round + 1 if turn.role == "system" else turn.round
                status.update(f"round {nxt}: waiting for the model...")

            result = c.run(question, on_turn=on_turn)
        if store is not None:
            run_id = store.add_conductor_run(
                result, question, models={"conductor": m.spec, "expert": em.spec}
            )
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
            err.print(Text(result.note, style="yellow"), highlight=False, soft_wrap=True)
        print(result.answer)
        err.print(
            f"[dim]{result.rounds} rounds, {result.usage.calls} calls, {result.usage.total_tokens} tokens, "
            f"{result.elapsed_s:.1f} s[/dim]"
        )
