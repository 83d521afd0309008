"""Confirmation on held-out data: does the search's best candidate beat the best seed on test samples
that no selection ever looked at?

`confirm(archive, campaign)` evaluates, on the SAME test samples (`load_suite(suite, split="test",
limit=test_limit, seed=seed)`; the whole test split if it is smaller):

- the best candidate by validation (the campaign's best full-stage score),
- the best seed by validation (the baseline),
- every other candidate on the score x tokens-per-sample Pareto front of the full-stage candidates
  (no other full-stage candidate scores at least as well with at most as many tokens per sample),

and stores each as an evaluation with split `test`, stage `confirm` (never primary: a test score
never sets a fitness or drives a selection). A stored confirmation on the same samples, with the
same model and seed, is reused: confirming twice makes no model call. Each row gives the validation
score, the test score with its 95% CI, tokens per sample on the test samples (the per-sample records'
token counts; a call served by the call cache counts what it cost when it ran), the paired difference with the best seed
(`agentmeta.eval.stats.compare_results`: CI and P(better)), and the validation -> test drop.

P(better) is the share of 10,000 seeded paired-bootstrap resamples of the test samples in which the
candidate's mean beats the best seed's (ties count half); it is not a posterior probability.

The verdict calls a gain *confirmed* when the CI of the difference (best candidate - best seed)
excludes 0 and P(better) >= 0.95, and a *confirmed saving* a candidate confirmed (best or on the
front) at most a third of the best seed's tokens per test sample that is shown *not worse by the
margin* (default 0.05): the one-sided p-value of "worse by the margin or more" (the test behind the
paired interval; for one candidate, the same as the lower end of the 95% interval lying above
-margin), Holm-corrected over every non-seed candidate of the confirmation, is below 0.025.

Every confirmation is appended to the archive's record of test looks (`Archive.test_looks`): the
candidates, settings (model, seed, limit, margin), samples, result and time. A confirmation
reports how many earlier looks its test samples had; once a campaign has been confirmed, a look
with other settings (another limit, model, seed or margin) is refused unless `new_look=True`,
since choosing among looks at the test split would make it a selection set.

This is the only place a campaign's test split is loaded, and it runs after the search.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from agentmeta.archive.records import CONFIRM_STAGE, Evaluation
from agentmeta.archive.test_looks import TestLook, looks_at
from agentmeta.errors import ConfigError, DataError, InfrastructureError
from agentmeta.eval.types import EvalResult, SampleRecord, Suite
from agentmeta.models import Model, get_model
from agentmeta.search.looks import describe_look, last_look, same_look

CONFIRM_SPLIT = "test"
CONFIRM_META_KEY = "confirm"
"""Candidate metadata key: the model spec, seed and test-sample count of its stored confirmation."""
CONFIRMED_P = 0.95
"""P(better) a gain needs (with a CI of the difference above 0) to be called confirmed."""
CHEAPER_RATIO = 1 / 3
"""A saving must cost at most this share of the best seed's tokens per test sample."""
NONINFERIORITY_MARGIN = 0.05
"""Default margin of a saving: the cheaper candidate may be worse than the best seed by less than
this (in score), shown by the paired test, Holm-corrected over the candidates confirmed together."""
SAVING_ALPHA = 0.025
"""One-sided level of the non-inferiority test (the lower end of a two-sided 95% interval)."""


class ConfirmationRow(BaseModel):
    """One candidate confirmed on the test samples."""

    id: str
    """Candidate id."""
    name: str
    """Candidate name."""
    roles: list[str]
    """Why it is confirmed: `best` (best by validation), `best seed`, `pareto` (on the score x
    tokens-per-sample front of the full-stage candidates)."""
    seed: bool
    """A seed (baseline) of the campaign."""
    validation: float | None
    """Full-stage validation score (what the search selected on)."""
    validation_ci_low: float | None = None
    validation_ci_high: float | None = None
    validation_n: int | None = None
    validation_tokens_per_sample: float | None = None
    """Tokens per sample on the full validation stage."""
    test: float | None
    """Mean score on the test samples."""
    test_ci_low: float | None
    test_ci_high: float | None
    test_n: int
    """Test samples that count (infrastructure errors left out)."""
    n_infra: int = 0
    """Test samples lost to infrastructure errors."""
    tokens_per_sample: float | None
    """Prompt plus completion tokens per test sample (per-sample records' counts, cached calls at cost)."""
    completion_tokens_per_sample: float | None
    """Completion tokens per test sample."""
    diff: float | None = None
    """Mean paired difference with the best seed on the test samples (None for the best seed itself)."""
    diff_ci_low: float | None = None
    diff_ci_high: float | None = None
    p_better: float | None = None
    """Share of paired-bootstrap resamples in which this candidate beats the best seed."""
    paired_n: int | None = None
    """Samples both scored (the difference's n)."""
    drop: float | None
    """Validation score minus test score (positive: it did worse on held-out data)."""
    saving_p: float | None = None
    """One-sided p-value of "worse than the best seed by the margin or more" (non-seed rows)."""
    saving_p_holm: float | None = None
    """`saving_p` after Holm's correction over every non-seed row of this confirmation."""
    reused: bool = False
    """Its test evaluation was already stored: no model call was made for it."""


