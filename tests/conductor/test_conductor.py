"""The conductor loop with scripted conductor replies (mock model), and on the embedded model."""

from __future__ import annotations

import pytest

from agentmeta import get_model
from agentmeta.conductor import Conductor, parse_experts, parse_final
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
