"""Scripted models for the adaptive-node tests, named by spec (`mock/tests.agents.adaptive_models:<name>`)."""

from __future__ import annotations

import re
import threading
from collections import Counter

_seen: Counter[str] = Counter()
_lock = threading.Lock()


def _task(text: str) -> str:
    m = re.search(r"Task: (.*)", text)
    return m.group(1) if m else text.split("\n")[0]


def _sum(text: str) -> int:
    return sum(int(x) for x in re.findall(r"\d+", _task(text)))


def strategist(req) -> str:
    """Right when asked to think step by step; wrong when asked for the answer only."""
    text = req.messages[-1].content
    if "Give only the final answer" in text:
        return f"Answer: {_sum(text) + 1}"
    return f"Step by step.\nAnswer: {_sum(text)}"


def explorer(req) -> str:
    """A sampler right one time in three (wrong answers all differ), a refinement that is right,
    and a yes/no checker that knows the sum."""
    text = req.messages[-1].content
    if "Write one Python expression" in text:
        return "Expression: " + " + ".join(re.findall(r"\d+", _task(text)))
    if "Is the proposed answer correct?" in text:
        proposed = re.search(r"Proposed answer: (.*)", text).group(1).strip()
        return "yes" if proposed == str(_sum(text)) else "no"
    if "A previous attempt" in text:
        return f"Checked.\nAnswer: {_sum(text)}"
    with _lock:
        k = _seen[text]
        _seen[text] += 1
    return f"Answer: {_sum(text) + (0 if k % 3 == 0 else 10 + k)}"
