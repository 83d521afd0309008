"""Scorers, registered by name.

A scorer is `(answer, sample) -> Score`. Factories are registered by name (`@register_scorer`) so a
suite can name its scorer in JSON and be rebuilt from it. Answers are read out of completions by
`agentmeta.agents.answers.extract_answer`, the same parser every agent uses.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from agentmeta.agents.answers import NUMBER_RE, answer_block, extract_answer, normalize_text, parse_number
from agentmeta.errors import ConfigError
from agentmeta.eval.types import Sample, Score, ScorerSpec
from agentmeta.registry import registry
from agentmeta.sandbox import Sandbox, SandboxLimits

ScorerFn = Callable[[str, Sample], Score]
ScorerFactory = Callable[..., ScorerFn]


def register_scorer(name: str, doc: str = "") -> Callable[[ScorerFactory], ScorerFactory]:
    """Register a scorer factory under `name` (its keyword arguments become `ScorerSpec.args`);
    the same as `agentmeta.registry.register("scorer", name)`."""
    return registry.register("scorer", name, doc)


def list_scorers() -> dict[str, str]:
    """Registered scorer names with one line each."""
    return {e.name: e.doc for e in sorted(registry.entries("scorer"), key=lambda e: e.name)}


def build_scorer(spec: ScorerSpec | str, **args: Any) -> ScorerFn:
    """The scorer function for a spec (or a name plus arguments)."""
    return (ScorerSpec(name=spec, args=args) if isinstance(spec, str) else spec).build()


def _targets(sample: Sample) -> list[str]:
    answers = sample.metadata.get("answers")
    if isinstance(answers, list) and answers:
        return [str(a) for a in answers]
    return [sample.target]


# ----------------------------------------------------------------------------- built-in scorers


@register_scorer("exact", "normalized exact match of the extracted answer")
def exact() -> ScorerFn:
    def score(answer: str, sample: Sample) -> Score:
        got = extract_answer(answer)
        ok = any(normalize_text(got) == normalize_text(t) for t in _targets(sample))
        return Score(
            value=1.0 if ok else 0.0,
            extracted=got,
            explanation=f"extracted {got!r}, expected {sample.target!r}",
        )

    return score


@register_scorer("numeric", "last number of the extracted answer, within a tolerance")
def numeric(rel_tol: float = 1e-6, abs_tol: float = 1e-6) -> ScorerFn:
    def score(answer: str, sample: Sample) -> Score:
        got_text = extract_answer(answer)
        got = parse_number(got_text)
        if got is None:
            got = parse_number(answer)
        want = parse_number(sample.target)
        if want is None:
            raise ConfigError(f"numeric scorer: target {sample.target!r} of sample {sample.id} has no number")
        if got is None:
            return Score(
                value=0.0, extracted=got_text, explanation=f"no number in the answer; expected {want:g}"
            )
        ok = math.isclose(got, want, rel_tol=rel_tol, abs_tol=abs_tol)
        return Score(
            value=1.0 if ok else 0.0, extracted=f"{got:g}", explanation=f"got {got:g}, expected {want:g}"
        )

    return score


def extract_choice(answer: str, letters: str, choices: list[str] | None = None) -> str | None:
    """The chosen letter: from the `Answer:` line, `the answer is (X)`, a choice's text, or the last letter."""
    letter_re = re.compile(rf"(?<![A-Za-z])\(?([{letters}])\)?(?![A-Za-z])")
    got = extract_answer(answer)
    m = letter_re.search(got)
    if m:
        return m.group(1)
    if choices:
        norm = normalize_text(got)
        for i, choice in enumerate(choices):
            if norm and norm == normalize_text(choice):
                return letters[i]
    said = re.findall(rf"answer is:?\s*\(?([{letters}])\b", answer)
    if said:
        return said[-1]
    tail = letter_re.findall(answer[-200:])
    return tail[-1] if tail else None


@register_scorer("choice", "multiple choice: the letter in the answer equals the target letter")
def choice(letters: str = "ABCD") -> ScorerFn:
    def score(answer: str, sample: Sample) -> Score:
        opts = sample.metadata.get("choices")
        valid = letters[: len(opts)] if isinstance(opts, list) and opts else letters
        got = extract_choice(answer, valid, opts if isinstance(opts, list) else None)
        want = sample.target.strip().upper()
        ok = got == want
        return Score(value=1.0 if ok else 0.0, extracted=got, explanation=f"chose {got}, correct {want}")

    return score


