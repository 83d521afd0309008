"""Reading answers out of completions: what every agent kind and every scorer uses.

Built-in prompts ask for a final line `Answer: ...`; extraction also accepts `Final answer:`,
markdown emphasis, `\\boxed{}` and `the answer is ...`, and falls back to the last non-empty
line. `majority` is the vote of Self-Consistency (the `cot-sc` agent, a graph's vote node).
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ANSWER_LINE = re.compile(
    r"^[ \t>#*_-]*(?:final[ \t]+answer|answer)[ \t]*[*_]*[ \t]*[:：][ \t]*[*_]*[ \t]*(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_ANSWER_INLINE = re.compile(r"\b(?:final[ \t]+answer|answer)[ \t]*[:：][ \t]*(?P<rest>[^\n]+)", re.IGNORECASE)
_ANSWER_IS = re.compile(r"(?:final answer|the answer) is[:\s]*(?P<rest>[^\n]+)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
"""A number as `parse_number` reads it: thousands separators, decimals, simple fractions."""


def _clean(text: str) -> str:
    text = text.strip()
    text = re.sub(r"^[*_`\s]+|[*_`\s]+$", "", text)
    text = text.strip().strip("$").strip()
    if text.endswith("."):
        text = text[:-1]
    return text.strip()


def answer_block(text: str) -> str | None:
    """Everything after the last `Answer:` marker (which may span lines), or None if there is none."""
    matches = list(_ANSWER_LINE.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    return text[m.start("rest") :].strip()


def extract_answer(text: str) -> str:
    """The final answer in a completion: the last `Answer:` line, else `\\boxed{}`, else an `Answer:`
    inside a line, else "the answer is ...", else the last line."""
    if not text:
        return ""
    matches = list(_ANSWER_LINE.finditer(text))
    if matches:
        m = matches[-1]
        rest = m.group("rest").strip()
        if not _clean(rest):  # "Answer:" alone on its line: the answer is on the next line
            tail = [ln for ln in text[m.end() :].splitlines() if ln.strip()]
            rest = tail[0] if tail else ""
        inner = _BOXED.search(rest)
        return _clean(inner.group(1) if inner else rest)
    boxed = _BOXED.findall(text)
    if boxed:
        return _clean(boxed[-1])
    inline = list(_ANSWER_INLINE.finditer(text))
    if inline:
        return _clean(inline[-1].group("rest"))
    said = list(_ANSWER_IS.finditer(text))
    if said:
        return _clean(said[-1].group("rest"))
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return _clean(lines[-1]) if lines else ""


def normalize_text(text: str) -> str:
    """SQuAD-style normalization: lowercase, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def parse_number(text: str, last: bool = True) -> float | None:
    """The last (or first) number in `text`: thousands separators, decimals and simple fractions."""
    found = NUMBER_RE.findall(text.replace("−", "-"))
    if not found:
        return None
    token = (found[-1] if last else found[0]).replace(",", "")
    try:
        if "/" in token:
            num, den = token.split("/")
            return float(num) / float(den) if float(den) else None
        return float(token)
    except ValueError:
        return None


def vote_key(answer: str) -> str:
    """What answers are grouped by in a vote: the number if the answer is one, else normalized text."""
    stripped = answer.strip().rstrip(".")
    num = parse_number(stripped) if re.fullmatch(r"[-+$]?[\d,]*\.?\d+(?:/\d+)?%?", stripped) else None
    return f"{num:g}" if num is not None else normalize_text(answer)


def majority(texts: list[str]) -> str:
    """The completion whose extracted answer is most common (ties: the earliest); empty answers don't vote."""
    keys = [vote_key(extract_answer(t)) for t in texts]
    counts = Counter(k for k in keys if k)
    if not counts:
        return texts[0] if texts else ""
    best = max(counts.values())
    winner = next(k for k in keys if k and counts[k] == best)
    return texts[keys.index(winner)]
