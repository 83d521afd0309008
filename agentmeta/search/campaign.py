"""The campaign runner: select -> propose -> validate -> evaluate -> archive, with budgets and resume,
then a confirmation on held-out test samples (`agentmeta.search.confirm`).

Resume: every candidate has a deterministic key (campaign id + seed name or iteration), the
archive adds a key once, and evaluations are stored per (candidate, suite, split, stage). A
re-run of the same campaign skips what is stored, re-proposes only the iteration in flight
(its seeded meta-agent calls come back from the call cache), and never evaluates twice (the
confirmation included).

Honest selection: scores are compared on the same samples only. The leaderboard and `best` rank
full-stage scores (a subset-only candidate never outranks a fully evaluated one); promotion from
the subset stage compares the child with its parent on the same subset samples. The test split
is loaded by the confirmation only, after the search: no model sees a test sample before it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from agentmeta.agents.base import AgentSpec
from agentmeta.errors import ConfigError, InfrastructureError, InvalidAgentError
from agentmeta.eval.executor import Executor
from agentmeta.eval.types import EvalResult, Suite
from agentmeta.models import Model, get_model
from agentmeta.search.config import (  # noqa: F401 - re-exported: the campaign's settings live there
    ADDED_LATER,
    NOT_IDENTITY,
    TRAIN_SHOWN,
    SearchConfig,
    campaign_seeds,
    data_digest,
    load_campaign_data,
)
from agentmeta.search.looks import check_earlier_looks
from agentmeta.search.parallel import run_round
from agentmeta.search.promotion import PromotionRules
from agentmeta.search.racing import race
from agentmeta.search.results import CampaignResult, full_stage_board
from agentmeta.search.strategies import get_strategy
from agentmeta.search.strategy import NoNewCandidateError, Proposal, ProposalContext, Strategy

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]


class Campaign(PromotionRules):
    def __init__(
        self,
        config: SearchConfig,
        archive: Any,
        *,
        model: Model | None = None,
        meta_model: Model | None = None,
        strategy: Strategy | None = None,
        progress: ProgressFn | None = None,
        suite: Suite | None = None,
        executor: Executor | None = None,
    ) -> None:
        """`suite`: a `Suite` object to search on instead of loading `config.suite` (its samples are
        the validation samples; `config.suite` names it). The proposer then sees no train example,
        and there is no test split to confirm on. `executor`: where candidates' samples run (default:
        this process; a `RayExecutor`: actors across a cluster). Proposals, selection and every
        archive write stay here, in this process."""
        self.config = config
        self.executor = executor
        self.archive = archive
        self.model = model or get_model(config.model)
        self.meta_model = meta_model or (
            self.model if config.meta_model in (None, config.model) else get_model(config.meta_model)
        )
        self.strategy = strategy if strategy is not None else get_strategy(config.strategy, config)
        self.progress = progress or (lambda event: None)
        self.name = config.campaign_name()
        config.seed_specs()  # an unknown seed fails before any work
        self.suite_object = suite is not None
        """True when searching a `Suite` object: it has no test split, so nothing to confirm on."""
        full, self.train_suite = load_campaign_data(config, suite)
        self.full_suite = full
        self.subset_suite = full.model_copy(update={"samples": full.samples[: config.subset]})
        identity = {**config.identity(), "data": data_digest(self.full_suite, self.train_suite)}
        self.record = archive.start_campaign(self.name, identity)
        self.result = CampaignResult(
            campaign=self.name, archive=str(getattr(archive, "location", archive)), stop_reason=""
        )
        self._start = time.monotonic()
        self.pending: set[str] = set()
        """Candidates of the round being evaluated together (`agentmeta.search.parallel`)."""
        self._tokens0 = self._tokens()
        state = self.record.state or {}
        self._spent_tokens0 = int(state.get("spent_tokens", 0))
        self._spent_wall0 = float(state.get("spent_wall_s", 0.0))

    # -- helpers -------------------------------------------------------------------------
    def _tokens(self) -> int:
        t = self.model.usage.total_tokens
        if self.meta_model is not self.model:
            t += self.meta_model.usage.total_tokens
        return t

    def _candidates(self) -> list[Any]:
        return self.archive.candidates(campaign=self.record.id)

    def _task_description(self) -> str:
        if not self.train_suite.samples:
            return f"Benchmark suite `{self.config.suite}`."
        example = self.train_suite.samples[0]  # a train item: validation/test targets are never shown
        return (
            f"Benchmark suite `{self.config.suite}`. An example task:\n{example.input}\n"
            f"Its expected answer: {example.target}"
        )

    def _key(self, suffix: str) -> str:
        return f"{self.record.id}:{suffix}"

    def spent_tokens(self) -> int:
        """Tokens this campaign has spent, over every run of it (resumes included)."""
        return self._spent_tokens0 + self._tokens() - self._tokens0

    def spent_wall_s(self) -> float:
        """Wall time this campaign has run, over every run of it (resumes included)."""
        return self._spent_wall0 + time.monotonic() - self._start

    def _save_spend(self) -> None:
        """Persist what was spent so far, so the budgets hold across a kill and a resume."""
        self.archive.update_campaign(
            self.record.id,
            state={"spent_tokens": self.spent_tokens(), "spent_wall_s": round(self.spent_wall_s(), 3)},
        )

    def _budget_left(self) -> str | None:
        if self.config.max_wall_s is not None and self.spent_wall_s() >= self.config.max_wall_s:
            return "wall-clock budget"
        if self.config.max_tokens is not None and self.spent_tokens() >= self.config.max_tokens:
            return "token budget"
        return None

    def _check_complete(self, res: EvalResult, cid: str, stage: str) -> None:
        """Stop the campaign (it resumes later) rather than select on a result the infrastructure spoiled."""
        if not res.incomplete:
            return
        self._save_spend()
        infra = [r.error for r in res.records if r.outcome == "infra_error"]
        raise InfrastructureError(
            f"infrastructure failures while evaluating candidate {cid} ({stage} stage): {res.n_infra} of "
            f"{len(res.records)} samples lost after retries (e.g. {infra[0] if infra else 'unknown'}); "
            "nothing was recorded for it; fix the model server or sandbox and run the same command to resume"
        )

    # -- evaluation ------------------------------------------------------------------------
    def _evaluate_stage(
        self, cid: str, agent: Any, stage: str, primary: bool | None = None, known: EvalResult | None = None,
        samples: int | None = None,
    ) -> Any:  # fmt: skip
        """Evaluate (or skip, if stored) one stage; returns the stored evaluation or the new result.

        The subset is the full stage's first samples; `samples` makes a stage of the full stage's
        first `samples` (a racing rung). `known`: an `EvalResult` already run on the first samples
        of this stage (the validation dry run, the subset stage, a rung, or a seed's full stage);
        its records are reused and only the stage's remaining samples are run.
        """
        from agentmeta.eval import evaluate
        from agentmeta.eval.runner import summarize

        suite = self.subset_suite if stage == "subset" else self.full_suite
        if samples is not None:
            suite = self.full_suite.model_copy(update={"samples": self.full_suite.samples[:samples]})
        existing = self.archive.get_evaluation(cid, self.config.suite, "validation", stage)
        if existing is not None:
            self.result.skipped.append(f"{stage}:{cid}")
            return existing
        reused = list(known.records[: len(suite.samples)]) if known is not None else []
        rest = suite.samples[len(reused) :]
        ran = None
        if rest:
            ran = evaluate(
                agent,
                suite.model_copy(update={"samples": rest}),
                model=self.model,
                concurrency=self.config.concurrency,
                seed=self.config.seed,
                executor=self.executor,
            )
        if not reused:
            res = ran
        else:
            # wall time: the reused run counts only if it was this stage's own first part
            reused_wall = known.wall_s if len(reused) == len(known.records) else 0.0
            res = summarize(
                reused + (ran.records if ran else []),
                suite=suite,
                agent=known.agent,
                model=self.model.spec,
                seed=self.config.seed,
                wall_s=reused_wall + (ran.wall_s if ran else 0.0),
                concurrency=self.config.concurrency,
            )
        self._check_complete(res, cid, stage)
        self.archive.record_result(cid, res, stage=stage, suite=self.config.suite, primary=primary)
        self._save_spend()
        self.result.evaluated.append(f"{stage}:{cid}")
        errors = res.n_errors
        self.progress(
            {
                "event": "evaluated",
                "id": cid,
                "stage": stage,
                "mean": res.mean,
                "ci_low": res.ci_low,
                "ci_high": res.ci_high,
                "n": res.n,
                "errors": errors,
                "infra": getattr(res, "n_infra", 0),
                "error_summary": dict(list(res.errors.items())[:2]),
            }
        )
        if res.n and errors == res.n:
            first = next(iter(res.errors), "every sample failed")
            self.archive.update_status(cid, "error", f"every sample failed: {first}")
        return res

    def evaluate_candidate(self, cid: str, agent: Any, dry_run: EvalResult | None = None) -> None:
        """Subset stage (reusing the validation dry run), then the full stage if promoted (`promotion`)."""
        sub = self._evaluate_stage(cid, agent, "subset", known=dry_run)
        cand = self.archive.get(cid, with_evaluations=False)
        if cand.status == "error":
            return
        decision = self.promotion(cid, sub, cand.parent_ids)
        if cand.metadata.get("promotion") != decision:
            self.archive.update_metadata(cid, promotion=decision)
        if decision["promote"]:
            known = race(self, cid, agent, sub if isinstance(sub, EvalResult) else None)
            if known is not False:
                self._evaluate_stage(
                    cid, agent, "full", known=known if isinstance(known, EvalResult) else None
                )
        else:
            self.progress({"event": "not_promoted", "id": cid, **decision})

    def evaluate_seed(self, cid: str, agent: Any) -> None:
        """Seeds are baselines: full stage first (one pass, better batched); the subset stage is
        its first samples' records (stored as a non-primary evaluation: the fitness stays the full's)."""
        full = self._evaluate_stage(cid, agent, "full")
        if self.archive.get(cid, with_evaluations=False).status == "error":
            return
        known = full if isinstance(full, EvalResult) else None
        self._evaluate_stage(cid, agent, "subset", primary=False, known=known)

    # -- the loop ------------------------------------------------------------------------
    def _add(
        self,
        spec: AgentSpec,
        key: str,
        parents: list[str],
        generation: int,
        metadata: dict[str, Any],
        status: str = "pending",
        error: str | None = None,
    ) -> str:
        from agentmeta.archive import Candidate

        cand = Candidate(
            key=self._key(key),
            kind=spec.kind,
            name=spec.name,
            thought=spec.thought,
            source=spec.source,
            parent_ids=parents,
            generation=generation,
            campaign=self.record.id,
            model_specs={"task": self.model.spec, "meta": self.meta_model.spec},
            status=status,
            error=error,
            metadata=metadata,
        )  # type: ignore[arg-type]
        cid = self.archive.add(cand)
        return cid

    def _existing(self, key: str) -> Any:
        full_key = self._key(key)
        for c in self._candidates():
            if c.key == full_key:
                return c
        return None

    def run_seeds(self) -> None:
        for spec in self.config.seed_specs():
            key = "seed:" + spec.name
            found = self._existing(key)
            cid = found.id if found else self._add(spec, key, [], 0, {"seed": True})
            if found is None:
                self.result.new_candidates.append(cid)
            cand = self.archive.get(cid, with_evaluations=False)
            if cand.status in ("invalid", "error"):
                continue
            self.progress({"event": "seed", "id": cid, "name": spec.name})
            self.evaluate_seed(cid, spec.build())

    def _validate(self, spec: AgentSpec) -> tuple[Any, str | None, EvalResult | None]:
        """Build and dry-run on the subset: returns (agent, error or None, the dry run's result).

        The candidate fails validation if every subset sample raises. The dry run is the subset
        stage's evaluation (same samples, seed and concurrency): a valid candidate's subset stage
        records it instead of running again.
        """
        from agentmeta.eval import evaluate

        try:
            agent = spec.build()
        except InvalidAgentError as e:
            return None, f"invalid: {e}", None
        res = evaluate(
            agent,
            self.subset_suite,
            model=self.model,
            concurrency=self.config.concurrency,
            seed=self.config.seed,
            executor=self.executor,
        )
        self._check_complete(res, "(proposal)", "validation dry run")
        errors = [r.error for r in res.records if r.outcome == "agent_error"]
        if res.records and len(errors) == len(res.records):
            return None, f"error: {errors[0]}", None
        return agent, None, res

    def _context(self, i: int) -> ProposalContext:
        """What the strategy sees for iteration `i`: the task (train items only), this campaign's
        candidates (oldest first; each carries `fitness_stage`: a `subset` fitness is not comparable
        with a `full` one), the meta-model. Never a validation target, never a test sample."""
        return ProposalContext(
            archive=self.archive,
            campaign=self.record.id,
            kind=self.config.kind,
            task_description=self._task_description(),
            iteration=i,
            seed=self.config.seed,
            meta_model=self.meta_model,
            candidates=self._candidates(),
            train_samples=list(self.train_suite.samples),
            suite=self.config.suite,
            objective=self.config.objective,
            models=list(self.config.models),
            task_model=self.model.spec,
            evaluate=self.evaluate_train,
            trace=self.trace_train,
            demos=self.config.demos,
            adaptive=self.config.adaptive,
            meta_prompt=self.config.meta_prompt,
        )

    def _train_only(self, samples: list[Any]) -> None:
        train = {s.id: s for s in self.train_suite.samples}
        outside = [s.id for s in samples if s.id not in train or train[s.id].target != s.target]
        if outside:
            raise ConfigError(
                f"a strategy may run candidates on train samples only; {len(outside)} given are not in the "
                f"campaign's train split (e.g. {outside[0]!r})"
            )

    def trace_train(self, spec: AgentSpec, sample: Any) -> dict[str, Any]:
        """A graph candidate's node outputs on one train sample (`ProposalContext.trace`): the calls
        are seeded as in `evaluate_train`, so with the call cache on they replay its run."""
        from agentmeta.eval.runner import SampleModel

        self._train_only([sample])
        agent = spec.build()
        if not hasattr(agent, "trace"):
            raise ConfigError(f"candidates of kind {spec.kind} have no node outputs to trace")
        handle = SampleModel(self.model, seed=self.config.seed, sample_id=sample.id)
        return agent.trace(sample.input, handle)[1]

    def evaluate_train(self, spec: AgentSpec, samples: Any) -> EvalResult:
        """Run `spec` on `samples` of the train split (`ProposalContext.evaluate`): the campaign's task
        model, seed and concurrency. Samples from outside the train split are refused; a run the
        infrastructure spoiled stops the campaign (as a validation stage would)."""
        from agentmeta.eval import evaluate

        samples = list(samples)
        self._train_only(samples)
        res = evaluate(
            spec.build(),
            self.train_suite.model_copy(update={"samples": samples}),
            model=self.model,
            concurrency=self.config.concurrency,
            seed=self.config.seed,
            executor=self.executor,
        )
        self._check_complete(res, "(proposal)", "train minibatch")
        return res

    def run_iteration(self, i: int) -> None:
        """Propose (or resume) iteration `i`'s candidate and evaluate it."""
        pending = self.prepare_iteration(i)
        if pending is not None:
            self.evaluate_candidate(*pending)

    def prepare_iteration(self, i: int) -> tuple[str, Any, EvalResult | None] | None:
        """Iteration `i` up to its evaluation: the candidate proposed, validated and archived (or
        found in the archive on resume); `(id, agent, dry run)` to evaluate, None when there is
        nothing to evaluate (invalid, failed, or already done)."""
        key = f"iter:{i}"
        found = self._existing(key)
        if found is not None:
            if found.status in ("invalid", "error"):
                self.result.skipped.append(f"iter:{found.id}")
                return None
            spec = AgentSpec(kind=found.kind, name=found.name, thought=found.thought, source=found.source)
            self.progress({"event": "resume", "iteration": i, "id": found.id, "name": found.name})
            return found.id, spec.build(), None
        ctx = self._context(i)
        self.progress({"event": "propose", "iteration": i})
        proposal: Proposal | None
        error: str | None
        no_candidate = False
        try:
            proposal = self.strategy.propose(ctx)
            self.progress(
                {
                    "event": "proposed",
                    "iteration": i,
                    "name": proposal.spec.name,
                    "tokens": proposal.usage.total_tokens,
                }
            )
            agent, error, dry_run = self._validate(proposal.spec)
        except NoNewCandidateError as e:
            proposal, agent, error, dry_run, no_candidate = None, None, f"invalid: {e}", None, True
        except InvalidAgentError as e:
            proposal, agent, error, dry_run = None, None, f"invalid: {e}", None
        debug_rounds = 0
        while error is not None and proposal is not None and debug_rounds < self.config.debug_rounds:
            debug_rounds += 1
            self.progress({"event": "debug", "iteration": i, "round": debug_rounds, "error": error[:200]})
            try:
                fixed = self.strategy.debug(ctx, proposal, error, debug_rounds)
            except InvalidAgentError as e:
                error = f"invalid: {e}"
                continue
            if fixed is None:
                break
            proposal = fixed
            agent, error, dry_run = self._validate(proposal.spec)
        meta = {"iteration": i, "debug_rounds": debug_rounds}
        if proposal is None:
            label = "no-proposal" if no_candidate else "unparseable"
            spec = AgentSpec(kind=self.config.kind, name=f"{label}-{i}", source="")
            cid = self._add(spec, key, [], 1, meta, status="invalid", error=error)
            self.result.new_candidates.append(cid)
            self.progress({"event": "invalid", "iteration": i, "id": cid, "error": error})
            return None
        meta["proposal_tokens"] = proposal.usage.total_tokens
        if isinstance(proposal.raw.get("params"), dict):  # a strategy's declared design-space point
            meta["params"] = proposal.raw["params"]
        generation = 1 + max((c.generation for c in ctx.candidates if c.id in proposal.parent_ids), default=0)
        if error is not None:
            status = "invalid" if error.startswith("invalid") else "error"
            cid = self._add(
                proposal.spec, key, proposal.parent_ids, generation, meta, status=status, error=error
            )
            self.result.new_candidates.append(cid)
            self.progress(
                {"event": status, "iteration": i, "id": cid, "name": proposal.spec.name, "error": error}
            )
            return None
        cid = self._add(proposal.spec, key, proposal.parent_ids, generation, meta)
        self.result.new_candidates.append(cid)
        self.progress(
            {
                "event": "candidate",
                "iteration": i,
                "id": cid,
                "name": proposal.spec.name,
                "parents": proposal.parent_ids,
            }
        )
        return cid, agent, dry_run

    def best(self) -> Any:
        """The best candidate by validation: the best full-stage score (`full_stage_board`; a
        subset-only score is never compared with full-stage ones), or None. While a round of
        candidates is evaluated together, its candidates are left out (`pending`)."""
        board = full_stage_board(self.archive, self.record.id, self.config.suite)
        board = [c for c in board if c.id not in self.pending]
        return board[0] if board else None

    def confirm(self) -> Any:
        """The confirmation on held-out test samples (`agentmeta.search.confirm.confirm`), stored
        in the archive; what is stored already is reused, never evaluated again."""
        from agentmeta.search.confirm import confirm

        return confirm(
            self.archive, self, test_limit=self.config.confirm_limit, model=self.model,
            seed=self.config.seed, concurrency=self.config.concurrency, progress=self.progress,
            margin=self.config.confirm_margin,
        )  # fmt: skip

    def run(self) -> CampaignResult:
        settings = {
            "model": self.model.spec, "seed": self.config.seed, "limit": self.config.confirm_limit,
            "margin": self.config.confirm_margin,
        }  # fmt: skip
        check_earlier_looks(
            self.archive, self.record.id, settings if self.config.confirm else None, self.progress
        )
        # the resolved settings of this run: `agentmeta archive config` writes them for `search --config`
        self.archive.update_campaign(
            self.record.id, status="running", state={"config": self.config.model_dump(mode="json")}
        )
        try:
            self.run_seeds()
            stop = "iterations done"
            step = self.config.parallel
            for start in range(0, self.config.iterations, step):
                reason = self._budget_left()
                if reason is not None:
                    stop = reason
                    break
                if step == 1:
                    self.run_iteration(start)
                else:
                    run_round(self, range(start, min(start + step, self.config.iterations)))
                done = min(start + step, self.config.iterations)
                self.archive.update_campaign(self.record.id, state={"iterations_done": done})
                self._save_spend()
            self.result.best = self.best()
            self.result.search_tokens = self.spent_tokens()
            if self.config.confirm:  # after the search: nothing above ever saw a test sample
                self.result.confirmation = self.confirm()
                self._save_spend()
        except BaseException:
            with contextlib.suppress(Exception):  # the archive may be what failed
                self._save_spend()
            self.archive.update_campaign(self.record.id, status="stopped")
            raise
        self.archive.update_campaign(self.record.id, status="done")
        self.result.stop_reason = stop
        self.result.tokens = self._tokens() - self._tokens0
        self._save_spend()
        self.result.wall_s = time.monotonic() - self._start
        return self.result


def search(
    suite: str | Suite,
    *,
    archive: Any = None,
    progress: ProgressFn | None = None,
    model: Model | str | None = None,
    meta_model: Model | str | None = None,
    strategy: str | Strategy = "meta-agent",
    executor: Executor | None = None,
    **settings: Any,
) -> CampaignResult:
    """Run (or resume) a search campaign and return its result.

    `suite`: a spec (`gsm8k`, `rg/countdown`, `data.jsonl`, `my-suite.yaml`) or a `Suite` object
    (its validation samples). `strategy`: a registered name or a `Strategy` object. `executor`:
    where the samples run (see `Campaign`). Other settings: see `SearchConfig`.
    """
    from agentmeta.archive import Archive

    m = model if isinstance(model, Model) else None
    mm = meta_model if isinstance(meta_model, Model) else None
    suite_obj = suite if isinstance(suite, Suite) else None
    strategy_obj = None if isinstance(strategy, str) else strategy
    config = SearchConfig(
        suite=suite_obj.name if suite_obj is not None else str(suite),
        model=model if isinstance(model, str) else (m.spec if m else None),
        meta_model=meta_model if isinstance(meta_model, str) else (mm.spec if mm else None),
        strategy=strategy
        if isinstance(strategy, str)
        else str(getattr(strategy, "name", type(strategy).__name__)),
        **settings,
    )
    arch = (
        archive
        if archive is not None and not isinstance(archive, str)
        else Archive(archive or "agentmeta-archive.db")
    )
    return Campaign(
        config,
        arch,
        model=m,
        meta_model=mm,
        progress=progress,
        strategy=strategy_obj,
        suite=suite_obj,
        executor=executor,
    ).run()
