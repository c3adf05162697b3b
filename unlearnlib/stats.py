"""Uncertainty over seeds: paired differences with 95 % intervals, bootstrap ranks, and the words a chapter may use.

Every reported seed trains its own original and retrain models, so two methods run on the same seed share those
models: their difference is *paired* by seed. :func:`paired_difference` takes the per-seed differences
d_s = a_s - b_s and gives their mean with a t-interval,

    mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n),

which is wide with few seeds (t = 4.30 for 3 seeds, 2.78 for 5), as it should be. A chapter claims "A differs from
B" only when this interval excludes 0 (:attr:`Difference.resolved`); otherwise it says that the seeds cannot
resolve a difference. :func:`format_difference` and :func:`verdict` are the formats the chapters print and glue.
:func:`pareto_front` picks the methods no other beats on both time and quality (the comparison chapter and its plot
use it).

What the seeds can hold, and no more:

* **Diverged runs are not results.** A record with ``diverged`` True (:func:`unlearnlib.metrics.is_diverged`; a
  missing field means not diverged) is left out of every mean, interval and rank, and the tables say "diverged on k
  of S seeds" in its place (:func:`diverged_flags`, :func:`seeds_note`). A difference counts the seeds it used out of
  the seeds that ran (:attr:`Difference.n`, :attr:`Difference.n_ran`): nothing is dropped silently. A *collapsed*
  model (finite, but no better than a constant on the classes it should keep; :func:`unlearnlib.metrics.is_collapsed`)
  has such a record too, with ``collapsed`` True, and the tables say "collapsed on k of S seeds" for it
  (:func:`collapsed_flags`).
* **Ranks within their means.** With fewer than :data:`BOOTSTRAP_MIN_SEEDS` seeds a bootstrap over seeds has too few
  distinct resamples (10 for 3 seeds) to give a rank interval, so :func:`bootstrap_ranks` returns the partial order
  of :func:`partial_order_ranks` instead: A is above B only where the paired interval of their difference resolves
  it, and each method gets the best and worst rank that order allows.
* **Families of claims.** Many claims read off one table are Holm-adjusted (:func:`holm_adjusted`).
* **Bounded metrics.** An interval of a difference of accuracies or MIA shares is clipped to [-1, 1]
  (:func:`metric_bounds`); the true difference lies there, so clipping keeps the coverage and is marked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

#: the confidence level of every interval in the book
LEVEL = 0.95
#: below this many seeds ranks are a partial order from paired intervals, not bootstrap intervals: 3 seeds have
#: only 10 distinct resamples, and a "P(first) 1.0" read off them claims more than 3 seeds hold
BOOTSTRAP_MIN_SEEDS = 10
#: metrics that are shares of images (accuracies, MIA fractions and CV accuracies, REM's scores): they lie in [0, 1]
UNIT_METRICS = ("forget_acc", "retain_acc", "test_acc", "test_forget_acc", "val_acc", "val_forget_acc",
                "mia_entropy_lr", "mia_loss_lr", "mia_efficacy_svc", "healed", "healed_found", "healed_hidden",
                "utility", "utility_x_healed", "healed_test", "target_acc", "user_acc")


def metric_bounds(metric: str) -> tuple[float, float] | None:
    """The range a metric's values lie in, when it is known: ``(0, 1)`` for accuracies (any ``*_acc``, per-class
    ``test_acc/<class>``) and MIA shares; None for anything else (times, distances, aggregates), which is then not
    clipped."""
    if metric in UNIT_METRICS or metric.endswith("_acc") or metric.startswith("test_acc/"):
        return (0.0, 1.0)
    return None


def diverged_flags(df):
    """A boolean Series: which rows of ``df`` are of diverged runs (the ``diverged`` column True). A missing column,
    or a missing value in it (records saved before the field existed), reads as not diverged, as in
    :func:`unlearnlib.metrics.is_diverged`."""
    import pandas as pd

    if "diverged" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["diverged"].map(diverged_value).astype(bool)


def collapsed_flags(df):
    """A boolean Series: which rows of ``df`` are of collapsed models (the ``collapsed`` column True; a subset of
    :func:`diverged_flags`). A missing column or value reads as not collapsed."""
    import pandas as pd

    if "collapsed" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["collapsed"].map(diverged_value).astype(bool) & diverged_flags(df)


def collapsed_table(df, *, by: str = "method", seed: str = "seed"):
    """A seed x method table (the shape of :func:`seed_table`'s): True where every record of the method on that seed
    is of a collapsed model."""
    frame = df[[seed, by]].assign(_collapsed=collapsed_flags(df))
    seeds, methods = sorted(df[seed].unique()), list(dict.fromkeys(df[by]))
    table = frame.groupby([seed, by], sort=True)["_collapsed"].all().unstack(by)
    return table.reindex(index=seeds, columns=methods).fillna(False).astype(bool)


def diverged_value(value) -> bool:
    """The truth of one ``diverged`` field: None and NaN (a record without the field) are False. The one reading of
    the field, shared by :func:`diverged_flags` and :func:`unlearnlib.metrics.is_diverged`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    try:
        return bool(value)
    except (TypeError, ValueError):
        return False


def seeds_note(diverged: int, ran: int, missing: int = 0, collapsed: int = 0) -> str:
    """What a table says in place of a number: ``"diverged on 2 of 5 seeds"`` (and ``"no value on 1 of 5 seeds"``
    for seeds that ran without this metric); ``""`` when every seed that ran gave a value. ``diverged`` counts every
    seed left out for its model (diverged or collapsed), ``collapsed`` the collapsed ones among them:
    ``"collapsed on 2 of 5 seeds"``, or ``"diverged on 1 and collapsed on 1 of 5 seeds"``."""
    parts = []
    seeds = f"of {ran} seed{'s' * (ran != 1)}"
    if diverged and collapsed >= diverged:
        parts.append(f"collapsed on {diverged} {seeds}")
    elif diverged and collapsed:
        parts.append(f"diverged on {diverged - collapsed} and collapsed on {collapsed} {seeds}")
    elif diverged:
        parts.append(f"diverged on {diverged} {seeds}")
    if missing:
        parts.append(f"no value on {missing} of {ran} seed{'s' * (ran != 1)}")
    return "; ".join(parts)


def seed_table(df, metric: str, *, by: str = "method", seed: str = "seed"):
    """Three seed x method tables of one metric: ``values`` (the mean over the seed's non-diverged records; NaN
    where every record diverged or none holds the metric), ``ran`` (the method has a record on that seed) and
    ``diverged`` (every record of the method on that seed diverged). Every method and seed of ``df`` is a column
    and a row, also one that diverged everywhere, so that nothing disappears from a table without a word."""
    flags = diverged_flags(df)
    values = df[metric].astype(float).where(~flags)
    frame = df[[seed, by]].assign(_value=values, _diverged=flags)
    groups = frame.groupby([seed, by], sort=True)
    seeds, methods = sorted(df[seed].unique()), list(dict.fromkeys(df[by]))
    shape = dict(index=seeds, columns=methods)
    table = groups["_value"].mean().unstack(by).reindex(**shape)
    ran = groups.size().unstack(by).reindex(**shape).notna()
    diverged = groups["_diverged"].all().unstack(by).reindex(**shape).fillna(False).astype(bool)
    return table, ran, diverged & ran


def exclusion_note(values, ran, diverged, collapsed=None) -> str:
    """:func:`seeds_note` for one column of :func:`seed_table`: the seeds that diverged (``collapsed``, one column
    of :func:`collapsed_table`, says which of them collapsed), or ran without a value."""
    missing = int((ran & ~diverged & values.isna()).sum())
    n_collapsed = 0 if collapsed is None else int((collapsed & diverged).sum())
    return seeds_note(int(diverged.sum()), int(ran.sum()), missing, n_collapsed)


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided Student-t quantile t_{(1 + level)/2, df}."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class Difference:
    """The mean over seeds of a paired difference a - b, its t-interval and the number of seeds it used.

    ``n_ran`` is the number of seeds that ran (None: the same as ``n``); a seed whose value is NaN (a diverged run)
    ran but is not used, and :func:`format_difference` says "(3 of 5 seeds)". ``se`` is the standard error of the
    mean, ``level`` the interval's confidence level (below 0.95 never; higher after :func:`holm_adjusted`),
    ``bounds`` the range the difference lies in and ``clipped`` whether the interval was cut to it, ``adjusted``
    ``"holm"`` for a Holm-adjusted interval."""

    mean: float
    low: float
    high: float
    n: int
    n_ran: int | None = None
    se: float = float("nan")
    level: float = LEVEL
    bounds: tuple[float, float] | None = None
    clipped: bool = False
    adjusted: str = ""

    @property
    def resolved(self) -> bool:
        """True when the interval excludes 0: the seeds resolve the sign of the difference."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    @property
    def seeds_ran(self) -> int:
        """How many seeds ran (used or not)."""
        return self.n if self.n_ran is None else self.n_ran

    @property
    def standard_error(self) -> float:
        """``se``, or for a Difference built by hand from an unclipped interval, the half-width over t."""
        if not math.isnan(self.se) or self.n < 2 or self.clipped:
            return self.se
        return (self.high - self.low) / 2 / t_quantile(self.n - 1, self.level)

    @property
    def p_value(self) -> float:
        """The two-sided p-value of the paired t-test of "no difference" (NaN with fewer than 2 seeds)."""
        from scipy.stats import t

        se = self.standard_error
        if self.n < 2 or math.isnan(se):
            return float("nan")
        if se == 0:
            return 1.0 if self.mean == 0 else 0.0
        return float(2 * t.sf(abs(self.mean) / se, self.n - 1))

    def scaled(self, factor: float) -> "Difference":
        low, high = sorted((self.low * factor, self.high * factor))
        bounds = None if self.bounds is None else tuple(sorted((self.bounds[0] * factor, self.bounds[1] * factor)))
        return replace(self, mean=self.mean * factor, low=low, high=high, se=self.se * abs(factor), bounds=bounds)


def _interval(mean: float, se: float, n: int, level: float, bounds: tuple[float, float] | None):
    """The t-interval ``mean +- t * se`` cut to ``bounds``: (low, high, clipped)."""
    half = t_quantile(n - 1, level) * se
    low, high = mean - half, mean + half
    if bounds is None:
        return low, high, False
    clipped_low, clipped_high = max(low, bounds[0]), min(high, bounds[1])
    return clipped_low, clipped_high, (clipped_low, clipped_high) != (low, high)


def difference_bounds(value_bounds: tuple[float, float] | None) -> tuple[float, float] | None:
    """The range of ``a - b`` when ``a`` and ``b`` lie in ``value_bounds`` (``(0, 1)`` gives ``(-1, 1)``)."""
    if value_bounds is None:
        return None
    lo, hi = value_bounds
    return (lo - hi, hi - lo)


def paired_difference(a: Sequence[float] | Mapping[int, float], b: Sequence[float] | Mapping[int, float],
                      level: float = LEVEL, *, bounds: tuple[float, float] | None = None) -> Difference:
    """Mean and t-interval of the per-seed differences ``a - b``.

    ``a`` and ``b`` are either sequences in the same seed order or {seed: value} mappings, in which case only the
    seeds both hold are paired (and an error says so when none are). With one seed the interval is infinite. A seed
    where either side is NaN (a diverged run) is not used, and counted: ``n`` is the seeds used, ``n_ran`` the seeds
    paired. ``bounds`` is the range the values lie in (e.g. ``(0, 1)`` for accuracies, :func:`metric_bounds`): the
    interval is then cut to the range of their difference and marked ``clipped``.
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
    ran = len(d)
    d = d[~np.isnan(d)]
    n = len(d)
    span = difference_bounds(bounds)
    if n == 0:
        return Difference(float("nan"), float("nan"), float("nan"), 0, n_ran=ran, level=level, bounds=span)
    mean = float(d.mean())
    if n == 1:
        low, high = (-math.inf, math.inf) if span is None else span
        return Difference(mean, low, high, 1, n_ran=ran, level=level, bounds=span)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    low, high, clipped = _interval(mean, se, n, level, span)
    return Difference(mean, low, high, n, n_ran=ran, se=se, level=level, bounds=span, clipped=clipped)


def holm_adjusted(family, level: float = LEVEL):
    """Holm-Bonferroni step-down over a family of claims read off one table.

    Given p-values (a sequence of numbers), returns the adjusted p-values: sorted ascending, the i-th of m is
    multiplied by m - i + 1 (i from 1), made monotone and capped at 1; a claim holds at ``1 - level`` when its
    adjusted p-value is at most ``1 - level``. Given :class:`Difference` objects (a sequence, or a mapping whose
    values are Differences), returns them with *adjusted intervals*: the i-th smallest p-value is tested at
    alpha / (m - i + 1) until the first that fails; each interval is the t-interval at the level its test used
    (``1 - alpha / (m - i + 1)``; for the first unresolved one and all after it, the level of that first one), so an
    adjusted interval excludes 0 exactly when Holm resolves the claim. A Difference without a p-value (under 2
    seeds) counts in m and is never resolved. ``adjusted`` reads ``"holm"`` and ``level`` the level used."""
    if isinstance(family, Mapping):
        keys = list(family)
        adjusted = holm_adjusted([family[k] for k in keys], level)
        return dict(zip(keys, adjusted))
    items = list(family)
    if not items:
        return []
    if not all(isinstance(d, Difference) for d in items):
        return _holm_p_values(np.asarray(items, float))
    alpha = 1 - level
    p = np.array([d.p_value for d in items])
    p = np.where(np.isnan(p), 1.0, p)
    m = len(items)
    order = np.argsort(p, kind="stable")
    levels = np.empty(m)
    failed_at = None
    for i, idx in enumerate(order):           # i = 0 is the smallest p-value, tested at alpha / m
        if failed_at is None and p[idx] > alpha / (m - i):
            failed_at = i
        levels[idx] = 1 - alpha / (m - (i if failed_at is None else failed_at))
    return [_at_level(d, float(lv)) for d, lv in zip(items, levels)]


def _holm_p_values(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = scaled
    return out


def _at_level(diff: Difference, level: float) -> Difference:
    """``diff`` with its interval recomputed at ``level`` (still cut to its bounds) and marked Holm-adjusted."""
    se = diff.standard_error
    if diff.n < 2 or math.isnan(se):
        return replace(diff, level=level, adjusted="holm")
    low, high, clipped = _interval(diff.mean, se, diff.n, level, diff.bounds)
    return replace(diff, low=low, high=high, se=se, level=level, clipped=clipped, adjusted="holm")


def format_difference(diff: Difference, *, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """``+1.23 [-0.40, +2.86]`` (mean and 95 % interval, times ``scale``, e.g. 100 for accuracy points).

    Seeds left out are counted (``"... (3 of 5 seeds)"``), an interval cut to the metric's range ends in
    ``"clipped"`` and a Holm-adjusted one in ``"Holm"``."""
    of = f" ({diff.n} of {diff.seeds_ran} seeds)" if diff.seeds_ran != diff.n else ""
    if diff.n == 0:
        return "n/a" + of
    d = diff.scaled(scale)
    if diff.n == 1:
        return f"{d.mean:+.{digits}f}{unit} (1 seed{f' of {diff.seeds_ran}' if of else ''}, no interval)"
    marks = "".join([" clipped" if diff.clipped else "", " Holm" if diff.adjusted == "holm" else ""])
    return f"{d.mean:+.{digits}f}{unit} [{d.low:+.{digits}f}, {d.high:+.{digits}f}]{marks}{of}"


def verdict(diff: Difference, a: str, b: str, *, metric: str = "", higher: str = "higher") -> str:
    """What a chapter may say about ``a`` against ``b``: a resolved direction, or that the seeds cannot tell.

    ``higher`` names the direction of a positive difference (e.g. ``"higher"``, ``"further from retrain"``)."""
    what = f" on {metric}" if metric else ""
    seeds = f"{diff.n} of {diff.seeds_ran} seeds" if diff.seeds_ran != diff.n else f"{diff.n} seed{'s' * (diff.n != 1)}"
    if not diff.resolved:
        return f"no difference between {a} and {b}{what} resolved with {seeds}"
    lower = {"higher": "lower", "closer to retrain": "further from retrain",
             "further from retrain": "closer to retrain"}.get(higher, f"not {higher}")
    kind = "Holm-adjusted 95 %" if diff.adjusted == "holm" else "95 %"
    return f"{a} is {higher if diff.mean > 0 else lower} than {b}{what} ({kind} interval over {seeds} excludes 0)"


def compare_with(df, metric: str, reference: str, *, methods: Sequence[str] | None = None, by: str = "method",
                 seed: str = "seed", absolute_gap_to: str | None = None, holm: bool = False,
                 bounds: tuple[float, float] | None | str = "auto"):
    """A table of paired differences ``method - reference`` on ``metric`` over seeds, one row per method.

    With ``absolute_gap_to`` (e.g. ``"retrain"``) the compared quantity is each method's distance
    ``|metric - metric of absolute_gap_to|`` on the same seed, so ``reference`` and the methods are compared by how
    close they come to that model. Columns: mean ``difference``, interval (``low``, ``high``), ``resolved``,
    ``seeds`` (used) and ``seeds ran``, ``clipped`` (the interval was cut to the metric's range: ``bounds``, by
    default :func:`metric_bounds`), ``holm`` and ``excluded`` ("diverged on k of S seeds": those seeds are left out;
    a method diverged on every seed has no number). With ``holm=True`` the table is one family of claims and its
    intervals are Holm-adjusted (:func:`holm_adjusted`); ``attrs["holm"]`` says which.
    """
    import pandas as pd

    values, ran, diverged = seed_table(df, metric, by=by, seed=seed)
    collapsed = collapsed_table(df, by=by, seed=seed)
    if absolute_gap_to is not None:
        values = (values.sub(values[absolute_gap_to], axis=0)).abs()
        ran = ran & ran[[absolute_gap_to]].to_numpy()
    value_bounds = metric_bounds(metric) if bounds == "auto" else bounds
    methods = [m for m in (methods or list(values.columns)) if m != reference and m in values.columns]
    diffs, notes = {}, {}
    for m in methods:
        both = ran.index[ran[m] & ran[reference]]
        diffs[m] = (paired_difference({s: values.at[s, m] for s in both}, {s: values.at[s, reference] for s in both},
                                      bounds=value_bounds)
                    if len(both) else Difference(float("nan"), float("nan"), float("nan"), 0, n_ran=0))
        notes[m] = exclusion_note(values.loc[both, m], ran.loc[both, m], diverged.loc[both, m], collapsed.loc[both, m])
    if holm:
        diffs = holm_adjusted(diffs)
    rows = [{by: m, "difference": d.mean, "low": d.low, "high": d.high, "resolved": d.resolved, "seeds": d.n,
             "seeds ran": d.seeds_ran, "clipped": d.clipped, "holm": holm, "excluded": notes[m]}
            for m, d in diffs.items()]
    columns = [by, "difference", "low", "high", "resolved", "seeds", "seeds ran", "clipped", "holm", "excluded"]
    out = pd.DataFrame(rows, columns=columns).set_index(by)
    out.attrs["holm"] = (f"Holm-adjusted over the {len(diffs)} differences of this table" if holm
                         else "unadjusted 95 % intervals")
    return out


def _rankable(df, metric: str, by: str, seed: str):
    """The seed x method values of the methods with a value on every seed, and a note for each other method (why it
    cannot be ranked by a number: "diverged on 2 of 5 seeds")."""
    values, ran, diverged = seed_table(df, metric, by=by, seed=seed)
    collapsed = collapsed_table(df, by=by, seed=seed)
    complete = [m for m in values.columns if values[m].notna().all()]
    notes = {}
    for m in values.columns:
        if m not in complete:
            note = exclusion_note(values[m], ran[m], diverged[m], collapsed[m])
            notes[m] = note or f"ran on {int(ran[m].sum())} of {len(values)} seeds"
    return values[complete], notes


def _with_excluded(out, notes: Mapping[str, str]):
    """``out`` (ranked methods) followed by one row per method that could not be ranked, with NaN numbers (empty
    text) and the reason in ``excluded``."""
    import pandas as pd

    out = out.assign(excluded="")
    if not notes:
        return out
    extra = pd.DataFrame({c: [np.nan if pd.api.types.is_numeric_dtype(out[c]) else ""] * len(notes)
                          for c in out.columns}, index=list(notes))
    extra["excluded"] = list(notes.values())
    return pd.concat([out, extra])


def _rank_by_mean(means: np.ndarray, sign: float) -> np.ndarray:
    order = np.argsort(sign * means, kind="stable")
    r = np.empty(len(means))
    r[order] = np.arange(1, len(means) + 1)
    return r


def bootstrap_ranks(df, metric: str, *, lower_is_better: bool = True, by: str = "method", seed: str = "seed",
                    n_boot: int = 2000, rng_seed: int = 0, min_seeds: int = BOOTSTRAP_MIN_SEEDS,
                    holm: bool = False):
    """How stable a ranking is: resample the seeds with replacement ``n_boot`` times, rank the methods by their
    mean ``metric`` on each resample (1 = best), and report per method the rank on the observed seeds, the mean
    rank, a 95 % interval of the rank and how often the method ranked first.

    With fewer than ``min_seeds`` seeds (:data:`BOOTSTRAP_MIN_SEEDS`) the bootstrap has too few distinct resamples to
    mean anything, and the ranks are the partial order of :func:`partial_order_ranks` instead (no ``mean rank`` or
    ``P(first)``; ``rank low`` and ``rank high`` are the best and worst rank the resolved pairs allow). A method
    without a value on every seed (e.g. diverged on some) is not ranked: its row has NaN ranks and says why in
    ``excluded``. ``attrs["ranking"]`` names the kind of ranking."""
    values, notes = _rankable(df, metric, by, seed)
    if values.shape[1] == 0:
        raise ValueError(f"no method has {metric!r} on every seed; nothing to rank"
                         + (f" ({'; '.join(f'{m}: {n}' for m, n in notes.items())})" if notes else ""))
    if len(values) < min_seeds:
        return partial_order_ranks(df, metric, lower_is_better=lower_is_better, by=by, seed=seed, holm=holm)
    import pandas as pd

    x = values.to_numpy()
    sign = 1.0 if lower_is_better else -1.0
    rng = np.random.default_rng(rng_seed)
    draws = rng.integers(0, len(x), size=(n_boot, len(x)))
    boot = np.stack([_rank_by_mean(x[d].mean(0), sign) for d in draws])
    lo, hi = np.percentile(boot, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2], axis=0)
    out = pd.DataFrame({"rank": _rank_by_mean(x.mean(0), sign).astype(int), "mean rank": boot.mean(0),
                        "rank low": lo, "rank high": hi, "P(first)": (boot == 1).mean(0)}, index=values.columns)
    out = _with_excluded(out.sort_values("rank"), notes)
    out.attrs["ranking"] = f"bootstrap over {len(values)} seeds ({n_boot} resamples)"
    return out


def partial_order_ranks(df, metric: str, *, lower_is_better: bool = True, by: str = "method", seed: str = "seed",
                        level: float = LEVEL, holm: bool = False):
    """Ranks as far as the seeds resolve them: method A is above B only where the paired interval of their
    difference (:func:`paired_difference`, all seeds) excludes 0 in A's favour; with ``holm=True`` the intervals of
    all pairs are Holm-adjusted as one family.

    The resolved relations are closed under transitivity (A above B above C puts A above C; they cannot form a
    cycle, since the pairs' mean differences add up), and each method gets the best rank (1 + the methods above it)
    and the worst rank (the number of methods - the methods below it) of any order that agrees with them. Columns:
    ``rank`` (by the observed means, for ordering only), ``rank low`` (best possible), ``rank high`` (worst
    possible), ``resolved above`` (the methods it is resolved better than) and ``resolved below`` (those resolved
    better than it), ``seeds`` and ``excluded`` (why a method is not ranked: "diverged on 2 of 5 seeds")."""
    import pandas as pd

    values, notes = _rankable(df, metric, by, seed)
    if values.shape[1] == 0:
        raise ValueError(f"no method has {metric!r} on every seed; nothing to rank")
    methods = list(values.columns)
    sign = 1.0 if lower_is_better else -1.0
    pairs = {(a, b): paired_difference(values[a].to_numpy(), values[b].to_numpy(), level)
             for i, a in enumerate(methods) for b in methods[i + 1:]}
    if holm:
        pairs = holm_adjusted(pairs, level)
    better = {m: set() for m in methods}     # better[a]: the methods a is resolved better than
    for (a, b), d in pairs.items():
        if d.resolved:
            winner, loser = (a, b) if sign * d.mean < 0 else (b, a)
            better[winner].add(loser)
    changed = True
    while changed:                             # transitive closure
        changed = False
        for m in methods:
            reach = set().union(*(better[x] for x in better[m])) - better[m] if better[m] else set()
            if reach:
                better[m] |= reach
                changed = True
    worse = {m: {a for a in methods if m in better[a]} for m in methods}
    order = lambda ms: ", ".join(sorted(ms, key=methods.index))  # noqa: E731
    out = pd.DataFrame({"rank": _rank_by_mean(values.mean().to_numpy(), sign).astype(int),
                        "rank low": [1 + len(worse[m]) for m in methods],
                        "rank high": [len(methods) - len(better[m]) for m in methods],
                        "resolved above": [order(better[m]) for m in methods],
                        "resolved below": [order(worse[m]) for m in methods],
                        "seeds": len(values)}, index=methods)
    out = _with_excluded(out.sort_values("rank"), notes)
    adjusted = ", Holm-adjusted over all pairs" if holm else ""
    out.attrs["ranking"] = f"partial order from paired {level:.0%} intervals over {len(values)} seeds{adjusted}"
    return out


def pareto_front(seconds: Sequence[float], cost: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats on both axes (lower time and lower cost; ties keep both), in
    order of time: the methods worth considering when both speed and quality matter. A point with a NaN
    coordinate (a method without a number, e.g. diverged on every seed) is never on the front."""
    seconds, cost = np.asarray(seconds, float), np.asarray(cost, float)
    if seconds.shape != cost.shape:
        raise ValueError(f"seconds and cost differ in length ({len(seconds)} vs {len(cost)})")
    finite = np.isfinite(seconds) & np.isfinite(cost)  # a method without a number (diverged) is on no front
    keep = [i for i in range(len(seconds)) if finite[i]
            and not np.any((seconds <= seconds[i]) & (cost <= cost[i]) & ((seconds < seconds[i]) | (cost < cost[i])))]
    return np.array(sorted(keep, key=lambda i: (seconds[i], cost[i])), dtype=int)
