from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentmeta.archive import Archive, Candidate


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    with Archive(tmp_path / "a.db") as a:
        yield a


def make_candidate(name: str, **kw: object) -> Candidate:
    """A small code candidate."""
    fields: dict[str, object] = {
        "thought": f"why {name}",
        "source": f"def forward(self, task):\n    return {name!r}\n",
        **kw,
    }
    return Candidate(name=name, **fields)


@pytest.fixture
def make() -> Callable[..., Candidate]:
    return make_candidate
