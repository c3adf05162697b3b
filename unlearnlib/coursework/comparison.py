"""Checks of the comparison chapter's exercises (``coursework/comparison.yml``), and the table of runs its setup
rebuilds from the results files (:func:`standard_runs`)."""
from __future__ import annotations

from typing import Mapping, Sequence

from .checks import expect, expect_close_or_nan, expect_mapping, register

#: the budget of ``cmp-ex-budget``: one tenth of a retraining per request, i.e. a speed-up of at least 10
BUDGET_SPEED_UP = 10.0
#: the measures of the comparison's accuracy view (``ACC`` in the chapter)
ACCURACIES = ("forget_acc", "retain_acc", "test_acc")


def standard_runs(profile: str, tasks: Sequence[str], *, from_foundations: Sequence[str] = ()):
    """The comparison's runs on its standard ``tasks``, as the chapter's ``gather`` assembled them.

    The comparison's results file holds only the runs made there; the cells the foundations chapter answered
    (original, retrain, the mask and its four baselines, with the setting the comparison chose, on the tasks in
    ``from_foundations``) are read from the foundations chapter's results, as ``gather`` read them. The foundations
    file is only read when the comparison's own runs lack some retrain run of those tasks (it was not there when
    the comparison ran otherwise)."""
    import pandas as pd

    from ..comparison import same_setting
    from . import chapter_results

    payload = chapter_results("comparison", profile)
    config = payload.get("config", {})
    seeds = list(config.get("seeds", []))
    chosen = config.get("chosen", {})
    own = [r for r in payload["records"] if r["task"] in tasks and (not seeds or r["seed"] in seeds)]
    have = {(r["task"], r["method"], r["seed"]) for r in own}
    needed = [t for t in from_foundations if any((t, "retrain", s) not in have for s in seeds)]
    rows = [{**r, "source": "comparison"} for r in own]
    if needed:
        kind = {t: ("class" if t.startswith("full class") else "random") for t in needed}
        for r in chapter_results("foundations", profile)["records"]:
            t, m, s = r["task"], r["method"], r["seed"]
            if t not in needed or s not in seeds or (t, m, s) in have:
                continue
            if m == "mask_classes" and kind[t] != "class":
                continue
            hparams = chosen.get(kind[t], {}).get(m, {}) if m not in ("original", "retrain", "mask_classes") else {}
            if m not in ("original", "retrain", "mask_classes") and m not in chosen.get(kind[t], {}):
                continue
            if same_setting(r, hparams):
                rows.append({**r, "source": "foundations"})
    order = {t: i for i, t in enumerate(tasks)}
    df = pd.DataFrame(rows)
    df = df.iloc[sorted(range(len(df)), key=lambda i: (order[df.iloc[i]["task"]], df.iloc[i]["seed"]))]
    return df.reset_index(drop=True)


def _as_dict(answer):
    """A pandas Series (or anything with ``to_dict``) as the dict it stands for."""
    return answer.to_dict() if hasattr(answer, "to_dict") and not isinstance(answer, Mapping) else answer


def _same_number(value, target: float, what: str, hint: str) -> None:
    """``value`` equals ``target`` (both NaN where the target is NaN: a method not ranked)."""
    expect_close_or_nan(value, target, what, hint=hint, tol=1e-9,
                        why_nan="that method is not ranked under some measure")


@register("cmp-ex-weights")
def _weights(answer, *, ranks, task):
    """``answer``: method -> how far its rank moves between the measures on ``task`` (worst rank - best rank, the
    ranks by the observed means of ``comparison.gap_ranks``)."""
    answer = _as_dict(answer)
    expect(task in set(ranks.index.get_level_values("task")),
           f"the ranks hold no task {task!r}: pass the table of comparison.gap_ranks and the random-sample task")
    per_metric = ranks.xs(task, level="task")["rank"].unstack("metric")
    moves = per_metric.max(axis=1) - per_metric.min(axis=1)
    expect_mapping(answer, list(moves.index), "the answer")
    for method, move in moves.items():
        _same_number(answer[method], float(move), f"the move of {method!r}",
                     "for each method, take its rank (column 'rank') under every measure of the task, then the "
                     "worst minus the best of those ranks; the interval columns say how sure one rank is, not how "
                     "it moves between measures")
    top = moves.max()
    return f"rank moves right; the largest, {top:.0f} places, by {', '.join(moves[moves == top].index)}"


@register("cmp-ex-budget")
def _budget(answer, *, board, records, tasks):
    """``answer``: standard task -> ``{"within budget": [...], "best": method, "tied": [...]}``: the methods (not
    doing nothing) at least :data:`BUDGET_SPEED_UP` times faster than retraining, the closest of them to retraining
    on the mean |gap| over the accuracies, and those the seeds cannot separate from it."""
    from ..comparison import seed_gaps, tied_with_best

    answer = _as_dict(answer)
    acc_view = seed_gaps(records, list(ACCURACIES))
    on_board = set(board.index.get_level_values("task"))
    expected = {}
    for name in tasks:
        if name not in on_board:
            continue
        part = board.loc[name]
        ok = sorted(m for m in part.index if m != "original" and part.loc[m, "speed-up"] >= BUDGET_SPEED_UP)
        view = acc_view[(acc_view.task == name) & acc_view.method.isin(ok)]
        expected[name] = (ok, None if view.empty else tied_with_best(view, "mean |gap|", higher_is_better=False))
    expect_mapping(answer, list(expected), "the answer (one entry per standard task)")
    for name, (ok, tied) in expected.items():
        entry = expect_mapping(_as_dict(answer[name]), ["within budget", "best", "tied"], f"answer[{name!r}]")
        within = sorted(entry["within budget"])
        expect(within == ok, f"answer[{name!r}]['within budget'] is not the set of methods within a tenth of a "
                             f"retraining: read each method's speed-up over retraining on the board (at least "
                             f"{BUDGET_SPEED_UP:g}x), and leave out doing nothing and retraining itself")
        best = entry["best"]
        if tied is None:
            expect(best is None and not list(entry["tied"]),
                   f"no method is within the budget on {name!r}: 'best' should be None and 'tied' empty")
            continue
        scores = tied["score"]
        expect(best in ok and best in scores.index,
               f"answer[{name!r}]['best'] = {best!r} is not a method within the budget")
        expect(abs(scores[best] - scores.iloc[0]) <= 1e-12,
               f"answer[{name!r}]['best'] = {best!r} is not the closest to retraining within the budget: score the "
               f"methods by their mean |gap| over the three accuracies (comparison.seed_gaps), seed by seed, "
               f"then averaged")
        right = {tied.index[0]} | {m for m in tied.index[1:] if tied.loc[m, "tied"]}
        given = {best} | set(entry["tied"])
        expect(given == right, f"answer[{name!r}]['tied'] is not the set of methods the seeds cannot separate from "
                               f"the best (comparison.tied_with_best on the accuracy view, restricted to the budget)")
    return "budget, best and ties right for every standard task"
