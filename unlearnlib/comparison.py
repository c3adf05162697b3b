"""The comparison chapter's bookkeeping: every method on the same tasks, read from the chapters that measured it or
run here when they did not.

A *plan* says, for each common task and each method, how the comparison gets its numbers::

    plan = {"full class": {"retrain": Cell(Setting("retrain"), Source("foundations", "full class (Sneaker)", "retrain")),
                           "npo": Cell(Setting("npo", {...})),
                           "classlevel": Cell(why_not="needs a class to forget")}}

:func:`gather` reads every cell that another chapter measured on every seed with every metric the comparison
shows, runs the rest (saving ``results/comparison/<profile>.json`` atomically after each task and seed, so an
interrupted run resumes where it stopped), and returns one table. :func:`leaderboard` turns it into gaps to the
retrain reference, paired by seed, and :func:`pareto_front` finds the methods no other beats on both time and
quality.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from . import _io
from ._progress import tqdm
from .experiment import Setting
from .results import load_results, save_results
from .stats import pareto_front  # noqa: F401  (defined in the core, where plotting can use it; re-exported)

if TYPE_CHECKING:  # pandas is imported where it is used, so that importing this module stays cheap
    import pandas as pd

#: a runner executes some methods on one seed of one task and returns their records (``method`` = the label)
Runner = Callable[[Mapping[str, Setting], int], list]


@dataclass(frozen=True)
class Source:
    """Where another chapter stored a method's runs: its results file's chapter, task label and method label, plus
    column filters (``where={"discovery_rate": 0.25}``) for files that hold several settings of one task."""

    chapter: str
    task: str
    method: str
    where: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One method on one task: read from ``source`` when that chapter measured it, else run ``setting``; or, with
    ``why_not``, the method does not apply and the comparison says why instead of leaving it out."""

    setting: Setting | None = None
    source: Source | None = None
    why_not: str = ""

    def __post_init__(self):
        if self.why_not and (self.setting or self.source):
            raise ValueError("a cell that does not apply (why_not) takes no setting or source")
        if not self.why_not and self.setting is None:
            raise ValueError("a cell needs a setting to run (and optionally a source to read), or a why_not reason")


Plan = Mapping[str, Mapping[str, Cell]]


def source_records(df, source: Source, seed: int, required: Sequence[str], hparams: Mapping | None = None) -> list[dict]:
    """The records of ``source`` for ``seed`` if they hold every ``required`` metric and, when ``hparams`` is given,
    were run with exactly those hyperparameters; else an empty list (the cell is then run, e.g. when a chapter
    evaluated only accuracies and the comparison also shows a MIA)."""
    if df is None or df.empty:
        return []
    sel = (df["chapter"] == source.chapter) & (df["task"] == source.task) & (df["method"] == source.method)
    sel &= df["seed"] == seed
    for column, value in source.where.items():
        if column not in df.columns:
            return []
        sel &= df[column] == value
    rows = df[sel]
    if rows.empty or any(m not in rows.columns or rows[m].isna().any() for m in required):
        return []
    records = [{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))}
               for r in rows.to_dict("records")]
    return records if all(same_setting(r, hparams) for r in records) else []


def same_setting(record: Mapping, hparams: Mapping | None) -> bool:
    """Whether ``record`` was run with ``hparams`` (compared as JSON; True when either side does not say)."""
    if hparams is None or not isinstance(record.get("hparams"), str):
        return True
    return json.loads(record["hparams"]) == json.loads(json.dumps(dict(hparams), default=str))


def _own_records(chapter: str, profile: str, root) -> list[dict]:
    """What an earlier (possibly interrupted) comparison run saved; a damaged file is an error naming its path."""
    from .config import results_root

    path = (Path(root) if root is not None else results_root()) / chapter / f"{profile}.json"
    if not path.exists():
        return []
    payload = _io.read_json(path, remedy="delete it to re-run the comparison")
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise ValueError(f"the file {path} is damaged (no list of records); delete it to re-run the comparison")
    return payload["records"]


