"""The conductor loop with scripted conductor replies (mock model), and on the embedded model."""

from __future__ import annotations

import itertools
import re

import pytest

from agentmeta import get_model
from agentmeta.conductor import Conductor, parse_experts, parse_final
from agentmeta.conductor.core import CODE_STOP, CONDUCTOR_STOP, close_turn
from agentmeta.errors import ConfigError
from agentmeta.models.types import GenerateRequest

Q3 = '"""'


def scripted(conductor_replies: list[str], expert_reply=lambda r: "expert says 156"):
    """A mock that answers conductor calls from a script and expert calls with `expert_reply`."""
    replies = iter(conductor_replies)
    seen: list[GenerateRequest] = []

    def answer(req: GenerateRequest) -> str:
        seen.append(req)
        system = req.messages[0].content
        if system.startswith("You are Meta-Expert"):
            return next(replies)
        return expert_reply(req)

    return get_model("mock", outputs=answer), seen


def test_expert_call_then_final_answer():
    model, seen = scripted(
        [f"Expert Mathematician:\n{Q3}\nWhat is 12*13?\n{Q3}", f">> FINAL ANSWER:\n{Q3}\n156\n{Q3}"]
    )
    r = Conductor(model).run("What is 12*13?")
    assert r.answer == "156" and r.finished and r.rounds == 2
    expert_calls = [q for q in seen if q.messages[0].content == "You are Expert Mathematician."]
    assert len(expert_calls) == 1
    # the expert sees only its instruction, not the conversation
    assert expert_calls[0].messages[1].content == "What is 12*13?"
    assert [t.role for t in r.transcript] == ["conductor", "expert", "conductor"]
    # the conductor's second call carries the expert's output
    assert "expert says 156" in seen[-1].messages[-1].content


def test_several_experts_in_one_turn_run_in_order():
    order: list[str] = []

    def expert(req):
        order.append(req.messages[0].content)
        return "ok"

    model, _ = scripted(
        [
            f"Expert A:\n{Q3}one{Q3}\nExpert B:\n{Q3}two{Q3}\nExpert C:\n{Q3}three{Q3}",
            f">> FINAL ANSWER: {Q3}done{Q3}",
        ],
        expert,
    )
    r = Conductor(model).run("task")
    assert order == ["You are Expert A.", "You are Expert B.", "You are Expert C."]
    assert r.answer == "done"


def test_missing_closing_quotes_are_tolerated():
    assert parse_experts(f"Expert Poet:\n{Q3}\nwrite a haiku") == [("Poet", "write a haiku")]
    assert parse_experts(f"Expert A:\n{Q3}x\nExpert B:\n{Q3}y{Q3}") == [("A", "x"), ("B", "y")]
    assert parse_final(f">> FINAL ANSWER:\n{Q3}\n42") == "42"
    assert parse_final(">> FINAL ANSWER: 42") == "42"
    assert parse_final("no answer here") is None


def test_malformed_output_gets_a_reminder_then_recovers():
    model, seen = scripted(["I think the answer is big.", f">> FINAL ANSWER:\n{Q3}7{Q3}"])
    r = Conductor(model).run("task")
    assert r.answer == "7" and r.rounds == 2
    assert [t.role for t in r.transcript] == ["conductor", "system", "conductor"]
    assert "Expert <Name>" in seen[-1].messages[-1].content


def test_a_conductor_repeating_itself_after_the_reminder_is_stopped():
    model, seen = scripted(["12*13 = 196. The plan is to check it."] * 5)
    r = Conductor(model, max_rounds=5).run("task")
    assert not r.finished and r.rounds == 2 and len(seen) == 2
    assert "repeated its message of round 1 word for word" in r.note
    assert r.answer == "12*13 = 196. The plan is to check it."
    model, _ = scripted(["I think it is big.", "Maybe it is 7.", f">> FINAL ANSWER:\n{Q3}7{Q3}"])
    assert Conductor(model).run("task").answer == "7"  # a new message each round goes on


def test_round_limit_returns_best_available_and_says_so():
    model, seen = scripted([f"Expert Guesser:\n{Q3}guess{Q3}"] * 3, lambda r: "maybe 12")
    r = Conductor(model, max_rounds=3).run("task")
    assert not r.finished and r.rounds == 3
    assert r.answer == "maybe 12" and "no final answer" in r.note
    conductor_calls = [q for q in seen if q.messages[0].content.startswith("You are Meta-Expert")]
    assert "last round" in conductor_calls[-1].messages[-1].content
    assert "last round" not in conductor_calls[0].messages[-1].content


