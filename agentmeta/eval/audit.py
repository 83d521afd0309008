"""Label checks: find suite items whose reference answer cannot be right.

Benchmarks ship wrong labels. reasoning-gym 0.1.25's `basic_arithmetic`, for one, pairs
"Calculate 4 / 1." with the answer 2 and "Calculate 7 / 4." with 28. An agent scored against such
items is punished for being right, and a search optimizes towards the noise.

Two levels:

- **Built-in checks**, cheap and certain, run on every `load_suite`: items that fail one are
  dropped before any split is cut, and `Suite.dropped` counts them by check:
  - `empty_target`: the reference answer is empty;
  - `arithmetic`: the item carries an arithmetic expression (reasoning-gym's `expression`
    metadata) whose exact value (rational arithmetic) is not the target, or is undefined
    (division by zero); a target written with decimals may be the value rounded to its own
    number of decimals ("0.667" for 2 / 3), one written without must be exact ("2" for 6 / 4 is
    wrong);
  - `gold_fails`: the reference answer does not score 1 under the suite's own scorer;
  - `duplicate`: the same input appears again with the same target (later copies dropped);
  - `conflicting_targets`: the same input appears with different targets (all copies dropped).
- **`audit_suite`** (`agentmeta suites check SPEC`) runs those on the raw items plus the
  expensive ones: a code suite's reference solution must pass its own tests (`code_gold`, run in
  the sandbox), and no input may sit in two splits (`split_overlap`). It reports every bad item.
"""

from __future__ import annotations

import ast
import logging
import operator
from collections import Counter
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, Field

from agentmeta.errors import DataError
from agentmeta.eval.types import Sample, Score

log = logging.getLogger(__name__)

BUILTIN_CHECKS = ("empty_target", "arithmetic", "gold_fails", "duplicate", "conflicting_targets")
AUDIT_CHECKS = (*BUILTIN_CHECKS, "code_gold", "split_overlap")

ScoreFn = Callable[[str, Sample], Score]


class Issue(BaseModel):
    """One item that failed one check."""

    check: str
    """Which check: one of `AUDIT_CHECKS`."""
    sample_id: str
    split: str = ""
    detail: str
    """What is wrong, e.g. `4 / 1 = 4, target 2`."""
    input: str = ""
    """The item's input, shortened."""
    target: str = ""
    """The item's reference answer, shortened."""


class AuditReport(BaseModel):
    """What `audit_suite` found."""

    suite: str
    items: int
    """Items checked (every split)."""
    splits: dict[str, int] = Field(default_factory=dict)
    """Items checked per split."""
    checks: list[str]
    """Checks that ran."""
    counts: dict[str, int] = Field(default_factory=dict)
    """Bad items per check (only checks that found some)."""
    issues: list[Issue] = Field(default_factory=list)

    @property
    def bad_items(self) -> int:
        return len({i.sample_id for i in self.issues})


# ----------------------------------------------------------------------------- arithmetic

_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class _Undefined(ValueError):
    pass


def exact_value(expression: str) -> Fraction | None:
    """The exact value of an arithmetic expression of numbers, + - * / and parentheses.

    None when the text is not such an expression (the check does not apply); raises `_Undefined`
    for a division by zero.
    """
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("−", "-")
    if not text or len(text) > 500:
        return None
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise _Undefined("division by zero")
            return _OPS[type(node.op)](left, right)
        raise TypeError("not arithmetic")

    try:
        return ev(tree)
    except TypeError:
        return None


def _as_fraction(text: str) -> Fraction | None:
    t = text.strip().replace(",", "")
    try:
        return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None