def gather(plan: Plan, runners: Mapping[str, Runner], *, seeds: Sequence[int], profile: str,
           required: Mapping[str, Sequence[str]], chapter: str = "comparison", root=None, config: dict | None = None,
           progress: bool = True):
    """One table of every applicable cell of ``plan`` on every seed, with a ``source`` column naming the chapter
    the numbers come from (``chapter`` itself for runs made here).

    ``runners[task]`` runs the missing methods of one seed; ``required[task]`` lists the metrics a record must
    hold to be reused. Runs made here are saved to ``<root>/<chapter>/<profile>.json`` after every task and seed
    (atomically): a second call, or one after an interruption, runs nothing that is already there with the same
    hyperparameters (a run whose setting changed since is run again and replaced).
    """
    import pandas as pd

    unknown = sorted(set(plan) - set(runners))
    if unknown:
        raise ValueError(f"no runner for task(s) {unknown}; pass one per task in the plan")
    if not seeds:
        raise ValueError("gather needs at least one seed")
    try:
        others = load_results(profile=profile, root=root)
        others = others[others["chapter"] != chapter]
    except FileNotFoundError:
        others = None
    own = _own_records(chapter, profile, root)
    served: set = set()  # cells a chapter's results answered: an earlier run of them here is dropped from the file
    rows: list[dict] = []
    cells = [(task, seed) for task in plan for seed in seeds]
    for task, seed in tqdm(cells, desc="comparison", disable=not progress):
        missing: dict[str, Setting] = {}
        for label, cell in plan[task].items():
            if cell.why_not:
                continue
            found = (source_records(others, cell.source, seed, required[task], cell.setting.hparams)
                     if cell.source else [])
            if found:
                rows += [{**r, "task": task, "method": label, "source": cell.source.chapter} for r in found]
                served.add((task, label, seed))
                continue
            done = [r for r in own if r["task"] == task and r["method"] == label and r["seed"] == seed
                    and same_setting(r, cell.setting.hparams)]
            if done:
                rows += [{**r, "source": chapter} for r in done]
            else:
                missing[label] = cell.setting
        if missing:
            new = [{**r, "task": task, "seed": seed} for r in runners[task](missing, seed)]
            stale = {(task, label, seed) for label in missing}  # earlier runs of a setting that changed since
            own = [r for r in own if (r["task"], r["method"], r["seed"]) not in stale] + new
            rows += [{**r, "source": chapter} for r in new]
            save_results(chapter, profile, own, config=config, root=root)
    kept = [r for r in own if (r["task"], r["method"], r["seed"]) not in served]
    if len(kept) < len(own) and kept:
        save_results(chapter, profile, kept, config=config, root=root)
    return pd.DataFrame(rows)


def coverage(plan: Plan, df) -> "pd.DataFrame":
    """Method x task: the chapter each cell's numbers come from ("comparison" = run here), or why it does not
    apply."""
    import pandas as pd

    table: dict[str, dict[str, str]] = {}
    for task, cells in plan.items():
        for label, cell in cells.items():
            if cell.why_not:
                entry = "n/a: " + cell.why_not
            else:
                sources = df[(df["task"] == task) & (df["method"] == label)]["source"]
                entry = ", ".join(sorted(set(sources))) or "not run"
            table.setdefault(label, {})[task] = entry
    return pd.DataFrame(table).T.fillna("")


def _reference_by_seed(part, columns: Sequence[str], reference: str, task) -> "pd.DataFrame":
    """The ``reference`` method's ``columns`` per seed on one task, from its non-diverged runs; an error when the
    task has no reference rows."""
    from .stats import diverged_flags

    ref_rows = part[part["method"] == reference]
    if ref_rows.empty:
        raise ValueError(f"task {task!r} has no {reference!r} rows to compare with")
    ref = ref_rows[~diverged_flags(ref_rows)].groupby("seed")[list(columns)].mean()
    if ref.empty:
        raise ValueError(f"task {task!r}: the {reference!r} runs diverged on every seed; there is nothing to compare "
                         f"with")
    return ref


