"""Confidence intervals of a mean score and of the paired difference of two agents, seeded.

**The CI of a mean: `mean_ci`.** Every result reports this interval. It picks its method from the
scores and records it in `MeanCI.method`:

- ``clopper-pearson``, binary scores (every value 0 or 1): the Clopper-Pearson exact interval,
  ``[Beta(a/2; k, n-k+1), Beta(1-a/2; k+1, n-k)]`` quantiles with k hits out of n (``a`` = 1 -
  confidence; the low end is 0 when k = 0, the high end 1 when k = n). It inverts two one-sided
  exact binomial tests, so its coverage is at least the confidence level for every n and every
  true rate, and it is never a point: 30 zeros give [0, 0.116]. The percentile bootstrap it
  replaces returns [0, 0] there, and its coverage at n = 4, p = 0.1 is 0.34 (tests show both).
  Wilson and Agresti-Coull are narrower but dip below the nominal level at some rates.
- ``clopper-pearson-bounded``, scores in [0, 1] that are not all 0 or 1 (F1, partial credit): the
  same formula at the real-valued k = sum of scores. Of all distributions on [0, 1] with a given
  mean, the Bernoulli spreads most (largest variance, largest in convex order), which is why the
  binary interval is conservative for bounded scores. Checked, not proved: exact coverage stays
  at or above the level for every two-point distribution on a 0.05 grid at n <= 16 (the Bernoulli
  is the worst case), and seeded simulations of Beta-distributed scores at n = 8 cover 0.99-1.00
  (the percentile bootstrap 0.83-0.91). The price: for low-variance scores the interval is wider
  than it needs to be (at most as wide as for binary scores with the same mean). It is not
  combined with the bootstrap: intersecting would bring back the bootstrap's under-coverage at
  small n, and a union would change nothing in practice (the bootstrap interval of [0, 1] scores
  is the narrower one).
- ``bootstrap``, any score outside [0, 1] (raw numbers, no bound to lean on): the seeded percentile
  bootstrap of `bootstrap_ci`. Approximate: it under-covers at small n and is a point for
  constant scores.

**The CI of a paired difference: `paired_ci` (what `compare_results` uses).** Mean of A - B on
the same samples, with `PairedComparison.method`:

- ``tango``, binary scores: Tango's (1998) asymptotic score interval for the difference of paired
  proportions, recommended by Fagerland, Lydersen & Laake (2014, Stat Methods Med Res 23:3). With
  g samples A wins, l samples B wins and n pairs, it is every d whose score statistic
  ``(g - l - n d) / sqrt(n (2 q(d) + d (1 - d)))`` (q(d): restricted maximum-likelihood share of
  B's wins) is within z of 0. It depends on the discordant pairs only and is never a point: when
  every pair ties it is +-0.49 at n = 4, +-0.11 at n = 32. Its exact coverage is approximate: it
  averages the nominal level (0.95-0.97 over all parameters for n = 4-64); the lowest point is
  0.875 at n = 4 when every pair is discordant, and >= 0.92 for n >= 8 (on a 0.025 grid).
  Newcombe's hybrid score interval ("method 10") was rejected: it is [0, 0] when all pairs tie at
  a 50% rate, which takes its coverage down to 0.65 at n = 4; its continuity-corrected form
  ("method 11") is ~8% wider than Tango's with a similar lowest coverage. Exact (Bonferroni
  Clopper-Pearson) intervals are ~55% wider.
- ``tango-bounded``, paired scores in [0, 1] not all 0 or 1: the same interval with g and l the
  sums of the positive and negative parts of the per-sample differences. For given mean gains and
  losses, the difference with the largest variance is the {-1, 0, 1} one, as for `mean_ci`.
- ``bootstrap``, any score outside [0, 1]: the seeded paired percentile bootstrap.

`p_better` (the share of paired-bootstrap resamples in which A's mean beats B's) always comes from
the seeded paired bootstrap.

**The bootstrap itself** (`bootstrap_means`, `bootstrap_ci`, `paired_bootstrap`): resample the
per-sample scores with replacement `n_boot` times, take the mean of each resample, and read the CI
off the quantiles of those means. Resampling is done in chunks of whole resamples so that memory
stays bounded on large suites. Kept for raw numbers and for code that wants it; prefer `mean_ci`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from agentmeta.errors import DataError

if TYPE_CHECKING:
    from agentmeta.eval.types import EvalResult

_CHUNK_CELLS = 4_000_000  # indices drawn per chunk (n_boot_chunk * n), ~32 MB of int64
_TINY = 1e-300


class MeanCI(BaseModel):
    """A mean with its confidence interval."""

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
    method: str = "bootstrap"
    """What made the interval: clopper-pearson, clopper-pearson-bounded or bootstrap (module docs)."""


class PairedComparison(BaseModel):
    """Agent A minus agent B on the same samples: CI of the mean difference and P(A better)."""

    mean_diff: float
    """Mean of the per-sample differences (A - B)."""
    low: float
    """Lower end of the CI of the mean difference."""
    high: float
    """Upper end of the CI of the mean difference."""
    p_better: float
    """Share of seeded paired-bootstrap resamples in which A's mean beats B's (ties count half)."""
    n: int
    """Number of paired samples."""
    confidence: float = 0.95
    """Coverage the interval aims at."""
    method: str = "bootstrap"
    """What made the interval: tango, tango-bounded or bootstrap (module docs)."""


def _scores(values: Sequence[float] | np.ndarray, what: str = "scores") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise DataError(f"expected a 1-D list of {what}; got shape {x.shape}")
    if x.size == 0:
        raise DataError(f"no {what} to summarize: evaluate at least one sample")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{what} must be finite numbers; got {int(np.sum(~np.isfinite(x)))} NaN or inf")
    return x


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise DataError(f"confidence must be in (0, 1); got {confidence}")


def _in_unit(x: np.ndarray) -> bool:
    return bool(np.all((x >= 0.0) & (x <= 1.0)))


def _binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0.0) | (x == 1.0)))


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
    _check_confidence(confidence)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> MeanCI:
    """Mean of `values` with a seeded percentile-bootstrap CI (same seed, same interval).

    Approximate: under-covers at small n and is a point for constant scores; `mean_ci` is the
    interval results report.
    """
    x = np.asarray(values, dtype=np.float64)
    means = bootstrap_means(x, n_boot=n_boot, seed=seed)
    low, high = _interval(means, confidence)
    return MeanCI(
        mean=float(x.mean()), low=low, high=high, n=int(x.size), confidence=confidence, method="bootstrap"
    )


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):  # converges in O(sqrt(max(a, b))) steps
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        for aa in (even, odd):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _beta_cdf(x: float, a: float, b: float) -> float:
    """Regularized incomplete beta I_x(a, b): the CDF of Beta(a, b) at x (a, b > 0)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def _bisect(f: Callable[[float], float], target: float, lo: float, hi: float) -> float:
    """The x in [lo, hi] where a decreasing `f` crosses `target` (to double precision)."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _beta_quantile(q: float, a: float, b: float) -> float:
    return _bisect(lambda x: -_beta_cdf(x, a, b), -q, 0.0, 1.0)


def clopper_pearson(k: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Clopper-Pearson interval of a rate from k successes in n trials (k may be real-valued)."""
    _check_confidence(confidence)
    if n < 1:
        raise DataError(f"Clopper-Pearson needs n >= 1 trials; got {n}")
    k = min(max(float(k), 0.0), float(n))
    alpha = (1.0 - confidence) / 2.0
    low = 0.0 if k <= 0.0 else _beta_quantile(alpha, k, n - k + 1.0)
    high = 1.0 if k >= n else _beta_quantile(1.0 - alpha, k + 1.0, n - k)
    return low, high