def test_python_expert_runs_code_in_the_sandbox():
    code = f"Expert Python:\n{Q3}\n```python\nprint(12*13)\n```\n{Q3}"
    model, seen = scripted([code, f">> FINAL ANSWER: {Q3}156{Q3}"])
    r = Conductor(model).run("What is 12*13? Use Python to check.")
    py = [t for t in r.transcript if t.role == "python"]
    assert len(py) == 1 and "156" in py[0].content
    assert "156" in seen[-1].messages[-1].content


def test_python_expert_hostile_code_is_contained_and_reported():
    code = f"Expert Python:\n{Q3}\n```python\nwhile True:\n    pass\n```\n{Q3}"
    model, _ = scripted([code, f">> FINAL ANSWER: {Q3}gave up{Q3}"])
    r = Conductor(model, python_timeout_s=2).run("loop")
    py = [t for t in r.transcript if t.role == "python"][0]
    assert "Error (timeout)" in py.content
    assert r.answer == "gave up"


def test_empty_question_is_an_error():
    with pytest.raises(ConfigError, match="empty"):
        Conductor(get_model("mock")).run("   ")


def test_run_batch_keeps_order():
    def answer(req):
        q = req.messages[1].content
        return f">> FINAL ANSWER: {Q3}{q.split()[1]}{Q3}"

    results = Conductor(get_model("mock", outputs=answer)).run_batch(["a", "b", "c", "d"])
    assert [r.answer for r in results] == ["a", "b", "c", "d"]


def test_workflow_plan_and_run_respects_access():
    plan_json = (
        '{"steps": [{"worker": 0, "subtask": "solve", "access": []},'
        ' {"worker": 0, "subtask": "check", "access": [0, 5]}]}'
    )
    seen: list[str] = []

    def answer(req):
        text = req.messages[-1].content
        seen.append(text)
        if text.startswith("You plan"):
            return plan_json
        return "Answer: 9" if "check" in text else "first output"

    model = get_model("mock", outputs=answer)
    c = Conductor(model)
    wf = c.plan("What is 4+5?", workers=[model])
    assert [s.access for s in wf.steps] == [[], [0]]  # forward/unknown references dropped
    res = c.run_workflow("What is 4+5?", wf, workers=[model])
    assert res.answer == "9"
    assert "first output" in seen[-1] and "first output" not in seen[-2]


@pytest.mark.embedded
def test_conductor_on_embedded_model(embedded):
    r = Conductor(embedded, max_rounds=3, max_tokens=96, expert_max_tokens=96).run(
        "What is 12*13? Use Python to check."
    )
    assert r.answer.strip()
    assert 1 <= r.rounds <= 3
    assert r.transcript[0].role == "conductor"
    assert r.usage.calls >= r.rounds


# -- stop strings: a turn ends at the closing quotes ---------------------------------------------
INVENTED = f"\n\nExpert Mathematician's output:\n{Q3}\n999\n{Q3}\n\n>> FINAL ANSWER:\n{Q3}\n999\n{Q3}"


@pytest.mark.parametrize("sep", ["\n\n", "\n"])
def test_a_turn_is_cut_at_the_closing_quotes_of_its_call(sep):
    # the conductor invents the expert's reply and a final answer after its call; without the stop
    # strings that final answer (written after a call) would be returned as the answer
    call = f"Expert Mathematician:\n{Q3}\nWhat is 12*13?\n{Q3}"
    model, seen = scripted([call + INVENTED.replace("\n\n", sep, 1), f">> FINAL ANSWER:\n{Q3}\n156\n{Q3}"])
    r = Conductor(model).run("What is 12*13?")
    assert r.answer == "156" and r.rounds == 2 and r.finished
    first = r.transcript[0].content
    assert first == call  # cut before the invented reply, closing quotes put back, no stray header
    conductor_calls = [q for q in seen if q.messages[0].content.startswith("You are Meta-Expert")]
    assert all(q.stop == list(CONDUCTOR_STOP) for q in conductor_calls)
    assert conductor_calls[1].messages[-2].content == call  # the history shows the closed call
    assert "999" not in conductor_calls[1].messages[-1].content  # only the real expert output


def test_a_final_answer_is_cut_at_its_closing_quotes():
    model, _ = scripted([f">> FINAL ANSWER:\n{Q3}\n156\n{Q3}\n\nExpert Verifier:\n{Q3}\ncheck\n{Q3}"])
    r = Conductor(model).run("What is 12*13?")
    assert r.answer == "156" and r.rounds == 1
    assert r.transcript[0].content == f">> FINAL ANSWER:\n{Q3}\n156\n{Q3}"
    assert [t.role for t in r.transcript] == ["conductor"]  # the verifier after the answer never ran