def _f1_tokens(text: str) -> list[str]:
    """Tokens for F1: numbers by value (`12.0` == `12`, `1,000` == `1000`), words SQuAD-normalized."""
    out = []
    for raw in text.lower().split():
        tok = raw.strip(string.punctuation.replace("-", "").replace(".", "")).rstrip(".")
        num = parse_number(tok) if NUMBER_RE.fullmatch(tok) else None
        if num is not None:
            out.append(f"{num:g}")
        else:
            out += normalize_text(tok).split()
    return out


def token_f1(prediction: str, target: str) -> float:
    """Bag-of-tokens F1 after normalization (numbers compared by value), as in SQuAD and DROP."""
    pred, gold = _f1_tokens(prediction), _f1_tokens(target)
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@register_scorer("f1", "token F1 of the extracted answer against the target(s), best match")
def f1() -> ScorerFn:
    def score(answer: str, sample: Sample) -> Score:
        got = extract_answer(answer)
        best = max(token_f1(got, t) for t in _targets(sample))
        return Score(value=best, extracted=got, explanation=f"F1 {best:.2f}: {got!r} vs {sample.target!r}")

    return score


@register_scorer("contains", "the normalized target occurs in the normalized answer")
def contains() -> ScorerFn:
    def score(answer: str, sample: Sample) -> Score:
        text = normalize_text(answer)
        ok = any(normalize_text(t) and normalize_text(t) in text for t in _targets(sample))
        return Score(
            value=1.0 if ok else 0.0,
            explanation=f"target {sample.target!r} {'found' if ok else 'not found'} in the answer",
        )

    return score


_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(answer: str, entry_point: str | None = None) -> str:
    """Code in a completion: the fenced block defining `entry_point` (else the longest block, else all)."""
    blocks = _FENCE.findall(answer)
    if not blocks:
        open_fence = re.search(r"```[ \t]*(?:python|py)?[ \t]*\n(.*)$", answer, re.DOTALL | re.IGNORECASE)
        if open_fence:  # a completion cut off before its closing fence
            return open_fence.group(1)
        block = answer_block(answer)  # code written after an "Answer:" marker
        return block + "\n" if block and "def " in block else answer
    if entry_point:
        defining = [b for b in blocks if re.search(rf"def\s+{re.escape(entry_point)}\s*\(", b)]
        if defining:
            return defining[-1]
    return max(blocks, key=len)


def build_program(code: str, sample: Sample) -> str:
    """The program that tests `code`: HumanEval style (prompt + completion + tests + check) or code + tests."""
    entry = sample.metadata.get("entry_point")
    prompt = sample.metadata.get("prompt", "")
    if prompt and entry and not re.search(rf"def\s+{re.escape(entry)}\s*\(", code):
        body = prompt + code  # a completion of the function body
    elif prompt:
        header = "\n".join(ln for ln in prompt.splitlines() if ln.startswith(("import ", "from ")))
        body = header + "\n\n" + code
    else:
        body = code
    program = body + "\n\n" + sample.target + "\n"
    if entry and "def check(" in sample.target:
        program += f"\ncheck({entry})\n"
    return program


_code_sandboxes: dict[tuple[float, int], Any] = {}


def _code_sandbox(timeout_s: float, memory_mb: int) -> Any:
    """A sandbox that starts a fresh worker per program, so no program can touch the next one's run."""
    key = (timeout_s, memory_mb)
    if key not in _code_sandboxes:
        limits = SandboxLimits(
            cpu_seconds=max(1, int(timeout_s) + 1), memory_mb=memory_mb, wall_seconds=timeout_s
        )
        _code_sandboxes[key] = Sandbox(limits, reuse=False)
    return _code_sandboxes[key]


@register_scorer("code", "pass@1: the code plus the target tests run in the sandbox")
def code(timeout_s: float = 10.0, memory_mb: int = 1024) -> ScorerFn:
    def score(answer: str, sample: Sample) -> Score:
        import secrets

        # The run passes only if it reaches the end of the tests: an early sys.exit(0) does not pass.
        sentinel = f"agentmeta-tests-done-{secrets.token_hex(8)}"
        program = build_program(extract_code(answer, sample.metadata.get("entry_point")), sample)
        result = _code_sandbox(timeout_s, memory_mb).run_code(f"{program}\nprint({sentinel!r})\n")
        passed = result.ok and sentinel in result.stdout
        if passed:
            why = "passed"
        elif not result.ok:
            lines = (result.error or "failed").strip().splitlines() or ["failed"]
            why = f"{result.error_kind}: {lines[-1]}"
        else:
            why = "exited before the tests finished"
        return Score(value=1.0 if passed else 0.0, explanation=why)

    return score