def mean_ci(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95, seed: int = 0, n_boot: int = 10_000
) -> MeanCI:
    """The CI of a mean score that every result reports (method chosen from the scores; module docs).

    Scores in [0, 1] get Clopper-Pearson (exact for binary scores, conservative for the rest),
    which keeps its coverage at small n and is never a point. Scores outside [0, 1] get the seeded
    percentile bootstrap (`seed`, `n_boot` are used only then).
    """
    x = _scores(values)
    _check_confidence(confidence)
    if not _in_unit(x):
        return bootstrap_ci(x, confidence=confidence, n_boot=n_boot, seed=seed)
    n = int(x.size)
    binary = _binary(x)
    k = float(np.count_nonzero(x)) if binary else float(x.sum())
    low, high = clopper_pearson(k, n, confidence)
    mean = float(x.mean())
    return MeanCI(
        mean=mean,
        low=min(low, mean),
        high=max(high, mean),
        n=n,
        confidence=confidence,
        method="clopper-pearson" if binary else "clopper-pearson-bounded",
    )


def tango_interval(gains: float, losses: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Tango's score interval of a paired difference of proportions (A - B; module docs).

    `gains`: pairs where A scored and B did not; `losses`: the reverse; `n`: all pairs. Gains and
    losses may be real-valued (sums of the positive and negative parts of bounded differences).
    """
    _check_confidence(confidence)
    if n < 1 or gains < 0 or losses < 0 or gains + losses > n * (1 + 1e-12):
        raise DataError(f"Tango interval needs 0 <= gains + losses <= n >= 1; got {gains}, {losses}, {n}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)

    def score(d: float) -> float:  # decreasing in d
        return _tango_score(gains, losses, n, d)

    return _bisect(score, z, -1.0, 1.0), _bisect(score, -z, -1.0, 1.0)


def _tango_score(gains: float, losses: float, n: int, d: float) -> float:
    """Tango's score statistic of the hypothesis "the paired difference is d" (decreasing in d)."""
    w = -gains - losses + (2.0 * n - gains + losses) * d
    q = (math.sqrt(max(w * w + 8.0 * n * losses * d * (1.0 - d), 0.0)) - w) / (4.0 * n)
    var = n * (2.0 * q + d * (1.0 - d))
    num = gains - losses - n * d
    if var <= 0.0:
        return math.copysign(math.inf, num) if num else 0.0
    return num / math.sqrt(var)


def noninferiority_p(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    margin: float,
    n_boot: int = 10_000,
    seed: int = 0,
) -> float:
    """One-sided p-value of "A is worse than B by `margin` or more" (mean(A - B) <= -margin) on
    paired scores. Small values say A is not inferior: A's loss to B is below the margin.

    For scores in [0, 1] it is the test behind Tango's interval (`tango_interval`): the p-value is
    below a/2 exactly when the lower end of the two-sided (1 - a) interval lies above -margin. For
    raw numbers it is the share of seeded paired-bootstrap means at or below -margin."""
    if not 0.0 <= margin < 1.0:
        raise DataError(f"a non-inferiority margin must be in [0, 1); got {margin}")
    xa, xb = _scores(a), _scores(b)
    if xa.shape != xb.shape or xa.size == 0:
        raise DataError(f"a paired test needs scores on the same samples; got {xa.size} and {xb.size}")
    diff = xa - xb
    if not (_in_unit(xa) and _in_unit(xb)):
        means = bootstrap_means(diff, n_boot=n_boot, seed=seed)
        return float(np.mean(means <= -margin))
    gains, losses = float(diff[diff > 0].sum()), float(-diff[diff < 0].sum())
    return 1.0 - NormalDist().cdf(_tango_score(gains, losses, int(diff.size), -margin))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): a family of hypotheses rejected
    where the adjusted p-value is below a keeps the chance of any false rejection at most a."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    k = len(p_values)
    adjusted = [0.0] * k
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Compare A and B scored on the same samples (same order): CI of mean(A - B) and P(A better).

    Pairing resamples samples, not scores, so the per-sample correlation of the two agents is
    kept; that makes the interval much tighter than comparing two independent CIs. The percentile
    interval is [0, 0] when every pair ties; `paired_ci` is the interval comparisons report.
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
        method="bootstrap",
    )


