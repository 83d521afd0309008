"""Evaluation: suites of samples with scorers, a concurrent runner, and bootstrap statistics.

`load_suite("gsm8k")` gives the validation split; `evaluate("cot", suite)` runs an agent on it and
returns an `EvalResult` with per-sample records and the mean score with its 95% bootstrap CI.
"""

from __future__ import annotations

from agentmeta.eval.types import (
    EvalResult,
    Sample,
    SampleRecord,
    Score,
    Scorer,
    ScorerSpec,
    SplitSizes,
    Suite,
)

__all__ = [
    "EvalResult",
    "Sample",
    "SampleRecord",
    "Score",
    "Scorer",
    "ScorerSpec",
    "SplitSizes",
    "Suite",
    "evaluate",
    "load_suite",
]


def __getattr__(name: str):  # noqa: ANN202 - lazy so that `import agentmeta.eval` stays light
    if name == "load_suite":
        from agentmeta.eval.suites import load_suite

        return load_suite
    if name == "evaluate":
        from agentmeta.eval.runner import evaluate

        return evaluate
    raise AttributeError(f"module 'agentmeta.eval' has no attribute {name!r}")
