"""Statistics within their means (issue 34, items 1, 9, 10): diverged runs are never a number in a table, an
interval says how many seeds it used, ranks over few seeds are a partial order, families of claims are
Holm-adjusted, and intervals of a bounded metric stay in its range. Formulas are checked against scipy.stats."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from unlearnlib import stats
from unlearnlib.config import REPO_ROOT
from unlearnlib.comparison import format_leaderboard, format_ranks, gap_ranks, leaderboard, seed_gaps, tied_with_best
from unlearnlib.metrics import is_diverged
from unlearnlib.results import load_results, summarize

ACC = ["forget_acc", "test_acc"]


def _runs(diverged_seeds: dict[str, set], n_seeds: int = 5) -> pd.DataFrame:
    """retrain and three methods on ``n_seeds`` seeds; a diverged run holds NaN metrics and ``diverged`` True, as
    :func:`unlearnlib.metrics.diverged_record` writes it. 'good' is closest to retrain; 'flaky' would look best on
    the seeds where it did not diverge."""
    rows = []
    for s in range(n_seeds):
        ref = {"forget_acc": 0.02 * s, "test_acc": 0.90 + 0.002 * s}
        rows.append({"task": "t", "method": "retrain", "seed": s, **ref, "seconds": 100.0, "diverged": False})
        for method, (df_, dt) in {"good": (0.02, -0.01), "far": (0.20, -0.05), "flaky": (0.0, 0.0)}.items():
            gone = s in diverged_seeds.get(method, set())
            values = ({"forget_acc": math.nan, "test_acc": math.nan} if gone else
                      {"forget_acc": ref["forget_acc"] + df_ + 0.003 * (s % 2), "test_acc": ref["test_acc"] + dt})
            rows.append({"task": "t", "method": method, "seed": s, **values, "seconds": 1.0 if gone else 10.0,
                         "diverged": gone})
    return pd.DataFrame(rows)


# --- item 10: every interval counts the seeds it used -----------------------------------------------------------

def test_a_difference_with_nan_on_2_of_5_seeds_says_3_of_5_seeds():
    d = stats.paired_difference([0.9, math.nan, 0.8, math.nan, 0.85], [0.5, 0.6, 0.4, 0.5, 0.45])
    assert (d.n, d.n_ran) == (3, 5)
    assert stats.format_difference(d, scale=100, digits=1).endswith("(3 of 5 seeds)")
    assert "3 of 5 seeds" in stats.verdict(d, "A", "B")
    full = stats.paired_difference([0.9, 0.8, 0.7], [0.5, 0.6, 0.4])
    assert full.n_ran == 3 and "of" not in stats.format_difference(full)  # nothing dropped: as before
    none = stats.paired_difference({0: math.nan, 1: math.nan}, {0: 0.1, 1: 0.2})
    assert stats.format_difference(none) == "n/a (0 of 2 seeds)"
    legacy = stats.Difference(0.3, 0.1, 0.5, 3)  # built by hand, as chapters do: still works
    assert legacy.seeds_ran == 3 and stats.format_difference(legacy) == "+0.30 [+0.10, +0.50]"


def test_compare_with_counts_diverged_seeds_and_gives_no_number_for_a_method_diverged_everywhere():
    df = _runs({"flaky": {1, 3}, "far": set(range(5))})
    table = stats.compare_with(df, "test_acc", "retrain")
    assert (table.loc["flaky", "seeds"], table.loc["flaky", "seeds ran"]) == (3, 5)
    assert table.loc["flaky", "excluded"] == "diverged on 2 of 5 seeds"
    assert np.isnan(table.loc["far", "difference"]) and not table.loc["far", "resolved"]
    assert table.loc["far", "excluded"] == "diverged on 5 of 5 seeds"
    assert table.loc["good", "excluded"] == "" and table.loc["good", "seeds"] == 5


def test_diverged_flags_read_the_field_as_metrics_is_diverged_does():
    df = pd.DataFrame({"diverged": [True, False, None, math.nan, np.bool_(True)]})
    assert list(stats.diverged_flags(df)) == [is_diverged(r) for _, r in df.iterrows()] == \
        [True, False, False, False, True]
    assert not stats.diverged_flags(pd.DataFrame({"x": [1.0]})).any()  # old records without the field


# --- item 1: leaderboards, summaries, ties and ranks leave diverged runs out, and say so --------------------------

def test_leaderboard_says_diverged_in_place_of_numbers_and_ranks_partial_methods_last():
    df = _runs({"flaky": {1, 3}, "far": set(range(5))})
    board = leaderboard(df, ACC)
    assert board.loc[("t", "flaky"), "seeds"] == 3 and board.loc[("t", "flaky"), "seeds ran"] == 5
    assert board.loc[("t", "flaky"), "seconds"] == pytest.approx(10.0)  # the stopped runs' seconds are left out
    assert np.isnan(board.loc[("t", "far"), "mean |gap|"])
    shown = format_leaderboard(board, ACC)
    methods = [m for _, m in shown.index]
    assert methods == ["retrain", "good", "flaky", "far"]  # flaky (0 gap on 3 seeds) is not ranked first
    assert shown.loc[("t", "far"), "mean |gap|"] == "diverged on 5 of 5 seeds"
    assert shown.loc[("t", "far"), "Δ test_acc"] == "diverged on 5 of 5 seeds"
    assert shown.loc[("t", "flaky"), "seeds"] == "3 of 5"
    assert shown.loc[("t", "flaky"), "diverged"] == "diverged on 2 of 5 seeds"
    assert "diverged" not in format_leaderboard(leaderboard(_runs({}), ACC), ACC).columns  # nothing to say


def test_summarize_leaves_diverged_runs_out_and_says_so():
    df = _runs({"flaky": {1, 3}, "far": set(range(5))})
    table = summarize(df, ACC).droplevel("task")
    assert table.loc["far", "test_acc"] == "diverged on 5 of 5 seeds"
    assert table.loc["flaky", "seeds"] == "3 of 5" and table.loc["flaky", "diverged"] == "diverged on 2 of 5 seeds"
    assert table.loc["good", "seeds"] == "5"
    assert summarize(_runs({}), ACC).loc[("t", "good"), "seeds"] == 5  # unchanged when nothing diverged


def test_tied_with_best_never_crowns_a_method_that_diverged_on_some_seeds():
    df = _runs({"flaky": {1, 3}})
    tied = tied_with_best(df, "forget_acc")
    assert tied.index[0] == "good" and tied.loc["good", "best"]  # flaky's 0 gap on 3 seeds does not win
    assert not tied.loc["flaky", "tied"] and np.isnan(tied.loc["flaky", "score"])
    assert tied.loc["flaky", "excluded"] == "diverged on 2 of 5 seeds"
    gaps = seed_gaps(df, ACC)
    assert gaps[(gaps.method == "flaky") & gaps.diverged]["seed"].tolist() == [1, 3]
    via_gaps = tied_with_best(gaps, "mean |gap|", higher_is_better=False)
    assert via_gaps.loc["flaky", "excluded"] == "diverged on 2 of 5 seeds"


def test_ranks_over_3_seeds_are_a_partial_order_with_no_p_first():
    df = _runs({}, n_seeds=3)
    gaps = seed_gaps(df, ACC)
    ranks = stats.bootstrap_ranks(gaps, "mean |gap|", lower_is_better=True)
    assert "P(first)" not in ranks.columns and "partial order" in ranks.attrs["ranking"]
    # good vs far is resolved (the same 15-point gap on every seed); flaky equals retrain (gap 0) and beats both
    assert ranks.loc["flaky", "resolved above"] == "good, far" and ranks.loc["far", "resolved below"] == "good, flaky"
    assert ranks.loc["good", ["rank low", "rank high"]].tolist() == [2, 2]
    noisy = df.copy()
    noisy.loc[noisy.method == "good", "test_acc"] += [0.2, -0.25, 0.15]  # good now swings across far
    ranks = stats.bootstrap_ranks(seed_gaps(noisy, ACC), "mean |gap|", lower_is_better=True)
    assert ranks.loc["good", "rank low"] < ranks.loc["good", "rank high"]  # unresolved: a range, not a rank
    assert "good" not in ranks.loc["far", "resolved below"]


def test_a_method_with_nan_on_2_of_5_seeds_cannot_be_ranked_by_a_number():
    df = _runs({"flaky": {1, 3}})
    ranks = gap_ranks(df, ACC)
    flaky = ranks.loc[("t", "forget_acc", "flaky")]
    assert np.isnan(flaky["rank"]) and np.isnan(flaky["mean gap"]) and flaky["excluded"] == "diverged on 2 of 5 seeds"
    assert ranks.loc[("t", "forget_acc", "good"), "methods"] == 2
    table = format_ranks(ranks, "t")
    assert table.loc["flaky", "test_acc"] == "diverged on 2 of 5 seeds" and list(table.index)[-1] == "flaky"


def test_ten_seeds_or_more_keep_the_bootstrap():
    df = _runs({}, n_seeds=10)
    ranks = stats.bootstrap_ranks(seed_gaps(df, ACC), "mean |gap|")
    assert "P(first)" in ranks.columns and "bootstrap" in ranks.attrs["ranking"]


# --- item 9: Holm, bounded intervals, formulas against scipy ------------------------------------------------------

def test_holm_adjusted_p_values_match_a_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> monotone: 0.02, 0.03, 0.06, 0.06
    assert stats.holm_adjusted(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm_adjusted([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 0.5 x 2 caps at 1; 0.9 may not drop below


def test_holm_adjusted_intervals_use_the_step_down_levels_and_agree_with_the_adjusted_p_values():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 5)
    diffs = [stats.paired_difference(base + shift + rng.normal(0, 0.05, 5), base) for shift in (0.3, 0.08, 0.05, 0.0)]
    adjusted = stats.holm_adjusted(diffs)
    p_adj = stats.holm_adjusted([d.p_value for d in diffs])
    order = np.argsort([d.p_value for d in diffs])
    for rank, i in enumerate(order):
        a = adjusted[i]
        assert a.adjusted == "holm" and a.resolved == (p_adj[i] <= 0.05)
        assert a.level >= 1 - 0.05 / (4 - rank) - 1e-12   # at least the level of its step
        half = sps.t.ppf(0.5 + a.level / 2, 4) * diffs[i].se
        assert (a.low, a.high) == (pytest.approx(diffs[i].mean - half), pytest.approx(diffs[i].mean + half))
    assert sum(a.resolved for a in adjusted) < sum(d.resolved for d in diffs)  # the family costs resolution here
    # p = 0.001, 0.03, 0.04 (m = 3): 0.001 <= 0.05/3 resolves; 0.03 > 0.05/2 stops the step-down, so 0.04 is not
    # resolved although 0.04 <= 0.05/1; both unresolved intervals are at the level of the step that failed
    hand = [stats.Difference(float(sps.t.isf(q / 2, 4)), 0.0, 0.0, 5, se=1.0) for q in (0.001, 0.03, 0.04)]
    assert [d.p_value for d in hand] == pytest.approx([0.001, 0.03, 0.04])
    held = stats.holm_adjusted(hand)
    assert [d.resolved for d in held] == [True, False, False]
    assert [d.level for d in held] == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05 / 2])
    keyed = stats.holm_adjusted({"x": diffs[0], "y": diffs[1]})
    assert set(keyed) == {"x", "y"} and keyed["x"].adjusted == "holm"


def test_table_builders_apply_holm_on_request_and_say_so():
    df = _runs({})
    plain, holm = stats.compare_with(df, "test_acc", "retrain"), stats.compare_with(df, "test_acc", "retrain", holm=True)
    assert not plain["holm"].any() and holm["holm"].all() and "Holm" in holm.attrs["holm"]
    assert ((holm["high"] - holm["low"]) >= (plain["high"] - plain["low"]) - 1e-12).all()
    assert tied_with_best(df, "forget_acc", holm=True)["holm"].all()
    board = leaderboard(df, ACC, holm=True)
    assert board["holm"].all() and "Holm" in board.attrs["holm"]
    wide = board.loc[("t", "flaky"), "test_acc gap high"] - board.loc[("t", "flaky"), "test_acc gap low"]
    narrow = leaderboard(df, ACC).loc[("t", "flaky")]
    assert wide >= narrow["test_acc gap high"] - narrow["test_acc gap low"]


def test_the_paired_interval_and_p_value_match_scipy():
    a, b = [0.91, 0.84, 0.88, 0.95, 0.80], [0.85, 0.86, 0.80, 0.90, 0.79]
    d = stats.paired_difference(a, b)
    ref = sps.ttest_rel(a, b)
    low, high = ref.confidence_interval(0.95)
    assert (d.low, d.high) == (pytest.approx(low), pytest.approx(high))
    assert d.p_value == pytest.approx(ref.pvalue)


def test_an_interval_on_an_accuracy_difference_never_leaves_minus_1_to_1():
    # -93.75 [-109.28, -78.22] in the L2UL chapter: an accuracy difference whose interval ran past -100 points
    a, b = [0.0, 0.1875, 0.0], [0.98, 1.0, 0.95]
    unbounded = stats.paired_difference(a, b)
    assert unbounded.low < -1  # what the plain t-interval gives
    d = stats.paired_difference(a, b, bounds=stats.metric_bounds("forget_acc"))
    assert -1 <= d.low <= d.high <= 1 and d.clipped and d.high == unbounded.high
    assert stats.format_difference(d, scale=100, digits=1).endswith("clipped")
    assert stats.holm_adjusted([d, d])[0].low >= -1  # an adjusted interval stays in the range too
    one = stats.paired_difference([0.2], [0.9], bounds=(0, 1))
    assert (one.low, one.high) == (-1, 1)  # one seed: the whole range, not an infinite interval
    assert stats.metric_bounds("test_acc/T-shirt/top") == (0, 1) and stats.metric_bounds("seconds") is None
    # the tables bound accuracies by themselves
    df = pd.DataFrame([{"method": m, "seed": s, "forget_acc": v} for m, vs in (("retrain", b), ("x", a))
                       for s, v in enumerate(vs)])
    row = stats.compare_with(df, "forget_acc", "retrain").loc["x"]
    assert row["low"] >= -1 and row["clipped"]


# --- the committed comparison results, with SCRUB's full-class runs marked diverged as they were -------------------

def test_the_comparison_tables_leave_scrub_out_when_its_runs_are_marked_diverged():
    all_runs = load_results(profile="cpu", root=REPO_ROOT / "results")  # the committed files (tests use a tmp root)
    task = "full class (Sneaker)"
    part = all_runs[(all_runs.task == task) & all_runs.chapter.isin(["foundations", "comparison"])]
    part = part.sort_values("chapter", key=lambda c: c != "foundations").drop_duplicates(["method", "seed"]).copy()
    assert (part.loc[part.method == "scrub", "test_acc/T-shirt/top"] == 1.0).all()  # every image called class 0
    scrub = part.method == "scrub"
    part["diverged"] = part["diverged"].astype(object).where(~scrub, True)
    part.loc[scrub, ACC] = np.nan
    shown = format_leaderboard(leaderboard(part, ACC), ACC).droplevel("task")
    assert shown.loc["scrub", "mean |gap|"] == "diverged on 5 of 5 seeds" and shown.index[-1] == "scrub"
    ranks = gap_ranks(part, ACC)
    assert "P(first)" not in ranks.columns and ranks.loc[(task, "test_acc", "scrub"), "excluded"]
    assert format_ranks(ranks, task).loc["scrub", "test_acc"] == "diverged on 5 of 5 seeds"


# --- every plot leaves diverged runs out and names them -----------------------------------------------------------

def _figure_text(fig) -> str:
    texts = [t.get_text() for ax in fig.axes for t in ax.texts + ax.get_xticklabels() + ax.get_yticklabels()]
    return "\n".join(texts + [ax.get_title() for ax in fig.axes])


def test_every_plot_leaves_diverged_runs_out_and_says_so():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unlearnlib import plotting

    df = _runs({"flaky": {1, 3}, "far": set(range(5))})
    fig = plotting.metric_bars(df, ACC)
    assert "diverged on 5 of 5 seeds" in _figure_text(fig) and "diverged on 2 of 5 seeds" in _figure_text(fig)
    heights = [p.get_height() for p in fig.axes[0].patches if np.isfinite(p.get_height())]
    assert len(heights) == 3  # retrain, good, flaky: no bar for far
    plt.close(fig)
    fig = plotting.time_vs_quality(df)
    assert "far: diverged on 5 of 5 seeds" in _figure_text(fig)
    assert "far" not in {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    plt.close(fig)
    board = leaderboard(df, ACC)
    ax = plotting.gap_heatmap(board, ACC, task="t")
    text = _figure_text(ax.figure)
    assert "far (diverged on 5 of 5 seeds)" in text and "diverged" in [t.get_text() for t in ax.texts]
    plt.close(ax.figure)
    points = board.loc["t"][["seconds", "mean |gap|", "excluded"]].drop(index="retrain")
    ax = plotting.pareto_panel(points, cost="mean |gap|")
    assert len(ax.collections) == 2 and "far: diverged on 5 of 5 seeds" in _figure_text(ax.figure)
    plt.close(ax.figure)
    grid = pd.DataFrame([{"lr": lr, "epochs": e, "gap": 0.1 * e, "diverged": lr == 1.0 and e == 2}
                         for lr in (0.1, 1.0) for e in (1, 2)])
    grid.loc[grid.diverged, "gap"] = np.nan
    ax = plotting.grid_heatmap(grid, x="lr", y="epochs", value="gap")
    assert "diverged" in [t.get_text() for t in ax.texts] and "nan" not in [t.get_text() for t in ax.texts]
    plt.close(ax.figure)