def test_close_turn_puts_back_only_a_missing_closing_quote():
    assert close_turn(f"Expert A:\n{Q3}\nx\n") == f"Expert A:\n{Q3}\nx\n{Q3}"
    assert close_turn(f"Expert A:\n{Q3}\nx\n{Q3}\nExpert A") == f"Expert A:\n{Q3}\nx\n{Q3}"
    assert close_turn(f"Expert A:\n{Q3}x{Q3}") == f"Expert A:\n{Q3}x{Q3}"
    assert close_turn("just prose, Expert A") == "just prose, Expert A"


def test_mock_cuts_at_the_first_stop_string_like_a_backend():
    m = get_model("mock", outputs=["a|b#c|d"])
    resp = m.generate("x", stop=["|", "#"])
    assert resp.text == "a" and resp.finish_reasons == ["stop"]


def test_python_expert_code_call_stops_after_its_code_block():
    # a code writer that goes on with a second, failing block after the first one
    def expert(req):
        return "```python\nprint(12*13)\n```\n\nOr also:\n```python\nprint(1/0)\n```"

    model, seen = scripted(
        [f"Expert Python:\n{Q3}\nCompute 12*13.\n{Q3}", f">> FINAL ANSWER: {Q3}156{Q3}"], expert
    )
    r = Conductor(model).run("What is 12*13?")
    py = [t for t in r.transcript if t.role == "python"][0]
    assert "156" in py.content and "Error" not in py.content and "1/0" not in py.content
    code_calls = [q for q in seen if q.messages[0].content.startswith("You are Expert Python")]
    assert code_calls[0].stop == list(CODE_STOP)


# -- budgets -----------------------------------------------------------------------------------
def slow_rambler(delay_s: float = 0.05, expert=None):
    """A conductor that never calls an expert nor answers (a new message each time, so only a
    budget stops it), each call taking `delay_s`."""
    words = " ".join(["thinking"] * 40)
    turns = itertools.count(1)

    def answer(req):
        if req.messages[0].content.startswith("You are Meta-Expert"):
            return f"I am still {words} ({next(turns)})"
        return expert(req) if expert else "expert says 156"

    return get_model("mock", outputs=answer, delay_s=delay_s)


def test_time_budget_stops_a_conductor_that_never_answers():
    c = Conductor(slow_rambler(), max_rounds=100, max_seconds=0.3)
    r = c.run("task")
    assert not r.finished and 1 <= r.rounds < 100
    assert "time budget of 0.3 s ran out" in r.note and "conductor message" in r.note
    assert r.answer.startswith("I am still")  # its last message, not the reminder
    assert r.elapsed_s < 0.3 + 0.5  # no call was started that the time left could not hold


def test_time_budget_returns_the_last_expert_output():
    model, _ = scripted([f"Expert Guesser:\n{Q3}guess{Q3}"] * 100, lambda r: "maybe 156")
    model.provider.delay_s = 0.02
    r = Conductor(model, max_rounds=100, max_seconds=0.3).run("task")
    assert not r.finished and r.answer == "maybe 156"
    assert "time budget" in r.note and "last expert output" in r.note


def test_calls_are_shrunk_to_the_time_left_then_not_started():
    from agentmeta.conductor.core import _OutOfBudget, _Run
    from agentmeta.models.types import GenerateResponse

    run = _Run(max_seconds=10.0, max_total_tokens=None, on_turn=None)
    assert run.tokens_for(192) == 192  # no speed measured yet
    run.record(GenerateResponse(texts=["x"], completion_tokens=[10], latency_s=1.0))  # 10 tokens/s
    assert 85 <= run.tokens_for(192) <= 100  # ~10 s left at 10 tokens/s
    run.record(GenerateResponse(texts=["x"], completion_tokens=[10], latency_s=2.0))  # the last: 5/s
    assert 40 <= run.tokens_for(192) <= 50  # a longer prompt made the last call slower: its speed counts
    run.start -= 9.5  # 0.5 s left: 2 tokens fit, fewer than a useful call
    with pytest.raises(_OutOfBudget):
        run.tokens_for(192)
    assert run.out_of == "time"


def test_token_budget_stops_the_run():
    c = Conductor(slow_rambler(0.0), max_rounds=50, max_seconds=None, max_total_tokens=400)
    r = c.run("task")
    assert not r.finished and "token budget of 400 tokens ran out" in r.note
    assert r.usage.total_tokens >= 400 and r.rounds < 50
    # the check is before each call: the run stopped at the first call after crossing the budget
    assert r.usage.calls == r.rounds and f"in round {r.rounds + 1}" in r.note


def test_defaults_fit_a_small_cpu_and_budgets_are_validated():
    c = Conductor(get_model("mock"))
    assert (c.max_rounds, c.max_tokens, c.expert_max_tokens, c.max_seconds) == (6, 192, 160, 90.0)
    with pytest.raises(ConfigError, match="max_seconds"):
        Conductor(get_model("mock"), max_seconds=0)
    with pytest.raises(ConfigError, match="max_total_tokens"):
        Conductor(get_model("mock"), max_total_tokens=0)