def leaderboard(df, metrics: Sequence[str], *, reference: str = "retrain", holm: bool = False) -> "pd.DataFrame":
    """Per task and method: mean and std over seeds of ``metric - reference's metric`` (paired by seed), the mean
    absolute gap over ``metrics`` (``mean |gap|``), the seconds and the speed-up over the reference's seconds.

    Columns are ``<metric> gap``, ``<metric> gap std``, ``<metric> gap low`` and ``high`` (the 95 % t-interval of
    the paired gap, :func:`~unlearnlib.stats.paired_difference`, cut to [-1, 1] for a metric in [0, 1]: ``<metric>
    clipped``), ``<metric> resolved`` (the interval excludes 0), ``mean |gap|``, ``mean |gap| std``, ``seconds``,
    ``speed-up``, ``seeds`` (used), ``seeds ran``, ``diverged seeds``, ``excluded`` ("diverged on k of S seeds") and
    ``holm``. Diverged runs are left out of every number; a method diverged on every seed keeps its row, with NaN
    numbers. With ``holm=True`` each task's gap intervals (every method but the reference, every metric) are one
    family, Holm-adjusted (:func:`~unlearnlib.stats.holm_adjusted`). A task without reference rows raises, since
    there is nothing to compare with.
    """
    import pandas as pd

    from .stats import collapsed_flags, diverged_flags, holm_adjusted, metric_bounds, paired_difference, seeds_note

    columns = list(metrics) + ["seconds"]
    rows, diffs = [], {}
    flags, collapsed = diverged_flags(df), collapsed_flags(df)
    for task, part in df.groupby("task", sort=False):
        ref = _reference_by_seed(part, columns, reference, task)
        ref_seeds = set(part.loc[part["method"] == reference, "seed"])
        for method, runs in part.groupby("method", sort=False):
            runs = runs[runs["seed"].isin(ref_seeds)]
            if runs.empty:
                continue
            ran = runs.groupby("seed").size().index
            gone = flags.loc[runs.index]
            out_seeds = set(runs.loc[gone, "seed"]) - set(runs.loc[~gone, "seed"])
            per_seed = runs[~gone & runs["seed"].isin(ref.index)].groupby("seed")[columns].mean()
            gaps = per_seed[list(metrics)] - ref.loc[per_seed.index, list(metrics)]
            mean_abs = gaps.abs().mean(axis=1)
            row = {"task": task, "method": method}
            for m in metrics:
                row[f"{m} gap"] = gaps[m].mean()
                row[f"{m} gap std"] = gaps[m].std(ddof=1)
                diff = paired_difference(per_seed[m].to_dict(), ref.loc[per_seed.index, m].to_dict(),
                                         bounds=metric_bounds(m)) if len(per_seed) else None
                if diff is not None and method != reference:
                    diffs[(task, method, m)] = diff
                row[f"{m} gap low"], row[f"{m} gap high"] = (diff.low, diff.high) if diff else (np.nan, np.nan)
                row[f"{m} resolved"], row[f"{m} clipped"] = (diff.resolved, diff.clipped) if diff else (False, False)
            row["mean |gap|"], row["mean |gap| std"] = mean_abs.mean(), mean_abs.std(ddof=1)
            row["seconds"] = per_seed["seconds"].mean()
            row["speed-up"] = (ref.loc[per_seed.index, "seconds"].mean() / row["seconds"]
                               if row["seconds"] > 0 else np.nan)
            row["seeds"], row["seeds ran"], row["diverged seeds"] = len(per_seed), len(ran), len(out_seeds)
            gone_collapsed = set(runs.loc[collapsed.loc[runs.index], "seed"]) & out_seeds
            row["excluded"] = seeds_note(len(out_seeds), len(ran), collapsed=len(gone_collapsed))
            row["holm"] = holm
            rows.append(row)
    board = pd.DataFrame(rows).set_index(["task", "method"])
    if holm:
        for task in dict.fromkeys(key[0] for key in diffs):
            family = {key: d for key, d in diffs.items() if key[0] == task}
            for (t, method, m), d in holm_adjusted(family).items():
                board.loc[(t, method), [f"{m} gap low", f"{m} gap high", f"{m} resolved", f"{m} clipped"]] = \
                    [d.low, d.high, d.resolved, d.clipped]
    board.attrs["holm"] = ("Holm-adjusted per task over every method's gap on every metric" if holm
                           else "unadjusted 95 % intervals")
    return board