class Confirmation(BaseModel):
    """The outcome of `confirm`: every row on the same test samples, and a verdict."""

    campaign: str
    """Campaign id."""
    campaign_name: str
    suite: str
    split: str = CONFIRM_SPLIT
    stage: str = CONFIRM_STAGE
    model: str | None = None
    """Model the candidates ran on."""
    seed: int
    """Seed of the test-sample choice and of the model calls."""
    limit: int
    """Test samples asked for."""
    sample_ids: list[str] = Field(default_factory=list)
    """The test samples every row was evaluated on, in order."""
    rows: list[ConfirmationRow] = Field(default_factory=list)
    """Best candidate, best seed, then the rest of the Pareto front by validation score."""
    best: str | None = None
    """Id of the best candidate by validation."""
    best_seed: str | None = None
    """Id of the best seed by validation."""
    evaluated: list[str] = Field(default_factory=list)
    """Candidates evaluated on the test samples by this call."""
    reused: list[str] = Field(default_factory=list)
    """Candidates whose stored confirmation was reused (no model call)."""
    confirmed: bool = False
    """The best candidate beats the best seed on the test samples: CI of the difference above 0
    and P(better) >= 0.95."""
    cheaper: list[str] = Field(default_factory=list)
    """Confirmed savings: non-seed candidates at most `CHEAPER_RATIO` of the best seed's tokens per
    test sample shown not worse than it by `margin` or more (Holm-adjusted one-sided p-value below
    `SAVING_ALPHA`, over every non-seed row), best test score first."""
    margin: float = NONINFERIORITY_MARGIN
    """Non-inferiority margin of a saving."""
    earlier_looks: int = 0
    """Looks recorded before this one that used any of these test samples (any campaign)."""
    earlier_campaign_looks: int = 0
    """Of those, the looks of this campaign."""
    look: int | None = None
    """Id of this look in the archive's record of test looks."""
    repeat: bool = False
    """The same look as this campaign's last one (settings, samples) with nothing evaluated anew."""
    verdict: str = ""
    """One line saying what the confirmation shows."""
    skipped: str | None = None
    """Why nothing was confirmed (no test split, no full-stage candidate), if so."""

    @property
    def n(self) -> int:
        """Number of test samples."""
        return len(self.sample_ids)

    def row(self, candidate_id: str) -> ConfirmationRow | None:
        """The row of this candidate, if it has one."""
        return next((r for r in self.rows if r.id == candidate_id), None)