def arithmetic_problem(sample: Sample) -> str | None:
    """Why the target is not the value of the item's expression, or None (fine or not applicable)."""
    meta = sample.metadata.get("rg") if isinstance(sample.metadata.get("rg"), dict) else sample.metadata
    expression = meta.get("expression") if isinstance(meta, dict) else None
    if not isinstance(expression, str):
        return None
    target = _as_fraction(sample.target)
    if target is None:
        return None
    try:
        value = exact_value(expression)
    except _Undefined:
        return f"{expression} is undefined (division by zero), target {sample.target}"
    if value is None:
        return None
    if value == target:
        return None
    # a target written with decimals ("0.667" for 2 / 3) is right if it is the value rounded to
    # its own number of decimals; a target with none must be the exact value ("2" for 6 / 4 is wrong)
    decimals = len(sample.target.strip().partition(".")[2])
    if decimals > 0 and value.denominator != 1 and round(float(value), decimals) == float(target):
        return None
    shown = str(value) if value.denominator == 1 else f"{float(value):.6g}"
    return f"{expression} = {shown}, target {sample.target}"


# ----------------------------------------------------------------------------- per-item checks

VERIFIER_SCORERS = frozenset({"reasoning_gym"})
"""Scorers that can judge an answer without a reference (an item may have an empty target)."""


def needs_target(scorer_name: str) -> bool:
    return scorer_name not in VERIFIER_SCORERS


def item_problems(sample: Sample, score: ScoreFn | None, needs_target: bool = True) -> list[tuple[str, str]]:
    """Built-in checks of one item: [(check, detail)]; empty when the item is fine.

    `score`: the suite's scorer, to check that the reference answer scores 1 (None skips it,
    e.g. for code suites, whose gold check needs the sandbox). `needs_target=False` for scorers
    that verify an answer without a reference (reasoning-gym tasks with many valid answers).
    """
    if not sample.target.strip():
        if needs_target:
            return [("empty_target", "the reference answer is empty")]
        return []  # a verifier scores this item without a reference (e.g. any valid colouring)
    out: list[tuple[str, str]] = []
    arith = arithmetic_problem(sample)
    if arith is not None:
        out.append(("arithmetic", arith))
    if score is not None:
        problem = _gold_problem(sample, score)
        if problem is not None:
            out.append(("gold_fails", problem))
    return out


def _gold_problem(sample: Sample, score: ScoreFn) -> str | None:
    """None if the reference answer, given as an agent gives it (`Answer: ...`) or bare, scores 1."""
    best, error = 0.0, ""
    for text in (f"Answer: {sample.target}", sample.target):
        try:
            best = max(best, score(text, sample).value)
        except Exception as e:  # noqa: BLE001 - a scorer that cannot judge its own gold is a finding
            error = f"{type(e).__name__}: {e}"
        if best >= 1.0:
            return None
    if error:
        return f"the scorer raised on the reference answer: {error}"
    return f"the reference answer scores {best:g} under the suite's scorer"


def dedupe(samples: Iterable[Sample]) -> tuple[list[Sample], list[tuple[Sample, str, str]]]:
    """Drop repeated inputs: later exact copies (`duplicate`), every copy of an input that has
    different targets (`conflicting_targets`). Returns (kept, [(sample, check, detail)])."""
    samples = list(samples)
    targets: dict[str, set[str]] = {}
    for s in samples:
        targets.setdefault(s.input.strip(), set()).add(s.target.strip())
    kept: list[Sample] = []
    dropped: list[tuple[Sample, str, str]] = []
    seen: dict[str, str] = {}
    for s in samples:
        key = s.input.strip()
        if len(targets[key]) > 1:
            shown = ", ".join(sorted(repr(t[:40]) for t in targets[key])[:4])
            dropped.append((s, "conflicting_targets", f"the same input has targets {shown}"))
        elif key in seen:
            dropped.append((s, "duplicate", f"same input and target as {seen[key]}"))
        else:
            seen[key] = s.id
            kept.append(s)
    return kept, dropped


