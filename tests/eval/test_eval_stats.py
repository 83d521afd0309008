from __future__ import annotations

from collections.abc import Callable
from math import comb

import numpy as np
import pytest

from agentmeta.errors import DataError
from agentmeta.eval import stats
from agentmeta.eval.stats import (
    MeanCI,
    PairedComparison,
    bootstrap_ci,
    compare_results,
    mean_ci,
    paired_bootstrap,
    paired_ci,
)
from agentmeta.eval.types import EvalResult, SampleRecord


def test_bootstrap_ci_is_seeded_and_brackets_the_mean() -> None:
    values = np.random.default_rng(1).random(50)
    a = bootstrap_ci(values, seed=3)
    b = bootstrap_ci(values, seed=3)
    c = bootstrap_ci(values, seed=4)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.low < a.mean < a.high
    assert a.mean == pytest.approx(values.mean())
    assert a.n == 50


def test_bootstrap_ci_of_constant_scores_has_zero_width() -> None:
    """The raw percentile bootstrap is a point for constant scores (why `mean_ci` exists)."""
    ci = bootstrap_ci([1.0] * 20)
    assert (ci.low, ci.mean, ci.high) == (1.0, 1.0, 1.0)


def test_bootstrap_does_not_depend_on_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(2).random(300)
    whole = stats.bootstrap_means(values, n_boot=500, seed=5)
    monkeypatch.setattr(stats, "_CHUNK_CELLS", 300 * 7)  # 7 resamples per chunk
    chunked = stats.bootstrap_means(values, n_boot=500, seed=5)
    assert np.array_equal(whole, chunked)


def test_bootstrap_coverage_on_simulated_data() -> None:
    """The 95% interval holds the true mean in about 95% of simulated experiments."""
    rng = np.random.default_rng(123)
    true_p, n, reps = 0.7, 80, 400
    covered = 0
    for rep in range(reps):
        scores = (rng.random(n) < true_p).astype(float)
        ci = bootstrap_ci(scores, n_boot=2000, seed=rep)
        covered += ci.low <= true_p <= ci.high
    coverage = covered / reps
    assert 0.91 <= coverage <= 0.98, coverage


def test_bootstrap_rejects_empty_and_bad_confidence() -> None:
    with pytest.raises(DataError):
        bootstrap_ci([])
    with pytest.raises(DataError):
        bootstrap_ci([0.0, 1.0], confidence=1.5)


def test_paired_bootstrap_detects_a_consistent_improvement() -> None:
    rng = np.random.default_rng(7)
    base = (rng.random(200) < 0.5).astype(float)
    better = base.copy()
    flip = np.flatnonzero(base == 0)[:30]  # B's failures that A fixes
    better[flip] = 1.0
    cmp = paired_bootstrap(better, base, seed=0)
    assert cmp.mean_diff == pytest.approx(30 / 200)
    assert cmp.low > 0 and cmp.p_better > 0.99
    reverse = paired_bootstrap(base, better, seed=0)
    assert reverse.high < 0 and reverse.p_better < 0.01


def test_paired_bootstrap_of_identical_scores_is_a_tie() -> None:
    """The raw paired bootstrap collapses to [0, 0] when every pair ties (why `paired_ci` exists)."""
    scores = [1.0, 0.0, 1.0, 1.0]
    cmp = paired_bootstrap(scores, scores)
    assert cmp.mean_diff == 0.0 and cmp.p_better == 0.5 and cmp.low == cmp.high == 0.0


def test_paired_bootstrap_requires_the_same_samples() -> None:
    with pytest.raises(DataError, match="same samples"):
        paired_bootstrap([1.0, 0.0], [1.0])


# --- mean_ci: coverage at small n, computed exactly -------------------------------------------


def binomial_coverage(ci_fn: Callable[[list[float]], MeanCI], n: int, p: float) -> float:
    """Exact coverage of a CI of a binary mean: the Binomial(n, p) probability of the k whose
    interval (from k ones and n - k zeros) holds p. No simulation: deterministic."""
    total = 0.0
    for k in range(n + 1):
        ci = ci_fn([1.0] * k + [0.0] * (n - k))
        if ci.low <= p <= ci.high:
            total += comb(n, k) * p**k * (1 - p) ** (n - k)
    return total