def _complete(board) -> "pd.Series":
    """0 for a row measured on every seed that ran, 1 for one with seeds left out, 2 for one with no seed left."""
    seeds = board["seeds"] if "seeds" in board else 1
    ran = board["seeds ran"] if "seeds ran" in board else seeds
    return np.where(seeds == 0, 2, np.where(seeds < ran, 1, 0))


def format_leaderboard(board, metrics: Sequence[str], *, scale: float = 100.0, digits: int = 1) -> "pd.DataFrame":
    """``mean ± std`` strings (in points when ``scale=100``), best ``mean |gap|`` first within each task.

    Rows with diverged seeds come after the rows measured on every seed (they cannot be ranked by a number):
    ``seeds`` then reads "3 of 5" and a ``diverged`` column says "diverged on 2 of 5 seeds"; a method diverged on
    every seed reads that in place of every number."""
    import pandas as pd

    def pm(mean, std, sign="+"):
        if np.isnan(mean):
            return "–"
        return f"{mean * scale:{sign}.{digits}f}" + ("" if np.isnan(std) else f" ± {std * scale:.{digits}f}")

    def speed(s):
        return "–" if not np.isfinite(s) else (f"{s:.0f}×" if s >= 10 else f"{s:.1f}×")

    notes = board["excluded"] if "excluded" in board else pd.Series("", index=board.index)
    none_left = _complete(board) == 2
    out = pd.DataFrame(index=board.index)
    for m in metrics:
        out[f"Δ {m}"] = [pm(a, b) for a, b in zip(board[f"{m} gap"], board[f"{m} gap std"])]
    out["mean |gap|"] = [pm(a, b, "") for a, b in zip(board["mean |gap|"], board["mean |gap| std"])]
    for column in list(out.columns):
        out.loc[none_left, column] = notes[none_left]
    out["seconds"] = board["seconds"].map(lambda s: "–" if np.isnan(s) else f"{s:.1f}")
    out["speed-up"] = board["speed-up"].map(speed)
    if "seeds ran" in board and (board["seeds"] != board["seeds ran"]).any():
        out["seeds"] = [str(n) if n == r else f"{n} of {r}" for n, r in zip(board["seeds"], board["seeds ran"])]
    else:
        out["seeds"] = board["seeds"]
    if (notes != "").any():
        out["diverged"] = notes
    tasks = list(dict.fromkeys(board.index.get_level_values("task")))
    ranked = board.reset_index()
    ranked["task_order"] = ranked["task"].map(tasks.index)
    ranked["complete"] = _complete(board)
    ranked = ranked.sort_values(["task_order", "complete", "mean |gap|"], kind="stable")
    return out.loc[list(zip(ranked["task"], ranked["method"]))]


