"""`evaluate`: run an agent on every sample of a suite, concurrently, and score the answers.

Samples run in a thread pool of `concurrency` workers; each worker's model calls go through the
model layer, which batches concurrent requests for the embedded backend.

Every sample ends in one of three outcomes (`SampleRecord.outcome`):

- **scored**: the agent answered and the scorer judged it;
- **agent_error**: the agent (or its sandboxed code, or the scorer) raised, timed out or hit a
  limit: the sample scores 0 and keeps the reason;
- **infra_error**: the machinery failed (a model call that failed after the provider's retries or
  stalled, a sandbox that could not start, a sandbox worker killed from outside its job): the sample is run again (`infra_retries`), and if it still fails
  it is *not* scored: it is left out of the mean, counted in `n_infra` and shown. A result with
  more than `max_infra_share` of its samples lost is `incomplete` and a search never selects on it.
  A sandbox worker killed on every attempt of the same seeded sample is counted as the agent's
  error: the job replays identically, so the kill is its own.

Reproducibility: every model call an agent makes without a seed of its own gets one derived from
the run seed, the sample id and the call's index among the sample's identical calls (see
`SampleModel`), so a seeded evaluation replays identically and every call is cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agentmeta.agents.base import Agent
from agentmeta.agents.builtin import get_agent
from agentmeta.errors import ConfigError, DataError, InfrastructureError, SandboxUnavailableError
from agentmeta.eval.types import EvalResult, Outcome, Sample, SampleRecord, Score, Suite
from agentmeta.models import GenerateRequest, GenerateResponse, Model, Usage, get_model

if TYPE_CHECKING:
    from agentmeta.eval.executor import Executor

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, SampleRecord], None]

INFRA_RETRIES = 2
"""Default extra attempts for a sample that failed by an infrastructure error."""
MAX_INFRA_SHARE = 0.1
"""Default share of samples that may be lost to infrastructure errors before a result is incomplete."""


def derive_seed(run_seed: int, sample_id: str, call_key: str, index: int) -> int:
    """The seed of one model call: a hash of the run seed, the sample, what the call asks and how
    many identical calls the sample made before it. 31 bits, so every backend accepts it."""
    blob = "\x1f".join((str(run_seed), sample_id, call_key, str(index)))
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:4], "big") & 0x7FFFFFFF


class SampleModel:
    """The model handle an agent gets for one sample.

    It forwards to the shared `Model` (so calls are batched and cached as usual), counts this
    sample's calls and tokens (a call the cache served counts the tokens it cost when it ran: the
    record says what the agent costs, whatever was cached; `Model.usage` says what was spent), and
    caps `max_tokens` when the run has a cap. A call without a seed of its own gets `derive_seed(run seed, sample id, the request's content, k)` where k counts
    the sample's earlier calls with the same content: Self-Consistency's five identical calls get
    five different seeds, the same five every run, whatever order threads issue them in. It also
    notes any infrastructure error a call raised (even if the agent catches it), so the sample is
    attributed to the infrastructure, not the agent.
    """

    def __init__(
        self,
        model: Model,
        seed: int | None = None,
        max_tokens: int | None = None,
        sample_id: str = "",
    ) -> None:
        self.model = model
        self.spec = model.spec
        self.seed = seed
        self.sample_id = sample_id
        self.max_tokens = max_tokens
        self.usage = Usage()
        self.by_model: dict[str, Usage] = {}
        """Usage per model spec, when the agent's calls went to more than the run's model."""
        self.infra_error: str | None = None
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._views: dict[str, SampleModel] = {}
        self._parent: SampleModel | None = None

    def __repr__(self) -> str:
        return f"SampleModel({self.spec!r})"

    def _prepare(self, prompt: Any, kwargs: dict[str, Any]) -> GenerateRequest:
        request = Model._request(prompt, kwargs)
        cap = self.max_tokens
        if cap is not None and request.max_tokens > cap:
            request = request.model_copy(update={"max_tokens": cap})
        if request.seed is None and self.seed is not None:
            content = request.model_dump(mode="json", exclude={"seed"})
            key = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
            with self._lock:
                index = self._counts[key]
                self._counts[key] += 1
            request = request.model_copy(update={"seed": derive_seed(self.seed, self.sample_id, key, index)})
        return request

    def with_model(self, spec: str) -> SampleModel:
        """This sample's handle on another model (a graph node's own `model`): the same seeding
        and token cap, its calls added to this handle's usage and counted in `by_model`; `get_model` shares
        the loaded model per spec in the process."""
        with self._lock:
            view = self._views.get(spec)
            if view is None:
                view = SampleModel(get_model(spec), self.seed, self.max_tokens, self.sample_id)
                view.usage, view.by_model, view._counts = self.usage, self.by_model, self._counts
                view._lock, view._views = self._lock, self._views
                view._parent = self
                self._views[spec] = view
            return view

    def _count(self, resp: GenerateResponse) -> None:
        with self._lock:
            self.usage.add(resp, count_cached=True)
            self.by_model.setdefault(self.spec, Usage()).add(resp, count_cached=True)

    def _note(self, e: BaseException) -> None:
        owner = self._parent or self
        if isinstance(e, InfrastructureError) and owner.infra_error is None:
            owner.infra_error = _error_text(e)

    def generate(self, prompt: Any, **kwargs: Any) -> GenerateResponse:
        request = self._prepare(prompt, kwargs)
        try:
            resp = self.model.generate(request)
        except Exception as e:
            self._note(e)
            raise
        self._count(resp)
        return resp

    async def agenerate(self, prompt: Any, **kwargs: Any) -> GenerateResponse:
        request = self._prepare(prompt, kwargs)
        try:
            resp = await self.model.agenerate(request)
        except Exception as e:
            self._note(e)
            raise
        self._count(resp)
        return resp

    def generate_many(self, prompts: Sequence[Any], **kwargs: Any) -> list[GenerateResponse]:
        requests = [self._prepare(p, dict(kwargs)) for p in prompts]
        try:
            resps = self.model.generate_many(requests)
        except Exception as e:
            self._note(e)
            raise
        for r in resps:
            self._count(r)
        return resps


def _error_text(e: BaseException, where: str = "") -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{where}{type(e).__name__}: {msg}" if msg else f"{where}{type(e).__name__}"


def _run_once(
    agent: Agent, sample: Sample, suite: Suite, model: Model, seed: int, max_tokens: int | None
) -> SampleRecord:
    handle = SampleModel(model, seed=seed, max_tokens=max_tokens, sample_id=sample.id)
    start = time.perf_counter()
    answer: str | None = None
    score: Score | None = None
    error: str | None = None
    outcome: Outcome = "scored"
    try:
        out = agent.run(sample.input, handle)
        if not isinstance(out, str):
            raise TypeError(f"agent returned {type(out).__name__}, expected str")
        answer = out
    except SandboxUnavailableError:
        raise  # a setup problem (no isolation, no opt-in): stop the run, blame no sample
    except InfrastructureError as e:
        error, outcome = _error_text(e), "infra_error"
    except Exception as e:  # noqa: BLE001 - recorded on the sample, counted in the result
        error, outcome = _error_text(e), "agent_error"
        log.debug("sample %s: agent failed", sample.id, exc_info=True)
    if handle.infra_error is not None:  # a model call failed, even if the agent carried on
        error, outcome, answer = handle.infra_error, "infra_error", None
    if answer is not None:
        try:
            score = suite.score(answer, sample)
        except SandboxUnavailableError:
            raise
        except InfrastructureError as e:
            error, outcome = _error_text(e, "scorer: "), "infra_error"
        except Exception as e:  # noqa: BLE001
            error, outcome = _error_text(e, "scorer: "), "agent_error"
            log.debug("sample %s: scorer failed", sample.id, exc_info=True)
    return SampleRecord(
        id=sample.id,
        answer=answer,
        target=sample.target,
        score=score.value if score is not None and error is None else 0.0,
        explanation=score.explanation if score is not None else "",
        error=error,
        outcome=outcome,
        prompt_tokens=handle.usage.prompt_tokens,
        completion_tokens=handle.usage.completion_tokens,
        calls=handle.usage.calls,
        latency_s=time.perf_counter() - start,
        tokens_by_model=(
            {spec: u.prompt_tokens + u.completion_tokens for spec, u in handle.by_model.items()}
            if len(handle.by_model) > 1
            else {}
        ),
    )


def run_sample(
    agent: Agent,
    sample: Sample,
    suite: Suite,
    model: Model,
    seed: int,
    max_tokens: int | None = None,
    *,
    infra_retries: int = INFRA_RETRIES,
    retry_wait_s: float = 1.0,
) -> SampleRecord:
    """Run the agent on one sample and score its answer; any exception becomes the record's error.

    An infrastructure error is retried up to `infra_retries` times (waiting `retry_wait_s`,
    doubling); the calls that did succeed come back from the call cache. Tokens of every attempt
    are counted.
    """
    record = _run_once(agent, sample, suite, model, seed, max_tokens)
    spent = (record.prompt_tokens, record.completion_tokens, record.calls)
    attempt = 1
    killed = _killed(record)
    while record.outcome == "infra_error" and attempt <= infra_retries:
        log.warning(
            "sample %s: infrastructure error (%s); attempt %d of %d",
            sample.id, record.error, attempt + 1, infra_retries + 1,
        )  # fmt: skip
        time.sleep(retry_wait_s * 2 ** (attempt - 1))
        record = _run_once(agent, sample, suite, model, seed, max_tokens)
        spent = (
            spent[0] + record.prompt_tokens,
            spent[1] + record.completion_tokens,
            spent[2] + record.calls,
        )
        attempt += 1
        killed = killed and _killed(record)
    if killed and attempt > 1:
        # A seeded sample replays the same job: a worker killed on every attempt killed itself.
        record = record.model_copy(
            update={
                "outcome": "agent_error",
                "error": f"{record.error} (on each of {attempt} attempts: counted as the agent's)",
            }
        )
    return record.model_copy(
        update={
            "attempts": attempt,
            "prompt_tokens": spent[0],
            "completion_tokens": spent[1],
            "calls": spent[2],
        }
    )


def _killed(record: SampleRecord) -> bool:
    return record.outcome == "infra_error" and (record.error or "").startswith("WorkerKilledError")


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
    max_infra_share: float = MAX_INFRA_SHARE,
) -> EvalResult:
    """Aggregate per-sample records into an `EvalResult`: the mean and its seeded 95% CI over the
    samples that count (infrastructure errors left out and counted), error counts, usage."""
    if not records:
        raise DataError(f"suite {suite.name} ({suite.split}) has no samples to evaluate")
    from agentmeta.eval.stats import mean_ci  # numpy loads on first use, not on import

    counted = [r for r in records if r.outcome != "infra_error"]
    n_infra = len(records) - len(counted)
    if counted:
        ci = mean_ci([r.score for r in counted], seed=seed)
        mean, low, high = ci.mean, ci.low, ci.high
    else:  # nothing scored: no information about the agent at all
        mean, low, high = 0.0, 0.0, 1.0
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
        mean=mean,
        ci_low=low,
        ci_high=high,
        n=len(counted),
        n_hits=sum(r.score >= 1.0 for r in counted),
        n_errors=sum(r.outcome == "agent_error" for r in records),
        n_infra=n_infra,
        incomplete=not counted or n_infra > max_infra_share * len(records),
        errors=dict(errors.most_common()),
        dropped=dict(suite.dropped),
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
    infra_retries: int = INFRA_RETRIES,
    max_infra_share: float = MAX_INFRA_SHARE,
    executor: Executor | None = None,
) -> EvalResult:
    """Evaluate `agent` on `suite` and return per-sample records plus the mean and its 95% CI.

    `agent`: a registered agent's name (built-in: `direct`, `cot`, `cot-sc`), a seed name
    (`graph/self_refine`), an agent file, an object with `run(task_input, model)`, or a function
    of the same shape. `suite`: a `Suite` or a spec for `load_suite` (then `split`,
    `limit` and `seed` select its samples). `model`: a `Model`, a spec, or None for the embedded
    default. `max_tokens` caps every call's completion length. `progress(done, total, record)` is
    called after each sample. A sample lost to an infrastructure error is retried `infra_retries`
    times, then left out of the mean and counted (`n_infra`); past `max_infra_share` of the samples
    the result is marked `incomplete`. `executor`: where the samples run (default: a thread pool of
    `concurrency` workers here; `RayExecutor`: actors across a Ray cluster, `concurrency` each).
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
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise DataError(
                f"suite {suite.name}: sample id {s.id!r} appears twice; sample ids must be unique"
            )
        seen.add(s.id)
    if isinstance(model, Model):
        resolved = model
    elif executor is not None and (model is None or isinstance(model, str)):
        resolved = executor.model_for(model)  # a Ray run loads the model on its actors only
    else:
        resolved = get_model(model)
    log.info(
        "evaluating %s on %s (%s, %d samples) with %s, concurrency %d",
        agent_name,
        suite.name,
        suite.split,
        len(samples),
        resolved.spec,
        concurrency,
    )
    from agentmeta.eval.executor import EvalJob, LocalExecutor, agent_recipe

    job = EvalJob(
        agent=agent_obj,
        agent_name=agent_name,
        recipe=agent_recipe(agent),
        suite=suite,
        model=resolved,
        seed=seed,
        max_tokens=max_tokens,
        infra_retries=infra_retries,
        concurrency=concurrency,
    )
    start = time.perf_counter()
    records = (executor or LocalExecutor()).run(job, progress)
    wall = time.perf_counter() - start
    result = summarize(
        records,
        suite=suite,
        agent=agent_name,
        model=resolved.spec,
        seed=seed,
        wall_s=wall,
        concurrency=concurrency,
        max_infra_share=max_infra_share,
    )
    if result.n_infra:
        log.warning(
            "%s on %s: %d of %d samples lost to infrastructure errors after retries (not scored%s)",
            agent_name,
            suite.name,
            result.n_infra,
            len(result.records),
            "; the result is incomplete" if result.incomplete else "",
        )
    if result.n_errors:
        top, count = next(iter(result.errors.items()))
        log.warning(
            "%s on %s: %d of %d samples failed (scored 0; most common, %d: %s)",
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