# -- live progress -------------------------------------------------------------------------------
def test_on_turn_sees_each_turn_before_the_next_call():
    events: list[str] = []

    def answer(req):
        events.append("call")
        if req.messages[0].content.startswith("You are Meta-Expert"):
            n = sum(e == "conductor" for e in events)
            return f"Expert A:\n{Q3}go{Q3}" if n == 0 else f">> FINAL ANSWER: {Q3}done{Q3}"
        return "ok"

    r = Conductor(get_model("mock", outputs=answer)).run("task", on_turn=lambda t, s: events.append(t.role))
    assert r.answer == "done"
    assert events == ["call", "conductor", "call", "expert", "call", "conductor"]


STDERR_AT_CALL: list[str] = []
"""What `agentmeta conduct` had written on stderr when each conductor call of `cli_script` began."""


def cli_script(req) -> str:
    """The CLI test's model (`mock/tests.conductor.test_conductor:cli_script`): a Python call, an
    expert whose answer looks like rich markup, then the answer."""
    import sys

    system = req.messages[0].content
    if not system.startswith("You are Meta-Expert"):
        return "[bold red]looks[/bold red] fine, 156 [/dim]"
    sys.stderr.flush()
    STDERR_AT_CALL.append(sys.stderr.buffer.getvalue().decode())  # type: ignore[attr-defined]
    n = sum(m.role == "assistant" for m in req.messages)
    return [
        f"Expert Python:\n{Q3}\n```python\nprint(12*13)\n```\n{Q3}\n\nExpert Python's output:\n{Q3}\n1",
        f"Expert Verifier:\n{Q3}\nIs 12*13 = 156 right? [/red]\n{Q3}",
        f">> FINAL ANSWER:\n{Q3}\n156 [link]\n{Q3}",
    ][n]


def test_cli_prints_each_round_on_stderr_as_it_comes():
    from typer.testing import CliRunner

    from agentmeta.cli import app

    STDERR_AT_CALL.clear()
    res = CliRunner().invoke(
        app, ["conduct", "What is 12*13?", "--model", "mock/tests.conductor.test_conductor:cli_script"]
    )
    assert res.exit_code == 0, res.output
    assert res.stdout == "156 [link]\n"  # stdout is the answer alone
    lines = res.stderr.splitlines()
    rounds = [line for line in lines if line.startswith("round ")]
    assert len(rounds) == 3
    assert rounds[0].startswith("round 1") and 'Expert Python: "```python print(12*13) ```"' in rounds[0]
    assert rounds[1].startswith("round 2") and "Expert Verifier" in rounds[1] and "[/red]" in rounds[1]
    assert rounds[2].startswith("round 3") and 'final answer: "156 [link]"' in rounds[2]
    answers = [line for line in lines if " answered: " in line]
    assert len(answers) == 2 and 'Expert Python answered: "156"' in answers[0]
    assert '"[bold red]looks[/bold red] fine, 156 [/dim]"' in answers[1]  # model text shown as written
    assert re.search(r"round 1\s+\d+\.\d s", rounds[0])
    # live: each round's lines were on stderr before the next conductor call began
    assert len(STDERR_AT_CALL) == 3
    assert "round 1" not in STDERR_AT_CALL[0]
    assert "round 1" in STDERR_AT_CALL[1] and "Expert Python answered" in STDERR_AT_CALL[1]
    assert "round 2" in STDERR_AT_CALL[2] and "round 3" not in STDERR_AT_CALL[2]


def test_cli_budget_options_reach_the_conductor(monkeypatch):
    from typer.testing import CliRunner

    from agentmeta.cli import app
    from agentmeta.conductor import core

    made: list[core.Conductor] = []
    real_run = core.Conductor.run

    def spy(self, question, on_turn=None):
        made.append(self)
        return real_run(self, question, on_turn)

    monkeypatch.setattr(core.Conductor, "run", spy)
    args = ["conduct", "q", "--model", "mock/tests.conductor.test_conductor:cli_script"]
    opts = ["--max-rounds", "3", "--max-tokens", "50", "--expert-max-tokens", "40"]
    res = CliRunner().invoke(app, [*args, *opts, "--max-seconds", "0", "--max-total-tokens", "5000"])
    assert res.exit_code == 0, res.output
    c = made[-1]
    assert (c.max_rounds, c.max_tokens, c.expert_max_tokens) == (3, 50, 40)
    assert c.max_seconds is None and c.max_total_tokens == 5000
    res = CliRunner().invoke(app, args)
    assert (made[-1].max_seconds, made[-1].max_total_tokens, made[-1].max_rounds) == (90.0, None, 6)