# ----------------------------------------------------------------------------- grids (ARC)


def parse_grid(text: str) -> list[list[int]] | None:
    """A grid of digits: JSON `[[...]]`, or the last block of lines made of digits (spaces, commas ok)."""
    block = answer_block(text)
    source = block if block else text
    m = re.search(r"\[\s*\[[\d,\s\[\]]*\]\s*\]", source)
    if m:
        try:
            grid = json.loads(m.group(0))
            if isinstance(grid, list) and all(isinstance(r, list) for r in grid):
                return [[int(v) for v in r] for r in grid]
        except (ValueError, TypeError):
            pass
    rows: list[list[int]] = []
    best: list[list[int]] = []
    for line in source.splitlines():
        cells = re.sub(r"[\s,|\[\]]", "", line)
        if cells and cells.isdigit():
            rows.append([int(c) for c in cells])
        elif rows:
            best, rows = rows, []
    best = rows or best
    return best or None


@register_scorer("grid", "ARC: the grid in the answer equals the target grid exactly")
def grid() -> ScorerFn:
    def score(answer: str, sample: Sample) -> Score:
        got = parse_grid(answer)
        want = parse_grid(sample.target)
        if got is None:
            return Score(value=0.0, explanation="no grid of digits found in the answer")
        ok = got == want
        shape = f"{len(got)}x{len(got[0]) if got else 0}"
        return Score(
            value=1.0 if ok else 0.0,
            extracted="\n".join("".join(map(str, r)) for r in got),
            explanation=f"grid {shape} {'matches' if ok else 'differs from'} the target",
        )

    return score


# ----------------------------------------------------------------------------- reasoning-gym


@lru_cache(maxsize=64)
def _rg_dataset(task: str, options_json: str, seed: int = 0) -> Any:
    from agentmeta.eval.loaders import rg_dataset

    return rg_dataset(task, json.loads(options_json), seed=seed * 1_000_003, size=10**9)


def _rg_entry(task: str, options_json: str, sample: Sample) -> dict[str, Any]:
    """The reasoning-gym entry a sample came from, as the generator made it: its verifier may need
    the metadata's own types (tuples), which the JSON copy kept on the sample has lost."""
    parts = sample.id.split("/")
    if len(parts) == 4 and parts[0] == "rg" and parts[1] == task and parts[2].isdigit() and parts[3].isdigit():
        entry = _rg_dataset(task, options_json, int(parts[2]))[int(parts[3])]
        if str(entry.get("question")) == sample.input:
            return dict(entry)
    return {
        "question": sample.input,
        "answer": sample.metadata.get("rg_answer", sample.target),
        "metadata": sample.metadata.get("rg", {}),
    }


@register_scorer("reasoning_gym", "the task family's own reasoning-gym verifier (hit = score >= 1)")
def reasoning_gym(task: str, options: dict[str, Any] | None = None) -> ScorerFn:
    options_json = json.dumps(options or {}, sort_keys=True)

    def score(answer: str, sample: Sample) -> Score:
        dataset = _rg_dataset(task, options_json)
        # a multi-line reference (a grid, a matrix) is compared with the whole answer block
        block = answer_block(answer) if "\n" in sample.target.strip() else None
        got = block.strip() if block else extract_answer(answer)
        entry = _rg_entry(task, options_json, sample)
        value = float(dataset.score_answer(got, entry))
        # extraction drops a final period; a verifier that compares whole sentences wants it back
        if value < 1.0 and not block:
            written = (answer_block(answer) or "").strip().splitlines()[:1]
            if written and written[0].strip() != got:
                value = max(value, float(dataset.score_answer(written[0].strip(), entry)))
        value = min(1.0, max(0.0, value))
        return Score(
            value=value,
            extracted=got,
            explanation=f"verifier {value:.2f}: {got!r} (reference {sample.target!r})",
        )

    return score
