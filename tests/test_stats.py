"""Uncertainty over seeds: the intervals match a hand computation, and the words follow the interval."""
import math

import pandas as pd
import pytest

from unlearnlib import stats


def test_paired_interval_matches_a_hand_computation():
    # differences 0.4, 0.2, 0.3: mean 0.3, sd 0.1, t_{0.975, 2} = 4.302652729911275
    d = stats.paired_difference([0.9, 0.8, 0.7], [0.5, 0.6, 0.4])
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert d.n == 3 and d.mean == pytest.approx(0.3)
    assert d.low == pytest.approx(0.3 - half) and d.high == pytest.approx(0.3 + half)
    assert d.resolved
    assert stats.t_quantile(4) == pytest.approx(2.7764451051977987)


def test_an_interval_that_contains_zero_is_reported_as_unresolved():
    d = stats.paired_difference([0.1, -0.1, 0.3], [0.0, 0.0, 0.0])  # mean 0.1, sd 0.2: +-0.497
    assert not d.resolved and d.low < 0 < d.high
    assert stats.verdict(d, "A", "B", metric="test_acc") == \
        "no difference between A and B on test_acc resolved with 3 seeds"
    resolved = stats.paired_difference([0.9, 0.8, 0.7], [0.5, 0.6, 0.4])
    assert stats.verdict(resolved, "A", "B").startswith("A is higher than B")
    lower = stats.paired_difference([0.5, 0.6, 0.4], [0.9, 0.8, 0.7])
    assert stats.verdict(lower, "A", "B", higher="further from retrain").startswith("A is closer to retrain than B")


def test_pairing_by_seed_uses_only_the_seeds_both_sides_hold():
    d = stats.paired_difference({0: 1.0, 1: 2.0, 2: 4.0}, {1: 1.0, 2: 1.0, 7: 9.0})
    assert d.n == 2 and d.mean == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no seed in common"):
        stats.paired_difference({0: 1.0}, {1: 1.0})
    one = stats.paired_difference([1.0], [0.0])
    assert one.n == 1 and math.isinf(one.high) and not one.resolved


def test_format_difference_scales_to_points():
    d = stats.paired_difference([0.9, 0.8, 0.7], [0.5, 0.6, 0.4])
    assert stats.format_difference(d, scale=100, digits=1) == "+30.0 [+5.2, +54.8]"
    assert "no interval" in stats.format_difference(stats.paired_difference([1.0], [0.0]))


def _runs(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "seed": s, "gap": v} for m, vs in values.items() for s, v in enumerate(vs)])


def test_bootstrap_ranks_are_certain_only_for_a_method_that_wins_on_every_seed():
    df = _runs({"best": [0.1, 0.2, 0.1, 0.15, 0.1], "mid": [0.5, 0.4, 0.6, 0.5, 0.55],
                "noisy": [0.45, 0.7, 0.3, 0.9, 0.35]})
    ranks = stats.bootstrap_ranks(df, "gap", lower_is_better=True, n_boot=500, min_seeds=5)  # asks for the bootstrap
    assert ranks.index[0] == "best" and ranks.loc["best", "P(first)"] == 1.0
    assert ranks.loc["mid", "rank low"] == 2 and ranks.loc["mid", "rank high"] == 3  # mid and noisy swap places
    assert 0 < ranks.loc["noisy", "mean rank"] - 2 < 1


def test_compare_with_pairs_each_method_with_the_reference():
    df = _runs({"retrain": [0.0, 0.0, 0.0], "a": [0.3, 0.2, 0.4], "b": [0.1, -0.1, 0.0]})
    table = stats.compare_with(df, "gap", "retrain")
    assert list(table.index) == ["a", "b"]
    assert bool(table.loc["a", "resolved"]) and not bool(table.loc["b", "resolved"])
    assert table.loc["a", "difference"] == pytest.approx(0.3) and table.loc["a", "seeds"] == 3