@pytest.mark.parametrize("n", [4, 8, 32, 128])
def test_mean_ci_of_binary_scores_keeps_its_coverage_at_small_n(n: int) -> None:
    for p in (0.0, 0.1, 0.5):
        coverage = binomial_coverage(mean_ci, n, p)
        assert coverage >= 0.95, (n, p, coverage)
    zeros = mean_ci([0.0] * n)
    assert zeros.method == "clopper-pearson"
    assert zeros.low == 0.0 < zeros.high  # p = 0 is inside, and the interval is not a point


def test_percentile_bootstrap_fails_the_coverage_test() -> None:
    """The same exact coverage for the old percentile bootstrap: at n = 4, p = 0.1 the 4/4 zeros
    outcome (probability 0.656) gives [0, 0], so the coverage is about 0.34, not 0.95."""
    coverage = binomial_coverage(lambda v: bootstrap_ci(v, n_boot=2000), 4, 0.1)
    assert coverage < 0.5, coverage
    assert binomial_coverage(mean_ci, 4, 0.1) >= 0.95


def test_mean_ci_matches_the_textbook_clopper_pearson_interval() -> None:
    ci = mean_ci([1.0] * 3 + [0.0] * 7)  # R: binom.test(3, 10)$conf.int
    assert (ci.low, ci.high) == pytest.approx((0.0667395112, 0.6524528501), abs=1e-9)
    assert ci.mean == 0.3 and ci.n == 10 and ci.confidence == 0.95
    assert mean_ci([0.0] * 30).high == pytest.approx(1 - 0.025 ** (1 / 30))  # k = 0 in closed form
    wide = mean_ci([1.0] * 3 + [0.0] * 7, confidence=0.99)
    assert wide.low < ci.low and wide.high > ci.high


def test_mean_ci_of_constant_scores_has_positive_width() -> None:
    for value in (0.0, 1.0, 0.5, 0.9):
        ci = mean_ci([value] * 30)
        assert ci.low <= value <= ci.high and ci.high - ci.low > 0.05, (value, ci)
    assert mean_ci([0.0] * 30).low == 0.0 and mean_ci([1.0] * 30).high == 1.0
    assert mean_ci([0.5] * 30).method == "clopper-pearson-bounded"


def test_mean_ci_of_continuous_scores_keeps_its_coverage() -> None:
    """Seeded simulation: 400 experiments of n = 8 Beta-distributed scores per shape. The interval
    is conservative for non-binary [0, 1] scores (measured 0.99-1.00); the test allows the nominal
    0.95 minus 0.01 (one standard error of a 400-run estimate at 0.95). The percentile bootstrap
    covers 0.83-0.91 on such data."""
    rng = np.random.default_rng(11)
    reps, n = 400, 8
    for shape in ((2.0, 5.0), (0.5, 0.5), (0.2, 0.8)):
        true_mean = shape[0] / sum(shape)
        covered = 0
        for _ in range(reps):
            ci = mean_ci(rng.beta(*shape, size=n))
            covered += ci.low <= true_mean <= ci.high
        assert covered / reps >= 0.94, (shape, covered / reps)
    assert ci.method == "clopper-pearson-bounded"


def test_mean_ci_falls_back_to_the_bootstrap_outside_the_unit_interval() -> None:
    values = np.random.default_rng(3).normal(5.0, 2.0, 40)
    ci = mean_ci(values, seed=2, n_boot=3000)
    boot = bootstrap_ci(values, seed=2, n_boot=3000)
    assert ci.method == "bootstrap" and (ci.low, ci.high, ci.mean) == (boot.low, boot.high, boot.mean)


def test_mean_ci_rejects_bad_input() -> None:
    with pytest.raises(DataError):
        mean_ci([])
    with pytest.raises(DataError, match="finite"):
        mean_ci([0.0, float("nan")])
    with pytest.raises(DataError, match="confidence"):
        mean_ci([0.0, 1.0], confidence=1.0)


# --- paired_ci: Tango's score interval, coverage by exact enumeration --------------------------


