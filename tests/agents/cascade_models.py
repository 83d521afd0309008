"""Scripted models for the cascade tests, named by spec (`mock/tests.agents.cascade_models:<name>`)."""

from __future__ import annotations

import re
import threading
from collections import Counter

_seen: Counter[str] = Counter()
_lock = threading.Lock()


def _sum(req) -> int:
    nums = [int(x) for x in re.findall(r"\d+", req.messages[-1].content.split("\n")[0])]
    return sum(nums)


def unsure(req) -> str:
    """A small model that disagrees with itself: each call with the same prompt answers differently
    (counted per prompt, so concurrent samples do not interleave)."""
    key = req.messages[-1].content
    with _lock:
        k = _seen[key]
        _seen[key] += 1
    return f"Answer: {_sum(req) + k % 5}"


def sure_wrong(req) -> str:
    """A small model that agrees with itself on a wrong answer."""
    return f"Answer: {_sum(req) + 1}"


def strong(req) -> str:
    """A large model that is right."""
    return f"Working it out.\nAnswer: {_sum(req)}"
