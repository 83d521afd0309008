from __future__ import annotations

import numpy as np
import pytest

from agentmeta.errors import DataError
from agentmeta.eval import stats
from agentmeta.eval.stats import bootstrap_ci, paired_bootstrap


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
    scores = [1.0, 0.0, 1.0, 1.0]
    cmp = paired_bootstrap(scores, scores)
    assert cmp.mean_diff == 0.0 and cmp.p_better == 0.5 and cmp.low == cmp.high == 0.0


def test_paired_bootstrap_requires_the_same_samples() -> None:
    with pytest.raises(DataError, match="same samples"):
        paired_bootstrap([1.0, 0.0], [1.0])