def gap_ranks(df, metrics: Sequence[str], *, reference: str = "retrain", n_boot: int = 2000,
              rng_seed: int = 0, holm: bool = False) -> "pd.DataFrame":
    """Per task and metric, each method's rank by its distance to the reference, ``|metric - reference's metric|``
    on the same seed (:func:`~unlearnlib.stats.bootstrap_ranks`).

    With fewer than :data:`~unlearnlib.stats.BOOTSTRAP_MIN_SEEDS` seeds the ranks are the partial order of the
    paired intervals (:func:`~unlearnlib.stats.partial_order_ranks`: ``rank low`` and ``rank high`` are the best and
    worst rank the resolved pairs allow, ``resolved above``/``resolved below`` name them; ``holm=True`` adjusts the
    pairs' intervals as one family); from there on, a bootstrap over seeds (``rank low``/``rank high`` a 95 %
    interval, ``P(first)``).

    One ranking per metric, not one over an average of them, so that a reader sees which property each method gets
    right. The reference itself is not ranked (its distance is 0 by definition); a method without a value on every
    seed of the task (diverged on some) is not ranked by a number: its row has NaN ranks and says why in
    ``excluded``. Rows: (task, metric, method); columns of the ranking plus ``mean gap`` (the mean distance, NaN for
    a method not ranked) and ``methods`` (how many were ranked); ``attrs["ranking"]`` names the kind."""
    import pandas as pd

    from .stats import bootstrap_ranks, diverged_flags

    rows, kinds = [], set()
    flags = diverged_flags(df)
    for task, part in df.groupby("task", sort=False):
        ref = _reference_by_seed(part, metrics, reference, task)
        others = part[(part["method"] != reference) & part["seed"].isin(ref.index)]
        for metric in metrics:
            long = pd.DataFrame({"seed": others["seed"], "method": others["method"],
                                 "gap": (others[metric].astype(float)
                                         - ref.loc[others["seed"], metric].to_numpy()).abs(),
                                 "diverged": flags.loc[others.index]})
            long = long[long["gap"].notna() | long["diverged"]]
            if long.empty:
                continue
            ranked = bootstrap_ranks(long, "gap", lower_is_better=True, n_boot=n_boot, rng_seed=rng_seed,
                                     holm=holm)
            kinds.add(ranked.attrs.get("ranking", ""))
            means = long[~long["diverged"]].groupby("method")["gap"].mean()
            n_ranked = int((ranked["excluded"] == "").sum())
            for method, r in ranked.iterrows():
                rows.append({"task": task, "metric": metric, "method": method, **r.to_dict(),
                             "mean gap": float(means.get(method, np.nan)) if r["excluded"] == "" else np.nan,
                             "methods": n_ranked})
    out = pd.DataFrame(rows).set_index(["task", "metric", "method"])
    out.attrs["ranking"] = "; ".join(sorted(kinds))
    return out


def format_ranks(ranks, task: str) -> "pd.DataFrame":
    """One task's :func:`gap_ranks` as a method x metric table, methods in the order of their mean rank over the
    metrics. A partial order (fewer than 10 seeds) reads ``best-worst`` (the range of ranks the resolved pairs
    allow; one number when they fix it); a bootstrap reads ``rank [low-high]`` (its 95 % interval); a method that
    could not be ranked reads why ("diverged on 2 of 5 seeds")."""
    part = ranks.xs(task, level="task")
    partial = "resolved above" in part.columns
    notes = part["excluded"] if "excluded" in part.columns else None

    def cell(r):
        if notes is not None and r["excluded"]:
            return r["excluded"]
        low, high = int(r["rank low"]), int(r["rank high"])
        if partial:
            return f"{low}" if low == high else f"{low}-{high}"
        return f"{int(r['rank'])} [{r['rank low']:.0f}-{r['rank high']:.0f}]"

    text = part.apply(cell, axis=1)
    table = text.unstack("metric")
    middle = (part["rank low"] + part["rank high"]) / 2 if partial else part["rank"]
    order = middle.unstack("metric").mean(axis=1).sort_values(na_position="last").index
    return table.loc[order, list(dict.fromkeys(part.index.get_level_values("metric")))]