def apply_builtin_checks(
    samples: Iterable[Sample], score: ScoreFn | None, *, dedup: bool = True, needs_target: bool = True
) -> tuple[list[Sample], Counter[str]]:
    """The samples that pass every built-in check, and the dropped counts by check."""
    counts: Counter[str] = Counter()
    pool = list(samples)
    if dedup:
        pool, dups = dedupe(pool)
        counts.update(check for _, check, _ in dups)
    kept = []
    for s in pool:
        problems = item_problems(s, score, needs_target)
        if problems:
            counts[problems[0][0]] += 1
        else:
            kept.append(s)
    return kept, counts


# ----------------------------------------------------------------------------- the audit


def _short(text: str, n: int = 80) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def _code_gold(samples: list[Sample], split_of: dict[str, str]) -> list[Issue]:
    """A code suite's reference solution (metadata `canonical_solution`) must pass its tests."""
    from agentmeta.eval.scorers import build_scorer
    from agentmeta.eval.types import ScorerSpec

    scorer = build_scorer(ScorerSpec(name="code"))
    issues = []
    for s in samples:
        solution = s.metadata.get("canonical_solution")
        if not isinstance(solution, str):
            continue
        program = str(s.metadata.get("prompt", "")) + solution
        got = scorer(f"```python\n{program}\n```", s)
        if got.value < 1.0:
            issues.append(
                Issue(
                    check="code_gold",
                    sample_id=s.id,
                    split=split_of.get(s.id, ""),
                    detail=f"the reference solution fails its tests: {_short(got.explanation, 120)}",
                    input=_short(s.input),
                    target=_short(s.target),
                )
            )
    return issues


def audit_suite(
    spec: str, *, limit: int | None = None, seed: int = 0, progress: Callable[[str], None] | None = None
) -> AuditReport:
    """Run every check on a suite's raw items (all splits, before built-in dropping) and report.

    `limit`: at most this many items per split (procedural suites generate that many).
    """
    from agentmeta.eval.suites import load_suite

    say = progress or (lambda msg: None)
    by_split: dict[str, list[Sample]] = {}
    suite = None
    for split in ("train", "validation", "test"):
        try:
            part = load_suite(spec, split=split, limit=limit, seed=seed, checks=False)
        except DataError as e:
            if "split is empty" not in str(e):
                raise
            by_split[split] = []
            continue
        suite = part
        by_split[split] = part.samples
        say(f"{split}: {len(part.samples)} items")
    if suite is None:
        raise DataError(f"suite {spec} has no items in any split")
    split_of = {s.id: split for split, items in by_split.items() for s in items}
    items = [s for part in by_split.values() for s in part]
    code = suite.scorer.name == "code"
    score = None if code else suite.score
    checks = list(BUILTIN_CHECKS) + (["code_gold"] if code else []) + ["split_overlap"]
    issues: list[Issue] = []

    def add(s: Sample, check: str, detail: str) -> None:
        issues.append(
            Issue(
                check=check,
                sample_id=s.id,
                split=split_of.get(s.id, ""),
                detail=detail,
                input=_short(s.input),
                target=_short(s.target),
            )
        )

    for split, part in by_split.items():
        _, dups = dedupe(part)
        for s, check, detail in dups:
            add(s, check, detail)
        say(f"{split}: checking {len(part)} items")
        for s in part:
            for check, detail in item_problems(s, score, needs_target(suite.scorer.name)):
                add(s, check, detail)
    first_split: dict[str, str] = {}
    for split, part in by_split.items():
        for s in part:
            key = s.input.strip()
            if key in first_split and first_split[key] != split:
                add(s, "split_overlap", f"the same input is also in {first_split[key]}")
            first_split.setdefault(key, split)
    if code:
        say("running reference solutions in the sandbox")
        issues += _code_gold(items, split_of)
    counts = Counter(i.check for i in issues)
    return AuditReport(
        suite=suite.name,
        items=len(items),
        splits={k: len(v) for k, v in by_split.items()},
        checks=checks,
        counts=dict(counts.most_common()),
        issues=issues,
    )
