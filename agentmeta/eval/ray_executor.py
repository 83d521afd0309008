"""Evaluation on a Ray cluster: the samples of an evaluation run on a pool of Ray actors.

Each actor holds its own model, built from the model's *spec* on the actor's node (the embedded
model, a vLLM engine, or an OpenAI-compatible client of a `vllm serve` endpoint), and builds the
agent from its spec or name (so a code agent's sandboxes live on that node); it runs up to
`concurrency` samples at once in its threads (so the embedded backend batches them) and returns
their `SampleRecord`s. The driver hands out one sample per Ray task to the least loaded actor, keeps
up to `QUEUED` x `concurrency` in flight per actor (the extra ones wait on the actor, so its threads
never idle for a round trip), and is the only one that writes the archive.

Faults: when an actor or its node dies (`RayActorError`), every sample it had in flight goes back
to the queue and runs again on a live actor, and a replacement actor is started (up to
`max_restarts`); a sample's record is taken from the first task that returns it and never counted
twice. Model calls are seeded from (run seed, sample id), so a rerun sample, and the whole result,
equal a local run with the same seed.

Ray is imported only here, when an executor is made: the core does not need it.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from agentmeta.errors import ConfigError, InfrastructureError, require
from agentmeta.eval.executor import EvalJob, Executor, ProgressFn
from agentmeta.eval.types import SampleRecord, Suite
from agentmeta.models import Model, Provider, Usage, threads

log = logging.getLogger(__name__)

ADDRESS_ENV = "AGENTMETA_RAY_ADDRESS"
"""The Ray cluster `--ray` connects to when given no address (unset: a local Ray instance)."""
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
"""Set before Ray is imported, these pin a single-machine Ray to the loopback interface: with
clusters "disabled" (what Ray does on macOS and Windows) every node and the driver take 127.0.0.1
as their address and Ray's servers listen there only, where `_node_ip_address="127.0.0.1"` alone
is resolved back to the machine's interface address. Usage stats off: nothing is sent out."""
FORWARDED_ENV_PREFIXES = ("AGENTMETA_", "OPENAI_", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
"""Driver environment variables the actors get too (server URL and key, cache settings, offline)."""
ACTOR_THREADS = 256
"""Threads of an actor: the most samples one actor can hold (running or waiting)."""
QUEUED = 2
"""Samples in flight per actor, in units of the job's concurrency: the actor runs `concurrency` at
once and the rest wait there, so a finished sample's thread starts the next one without waiting for
a round trip to the driver."""
LOST_ERRORS = (
    "RayActorError",
    "ActorUnavailableError",
    "ObjectLostError",
    "WorkerCrashedError",
    "NodeDiedError",
)
"""Ray errors meaning the actor (or its node) is gone, not that the sample failed."""


def import_ray(local: bool = False) -> Any:
    """Import Ray (the `ray` extra); `local`: first pin it to the loopback interface (`LOOPBACK_ENV`),
    which only takes effect if Ray was not imported yet."""
    if local:
        for k, v in LOOPBACK_ENV.items():
            os.environ.setdefault(k, v)
    return require("ray", "pip install 'agentmeta[ray]'", "Ray")


def connect(address: str | None = None, **init_kwargs: Any) -> Any:
    """Connect this process to Ray once: to the cluster at `address` (`ray://...`, `host:port` or
    `auto`), else `AGENTMETA_RAY_ADDRESS`, else a new local Ray instance on the loopback interface
    without a dashboard. Returns the `ray` module."""
    address = address or os.environ.get(ADDRESS_ENV) or None
    if address in ("local", ""):
        address = None
    ray = import_ray(local=address is None)
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    kwargs.update(init_kwargs)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a local Ray instance"
        raise InfrastructureError(f"cannot connect to Ray at {where}: {str(e).splitlines()[0]}") from e
    return ray


class _OnActors(Provider):
    """The driver's stand-in for a model that only Ray actors load: its spec, nothing to run."""

    def __init__(self, spec: str) -> None:
        super().__init__()
        self.spec = spec

    def generate_batch(self, requests: Any) -> Any:
        raise ConfigError(
            f"model {self.spec} is loaded on the Ray actors only; evaluate with the RayExecutor"
        )


def remote_model(spec: str | None) -> Model:
    """A `Model` that names `spec` (default: the embedded model) and counts the actors' usage
    without loading anything here: the driver of a Ray evaluation needs no weights or GPU."""
    from agentmeta import config

    spec = (spec or config.DEFAULT_MODEL).strip() or config.DEFAULT_MODEL
    return Model(_OnActors("smollm2" if spec == "default" else spec))


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


@dataclass
class _Context:
    """What an actor needs to run one job's samples (shipped once per job, cached by key)."""

    recipe: Any
    """A name for `get_agent`, an `AgentSpec`, or the agent object itself."""
    suite: Suite
    """The job's suite without its samples (they travel one per task): the scorer."""
    model_spec: str
    model_options: dict[str, Any]
    seed: int
    max_tokens: int | None
    infra_retries: int
    concurrency: int
    """Samples of the job this actor runs at once (more may wait in its queue)."""


class EvalActor:
    """A Ray actor: builds models and agents on its node and runs samples in its threads."""

    def __init__(self, env: dict[str, str]) -> None:
        os.environ.update(env)
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], Any] = {}
        self._jobs: OrderedDict[str, tuple[Any, _Context, Any, threading.Semaphore]] = OrderedDict()

    def info(self) -> dict[str, Any]:
        """Where this actor runs: node id, node address, process id."""
        import ray

        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(), "pid": os.getpid()}

    def _job(self, key: str, boxed: list[Any]) -> tuple[Any, _Context, Any, threading.Semaphore]:
        import ray

        from agentmeta.agents.builtin import get_agent
        from agentmeta.models import get_model

        with self._lock:  # one build per job, whatever the number of threads asking
            if key in self._jobs:
                self._jobs.move_to_end(key)
                return self._jobs[key]
            ctx: _Context = ray.get(boxed[0])
            mkey = (ctx.model_spec, repr(sorted(ctx.model_options.items())))
            if mkey not in self._models:
                self._models[mkey] = get_model(ctx.model_spec, **ctx.model_options)
            recipe = ctx.recipe
            agent = (
                recipe.build()
                if hasattr(recipe, "build") and hasattr(recipe, "kind")
                else get_agent(recipe)[0]
            )
            self._jobs[key] = (agent, ctx, self._models[mkey], threading.Semaphore(ctx.concurrency))
            while len(self._jobs) > 8:
                self._jobs.popitem(last=False)
            return self._jobs[key]

    def run(self, key: str, boxed: list[Any], sample: Any) -> tuple[SampleRecord, dict[str, int]]:
        """Run one sample; returns its record and this actor's running usage of the job's model."""
        from agentmeta.eval.runner import run_sample

        agent, ctx, model, running = self._job(key, boxed)
        with running:  # the driver queues a few more than this, so no thread idles between samples
            record = run_sample(
                agent, sample, ctx.suite, model, ctx.seed, ctx.max_tokens, infra_retries=ctx.infra_retries
            )
        return record, model.usage.model_dump()


