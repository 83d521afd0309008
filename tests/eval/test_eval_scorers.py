from __future__ import annotations

import pytest

from agentmeta.agents.answers import extract_answer, parse_number
from agentmeta.errors import ConfigError
from agentmeta.eval.scorers import (
    build_scorer,
    extract_choice,
    list_scorers,
    parse_grid,
    token_f1,
)
from agentmeta.eval.types import Sample, Score, ScorerSpec


def S(target: str, **meta: object) -> Sample:  # noqa: N802
    return Sample(id="s", input="q", target=target, metadata=dict(meta))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Some thinking.\nAnswer: 42", "42"),
        ("Answer: 1\nWait, no.\nFinal answer: 7.", "7"),
        ("**Answer:** Paris", "Paris"),
        ("The result is \\boxed{12}", "12"),
        ("... so the answer is 5 apples", "5 apples"),
        ("Answer:\n  blue", "blue"),
        ("just a line\n\nlast line here", "last line here"),
        ("answer: $3.5$", "3.5"),
        ("2 + 1 = 3. OK so the final answer: 3.", "3"),
        ("Answer: 4\nthen I said answer: 5", "4"),
        ("", ""),
    ],
)
def test_extract_answer(text: str, want: str) -> None:
    assert extract_answer(text) == want


def test_parse_number_handles_commas_fractions_and_signs() -> None:
    assert parse_number("it costs $1,234.50 in total") == 1234.5
    assert parse_number("3/4") == 0.75
    assert parse_number("from 3 to -7") == -7
    assert parse_number("from 3 to -7", last=False) == 3
    assert parse_number("none") is None


def test_exact_scorer_normalizes() -> None:
    exact = build_scorer("exact")
    assert exact("Answer: The Eiffel Tower.", S("eiffel tower")).value == 1.0
    assert exact("Answer: Louvre", S("eiffel tower")).value == 0.0


def test_numeric_scorer_uses_last_number_and_tolerance() -> None:
    numeric = build_scorer("numeric")
    assert numeric("3 + 4 = 7, times 2 is 14.\nAnswer: 14", S("14")).value == 1.0
    assert numeric("Answer: 14.0000001", S("14")).value == 1.0
    assert numeric("Answer: 15", S("14")).value == 0.0
    assert numeric("no answer line, but 1,000 at the end", S("1000")).value == 1.0
    loose = build_scorer(ScorerSpec(name="numeric", args={"abs_tol": 1.0}))
    assert loose("Answer: 15", S("14")).value == 1.0
    with pytest.raises(ConfigError, match="has no number"):
        numeric("Answer: 1", S("n/a"))


def test_choice_scorer_extracts_letters() -> None:
    choice = build_scorer("choice")
    sample = S("C", choices=["red", "green", "blue", "black"])
    assert choice("Thinking...\nAnswer: C", sample).value == 1.0
    assert choice("Answer: (C) blue", sample).value == 1.0
    assert choice("Answer: blue", sample).value == 1.0  # the choice's text maps to its letter
    assert choice("I think the answer is (C).", sample).value == 1.0
    assert choice("Answer: A", sample).value == 0.0
    assert extract_choice("Answer: A cat", "ABCD") == "A"
    assert extract_choice("nothing here", "ABCD") is None


def test_f1_scorer_and_token_f1() -> None:
    assert token_f1("the 12 yards", "12") == pytest.approx(2 * (1 / 2) * 1 / (1 / 2 + 1))
    assert token_f1("12.0", "12") == 1.0
    assert token_f1("1,000 people.", "1000 people") == 1.0
    assert token_f1("", "x") == 0.0
    f1 = build_scorer("f1")
    assert f1("Answer: Maria Moreno", S("Maria Moreno")).value == 1.0
    assert f1("Answer: Maria", S("Maria Moreno")).value == pytest.approx(2 / 3)
    assert f1("Answer: x", S("unused", answers=["x", "y"])).value == 1.0


def test_contains_scorer() -> None:
    contains = build_scorer("contains")
    assert contains("the capital is Paris, of course", S("paris")).value == 1.0
    assert contains("the capital is Lyon", S("paris")).value == 0.0


def test_grid_scorer_parses_rows_and_json() -> None:
    grid = build_scorer("grid")
    target = "1 2\n3 4"
    assert grid("I think:\nAnswer:\n1 2\n3 4\n", S(target)).value == 1.0
    assert grid("Answer: [[1, 2], [3, 4]]", S(target)).value == 1.0
    assert grid("Answer:\n1 2\n3 5", S(target)).value == 0.0
    assert grid("no grid", S(target)).value == 0.0
    assert parse_grid("x\n12\n34\ntext") == [[1, 2], [3, 4]]


HUMANEVAL_LIKE = Sample(
    id="h",
    input="complete add",
    target="def check(candidate):\n    assert candidate(2, 3) == 5\n",
    metadata={"entry_point": "add", "prompt": "import math\n\ndef add(a, b):\n    '''Add.'''\n"},
)


def test_code_scorer_runs_tests_out_of_process() -> None:
    code = build_scorer(ScorerSpec(name="code", args={"timeout_s": 3}))
    full = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```"
    body = "    return a + b\n"
    after_marker = "Answer: def add(a, b):\n    return a + b"
    assert code(after_marker, HUMANEVAL_LIKE).value == 1.0
    assert (
        code("```python\ndef add(a, b):\n    return a + b\n", HUMANEVAL_LIKE).value == 1.0
    )  # unclosed fence
    assert code(full, HUMANEVAL_LIKE).value == 1.0
    assert code(body, HUMANEVAL_LIKE).value == 1.0
    wrong = code("```python\ndef add(a, b):\n    return a - b\n```", HUMANEVAL_LIKE)
    assert wrong.value == 0.0 and "AssertionError" in wrong.explanation
    # exiting early with status 0 is not a pass; a hang is killed at the timeout
    early = code("```python\nimport sys\nsys.exit(0)\ndef add(a, b):\n    return 0\n```", HUMANEVAL_LIKE)
    assert early.value == 0.0 and "before the tests finished" in early.explanation
    hang = code("```python\ndef add(a, b):\n    while True:\n        pass\n```", HUMANEVAL_LIKE)
    assert hang.value == 0.0 and hang.explanation.startswith("timeout")


def test_scorer_registry() -> None:
    names = list_scorers()
    assert {"exact", "numeric", "choice", "f1", "contains", "code", "grid", "reasoning_gym"} <= set(names)
    with pytest.raises(ConfigError, match="unknown scorer"):
        build_scorer("nope")
    with pytest.raises(ConfigError, match="bad arguments"):
        build_scorer(ScorerSpec(name="exact", args={"x": 1}))


def test_score_and_sample_round_trip_json() -> None:
    s = Score(value=0.5, explanation="half", extracted="x")
    assert Score.model_validate_json(s.model_dump_json()) == s
    assert Sample.model_validate_json(HUMANEVAL_LIKE.model_dump_json()) == HUMANEVAL_LIKE
    with pytest.raises(ValueError):
        Score(value=1.5)
