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
    """The ``reference`` method's ``columns`` per seed on one task; an error when the task has no reference rows."""
    ref = part[part["method"] == reference].groupby("seed")[list(columns)].mean()
    if ref.empty:
        raise ValueError(f"task {task!r} has no {reference!r} rows to compare with")
    return ref


def leaderboard(df, metrics: Sequence[str], *, reference: str = "retrain") -> "pd.DataFrame":
    """Per task and method: mean and std over seeds of ``metric - reference's metric`` (paired by seed), the mean
    absolute gap over ``metrics`` (``mean |gap|``), the seconds and the speed-up over the reference's seconds.

    Columns are ``<metric> gap``, ``<metric> gap std``, ``<metric> gap low`` and ``high`` (the 95 % t-interval of
    the paired gap, :func:`~unlearnlib.stats.paired_difference`), ``<metric> resolved`` (the interval excludes 0),
    ``mean |gap|``, ``mean |gap| std``, ``seconds``, ``speed-up`` and ``seeds``. A task without reference rows
    raises, since there is nothing to compare with.
    """
    import pandas as pd

    from .stats import paired_difference

    rows = []
    for task, part in df.groupby("task", sort=False):
        ref = _reference_by_seed(part, list(metrics) + ["seconds"], reference, task)
        for method, runs in part.groupby("method", sort=False):
            runs = runs[runs["seed"].isin(ref.index)]
            if runs.empty:
                continue
            per_seed = runs.groupby("seed")[list(metrics) + ["seconds"]].mean()
            gaps = per_seed[list(metrics)] - ref.loc[per_seed.index, list(metrics)]
            mean_abs = gaps.abs().mean(axis=1)
            row = {"task": task, "method": method}
            for m in metrics:
                row[f"{m} gap"] = gaps[m].mean()
                row[f"{m} gap std"] = gaps[m].std(ddof=1)
                diff = paired_difference(per_seed[m].to_dict(), ref.loc[per_seed.index, m].to_dict())
                row[f"{m} gap low"], row[f"{m} gap high"], row[f"{m} resolved"] = diff.low, diff.high, diff.resolved
            row["mean |gap|"], row["mean |gap| std"] = mean_abs.mean(), mean_abs.std(ddof=1)
            row["seconds"] = per_seed["seconds"].mean()
            row["speed-up"] = (ref.loc[per_seed.index, "seconds"].mean() / row["seconds"]
                               if row["seconds"] > 0 else np.nan)
            row["seeds"] = len(per_seed)
            rows.append(row)
    return pd.DataFrame(rows).set_index(["task", "method"])


def format_leaderboard(board, metrics: Sequence[str], *, scale: float = 100.0, digits: int = 1) -> "pd.DataFrame":
    """``mean ± std`` strings (in points when ``scale=100``), best ``mean |gap|`` first within each task."""
    import pandas as pd

    def pm(mean, std, sign="+"):
        if np.isnan(mean):
            return "–"
        return f"{mean * scale:{sign}.{digits}f}" + ("" if np.isnan(std) else f" ± {std * scale:.{digits}f}")

    def speed(s):
        return "–" if not np.isfinite(s) else (f"{s:.0f}×" if s >= 10 else f"{s:.1f}×")

    out = pd.DataFrame(index=board.index)
    for m in metrics:
        out[f"Δ {m}"] = [pm(a, b) for a, b in zip(board[f"{m} gap"], board[f"{m} gap std"])]
    out["mean |gap|"] = [pm(a, b, "") for a, b in zip(board["mean |gap|"], board["mean |gap| std"])]
    out["seconds"] = board["seconds"].map(lambda s: f"{s:.1f}")
    out["speed-up"] = board["speed-up"].map(speed)
    out["seeds"] = board["seeds"]
    tasks = list(dict.fromkeys(board.index.get_level_values("task")))
    ranked = board.reset_index()
    ranked["task_order"] = ranked["task"].map(tasks.index)
    ranked = ranked.sort_values(["task_order", "mean |gap|"], kind="stable")
    return out.loc[list(zip(ranked["task"], ranked["method"]))]


def gap_ranks(df, metrics: Sequence[str], *, reference: str = "retrain", n_boot: int = 2000,
              rng_seed: int = 0) -> "pd.DataFrame":
    """Per task and metric, each method's rank by its distance to the reference, ``|metric - reference's metric|``
    on the same seed, with a bootstrap interval over seeds (:func:`~unlearnlib.stats.bootstrap_ranks`: the seeds are
    resampled with replacement and the methods re-ranked on each resample).

    One ranking per metric, not one over an average of them, so that a reader sees which property each method gets
    right. The reference itself is not ranked (its distance is 0 by definition); a method without a value on every
    seed of the task is left out of that metric's ranking. Rows: (task, metric, method); columns ``rank``,
    ``rank low``, ``rank high``, ``P(first)``, ``mean gap`` (the mean distance) and ``methods`` (how many were
    ranked)."""
    import pandas as pd

    from .stats import bootstrap_ranks

    rows = []
    for task, part in df.groupby("task", sort=False):
        ref = _reference_by_seed(part, metrics, reference, task)
        others = part[(part["method"] != reference) & part["seed"].isin(ref.index)]
        for metric in metrics:
            values = others.pivot_table(index="seed", columns="method", values=metric, aggfunc="mean")
            gaps = values.sub(ref.loc[values.index, metric], axis=0).abs()
            long = gaps.stack().rename("gap").reset_index()
            if long.empty:
                continue
            ranked = bootstrap_ranks(long, "gap", lower_is_better=True, n_boot=n_boot, rng_seed=rng_seed)
            for method, r in ranked.iterrows():
                rows.append({"task": task, "metric": metric, "method": method, **r.to_dict(),
                             "mean gap": float(gaps[method].mean()), "methods": len(ranked)})
    return pd.DataFrame(rows).set_index(["task", "metric", "method"])