def paired_coverage(
    cmp_fn: Callable[[list[float], list[float]], PairedComparison], n: int, grid: list[tuple[float, float]]
) -> list[float]:
    """Exact coverage of a CI of mean(A - B) for binary pairs, at each (P(A wins), P(B wins)) of
    `grid`: enumerate the trinomial of (A wins, B wins, ties) and add the probability of the
    outcomes whose interval holds P(A wins) - P(B wins). Both intervals depend on the win counts
    only, so ties are pairs of zeros."""
    intervals = {}
    for g in range(n + 1):
        for loss in range(n + 1 - g):
            t = n - g - loss
            cmp = cmp_fn([1.0] * g + [0.0] * (loss + t), [0.0] * g + [1.0] * loss + [0.0] * t)
            intervals[g, loss] = (cmp.low - 1e-12, cmp.high + 1e-12)
    out = []
    for q_win, q_loss in grid:
        q_tie = max(0.0, 1.0 - q_win - q_loss)
        out.append(
            sum(
                comb(n, g) * comb(n - g, loss) * q_win**g * q_loss**loss * q_tie ** (n - g - loss)
                for (g, loss), (low, high) in intervals.items()
                if low <= q_win - q_loss <= high
            )
        )
    return out


GRID = [(w, lo) for w in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5) for lo in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)]


@pytest.mark.parametrize("n", [4, 8, 16, 32])
def test_paired_ci_of_binary_scores_keeps_its_coverage_at_small_n(n: int) -> None:
    """Tango's interval is asymptotic, so its exact coverage oscillates around 0.95. Tolerance:
    the mean coverage over the grid of (P(A wins), P(B wins)) is at least 0.95, and the lowest
    point at least 0.92 (0.87 at n = 4: the grid holds the worst point of all, 0.875, every pair
    discordant half and half). The paired bootstrap covers as little as 0.19 on the same grid at
    n = 4, 0.34 at n = 8 (its mean over the grid: 0.70 at n = 4)."""
    covs = paired_coverage(lambda a, b: paired_ci(a, b, n_boot=20), n, GRID)
    assert np.mean(covs) >= 0.95, np.mean(covs)
    assert min(covs) >= (0.87 if n == 4 else 0.92), min(covs)


def test_paired_bootstrap_fails_the_paired_coverage_test() -> None:
    """At n = 8 with A winning 10% of pairs and never losing, 43% of experiments see all ties and
    the bootstrap says [0, 0]: the coverage is far below 0.95."""
    [coverage] = paired_coverage(lambda a, b: paired_bootstrap(a, b, n_boot=2000), 8, [(0.1, 0.0)])
    assert coverage < 0.6, coverage
    assert paired_coverage(lambda a, b: paired_ci(a, b, n_boot=20), 8, [(0.1, 0.0)])[0] >= 0.95


def test_paired_ci_does_not_collapse_when_all_pairs_tie() -> None:
    intervals = set()
    for scores in ([1.0, 0.0, 1.0, 0.0], [1.0] * 4, [0.0] * 4, [1.0, 1.0, 1.0, 0.0]):
        cmp = paired_ci(scores, scores)
        assert cmp.method == "tango" and cmp.mean_diff == 0.0 and cmp.p_better == 0.5
        assert cmp.low < 0.0 < cmp.high
        intervals.add((round(cmp.low, 12), round(cmp.high, 12)))
    assert intervals == {(-0.489890836455, 0.489890836455)}  # depends on n and the discordant pairs only
    wide = paired_ci([0.3, 0.7, 0.5, 0.1], [0.3, 0.7, 0.5, 0.1])
    assert wide.method == "tango-bounded" and wide.low < 0.0 < wide.high


