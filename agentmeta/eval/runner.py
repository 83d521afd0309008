"""`evaluate`: run an agent on every sample of a suite, concurrently, and score the answers.

Samples run in a thread pool of `concurrency` workers; each worker's model calls go through the
model layer, which batches concurrent requests for the embedded backend. A sample whose agent or
scorer raises is recorded with its error and scores 0; the result counts the failures by message,
and nothing is dropped.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from agentmeta.errors import ConfigError, DataError
from agentmeta.eval.agents import Agent, get_agent
from agentmeta.eval.types import EvalResult, Sample, SampleRecord, Score, Suite
from agentmeta.models import GenerateRequest, GenerateResponse, Model, Usage, get_model

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, SampleRecord], None]


class SampleModel:
    """The model handle an agent gets for one sample.

    It forwards to the shared `Model` (so calls are batched and cached as usual), counts this
    sample's calls and tokens, gives calls the run's seed unless the agent sets one, and caps
    `max_tokens` when the run has a cap.
    """

    def __init__(self, model: Model, seed: int | None = None, max_tokens: int | None = None) -> None:
        self.model = model
        self.spec = model.spec
        self.seed = seed
        self.max_tokens = max_tokens
        self.usage = Usage()

    def __repr__(self) -> str:
        return f"SampleModel({self.spec!r})"

    def _prepare(self, prompt: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        cap = self.max_tokens
        if isinstance(prompt, GenerateRequest):
            if cap is not None and prompt.max_tokens > cap and "max_tokens" not in kwargs:
                kwargs["max_tokens"] = cap
        elif "seed" not in kwargs and self.seed is not None:
            kwargs["seed"] = self.seed
        if cap is not None and "max_tokens" in kwargs:
            kwargs["max_tokens"] = min(int(kwargs["max_tokens"]), cap)
        elif cap is not None and not isinstance(prompt, GenerateRequest):
            kwargs["max_tokens"] = cap
        return prompt, kwargs

    def generate(self, prompt: Any, **kwargs: Any) -> GenerateResponse:
        prompt, kwargs = self._prepare(prompt, kwargs)
        resp = self.model.generate(prompt, **kwargs)
        self.usage.add(resp)
        return resp

    async def agenerate(self, prompt: Any, **kwargs: Any) -> GenerateResponse:
        prompt, kwargs = self._prepare(prompt, kwargs)
        resp = await self.model.agenerate(prompt, **kwargs)
        self.usage.add(resp)
        return resp

    def generate_many(self, prompts: Sequence[Any], **kwargs: Any) -> list[GenerateResponse]:
        _, kwargs = self._prepare("", kwargs)
        resps = self.model.generate_many(prompts, **kwargs)
        for r in resps:
            self.usage.add(r)
        return resps


def _error_text(e: BaseException, where: str = "") -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{where}{type(e).__name__}: {msg}" if msg else f"{where}{type(e).__name__}"


def run_sample(
    agent: Agent, sample: Sample, suite: Suite, model: Model, seed: int, max_tokens: int | None = None
) -> SampleRecord:
    """Run the agent on one sample and score its answer; any exception becomes the record's error."""
    handle = SampleModel(model, seed=seed, max_tokens=max_tokens)
    start = time.perf_counter()
    answer: str | None = None
    score: Score | None = None
    error: str | None = None
    try:
        out = agent.run(sample.input, handle)
        if not isinstance(out, str):
            raise TypeError(f"agent returned {type(out).__name__}, expected str")
        answer = out
    except Exception as e:  # noqa: BLE001 - recorded on the sample, counted in the result
        error = _error_text(e)
        log.debug("sample %s: agent failed", sample.id, exc_info=True)
    if answer is not None:
        try:
            score = suite.score(answer, sample)
        except Exception as e:  # noqa: BLE001
            error = _error_text(e, "scorer: ")
            log.debug("sample %s: scorer failed", sample.id, exc_info=True)
    return SampleRecord(
        id=sample.id,
        answer=answer,
        target=sample.target,
        score=score.value if score is not None and error is None else 0.0,
        explanation=score.explanation if score is not None else "",
        error=error,
        prompt_tokens=handle.usage.prompt_tokens,
        completion_tokens=handle.usage.completion_tokens,
        calls=handle.usage.calls,
        latency_s=time.perf_counter() - start,
    )