def paired_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Compare A and B scored on the same samples (same order): the CI of mean(A - B) that
    comparisons report (Tango's score interval for scores in [0, 1], never a point; the paired
    bootstrap for raw numbers) and P(A better) from the seeded paired bootstrap. Module docs."""
    xa, xb = _scores(a), _scores(b)
    if xa.shape != xb.shape:
        raise DataError(f"a paired comparison needs scores on the same samples; got {xa.size} and {xb.size}")
    boot = paired_bootstrap(xa, xb, confidence=confidence, n_boot=n_boot, seed=seed)
    if not (_in_unit(xa) and _in_unit(xb)):
        return boot
    diff = xa - xb
    n = int(diff.size)
    low, high = tango_interval(float(diff[diff > 0].sum()), float(-diff[diff < 0].sum()), n, confidence)
    mean_diff = float(diff.mean())
    return boot.model_copy(
        update={
            "low": min(low, mean_diff),
            "high": max(high, mean_diff),
            "method": "tango" if _binary(xa) and _binary(xb) else "tango-bounded",
        }
    )


def _scored(result: EvalResult, name: str) -> dict[str, float]:
    """Scores by sample id of the records that count; a duplicated sample id is an error."""
    counts = Counter(r.id for r in result.records)
    dupes = [i for i, c in counts.items() if c > 1]
    if dupes:
        raise DataError(
            f"result {name} ({result.agent} on {result.suite}) has {len(dupes)} duplicated sample ids, "
            f"e.g. {dupes[0]!r}: each sample must have one record"
        )
    return result.score_by_id()


def _n_infra(result: EvalResult) -> int:
    return sum(r.outcome == "infra_error" for r in result.records)


def compare_results(
    a: object,
    b: object,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
    *,
    allow_partial: bool = False,
) -> PairedComparison:
    """`paired_ci` of two `EvalResult`s (A - B), aligned on sample ids.

    The two results must have scored the same samples (infrastructure errors are not scored, so
    they can make the sets differ): otherwise a `DataError` says how they differ, unless
    `allow_partial=True`, which compares the shared samples (`n` tells how many).
    """
    from agentmeta.eval.types import EvalResult

    if not isinstance(a, EvalResult) or not isinstance(b, EvalResult):
        raise DataError("compare_results expects two EvalResult objects")
    sa, sb = _scored(a, "A"), _scored(b, "B")
    shared = [i for i in sa if i in sb]
    if not shared:
        raise DataError(
            f"results share no sample ids ({a.suite} vs {b.suite}): evaluate both on the same suite"
        )
    only_a = [i for i in sa if i not in sb]
    only_b = [i for i in sb if i not in sa]
    if (only_a or only_b) and not allow_partial:
        raise DataError(
            f"results scored different samples ({a.agent} vs {b.agent} on {a.suite}): "
            f"{len(only_a)} only in A, {len(only_b)} only in B (e.g. {(only_a or only_b)[0]!r}); "
            f"infrastructure errors (not scored): {_n_infra(a)} in A, {_n_infra(b)} in B; "
            "pass allow_partial=True to compare the shared samples"
        )
    return paired_ci(
        [sa[i] for i in shared], [sb[i] for i in shared], confidence=confidence, n_boot=n_boot, seed=seed
    )
