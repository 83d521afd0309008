"""Shared fixtures of the evaluation tests: offline, no disk call cache, scripted models."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import typer

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _offline_no_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AGENTMETA_CALL_CACHE", "0")
    monkeypatch.setenv("AGENTMETA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def mock_model() -> Callable[..., object]:
    """`mock_model(outputs, **kw)`: a fresh scripted model with the disk cache off."""
    from agentmeta.models import get_model

    def make(outputs: object = None, **kwargs: object) -> object:
        return get_model("mock", outputs=outputs, cache=False, **kwargs)

    return make


@pytest.fixture
def cli_app() -> typer.Typer:
    """A typer app holding only the evaluation commands (the main app registers them the same way)."""
    from agentmeta.cli.eval import register

    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    return app