@dataclass
class _Slot:
    """One actor of the pool, as the driver sees it."""

    handle: Any
    number: int
    info: dict[str, Any] | None = None
    load: int = 0
    usage: dict[str, dict[str, int]] | None = None
    """The last running usage it reported, per model spec."""


class RayExecutor(Executor):
    """Samples on a pool of Ray actors (see the module docstring).

    `address`: the cluster (default: `AGENTMETA_RAY_ADDRESS`, else a local Ray instance; ignored
    when this process is connected already). `actors`: pool size (default: one per alive node).
    `num_cpus` / `num_gpus`: Ray resources each actor holds (a vLLM actor needs a GPU; torch in
    an actor runs `num_cpus` threads, see `agentmeta.models.threads`). `env`: environment of the
    actors, added to the driver's `AGENTMETA_*`, `OPENAI_*` and offline variables.
    `model_options`: keyword arguments the actors pass to `get_model` with the model's spec (e.g.
    `base_url` of a `vllm serve` endpoint). `max_restarts`: replacement actors started over the
    executor's life when actors die. Actors start on first use and live until `close()`.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        actors: int | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        env: dict[str, str] | None = None,
        model_options: dict[str, Any] | None = None,
        max_restarts: int = 4,
        start_timeout_s: float = 300.0,
    ) -> None:
        if actors is not None and actors < 1:
            raise ConfigError(f"a Ray pool needs at least one actor; got {actors}")
        if max_restarts < 0:
            raise ConfigError(f"max_restarts must be >= 0; got {max_restarts}")
        self.ray = connect(address)
        self.actors = actors
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        # torch in each actor keeps to the CPUs it holds (actors sharing a node do not oversubscribe it)
        self.env = {**_forwarded_env(), **threads.worker_env(int(num_cpus)), **(env or {})}
        self.model_options = dict(model_options or {})
        self.max_restarts = max_restarts
        self.start_timeout_s = start_timeout_s
        self._slots: list[_Slot] = []
        self._starting: dict[Any, _Slot] = {}
        """Replacement actors not ready yet, by the reference of their first answer."""
        self._started = 0
        self._restarts = 0
        self._lock = threading.Lock()
        self.deaths = 0
        """Actors lost so far (their samples were run again elsewhere)."""
        self.resubmitted = 0
        """Samples run again because their actor died."""
        self._actor_cls = self.ray.remote(EvalActor)

    def model_for(self, spec: str | None) -> Model:
        """Only a stand-in (`remote_model`): the actors load the model, the driver needs no weights."""
        return remote_model(spec)

    # -- the pool --------------------------------------------------------------------------------
    def _spawn(self) -> _Slot:
        handle = self._actor_cls.options(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_concurrency=ACTOR_THREADS,
            max_restarts=0,
            scheduling_strategy="SPREAD",
        ).remote(self.env)
        self._started += 1
        return _Slot(handle=handle, number=self._started, usage={})

    def _pool_size(self) -> int:
        if self.actors is not None:
            return self.actors
        return max(1, sum(1 for n in self.ray.nodes() if n.get("Alive")))

    def start(self) -> list[dict[str, Any]]:
        """Start the pool if it is not running; returns where each actor runs."""
        if not self._slots and not self._starting:
            slots = [self._spawn() for _ in range(self._pool_size())]
            try:
                infos = self._get([s.handle.info.remote() for s in slots], "starting the Ray actors")
            except InfrastructureError:
                for slot in slots:
                    self.ray.kill(slot.handle)
                raise
            for slot, info in zip(slots, infos, strict=True):
                slot.info = info
            self._slots = slots
        return [s.info or {} for s in self._slots]

    def _get(self, refs: list[Any], what: str) -> list[Any]:
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=self.start_timeout_s)
        if len(ready) < len(refs):
            raise InfrastructureError(
                f"{what}: not ready after {self.start_timeout_s:.0f} s; the cluster may lack the "
                f"resources asked ({self.num_cpus} CPU, {self.num_gpus} GPU per actor)"
            )
        try:
            return self.ray.get(refs)
        except Exception as e:  # noqa: BLE001 - reported in one line
            raise InfrastructureError(f"{what}: {_one_line(_cause(e))}") from e

    def close(self) -> None:
        for slot in [*self._slots, *self._starting.values()]:
            self.ray.kill(slot.handle)
        self._slots, self._starting = [], {}

    # -- one job -----------------------------------------------------------------------------------
    def _context(self, job: EvalJob) -> _Context:
        recipe = job.recipe if job.recipe is not None else job.agent
        spec = job.model.spec
        if spec == "mock" or not spec:
            raise ConfigError(
                "the model is scripted in this process only (spec 'mock'): a Ray actor builds its model "
                "from the spec; use mock/<module>:<function> or a real model spec"
            )
        if job.recipe is None:
            from ray import cloudpickle

            try:
                cloudpickle.dumps(job.agent)
            except Exception as e:  # noqa: BLE001 - anything pickling raises
                raise ConfigError(
                    f"agent {job.agent_name!r} cannot be sent to Ray actors ({type(e).__name__}); "
                    "pass it by name, agent file or AgentSpec"
                ) from e
        suite = job.suite.model_copy(update={"samples": []})
        return _Context(
            recipe=recipe, suite=suite, model_spec=spec, model_options=self.model_options, seed=job.seed,
            max_tokens=job.max_tokens, infra_retries=job.infra_retries, concurrency=job.concurrency,
        )  # fmt: skip

    def _count_usage(self, job: EvalJob, slot: _Slot, usage: dict[str, int]) -> None:
        """Add what the actor spent on the job's model since its last report to the driver's model."""
        last = (slot.usage or {}).get(job.model.spec, {})
        delta = Usage(**{k: max(0, v - last.get(k, 0)) for k, v in usage.items()})
        if slot.usage is not None:
            slot.usage[job.model.spec] = usage
        job.model.add_usage(delta)

    def _lost(self, slot: _Slot, why: str) -> None:
        """Take a dead actor out of the pool and start a replacement while restarts are left."""
        self.deaths += 1
        self._slots = [s for s in self._slots if s is not slot]
        log.warning("Ray actor %d (%s) lost: %s", slot.number, (slot.info or {}).get("ip", "?"), why)
        self.ray.kill(slot.handle)  # an unreachable one must not keep working on its samples
        if self._restarts < self.max_restarts:
            self._restarts += 1
            new = self._spawn()
            self._starting[new.handle.info.remote()] = new

    def _started_up(self, ref: Any) -> None:
        """A replacement actor answered (or died starting): join it to the pool, or count it lost."""
        slot = self._starting.pop(ref)
        try:
            slot.info = self.ray.get(ref)
        except Exception as e:  # noqa: BLE001 - a replacement that cannot start is one more loss
            self._slots.append(slot)
            self._lost(slot, f"while starting: {type(e).__name__}")
            return
        self._slots.append(slot)

    def run(self, job: EvalJob, progress: ProgressFn | None = None) -> list[SampleRecord]:
        with self._lock:  # one job at a time: the pool's loads and usage reports are per job
            return self._run(job, progress)

    def _run(self, job: EvalJob, progress: ProgressFn | None) -> list[SampleRecord]:
        ray = self.ray
        samples = job.suite.samples
        self.start()
        key = uuid.uuid4().hex
        boxed = [ray.put(self._context(job))]  # in a list: actors fetch it only when not cached
        per_actor = min(QUEUED * job.concurrency, ACTOR_THREADS)
        pending: deque[int] = deque(range(len(samples)))
        inflight: dict[Any, tuple[_Slot, int]] = {}
        records: list[SampleRecord | None] = [None] * len(samples)
        done = 0
        while pending or inflight:
            while pending and self._slots:  # the least loaded actor next, so all share the samples
                slot = min(self._slots, key=lambda s: s.load)
                if slot.load >= per_actor:
                    break
                i = pending.popleft()
                inflight[slot.handle.run.remote(key, boxed, samples[i])] = (slot, i)
                slot.load += 1
            if not inflight and not self._starting:
                raise InfrastructureError(
                    f"every Ray actor died ({self.deaths} lost, {self.max_restarts} restarts allowed); "
                    f"{len(pending)} of {len(samples)} samples not run; run the same command to resume"
                )
            timeout = None if inflight else self.start_timeout_s
            ready, _ = ray.wait([*inflight, *self._starting], num_returns=1, timeout=timeout)
            if not ready:
                raise InfrastructureError(
                    f"no Ray actor able to run samples for {self.start_timeout_s:.0f} s (replacements for "
                    f"{self.deaths} lost actors could not start: the cluster may lack the resources asked)"
                )
            for ref in ready:
                if ref in self._starting:
                    self._started_up(ref)
                    continue
                if ref not in inflight:
                    continue  # its actor was declared lost: the sample was queued again
                slot, i = inflight.pop(ref)
                slot.load -= 1
                try:
                    record, usage = ray.get(ref)
                except Exception as e:
                    if not _is_lost(e):
                        raise _cause(e) from None
                    again = [j for r, (s, j) in inflight.items() if s is slot]
                    for r in [r for r, (s, _) in inflight.items() if s is slot]:
                        del inflight[r]
                    for j in sorted([i, *again], reverse=True):
                        pending.appendleft(j)
                    self.resubmitted += 1 + len(again)
                    self._lost(slot, _one_line(e))
                    continue
                self._count_usage(job, slot, usage)
                if records[i] is None:
                    records[i] = record
                    done += 1
                    if progress is not None:
                        progress(done, len(samples), record)
        return [r for r in records if r is not None]


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _is_lost(e: BaseException) -> bool:
    return any(c.__name__ in LOST_ERRORS for c in type(e).__mro__)


def _cause(e: BaseException) -> BaseException:
    """The exception a remote call raised, unwrapped from Ray's task error."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e