def test_paired_ci_detects_a_consistent_improvement_and_keeps_the_bootstrap_p_better() -> None:
    rng = np.random.default_rng(7)
    base = (rng.random(200) < 0.5).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:30]] = 1.0
    cmp = paired_ci(better, base, seed=0)
    boot = paired_bootstrap(better, base, seed=0)
    assert cmp.method == "tango" and cmp.mean_diff == pytest.approx(30 / 200)
    assert 0.0 < cmp.low < cmp.mean_diff < cmp.high and cmp.p_better == boot.p_better > 0.99
    raw = paired_ci(np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0]), seed=4)
    assert raw.method == "bootstrap" and raw == paired_bootstrap([3.0, 1.0, 2.0], [1.0, 1.0, 0.0], seed=4)
    with pytest.raises(DataError, match="same samples"):
        paired_ci([1.0, 0.0], [1.0])


def test_paired_ci_of_continuous_scores_keeps_its_coverage() -> None:
    """Seeded simulation: 400 experiments of n = 8 correlated Beta scores. The interval is
    conservative for non-binary scores (measured 0.98-1.00; the paired bootstrap 0.87-0.90);
    tolerance 0.94 as above."""
    rng = np.random.default_rng(5)
    reps, n, w = 400, 8, 0.5
    true_diff = (1 - w) * (0.5 - 0.6)
    covered = 0
    for _ in range(reps):
        a = rng.beta(0.5, 0.5, n)
        b = w * a + (1 - w) * rng.beta(0.6, 0.4, n)
        cmp = paired_ci(a, b, n_boot=20)
        covered += cmp.low <= true_diff <= cmp.high
    assert cmp.method == "tango-bounded" and covered / reps >= 0.94, covered / reps


# --- compare_results: the same samples, or say so ----------------------------------------------


def make_result(agent: str, scores: list[tuple[str, float | None]]) -> EvalResult:
    """A result from (sample id, score) pairs; a None score is an infrastructure error."""
    records = [
        SampleRecord(id=i, score=s or 0.0, outcome="infra_error" if s is None else "scored")
        for i, s in scores
    ]
    counted = [s for _, s in scores if s is not None]
    return EvalResult(
        suite="toy",
        split="validation",
        agent=agent,
        model="mock",
        records=records,
        mean=float(np.mean(counted)),
        ci_low=0.0,
        ci_high=1.0,
        n=len(counted),
        n_hits=sum(s >= 1 for s in counted),
        n_errors=0,
        n_infra=len(scores) - len(counted),
    )


def test_compare_results_refuses_different_sample_sets() -> None:
    a = make_result("cot", [(f"s{i}", 1.0) for i in range(10)])
    b = make_result("direct", [(f"s{i}", None if i == 3 else float(i % 2)) for i in range(10)])
    with pytest.raises(DataError) as err:
        compare_results(a, b)
    message = str(err.value)
    assert "\n" not in message
    assert "1 only in A, 0 only in B (e.g. 's3')" in message
    assert "infrastructure errors (not scored): 0 in A, 1 in B" in message
    assert "pass allow_partial=True to compare the shared samples" in message
    cmp = compare_results(a, b, allow_partial=True)
    assert cmp.n == 9 and cmp.method == "tango" and cmp.mean_diff == pytest.approx(5 / 9)
    c = make_result("cot", [(f"s{i}", 1.0) for i in range(9)] + [("extra", 0.0)])
    with pytest.raises(DataError, match="1 only in A, 1 only in B"):
        compare_results(c, a)
    with pytest.raises(DataError, match="share no sample ids"):
        compare_results(a, make_result("x", [("other", 1.0)]), allow_partial=True)


def test_compare_results_rejects_duplicate_sample_ids() -> None:
    a = make_result("cot", [("s0", 1.0), ("s1", 0.0), ("s1", 1.0)])
    b = make_result("direct", [("s0", 1.0), ("s1", 0.0)])
    with pytest.raises(DataError, match="result A .* 1 duplicated sample ids, e.g. 's1'"):
        compare_results(a, b)
    with pytest.raises(DataError, match="result B"):
        compare_results(b, a, allow_partial=True)


def test_compare_results_of_identical_results_is_a_tie_that_does_not_collapse() -> None:
    a = make_result("cot", [(f"s{i}", float(i % 2)) for i in range(6)])
    cmp = compare_results(a, a.model_copy(update={"agent": "again"}), seed=3)
    assert cmp.n == 6 and cmp.mean_diff == 0.0 and cmp.p_better == 0.5 and cmp.low < 0.0 < cmp.high
