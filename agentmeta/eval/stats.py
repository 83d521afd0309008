"""Seeded, vectorized bootstrap statistics: the CI of a mean and the paired difference of two agents.

Percentile bootstrap: resample the per-sample scores with replacement `n_boot` times, take the
mean of each resample, and read the CI off the quantiles of those means. Resampling is done in
chunks of whole resamples so that memory stays bounded on large suites.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from agentmeta.errors import DataError

_CHUNK_CELLS = 4_000_000  # indices drawn per chunk (n_boot_chunk * n), ~32 MB of int64


class MeanCI(BaseModel):
    """A mean with its bootstrap confidence interval."""

    mean: float
    """The sample mean."""
    low: float
    """Lower end of the interval."""
    high: float
    """Upper end of the interval."""
    n: int
    """Number of values."""
    confidence: float = 0.95
    """Coverage the interval aims at."""


class PairedComparison(BaseModel):
    """Agent A minus agent B on the same samples, by paired bootstrap."""

    mean_diff: float
    """Mean of the per-sample differences (A - B)."""
    low: float
    """Lower end of the CI of the mean difference."""
    high: float
    """Upper end of the CI of the mean difference."""
    p_better: float
    """Share of bootstrap resamples in which A's mean beats B's (ties count half)."""
    n: int
    """Number of paired samples."""
    confidence: float = 0.95
    """Coverage the interval aims at."""


def bootstrap_means(values: Sequence[float] | np.ndarray, n_boot: int = 10_000, seed: int = 0) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement) of `values`, seeded."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise DataError(f"bootstrap expects a 1-D list of scores; got shape {x.shape}")
    n = x.size
    if n == 0:
        raise DataError("bootstrap of an empty list of scores: evaluate at least one sample")
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot, dtype=np.float64)
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = x[idx].mean(axis=1)
    return out


def _interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0.0 < confidence < 1.0:
        raise DataError(f"confidence must be in (0, 1); got {confidence}")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> MeanCI:
    """Mean of `values` with a seeded percentile-bootstrap CI (same seed, same interval)."""
    x = np.asarray(values, dtype=np.float64)
    means = bootstrap_means(x, n_boot=n_boot, seed=seed)
    low, high = _interval(means, confidence)
    return MeanCI(mean=float(x.mean()), low=low, high=high, n=int(x.size), confidence=confidence)


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Compare A and B scored on the same samples (same order): CI of mean(A - B) and P(A better).

    Pairing resamples samples, not scores, so the per-sample correlation of the two agents is
    kept; that makes the interval much tighter than comparing two independent CIs.
    """
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.shape != xb.shape:
        raise DataError(
            f"paired bootstrap needs scores on the same samples; got {xa.size} and {xb.size} scores"
        )
    diff = xa - xb
    means = bootstrap_means(diff, n_boot=n_boot, seed=seed)
    low, high = _interval(means, confidence)
    p_better = float(np.mean(means > 0) + 0.5 * np.mean(means == 0))
    return PairedComparison(
        mean_diff=float(diff.mean()),
        low=low,
        high=high,
        p_better=p_better,
        n=int(diff.size),
        confidence=confidence,
    )


def compare_results(
    a: object, b: object, confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> PairedComparison:
    """Paired bootstrap of two `EvalResult`s, aligned on the sample ids they share."""
    from agentmeta.eval.types import EvalResult

    if not isinstance(a, EvalResult) or not isinstance(b, EvalResult):
        raise DataError("compare_results expects two EvalResult objects")
    sa, sb = a.score_by_id(), b.score_by_id()
    shared = [i for i in sa if i in sb]
    if not shared:
        raise DataError(
            f"results share no sample ids ({a.suite} vs {b.suite}): evaluate both on the same suite"
        )
    return paired_bootstrap(
        [sa[i] for i in shared], [sb[i] for i in shared], confidence=confidence, n_boot=n_boot, seed=seed
    )