def format_ranks(ranks, task: str) -> "pd.DataFrame":
    """One task's :func:`gap_ranks` as a method x metric table of ``rank [low-high]`` strings (the 95 % bootstrap
    interval of the rank), methods in the order of their mean rank over the metrics."""
    part = ranks.xs(task, level="task")
    text = part.apply(lambda r: f"{int(r['rank'])} [{r['rank low']:.0f}-{r['rank high']:.0f}]", axis=1)
    table = text.unstack("metric")
    order = part["rank"].unstack("metric").mean(axis=1).sort_values().index
    return table.loc[order, list(dict.fromkeys(part.index.get_level_values("metric")))]


def tied_with_best(df, metric: str, *, reference: str = "retrain", higher_is_better: bool | None = None,
                   methods: Sequence[str] | None = None) -> "pd.DataFrame":
    """Which methods the seeds cannot separate from the best on ``metric``.

    By default (``higher_is_better=None``) a method is scored by its distance to ``reference`` on the same seed
    (lower is better); with ``higher_is_better`` True or False the metric's own value is the score. The best is the
    method with the best mean score; each other method's paired difference to it gets a 95 % t-interval
    (:func:`~unlearnlib.stats.paired_difference`). Columns: ``score`` (mean), ``difference``, ``low``, ``high``,
    ``tied`` (the interval includes 0, or the method is the best) and ``best``; rows in order of score."""
    import pandas as pd

    from .stats import paired_difference

    values = df.pivot_table(index="seed", columns="method", values=metric, aggfunc="mean")
    if higher_is_better is None:
        if reference not in values.columns:
            raise ValueError(f"no {reference!r} rows to measure distances to")
        values = values.sub(values[reference], axis=0).abs().drop(columns=reference)
        sign = -1.0
    else:
        sign = 1.0 if higher_is_better else -1.0
    if methods is not None:
        values = values[[m for m in methods if m in values.columns]]
    values = values.dropna(axis=1, how="any")
    if values.empty:
        raise ValueError(f"no method has {metric!r} on every seed")
    means = values.mean()
    best = (sign * means).idxmax()
    rows = []
    for m in values.columns:
        d = paired_difference(values[m].to_dict(), values[best].to_dict())
        rows.append({"method": m, "score": means[m], "difference": d.mean, "low": d.low, "high": d.high,
                     "tied": m == best or not d.resolved, "best": m == best})
    out = pd.DataFrame(rows).set_index("method")
    return out.loc[(sign * out["score"]).sort_values(ascending=False).index]


def seed_gaps(df, metrics: Sequence[str], *, reference: str = "retrain") -> "pd.DataFrame":
    """Per task, method and seed: the mean over ``metrics`` of ``|metric - reference's metric|`` on that seed (the
    reference's own rows are left out). One aggregate *view*: which metrics enter it decides what it rewards, so a
    chapter shows several. Columns ``task``, ``method``, ``seed``, ``mean |gap|``."""
    import pandas as pd

    rows = []
    for task, part in df.groupby("task", sort=False):
        ref = _reference_by_seed(part, metrics, reference, task)
        for method, runs in part[part["method"] != reference].groupby("method", sort=False):
            per_seed = runs[runs["seed"].isin(ref.index)].groupby("seed")[list(metrics)].mean()
            gap = (per_seed - ref.loc[per_seed.index]).abs().mean(axis=1)
            rows += [{"task": task, "method": method, "seed": seed, "mean |gap|": g} for seed, g in gap.items()]
    return pd.DataFrame(rows)


def _as_json(value):
    return json.loads(json.dumps(value, default=str))


def reuse_tuning(config: Mapping | None, grids: Mapping[str, Sequence[Mapping]], *, requests: Sequence[str],
                 seed: int) -> tuple[dict[str, dict], dict[str, list]]:
    """Split ``grids`` into the choices another chapter's tuning already made and the grids still to tune here.

    ``config`` is a tuning record saved in a chapter's results file (the ``config`` of
    :func:`~unlearnlib.experiment.tune` or :func:`~unlearnlib.experiment.tune_corrupted`). A method's choice is
    reused only when that tuning ran on the same request(s) (their descriptions) and tuning seed with exactly the same
    grid, hence the same budget; every other method's grid is returned, to be tuned here. Returns
    ``(reused choices, grids to tune)``."""
    if not config:
        return {}, {m: list(g) for m, g in grids.items()}
    theirs_requests = list(config.get("requests") or [config.get("request")])
    if theirs_requests != list(requests) or config.get("seed") != seed:
        return {}, {m: list(g) for m, g in grids.items()}
    their_grids, chosen = config.get("grids", {}), config.get("chosen", {})
    reused, todo = {}, {}
    for method, grid in grids.items():
        if method in chosen and method in their_grids and _as_json(their_grids[method]) == _as_json(list(grid)):
            reused[method] = chosen[method]
        else:
            todo[method] = list(grid)
    return reused, todo


def cached_json(path, compute: Callable[[], object]):
    """``compute()``'s JSON-able result, stored at ``path`` (atomically) the first time and read back after, so a
    re-run or a resumed run skips it (e.g. a tuning sweep). A damaged file is an error naming its path."""
    path = Path(path)
    if not path.exists():
        _io.atomic_write_json(path, compute())
    return _io.read_json(path, remedy="delete it to recompute")
