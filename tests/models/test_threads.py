"""Torch thread settings: the CPUs this process may use, overridable, shared out to workers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentmeta.errors import ConfigError
from agentmeta.models import threads


def test_default_is_the_cpus_of_this_process_and_env_overrides_in_order(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.torch_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.torch_threads() == 3
    monkeypatch.setenv(threads.ENV, "1")
    assert threads.torch_threads() == 1
    monkeypatch.setenv(threads.ENV, "two")
    with pytest.raises(ConfigError, match="AGENTMETA_TORCH_THREADS must be a whole number"):
        threads.torch_threads()


def test_a_process_pinned_to_one_cpu_runs_torch_on_one_thread():
    code = (
        "import torch; from agentmeta.models import threads; "
        "print(threads.apply(torch), torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k not in (threads.ENV, "OMP_NUM_THREADS")}
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["1", "1"]


def test_worker_env_gives_each_worker_its_share():
    assert threads.worker_env(0) == {threads.ENV: "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert threads.worker_env(2)["OMP_NUM_THREADS"] == "2"


@pytest.mark.embedded
def test_the_embedded_model_runs_on_the_threads_chosen(embedded):
    import torch

    assert torch.get_num_threads() == threads.torch_threads()