def tied_with_best(df, metric: str, *, reference: str = "retrain", higher_is_better: bool | None = None,
                   methods: Sequence[str] | None = None, holm: bool = False) -> "pd.DataFrame":
    """Which methods the seeds cannot separate from the best on ``metric``.

    By default (``higher_is_better=None``) a method is scored by its distance to ``reference`` on the same seed
    (lower is better); with ``higher_is_better`` True or False the metric's own value is the score. The best is the
    method with the best mean score; each other method's paired difference to it gets a 95 % t-interval
    (:func:`~unlearnlib.stats.paired_difference`, cut to the metric's range), Holm-adjusted as one family with
    ``holm=True``. Columns: ``score`` (mean), ``difference``, ``low``, ``high``, ``tied`` (the interval includes 0,
    or the method is the best), ``best``, ``clipped``, ``holm`` and ``excluded``; rows in order of score. A method
    without a value on every seed (diverged on some) cannot be compared by a number: it comes last, with NaN
    numbers, never tied, and ``excluded`` says why ("diverged on 2 of 5 seeds")."""
    import pandas as pd

    from .stats import collapsed_table, exclusion_note, holm_adjusted, metric_bounds, paired_difference, seed_table

    values, ran, diverged = seed_table(df, metric)
    collapsed = collapsed_table(df)
    if higher_is_better is None:
        if reference not in values.columns:
            raise ValueError(f"no {reference!r} rows to measure distances to")
        keep = values[reference].notna()
        if not keep.any():
            raise ValueError(f"the {reference!r} rows have no {metric!r} on any seed (diverged?); no distances")
        ref_values = values.loc[keep, reference]
        values, ran, diverged, collapsed = (t.loc[keep].drop(columns=reference)
                                            for t in (values, ran, diverged, collapsed))
        values = values.sub(ref_values, axis=0).abs()
        sign = -1.0
    else:
        sign = 1.0 if higher_is_better else -1.0
    if methods is not None:
        chosen = [m for m in methods if m in values.columns]
        values, ran, diverged, collapsed = values[chosen], ran[chosen], diverged[chosen], collapsed[chosen]
    complete = [m for m in values.columns if values[m].notna().all()]
    notes = {m: exclusion_note(values[m], ran[m], diverged[m], collapsed[m]) or f"ran on {int(ran[m].sum())} of {len(values)} seeds"
             for m in values.columns if m not in complete}
    if not complete:
        raise ValueError(f"no method has {metric!r} on every seed"
                         + (f" ({'; '.join(f'{m}: {n}' for m, n in notes.items())})" if notes else ""))
    means = values[complete].mean()
    best = (sign * means).idxmax()
    diffs = {m: paired_difference(values[m].to_dict(), values[best].to_dict(), bounds=metric_bounds(metric))
             for m in complete if m != best}
    if holm:
        diffs = holm_adjusted(diffs)
    rows = [{"method": best, "score": means[best], "difference": 0.0, "low": 0.0, "high": 0.0, "tied": True,
             "best": True, "clipped": False}]
    rows += [{"method": m, "score": means[m], "difference": d.mean, "low": d.low, "high": d.high,
              "tied": not d.resolved, "best": False, "clipped": d.clipped} for m, d in diffs.items()]
    out = pd.DataFrame(rows).set_index("method").assign(holm=holm, excluded="")
    out = out.loc[(sign * out["score"]).sort_values(ascending=False, kind="stable").index]
    if notes:
        extra = pd.DataFrame({"score": np.nan, "difference": np.nan, "low": np.nan, "high": np.nan, "tied": False,
                              "best": False, "clipped": False, "holm": holm, "excluded": list(notes.values())},
                             index=pd.Index(list(notes), name="method"))
        out = pd.concat([out, extra])
    out.attrs["holm"] = (f"Holm-adjusted over the {len(diffs)} differences to the best" if holm
                         else "unadjusted 95 % intervals")
    return out


def seed_gaps(df, metrics: Sequence[str], *, reference: str = "retrain") -> "pd.DataFrame":
    """Per task, method and seed: the mean over ``metrics`` of ``|metric - reference's metric|`` on that seed (the
    reference's own rows are left out). One aggregate *view*: which metrics enter it decides what it rewards, so a
    chapter shows several. Columns ``task``, ``method``, ``seed``, ``mean |gap|`` and ``diverged``: a diverged run
    keeps its row, with a NaN gap and ``diverged`` True, so that the tables built on it (:func:`tied_with_best`)
    say "diverged on k of S seeds" instead of losing the seed."""
    import pandas as pd

    from .stats import diverged_flags

    rows = []
    flags = diverged_flags(df)
    for task, part in df.groupby("task", sort=False):
        ref = _reference_by_seed(part, metrics, reference, task)
        for method, runs in part[part["method"] != reference].groupby("method", sort=False):
            runs = runs[runs["seed"].isin(ref.index)]
            gone = flags.loc[runs.index]
            per_seed = runs[~gone].groupby("seed")[list(metrics)].mean()
            gap = (per_seed - ref.loc[per_seed.index]).abs().mean(axis=1)
            rows += [{"task": task, "method": method, "seed": seed, "mean |gap|": g, "diverged": False}
                     for seed, g in gap.items()]
            rows += [{"task": task, "method": method, "seed": seed, "mean |gap|": np.nan, "diverged": True}
                     for seed in sorted(set(runs.loc[gone, "seed"]) - set(per_seed.index))]
    return pd.DataFrame(rows, columns=["task", "method", "seed", "mean |gap|", "diverged"])


