"""Where the samples of an evaluation run: here, in a thread pool (`LocalExecutor`, the default), or
on a pool of Ray actors across a cluster (`agentmeta.eval.ray_executor.RayExecutor`).

`evaluate` describes its work as an `EvalJob` (the agent, how another process rebuilds it, the suite,
the model, seed and caps) and an executor returns one `SampleRecord` per sample, in the samples'
order. Every sample's model calls are seeded from (run seed, sample id), so where a sample runs
does not change its record: a run on Ray equals a local run with the same seed.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from agentmeta.agents.base import Agent, AgentSpec
from agentmeta.eval.types import SampleRecord, Suite
from agentmeta.models import Model

ProgressFn = Callable[[int, int, SampleRecord], None]


@dataclass
class EvalJob:
    """One evaluation's work: run `agent` on every sample of `suite` with `model`."""

    agent: Agent
    agent_name: str
    recipe: str | AgentSpec | None
    """How another process rebuilds the agent: a name `get_agent` resolves (registered, seed, agent
    file), the `AgentSpec` it was built from, or None when only the object itself is known."""
    suite: Suite
    model: Model
    seed: int
    max_tokens: int | None
    infra_retries: int
    concurrency: int
    """Samples run at once (on Ray: per actor)."""


def agent_recipe(agent: Any) -> str | AgentSpec | None:
    """What rebuilds `agent` elsewhere: the name it was given by, or the spec it was built from."""
    if isinstance(agent, str):
        return agent
    spec = getattr(agent, "agent_spec", None)
    return spec if isinstance(spec, AgentSpec) else None


class Executor:
    """Runs the samples of an `EvalJob`; `close()` releases what it holds (threads, actors)."""

    name = "executor"

    def run(self, job: EvalJob, progress: ProgressFn | None = None) -> list[SampleRecord]:
        """One record per sample of `job.suite`, in its order; `progress(done, total, record)`
        after each sample."""
        raise NotImplementedError

    def model_for(self, spec: str | None) -> Model:
        """The driver's `Model` for a spec: loaded here for a local run (see `get_model`)."""
        from agentmeta.models import get_model

        return get_model(spec)

    def close(self) -> None:
        """Release the executor's resources."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Samples in a thread pool of `job.concurrency` workers in this process, sharing one model
    (whose batcher gathers the workers' concurrent calls)."""

    name = "local"

    def run(self, job: EvalJob, progress: ProgressFn | None = None) -> list[SampleRecord]:
        from agentmeta.eval.runner import run_sample

        samples = job.suite.samples
        records: list[SampleRecord | None] = [None] * len(samples)
        with ThreadPoolExecutor(
            max_workers=min(job.concurrency, len(samples)), thread_name_prefix="agentmeta-eval"
        ) as pool:
            futures = {
                pool.submit(
                    run_sample, job.agent, s, job.suite, job.model, job.seed, job.max_tokens,
                    infra_retries=job.infra_retries,
                ): i
                for i, s in enumerate(samples)
            }  # fmt: skip
            for done, fut in enumerate(as_completed(futures), 1):
                i = futures[fut]
                records[i] = fut.result()
                if progress is not None:
                    progress(done, len(samples), records[i])  # type: ignore[arg-type]
        return [r for r in records if r is not None]