def summarize(
    records: list[SampleRecord],
    *,
    suite: Suite,
    agent: str,
    model: str,
    seed: int,
    wall_s: float,
    concurrency: int,
    usage: Usage | None = None,
) -> EvalResult:
    """Aggregate per-sample records into an `EvalResult` (mean, seeded bootstrap CI, error counts)."""
    if not records:
        raise DataError(f"suite {suite.name} ({suite.split}) has no samples to evaluate")
    from agentmeta.eval.stats import bootstrap_ci  # numpy loads on first use, not on import

    ci = bootstrap_ci([r.score for r in records], seed=seed)
    errors = Counter((r.error or "")[:200] for r in records if r.error)
    if usage is None:
        usage = Usage(
            calls=sum(r.calls for r in records),
            prompt_tokens=sum(r.prompt_tokens for r in records),
            completion_tokens=sum(r.completion_tokens for r in records),
        )
    return EvalResult(
        suite=suite.name,
        split=suite.split,
        agent=agent,
        model=model,
        seed=seed,
        records=records,
        mean=ci.mean,
        ci_low=ci.low,
        ci_high=ci.high,
        n=len(records),
        n_hits=sum(r.score >= 1.0 for r in records),
        n_errors=sum(r.error is not None for r in records),
        errors=dict(errors.most_common()),
        usage=usage,
        wall_s=wall_s,
        concurrency=concurrency,
    )


def evaluate(
    agent: str | Agent | Callable[[str, Any], str],
    suite: str | Suite,
    model: str | Model | None = None,
    limit: int | None = None,
    concurrency: int = 16,
    seed: int = 0,
    *,
    split: str = "validation",
    max_tokens: int | None = None,
    progress: ProgressFn | None = None,
) -> EvalResult:
    """Evaluate `agent` on `suite` and return per-sample records plus the mean and its 95% CI.

    `agent`: a built-in name (`direct`, `cot`, `cot-sc`), an object with `run(task_input, model)`,
    or a function of the same shape. `suite`: a `Suite` or a spec for `load_suite` (then `split`,
    `limit` and `seed` select its samples). `model`: a `Model`, a spec, or None for the embedded
    default. `max_tokens` caps every call's completion length. `progress(done, total, record)` is
    called after each sample.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1; got {concurrency}")
    agent_obj, agent_name = get_agent(agent)
    if isinstance(suite, str):
        from agentmeta.eval.suites import load_suite

        suite = load_suite(suite, split=split, limit=limit, seed=seed)
    elif limit is not None:
        from agentmeta.eval.suites import select_samples

        suite = suite.model_copy(update={"samples": select_samples(suite.samples, limit, seed)})
    samples = suite.samples
    if not samples:
        raise DataError(f"suite {suite.name} ({suite.split}) has no samples to evaluate")
    resolved = model if isinstance(model, Model) else get_model(model)
    log.info(
        "evaluating %s on %s (%s, %d samples) with %s, concurrency %d",
        agent_name,
        suite.name,
        suite.split,
        len(samples),
        resolved.spec,
        concurrency,
    )
    records: list[SampleRecord | None] = [None] * len(samples)
    start = time.perf_counter()
    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(samples)), thread_name_prefix="agentmeta-eval"
    ) as pool:
        futures = {
            pool.submit(run_sample, agent_obj, s, suite, resolved, seed, max_tokens): i
            for i, s in enumerate(samples)
        }
        for done, fut in enumerate(as_completed(futures), 1):
            i = futures[fut]
            records[i] = fut.result()
            if progress is not None:
                progress(done, len(samples), records[i])  # type: ignore[arg-type]
    wall = time.perf_counter() - start
    result = summarize(
        [r for r in records if r is not None],
        suite=suite,
        agent=agent_name,
        model=resolved.spec,
        seed=seed,
        wall_s=wall,
        concurrency=concurrency,
    )
    if result.n_errors:
        top, count = next(iter(result.errors.items()))
        log.warning(
            "%s on %s: %d of %d samples failed (most common, %d: %s)",
            agent_name,
            suite.name,
            result.n_errors,
            result.n,
            count,
            top,
        )
    log.info(
        "%s on %s: %.3f [%.3f, %.3f] over %d samples in %.1fs",
        agent_name,
        suite.name,
        result.mean,
        result.ci_low,
        result.ci_high,
        result.n,
        wall,
    )
    return result
