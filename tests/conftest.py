"""Test settings: offline, a private call cache per run, the shared dense model copy."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# The embedded model's dense copy is reused across runs (it takes ~30 s to make); the call cache
# and everything else written by tests go to a fresh folder so no test sees another run's cache.
from agentmeta import config  # noqa: E402

os.environ.setdefault("AGENTMETA_MODELS_DIR", str(config.models_dir()))
os.environ["AGENTMETA_CACHE_DIR"] = tempfile.mkdtemp(prefix="agentmeta-test-cache-")
# float32 unless a test asks for another format: its greedy outputs do not depend on which
# requests share a decode step, so tests that run samples concurrently see the same answers each
# run (the bfloat16 default has its own tests: tests/models/test_fast_engine.py)
os.environ.setdefault("AGENTMETA_DTYPE", "float32")


@pytest.fixture(scope="session")
def embedded():
    """The real embedded SmolLM2 model, loaded once per test run (uncached calls); float32 in
    tests (`AGENTMETA_DTYPE`, set above)."""
    from agentmeta import get_model

    return get_model("smollm2", cache=False)


@pytest.fixture(scope="session")
def embedded_f32():
    """The embedded model with float32 weights through transformers' forward: the reference whose
    greedy outputs do not depend on the batch (the default may be bfloat16, see
    `agentmeta.models.hf.embedded_dtype`); the shared default model itself when that is float32
    already, as in tests (one load, not two)."""
    import torch

    from agentmeta import get_model

    default = get_model("smollm2", cache=False)  # shared: the `embedded` fixture's model
    if default.provider.model.dtype == torch.float32:
        return default
    return get_model("smollm2?dtype=float32", cache=False)


@pytest.fixture(scope="session")
def dense_model_dir(embedded) -> Path:
    from agentmeta.models.hf import dense_dir

    return dense_dir()