def _is_seed(c: Any, campaign_id: str) -> bool:
    return c.metadata.get("seed") is True or (c.key or "").startswith(f"{campaign_id}:seed:")


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Ids on the front of (id, score, tokens per sample) points: no other point scores at least as
    well with at most as many tokens, and strictly better on one of the two. Input order kept."""
    front = []
    for cid, score, tok in points:
        dominated = any(
            s >= score and t <= tok and (s > score or t < tok) for other, s, t in points if other != cid
        )
        if not dominated:
            front.append(cid)
    return front


def _as_result(ev: Evaluation, name: str) -> EvalResult:
    """A stored evaluation as an `EvalResult` (for `compare_results`)."""
    records = [
        SampleRecord(id=s.sample_id, answer=s.answer, score=s.score, error=s.error, outcome=s.outcome)
        for s in ev.scores
    ]
    counted = [r for r in records if r.outcome != "infra_error"]
    return EvalResult(
        suite=ev.suite, split=ev.split, agent=name, model="", records=records, mean=ev.mean or 0.0,
        ci_low=ev.ci_low if ev.ci_low is not None else 0.0, ci_high=ev.ci_high if ev.ci_high is not None else 1.0,
        n=len(counted), n_hits=sum(r.score >= 1.0 for r in counted),
        n_errors=sum(r.outcome == "agent_error" for r in records), n_infra=len(records) - len(counted),
    )  # fmt: skip


def _resolve(archive: Any, campaign: Any) -> tuple[Any, Any, Any]:
    """(campaign record, SearchConfig, runner or None) of a campaign given by name, id, record or runner."""
    from agentmeta.search.config import NOT_IDENTITY, SearchConfig

    if hasattr(campaign, "record") and hasattr(campaign, "config"):  # a running `Campaign`
        return campaign.record, campaign.config, campaign
    record = (
        campaign
        if hasattr(campaign, "config") and hasattr(campaign, "id")
        else archive.get_campaign(campaign)
    )
    fields = {
        k: v for k, v in record.config.items() if k in SearchConfig.model_fields and k not in NOT_IDENTITY
    }
    if "suite" not in fields:
        raise ConfigError(f"campaign {record.name!r} has no suite in its config: it is not a search campaign")
    return record, SearchConfig.model_validate(fields), None


def _search_data(record: Any, config: Any, runner: Any) -> tuple[Suite, Suite] | str:
    """The validation and train samples the campaign ran on, checked against its data digest (so a
    test split read now is the held-out part of the very data that was searched); or why they
    cannot be loaded again."""
    from agentmeta.search.config import data_digest, load_campaign_data

    if runner is not None:
        return runner.full_suite, runner.train_suite
    try:
        full, train = load_campaign_data(config)
    except (ConfigError, DataError) as e:
        return f"the data campaign {record.name!r} searched cannot be loaded again ({e})"
    stored = record.config.get("data")
    if stored is not None and data_digest(full, train) != stored:
        raise ConfigError(
            f"the data of suite {config.suite!r} differs from what campaign {record.name!r} searched "
            "(edited file, or the campaign searched a Suite object): its test split is not the held-out "
            "part of that data, so nothing is confirmed"
        )
    return full, train


def _skip(base: dict[str, Any], reason: str) -> Confirmation:
    return Confirmation(**base, skipped=reason, verdict=f"confirmation skipped: {reason}")


def confirm(
    archive: Any,
    campaign: Any,
    *,
    test_limit: int = 64,
    model: Model | str | None = None,
    seed: int | None = None,
    concurrency: int = 8,
    progress: Callable[[dict[str, Any]], None] | None = None,
    executor: Any = None,
    margin: float = NONINFERIORITY_MARGIN,
    new_look: bool = False,
) -> Confirmation:
    """Confirm a campaign's best candidate against its best seed on held-out test samples.

    `campaign`: its name or id, its archive record, or a running `Campaign`. `model`: a `Model`
    or spec (default: the campaign's task model). `seed`: picks the test samples and seeds the model
    calls (default: the campaign's seed). Stored confirmations on the same samples with the same
    model and seed are reused, never evaluated twice; one on other samples (another `test_limit`
    or seed) or with another model is replaced. Returns a `Confirmation` (with `skipped` set, and
    no row, when the suite has no test split or no candidate reached the full stage). Raises
    `InfrastructureError`, recording nothing for that candidate, when the model server or sandbox
    lost too many test samples; run it again to resume. `executor`: where the samples run
    (default: a running `Campaign`'s executor, else this process; see `evaluate`). `margin`: the
    non-inferiority margin of a saving. Raises `ConfigError` when the campaign was confirmed before
    with other settings (model, seed, limit, margin) unless `new_look=True`. Every call is appended
    to the archive's record of test looks.
    """
    from agentmeta.agents.base import AgentSpec
    from agentmeta.eval import evaluate, load_suite
    from agentmeta.eval.stats import compare_results
    from agentmeta.search.campaign import full_stage_board

    if test_limit < 1:
        raise ConfigError(f"test_limit must be at least 1; got {test_limit}")
    if not 0.0 <= margin < 1.0:
        raise ConfigError(f"the non-inferiority margin must be in [0, 1); got {margin}")
    say = progress or (lambda event: None)
    record, config, runner = _resolve(archive, campaign)
    seed = config.seed if seed is None else seed
    base: dict[str, Any] = {
        "campaign": record.id, "campaign_name": record.name, "suite": config.suite, "seed": seed,
        "limit": test_limit, "margin": margin,
    }  # fmt: skip
    if runner is not None and getattr(runner, "suite_object", False):
        return _skip(base, "the campaign searched a Suite object, which has no test split")

    # -- who: best by validation, best seed, the Pareto front (full stage only) ---------------
    cands = {c.id: c for c in archive.candidates(campaign=record.id)}
    board = full_stage_board(archive, record.id, config.suite)
    if not board:
        return _skip(base, f"no candidate of campaign {record.name!r} has a full-stage validation score")
    best = board[0]
    best_seed = next((e for e in board if _is_seed(cands[e.id], record.id)), None)
    points = [(e.id, e.fitness, e.tokens_per_sample) for e in board if e.tokens_per_sample is not None]
    front = set(pareto_front(points))  # type: ignore[arg-type]
    order = [best.id] + ([best_seed.id] if best_seed else []) + [e.id for e in board if e.id in front]
    chosen = [e for cid in dict.fromkeys(order) for e in board if e.id == cid]
    roles = {
        e.id: [
            r
            for r, hit in (("best", e is best), ("best seed", e is best_seed), ("pareto", e.id in front))
            if hit
        ]
        for e in chosen
    }

    # -- the test samples: loaded here only, after the search -------------------------------
    data = _search_data(record, config, runner)
    if isinstance(data, str):
        return _skip(base, data)
    full, train = data
    try:
        test = load_suite(config.suite, split=CONFIRM_SPLIT, limit=test_limit, seed=seed)
    except DataError as err:
        return _skip(base, f"suite {config.suite!r} has no test split to confirm on ({err})")
    searched = {x.id for x in full.samples} | {x.id for x in train.samples}
    leaked = [x.id for x in test.samples if x.id in searched]
    if leaked:
        raise DataError(
            f"suite {config.suite!r}: {len(leaked)} test samples were also searched on (e.g. {leaked[0]!r}); "
            "a confirmation needs held-out samples"
        )
    ids = [x.id for x in test.samples]
    task_model = (
        model if isinstance(model, Model) else get_model(model if model is not None else config.model)
    )
    base.update(model=task_model.spec, sample_ids=ids)
    meta_now = {"model": task_model.spec, "seed": seed, "n": len(ids)}
    settings = {"model": task_model.spec, "seed": seed, "limit": test_limit, "margin": margin}
    last = last_look(archive, record)
    same = last is not None and same_look(last, settings, ids)
    if last is not None and not same and not new_look:
        raise ConfigError(
            f"campaign {record.name!r} was already confirmed on its test split ({describe_look(last)}); "
            f"this look ({describe_look((settings, ids))}) would be another look at held-out samples: "
            "repeat those settings, or pass --new-look (new_look=True) to take it; it is recorded"
        )
    earlier = looks_at(archive.test_looks(suite=config.suite), ids)
    base.update(
        earlier_looks=len(earlier), earlier_campaign_looks=sum(x.campaign == record.id for x in earlier)
    )
    say({"event": "confirm", "n": len(ids), "ids": [e.id for e in chosen], "suite": config.suite})
    say({"event": "looks", "earlier": base["earlier_looks"], "campaign": base["earlier_campaign_looks"]})

    # -- evaluate (or reuse) each on the same samples ----------------------------------------
    evaluations: dict[str, Evaluation] = {}
    evaluated: list[str] = []
    reused: list[str] = []
    try:
        for e in chosen:
            c = cands[e.id]
            stored = archive.get_evaluation(c.id, config.suite, CONFIRM_SPLIT, CONFIRM_STAGE)
            meta = c.metadata.get(CONFIRM_META_KEY)
            same_run = meta is None or (meta.get("model"), meta.get("seed")) == (task_model.spec, seed)
            if (
                stored is not None
                and not stored.incomplete
                and same_run
                and [s.sample_id for s in stored.scores] == ids
            ):
                evaluations[c.id] = stored
                reused.append(c.id)
            else:
                agent = AgentSpec(kind=c.kind, name=c.name, thought=c.thought, source=c.source).build()
                res = evaluate(
                    agent, test, model=task_model, concurrency=concurrency, seed=seed,
                    executor=executor if executor is not None else getattr(campaign, "executor", None),
                )  # fmt: skip
                if res.incomplete:
                    raise InfrastructureError(
                        f"infrastructure failures while confirming candidate {c.id} on the test split: "
                        f"{res.n_infra} of {len(res.records)} samples lost after retries; nothing was recorded "
                        "for it; fix the model server or sandbox and run it again to resume"
                    )
                evaluations[c.id] = archive.record_result(
                    c.id, res, stage=CONFIRM_STAGE, suite=config.suite, primary=False
                )
                if meta != meta_now:
                    archive.update_metadata(c.id, **{CONFIRM_META_KEY: meta_now})
                evaluated.append(c.id)
            ev = evaluations[c.id]
            say(
                {
                    "event": "confirmed", "id": c.id, "name": c.name, "mean": ev.mean, "ci_low": ev.ci_low,
                    "ci_high": ev.ci_high, "n": ev.n, "reused": c.id in reused,
                }
            )  # fmt: skip
    except BaseException as err:  # an interrupted look is still a look: recorded with what it showed
        archive.add_test_look(
            TestLook(
                suite=config.suite, campaign=record.id, candidates=list(evaluations), settings=settings,
                sample_ids=ids, evaluated=evaluated,
                result={
                    "verdict": f"interrupted: {type(err).__name__}: {str(err)[:300]}",
                    "rows": [{"id": cid, "test": ev.mean, "test_ci_low": ev.ci_low, "test_ci_high": ev.ci_high,
                              "scores": {x.sample_id: x.score for x in ev.scores}} for cid, ev in evaluations.items()],
                },
            )
        )  # fmt: skip
        raise

    # -- rows, paired with the best seed -------------------------------------------------------
    seed_result = _as_result(evaluations[best_seed.id], best_seed.name) if best_seed else None
    rows = []
    for e in chosen:
        ev = evaluations[e.id]
        row = ConfirmationRow(
            id=e.id, name=e.name, roles=roles[e.id], seed=_is_seed(cands[e.id], record.id),
            validation=e.fitness, validation_ci_low=e.ci_low, validation_ci_high=e.ci_high, validation_n=e.n,
            validation_tokens_per_sample=e.tokens_per_sample, test=ev.mean, test_ci_low=ev.ci_low,
            test_ci_high=ev.ci_high, test_n=ev.n, n_infra=ev.n_infra, tokens_per_sample=ev.tokens_per_sample,
            completion_tokens_per_sample=ev.completion_tokens_per_sample,
            drop=None if e.fitness is None or ev.mean is None else e.fitness - ev.mean, reused=e.id in reused,
        )  # fmt: skip
        if seed_result is not None and best_seed is not None and e.id != best_seed.id and ev.n:
            cmp = compare_results(_as_result(ev, e.name), seed_result, seed=seed, allow_partial=True)
            row = row.model_copy(
                update={
                    "diff": cmp.mean_diff, "diff_ci_low": cmp.low, "diff_ci_high": cmp.high,
                    "p_better": cmp.p_better, "paired_n": cmp.n,
                }
            )  # fmt: skip
        rows.append(row)
    out = Confirmation(
        **base, rows=rows, best=best.id, best_seed=best_seed.id if best_seed else None,
        evaluated=evaluated, reused=reused,
    )  # fmt: skip
    if seed_result is not None:
        out.rows = _saving_tests(out.rows, evaluations, best_seed.id if best_seed else "", margin, seed)
    out.confirmed, out.verdict = _verdict(out)
    out.cheaper = _cheaper(out)
    if out.cheaper:
        row = out.row(out.cheaper[0])
        seed_row = out.row(out.best_seed) if out.best_seed else None
        if row is not None and seed_row is not None and seed_row.tokens_per_sample:
            ratio = (row.tokens_per_sample or 0.0) / seed_row.tokens_per_sample
            out.verdict += (
                f"; confirmed saving: {row.name} ({row.id}) at {ratio:.2f}x the best seed's tokens per sample, "
                f"test {row.test:.2f} vs {seed_row.test:.2f}, difference {row.diff:+.2f} "
                f"[{row.diff_ci_low:.2f}, {row.diff_ci_high:.2f}], not worse by {margin:g} or more "
                f"(Holm-adjusted p {row.saving_p_holm:.3f})"
            )
    out.repeat = same and not evaluated
    out.look = archive.add_test_look(
        TestLook(
            suite=out.suite, split=out.split, campaign=record.id, candidates=[r.id for r in out.rows],
            settings=settings, sample_ids=ids, evaluated=evaluated, repeat=out.repeat,
            result=_look_result(out, evaluations),
        )
    )  # fmt: skip
    archive.update_campaign(
        record.id,
        state={
            "confirmation": {
                "suite": out.suite, "split": out.split, "stage": out.stage, "model": out.model, "seed": seed,
                "n": out.n, "best": out.best, "best_seed": out.best_seed, "confirmed": out.confirmed,
                "cheaper": out.cheaper, "verdict": out.verdict, "limit": test_limit, "margin": margin,
                "look": out.look, "looks": out.earlier_campaign_looks + (0 if out.repeat else 1),
            }
        },
    )  # fmt: skip
    return out


def _saving_tests(
    rows: list[ConfirmationRow], evaluations: dict[str, Evaluation], seed_id: str, margin: float, seed: int
) -> list[ConfirmationRow]:
    """Each non-seed row's non-inferiority p-value against the best seed, and the Holm-adjusted one
    over all of them (the candidates confirmed together are one family)."""
    from agentmeta.eval.stats import holm, noninferiority_p

    base = {s.sample_id: s.score for s in evaluations[seed_id].scores if s.outcome != "infra_error"}
    tested: dict[str, float] = {}
    for r in rows:
        if r.seed or r.id == seed_id:
            continue
        mine = {s.sample_id: s.score for s in evaluations[r.id].scores if s.outcome != "infra_error"}
        shared = [i for i in mine if i in base]
        if shared:
            tested[r.id] = noninferiority_p(
                [mine[i] for i in shared], [base[i] for i in shared], margin, seed=seed
            )
    adjusted = dict(zip(tested, holm(list(tested.values())), strict=True))
    return [
        r.model_copy(update={"saving_p": tested[r.id], "saving_p_holm": adjusted[r.id]})
        if r.id in tested
        else r
        for r in rows
    ]


def _look_result(conf: Confirmation, evaluations: dict[str, Evaluation]) -> dict[str, Any]:
    """What a look found, for the record: the verdict and each row with its per-sample scores."""
    rows = []
    for r in conf.rows:
        row = r.model_dump(mode="json", exclude={"reused"})
        row["scores"] = {s.sample_id: s.score for s in evaluations[r.id].scores if s.outcome != "infra_error"}
        rows.append(row)
    return {
        "verdict": conf.verdict, "confirmed": conf.confirmed, "cheaper": conf.cheaper, "best": conf.best,
        "best_seed": conf.best_seed, "rows": rows,
    }  # fmt: skip


def _cheaper(conf: Confirmation) -> list[str]:
    """Non-seed rows at most `CHEAPER_RATIO` of the best seed's test tokens per sample and shown
    not worse than it by the margin (see `Confirmation.cheaper`)."""
    seed_row = conf.row(conf.best_seed) if conf.best_seed else None
    if seed_row is None or not seed_row.tokens_per_sample:
        return []
    limit = CHEAPER_RATIO * seed_row.tokens_per_sample
    found = [
        r for r in conf.rows
        if not r.seed and r.tokens_per_sample is not None and r.tokens_per_sample <= limit
        and r.saving_p_holm is not None and r.saving_p_holm < SAVING_ALPHA and r.test is not None
    ]  # fmt: skip
    return [r.id for r in sorted(found, key=lambda r: (-(r.test or 0.0), r.tokens_per_sample))]


def _verdict(conf: Confirmation) -> tuple[bool, str]:
    best = conf.row(conf.best) if conf.best else None
    if best is None:
        return False, "nothing confirmed"
    test = "-" if best.test is None else f"{best.test:.2f}"
    if conf.best_seed is None:
        return False, (
            f"best candidate {best.name} ({best.id}): test {test} on {conf.n} test samples; "
            "no seed reached the full stage to compare with — not a confirmed gain"
        )
    if conf.best_seed == conf.best:
        return False, (
            f"the best candidate by validation is the seed {best.name} ({best.id}), test {test} on {conf.n} "
            "test samples: the search found nothing better than its seeds — no gain to confirm"
        )
    seed_row = conf.row(conf.best_seed)
    seed_name = seed_row.name if seed_row else conf.best_seed
    if best.diff is None or best.p_better is None:
        return (
            False,
            f"best candidate {best.name} ({best.id}) vs best seed {seed_name}: no paired test samples",
        )
    confirmed = (best.diff_ci_low or 0.0) > 0.0 and best.p_better >= CONFIRMED_P
    worse = (best.diff_ci_high if best.diff_ci_high is not None else 1.0) < 0.0
    tail = (
        "confirmed gain" if confirmed else "not a confirmed gain" + (" (the seed is better)" if worse else "")
    )
    return confirmed, (
        f"best candidate {best.name} ({best.id}) vs best seed {seed_name} ({conf.best_seed}) on "
        f"{best.paired_n} test samples: {best.diff:+.2f} [{best.diff_ci_low:.2f}, {best.diff_ci_high:.2f}], "
        f"P(better) {best.p_better:.2f} — {tail}"
    )
