"""Scripted models for the cascade tests, named by spec (`mock/tests.agents.cascade_models:<name>`)."""

from __future__ import annotations

import itertools
import re

_spin = itertools.count()


def _sum(req) -> int:
    nums = [int(x) for x in re.findall(r"\d+", req.messages[-1].content.split("\n")[0])]
    return sum(nums)


def unsure(req) -> str:
    """A small model that disagrees with itself: a different answer on every call."""
    return f"Answer: {_sum(req) + next(_spin) % 5}"


def sure_wrong(req) -> str:
    """A small model that agrees with itself on a wrong answer."""
    return f"Answer: {_sum(req) + 1}"


def strong(req) -> str:
    """A large model that is right."""
    return f"Working it out.\nAnswer: {_sum(req)}"
