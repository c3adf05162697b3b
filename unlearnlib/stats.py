"""Uncertainty over seeds: paired differences with 95 % intervals, bootstrap ranks, and the words a chapter may use.

Every reported seed trains its own original and retrain models, so two methods run on the same seed share those
models: their difference is *paired* by seed. :func:`paired_difference` takes the per-seed differences
d_s = a_s - b_s and gives their mean with a t-interval,

    mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n),

which is wide with few seeds (t = 4.30 for 3 seeds, 2.78 for 5), as it should be. A chapter claims "A differs from
B" only when this interval excludes 0 (:attr:`Difference.resolved`); otherwise it says that the seeds cannot
resolve a difference. :func:`bootstrap_ranks` resamples the seeds with replacement to show how stable a ranking
under one metric is. :func:`format_difference` and :func:`verdict` are the formats the chapters print and glue.
:func:`pareto_front` picks the methods no other beats on both time and quality (the comparison chapter and its plot
use it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

#: the confidence level of every interval in the book
LEVEL = 0.95


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile t_{(1 + level)/2, df}."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class Difference:
    """The mean over seeds of a paired difference a - b, its 95 % t-interval and the number of seeds."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def resolved(self) -> bool:
        """True when the interval excludes 0: the seeds resolve the sign of the difference."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def scaled(self, factor: float) -> "Difference":
        return Difference(self.mean * factor, self.low * factor, self.high * factor, self.n)


def paired_difference(a: Sequence[float] | Mapping[int, float], b: Sequence[float] | Mapping[int, float],
                      level: float = LEVEL) -> Difference:
    """Mean and t-interval of the per-seed differences ``a - b``.

    ``a`` and ``b`` are either sequences in the same seed order or {seed: value} mappings, in which case only the
    seeds both hold are paired (and an error says so when none are). With one seed the interval is infinite.
    """
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            raise TypeError("give both a and b as {seed: value} mappings, or both as sequences in seed order")
        seeds = sorted(set(a) & set(b))
        if not seeds:
            raise ValueError(f"no seed in common to pair: {sorted(a)} vs {sorted(b)}")
        a, b = [a[s] for s in seeds], [b[s] for s in seeds]
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values need the same seeds on both sides, got {x.shape} and {y.shape}")
    d = x - y
    d = d[~np.isnan(d)]
    n = len(d)
    if n == 0:
        return Difference(float("nan"), float("nan"), float("nan"), 0)
    mean = float(d.mean())
    if n == 1:
        return Difference(mean, -math.inf, math.inf, 1)
    half = t_quantile(n - 1, level) * float(d.std(ddof=1)) / math.sqrt(n)
    return Difference(mean, mean - half, mean + half, n)


def format_difference(diff: Difference, *, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """``+1.23 [-0.40, +2.86]`` (mean and 95 % interval, times ``scale``, e.g. 100 for accuracy points)."""
    if diff.n == 0:
        return "n/a"
    d = diff.scaled(scale)
    if diff.n == 1:
        return f"{d.mean:+.{digits}f}{unit} (1 seed, no interval)"
    return f"{d.mean:+.{digits}f}{unit} [{d.low:+.{digits}f}, {d.high:+.{digits}f}]"


def verdict(diff: Difference, a: str, b: str, *, metric: str = "", higher: str = "higher") -> str:
    """What a chapter may say about ``a`` against ``b``: a resolved direction, or that the seeds cannot tell.

    ``higher`` names the direction of a positive difference (e.g. ``"higher"``, ``"further from retrain"``)."""
    what = f" on {metric}" if metric else ""
    if not diff.resolved:
        return f"no difference between {a} and {b}{what} resolved with {diff.n} seed{'s' * (diff.n != 1)}"
    lower = {"higher": "lower", "closer to retrain": "further from retrain",
             "further from retrain": "closer to retrain"}.get(higher, f"not {higher}")
    return f"{a} is {higher if diff.mean > 0 else lower} than {b}{what} (95 % interval over {diff.n} seeds excludes 0)"


def compare_with(df, metric: str, reference: str, *, methods: Sequence[str] | None = None, by: str = "method",
                 seed: str = "seed", absolute_gap_to: str | None = None):
    """A table of paired differences ``method - reference`` on ``metric`` over seeds, one row per method.

    With ``absolute_gap_to`` (e.g. ``"retrain"``) the compared quantity is each method's distance
    ``|metric - metric of absolute_gap_to|`` on the same seed, so ``reference`` and the methods are compared by how
    close they come to that model. Columns: mean difference, interval, resolved, n seeds.
    """
    import pandas as pd

    values = df.pivot_table(index=seed, columns=by, values=metric, aggfunc="mean")
    if absolute_gap_to is not None:
        values = (values.sub(values[absolute_gap_to], axis=0)).abs()
    methods = [m for m in (methods or list(values.columns)) if m != reference and m in values.columns]
    rows = []
    for m in methods:
        d = paired_difference(dict(values[m].dropna()), dict(values[reference].dropna()))
        rows.append({by: m, "difference": d.mean, "low": d.low, "high": d.high, "resolved": d.resolved, "seeds": d.n})
    return pd.DataFrame(rows).set_index(by)


def bootstrap_ranks(df, metric: str, *, lower_is_better: bool = True, by: str = "method", seed: str = "seed",
                    n_boot: int = 2000, rng_seed: int = 0):
    """How stable a ranking is: resample the seeds with replacement ``n_boot`` times, rank the methods by their
    mean ``metric`` on each resample (1 = best), and report per method the rank on the observed seeds, the mean
    rank, a 95 % interval of the rank and how often the method ranked first."""
    import pandas as pd

    values = df.pivot_table(index=seed, columns=by, values=metric, aggfunc="mean").dropna(axis=1, how="any")
    if values.empty:
        raise ValueError(f"no method has {metric!r} on every seed; nothing to rank")
    x = values.to_numpy()
    sign = 1.0 if lower_is_better else -1.0

    def ranks(means: np.ndarray) -> np.ndarray:
        order = np.argsort(sign * means, kind="stable")
        r = np.empty(len(means))
        r[order] = np.arange(1, len(means) + 1)
        return r

    rng = np.random.default_rng(rng_seed)
    draws = rng.integers(0, len(x), size=(n_boot, len(x)))
    boot = np.stack([ranks(x[d].mean(0)) for d in draws])
    lo, hi = np.percentile(boot, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2], axis=0)
    out = pd.DataFrame({"rank": ranks(x.mean(0)).astype(int), "mean rank": boot.mean(0), "rank low": lo,
                        "rank high": hi, "P(first)": (boot == 1).mean(0)}, index=values.columns)
    return out.sort_values("rank")


def pareto_front(seconds: Sequence[float], cost: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats on both axes (lower time and lower cost; ties keep both), in
    order of time: the methods worth considering when both speed and quality matter."""
    seconds, cost = np.asarray(seconds, float), np.asarray(cost, float)
    if seconds.shape != cost.shape:
        raise ValueError(f"seconds and cost differ in length ({len(seconds)} vs {len(cost)})")
    keep = [i for i in range(len(seconds))
            if not np.any((seconds <= seconds[i]) & (cost <= cost[i]) & ((seconds < seconds[i]) | (cost < cost[i])))]
    return np.array(sorted(keep, key=lambda i: (seconds[i], cost[i])), dtype=int)