def _as_json(value):
    return json.loads(json.dumps(value, default=str))


def reuse_tuning(config: Mapping | None, grids: Mapping[str, Sequence[Mapping]], *, requests: Sequence[str],
                 seed: int | Sequence[int]) -> tuple[dict[str, dict], dict[str, list]]:
    """Split ``grids`` into the choices another chapter's tuning already made and the grids still to tune here.

    ``config`` is a tuning record saved in a chapter's results file (the ``config`` of
    :func:`~unlearnlib.experiment.tune` or :func:`~unlearnlib.experiment.tune_corrupted`). A method's choice is
    reused only when that tuning ran on the same request(s) (their descriptions) and tuning seed(s) (``seed``, one or
    several, against the config's ``seeds``) with exactly the same grid, hence the same budget, and with the same
    code: the config's ``code`` entry for the method (:func:`~unlearnlib.provenance.tuning_fingerprints`: the
    method's code and the tuning logic) equals the fingerprint of the code here. A config without it (made before
    fingerprints were recorded) or with another fingerprint is not reused. Every other method's grid is returned, to
    be tuned here. Returns ``(reused choices, grids to tune)``."""
    from .provenance import tuning_fingerprint

    if not config:
        return {}, {m: list(g) for m, g in grids.items()}
    theirs_requests = list(config.get("requests") or [config.get("request")])
    seeds = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
    their_seeds = list(config.get("seeds") or [config.get("seed")])
    if theirs_requests != list(requests) or their_seeds != seeds:
        return {}, {m: list(g) for m, g in grids.items()}
    their_grids, chosen, their_code = config.get("grids", {}), config.get("chosen", {}), config.get("code") or {}
    reused, todo = {}, {}
    for method, grid in grids.items():
        same_grid = method in their_grids and _as_json(their_grids[method]) == _as_json(list(grid))
        if method in chosen and same_grid and their_code.get(method) == tuning_fingerprint(method):
            reused[method] = chosen[method]
        else:
            todo[method] = list(grid)
    return reused, todo


def cached_json(path, compute: Callable[[], object], *, methods: Sequence[str] | None = None,
                key: Mapping | str | None = None):
    """``compute()``'s JSON-able result, stored at ``path`` (atomically) the first time and read back after, so a
    re-run or a resumed run skips it (e.g. a tuning sweep). A damaged file is an error naming its path.

    The file also holds the key of what produced the result (:func:`~unlearnlib.provenance.store_key`): the code of
    ``methods`` (the registered methods ``compute`` runs; default: every registered method, so that any change to a
    method recomputes it) and ``key`` (anything else that determines it, e.g. the grids, requests and seed). A file
    whose key differs, or a file written before keys were stored, is recomputed and replaced, never reused."""
    from .provenance import registered_methods, store_key

    path = Path(path)
    wanted = store_key(method=sorted(registered_methods() if methods is None else methods), extra=key)
    if path.exists():
        stored = _io.read_json(path, remedy="delete it to recompute")
        if isinstance(stored, dict) and set(stored) == {"store_key", "value"} and stored["store_key"] == wanted:
            return stored["value"]
    _io.atomic_write_json(path, {"store_key": wanted, "value": compute()})
    return _io.read_json(path, remedy="delete it to recompute")["value"]
