"""The comparison's bookkeeping: read what other chapters measured, run only what is missing, resume after an
interruption, and compute gaps to the retrain model paired by seed."""
import json

import numpy as np
import pandas as pd
import pytest

from unlearnlib.comparison import Cell, Source, cached_json, coverage, format_leaderboard, gather, leaderboard, pareto_front
from unlearnlib.experiment import Setting
from unlearnlib.results import save_results

REQUIRED = {"class": ["forget_acc", "test_acc", "mia"]}


def _chapter_records():
    """What a (fake) foundations chapter stored: retrain on seeds 0 and 1; finetune without the MIA column."""
    recs = [{"task": "full class (X)", "method": "retrain", "seed": s, "forget_acc": 0.0, "test_acc": 0.9,
             "mia": 0.5, "seconds": 100.0} for s in (0, 1)]
    recs += [{"task": "full class (X)", "method": "finetune", "seed": s, "forget_acc": 0.2, "test_acc": 0.88,
              "seconds": 10.0} for s in (0, 1)]
    return recs


class CountingRunner:
    """Stands in for run_methods: returns fixed metrics and remembers what it was asked to run."""

    def __init__(self, fail_after: int | None = None):
        self.calls: list[tuple[int, tuple[str, ...]]] = []
        self.fail_after = fail_after

    def __call__(self, settings, seed):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls.append((seed, tuple(settings)))
        return [{"method": label, "forget_acc": 0.1 * (seed + 1), "test_acc": 0.85, "mia": 0.55, "seconds": 2.0,
                 "hparams": json.dumps(dict(settings[label].hparams))}
                for label in settings]


def _plan():
    src = lambda m: Source("foundations", "full class (X)", m)  # noqa: E731
    return {"class": {"retrain": Cell(Setting("retrain"), src("retrain")),
                      "finetune": Cell(Setting("finetune"), src("finetune")),
                      "npo": Cell(Setting("npo", {"lr": 0.01})),
                      "l2ul": Cell(why_not="too costly for a whole class")}}


def test_gather_reads_complete_sources_runs_the_rest_and_resumes(tmp_path):
    save_results("foundations", "cpu", _chapter_records(), root=tmp_path)
    runner = CountingRunner()
    df = gather(_plan(), {"class": runner}, seeds=[0, 1], profile="cpu", required=REQUIRED, root=tmp_path,
                progress=False)
    # retrain comes from the chapter; finetune lacks the MIA there, so it is re-run; npo was never run anywhere
    assert runner.calls == [(0, ("finetune", "npo")), (1, ("finetune", "npo"))]
    by = df.set_index(["method", "seed"])
    assert by.loc[("retrain", 0), "source"] == "foundations" and by.loc[("npo", 1), "source"] == "comparison"
    assert "l2ul" not in set(df["method"]) and set(df["task"]) == {"class"}
    saved = json.loads((tmp_path / "comparison" / "cpu.json").read_text())["records"]
    assert len(saved) == 4
    # a second run reads everything back and runs nothing
    again = CountingRunner()
    df2 = gather(_plan(), {"class": again}, seeds=[0, 1], profile="cpu", required=REQUIRED, root=tmp_path,
                 progress=False)
    assert again.calls == [] and len(df2) == len(df)
    table = coverage(_plan(), df2)
    assert table.loc["retrain", "class"] == "foundations" and table.loc["npo", "class"] == "comparison"
    assert table.loc["l2ul", "class"].startswith("n/a: too costly")


def test_an_interrupted_comparison_resumes_where_it_stopped(tmp_path):
    first = CountingRunner(fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        gather(_plan(), {"class": first}, seeds=[0, 1, 2], profile="cpu", required=REQUIRED, root=tmp_path,
               progress=False)
    assert [c[0] for c in first.calls] == [0]  # seed 0 finished and was saved before the interruption
    second = CountingRunner()
    df = gather(_plan(), {"class": second}, seeds=[0, 1, 2], profile="cpu", required=REQUIRED, root=tmp_path,
                progress=False)
    assert [c[0] for c in second.calls] == [1, 2]
    assert sorted(df[df.method == "npo"]["seed"]) == [0, 1, 2]


def test_a_damaged_results_file_is_reported_with_its_path(tmp_path):
    bad = tmp_path / "comparison" / "cpu.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"records": [')
    with pytest.raises(ValueError, match=str(bad)):
        gather(_plan(), {"class": CountingRunner()}, seeds=[0], profile="cpu", required=REQUIRED, root=tmp_path,
               progress=False)


def test_a_chapter_run_with_other_hyperparameters_is_not_reused(tmp_path):
    recs = [{**r, "hparams": '{"lr": 0.5}'} for r in _chapter_records() if r["method"] == "retrain"]
    save_results("foundations", "cpu", recs, root=tmp_path)
    plan = {"class": {"retrain": Cell(Setting("retrain"), Source("foundations", "full class (X)", "retrain"))}}
    runner = CountingRunner()
    gather(plan, {"class": runner}, seeds=[0], profile="cpu", required=REQUIRED, root=tmp_path, progress=False)
    assert runner.calls == [(0, ("retrain",))]


def test_a_run_of_this_chapter_is_redone_when_its_setting_changed(tmp_path):
    plan = _plan()
    gather(plan, {"class": CountingRunner()}, seeds=[0], profile="cpu", required=REQUIRED, root=tmp_path,
           progress=False)
    changed = {"class": {**plan["class"], "npo": Cell(Setting("npo", {"lr": 0.05}))}}
    runner = CountingRunner()
    df = gather(changed, {"class": runner}, seeds=[0], profile="cpu", required=REQUIRED, root=tmp_path,
                progress=False)
    assert ("npo",) in [c[1] for c in runner.calls] and len(df[df.method == "npo"]) == 1
    saved = json.loads((tmp_path / "comparison" / "cpu.json").read_text())["records"]
    assert sum(r["method"] == "npo" for r in saved) == 1, "the stale run must be replaced, not kept beside"


def test_a_run_made_here_gives_way_to_a_chapter_that_measured_the_same_cell(tmp_path):
    plan = _plan()
    gather(plan, {"class": CountingRunner()}, seeds=[0], profile="cpu", required=REQUIRED, root=tmp_path,
           progress=False)
    assert any(r["method"] == "npo" for r in json.loads((tmp_path / "comparison" / "cpu.json").read_text())["records"])
    save_results("foundations", "cpu", _chapter_records() + [
        {"task": "full class (X)", "method": "npo", "seed": 0, "forget_acc": 0.0, "test_acc": 0.8, "mia": 0.5,
         "seconds": 1.0, "hparams": '{"lr": 0.01}'}], root=tmp_path)
    with_source = {"class": {**plan["class"], "npo": Cell(Setting("npo", {"lr": 0.01}),
                                                          Source("foundations", "full class (X)", "npo"))}}
    df = gather(with_source, {"class": CountingRunner()}, seeds=[0], profile="cpu", required=REQUIRED,
                root=tmp_path, progress=False)
    assert df.set_index("method").loc["npo", "source"] == "foundations"
    saved = json.loads((tmp_path / "comparison" / "cpu.json").read_text())["records"]
    assert not any(r["method"] == "npo" for r in saved), "the chapter's run replaces the one made here"


def test_cached_json_computes_once_and_reports_a_damaged_file(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or {"best": {"lr": 0.1}}  # noqa: E731
    assert cached_json(tmp_path / "t.json", compute) == {"best": {"lr": 0.1}}
    assert cached_json(tmp_path / "t.json", compute) == {"best": {"lr": 0.1}} and len(calls) == 1
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        cached_json(tmp_path / "bad.json", compute)


def test_plans_and_gather_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="why_not"):
        Cell(Setting("npo"), why_not="no")
    with pytest.raises(ValueError, match="setting"):
        Cell()
    with pytest.raises(ValueError, match="no runner"):
        gather(_plan(), {}, seeds=[0], profile="cpu", required=REQUIRED, root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="seed"):
        gather(_plan(), {"class": CountingRunner()}, seeds=[], profile="cpu", required=REQUIRED, root=tmp_path,
               progress=False)


def test_leaderboard_pairs_gaps_by_seed():
    df = pd.DataFrame([
        {"task": "t", "method": "retrain", "seed": 0, "forget_acc": 0.0, "test_acc": 0.90, "seconds": 100.0},
        {"task": "t", "method": "retrain", "seed": 1, "forget_acc": 0.2, "test_acc": 0.80, "seconds": 120.0},
        {"task": "t", "method": "a", "seed": 0, "forget_acc": 0.1, "test_acc": 0.90, "seconds": 10.0},
        {"task": "t", "method": "a", "seed": 1, "forget_acc": 0.3, "test_acc": 0.70, "seconds": 12.0},
    ])
    board = leaderboard(df, ["forget_acc", "test_acc"])
    a = board.loc[("t", "a")]
    assert a["forget_acc gap"] == pytest.approx(0.1) and a["forget_acc gap std"] == pytest.approx(0.0)
    assert a["test_acc gap"] == pytest.approx(-0.05)
    assert a["mean |gap|"] == pytest.approx((0.05 + 0.1) / 2)       # seed 0: (0.1+0)/2, seed 1: (0.1+0.1)/2
    assert a["speed-up"] == pytest.approx(110 / 11)
    assert board.loc[("t", "retrain"), "mean |gap|"] == 0
    shown = format_leaderboard(board, ["forget_acc", "test_acc"])
    assert list(shown.index) == [("t", "retrain"), ("t", "a")]     # best first
    assert shown.loc[("t", "a"), "Δ forget_acc"] == "+10.0 ± 0.0" and shown.loc[("t", "a"), "speed-up"] == "10×"
    with pytest.raises(ValueError, match="no 'retrain' rows"):
        leaderboard(df[df.method != "retrain"], ["forget_acc"])
    # the 95 % interval of the paired gap: +0.1 on both seeds is resolved, -0 and -0.1 is not
    assert (a["forget_acc gap low"], a["forget_acc gap high"]) == (pytest.approx(0.1), pytest.approx(0.1))
    assert a["forget_acc resolved"] and not a["test_acc resolved"]
    assert a["test_acc gap low"] < 0 < a["test_acc gap high"]
    assert not board.loc[("t", "retrain"), "forget_acc resolved"]  # the reference against itself: a gap of 0


def test_gap_heatmap_hatches_the_cells_whose_interval_includes_zero():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unlearnlib.plotting import gap_heatmap

    rows = []
    for seed, (f, t) in enumerate([(0.10, 0.90), (0.12, 0.70), (0.11, 0.80)]):
        rows += [{"task": "t", "method": "retrain", "seed": seed, "forget_acc": 0.0, "test_acc": 0.8, "seconds": 9.0},
                 {"task": "t", "method": "a", "seed": seed, "forget_acc": f, "test_acc": t, "seconds": 1.0}]
    board = leaderboard(pd.DataFrame(rows), ["forget_acc", "test_acc"])
    ax = gap_heatmap(board, ["forget_acc", "test_acc"], task="t")
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("+11.0\n[") for t in texts)  # a's forget gap, in points, with its interval
    hatched = [p for p in ax.patches if p.get_hatch()]
    # a's test gap (+10, -10, 0) and retrain's two zero gaps include 0; a's forget gap does not
    assert len(hatched) == 3
    plt.close(ax.figure)


def test_pareto_front_keeps_only_undominated_points():
    seconds = [1.0, 2.0, 3.0, 0.5, 10.0]
    cost = [0.5, 0.2, 0.3, 0.9, 0.0]
    assert list(pareto_front(seconds, cost)) == [3, 0, 1, 4]         # 2 is beaten by 1 on both
    with pytest.raises(ValueError, match="length"):
        pareto_front([1.0], [1.0, 2.0])
    assert np.array_equal(pareto_front([1.0, 1.0], [0.5, 0.5]), [0, 1])


def _three_methods():
    """Retrain and three methods on 5 seeds: 'close' sits 1 point from retrain on forget and 8 on test; 'far' is 10
    points off on forget and 1 on test; 'noisy' is as close as 'close' on average but swings by 15 points."""
    rng = np.random.default_rng(0)
    rows = []
    for s in range(5):
        base = {"forget_acc": 0.5 + 0.01 * s, "test_acc": 0.9}
        rows.append({"task": "t", "method": "retrain", "seed": s, **base, "seconds": 100.0})
        rows.append({"task": "t", "method": "close", "seed": s, "forget_acc": base["forget_acc"] + 0.01,
                     "test_acc": 0.82, "seconds": 1.0})
        rows.append({"task": "t", "method": "far", "seed": s, "forget_acc": base["forget_acc"] + 0.10,
                     "test_acc": 0.89, "seconds": 1.0})
        rows.append({"task": "t", "method": "noisy", "seed": s,
                     "forget_acc": base["forget_acc"] + (0.15 if s % 2 else -0.13) + rng.normal(0, 0.001),
                     "test_acc": 0.9 + (0.1 if s % 2 else -0.1), "seconds": 1.0})
    return pd.DataFrame(rows)


def test_gap_ranks_rank_each_metric_on_its_own_as_a_partial_order_under_10_seeds():
    from unlearnlib.comparison import format_ranks, gap_ranks

    ranks = gap_ranks(_three_methods(), ["forget_acc", "test_acc"], n_boot=500)
    assert "retrain" not in ranks.index.get_level_values("method")
    assert "P(first)" not in ranks.columns and "partial order" in ranks.attrs["ranking"]  # 5 seeds: no bootstrap
    forget, test = ranks.xs(("t", "forget_acc")), ranks.xs(("t", "test_acc"))
    # the order flips between the metrics: no single ranking describes both
    assert forget.loc["close", "rank"] == 1 and forget.loc["far", "rank"] == 2
    assert test.loc["far", "rank"] == 1 and test.loc["close", "rank"] == 2
    # every pair is resolved on both metrics (constant gaps or swings that never cross): the ranks are fixed
    assert (forget.loc["close", "rank low"], forget.loc["close", "rank high"]) == (1, 1)
    assert forget.loc["close", "resolved above"] == "far, noisy" and forget.loc["noisy", "resolved below"] == "close, far"
    assert forget.loc["close", "mean gap"] == pytest.approx(0.01)
    table = format_ranks(ranks, "t")
    assert list(table.columns) == ["forget_acc", "test_acc"] and table.loc["close", "forget_acc"] == "1"
    assert list(table.index) == ["close", "far", "noisy"]


def test_tied_with_best_separates_only_what_the_seeds_resolve():
    from unlearnlib.comparison import tied_with_best

    df = _three_methods()
    forget = tied_with_best(df, "forget_acc")
    assert forget.index[0] == "close" and forget.loc["close", "best"] and forget.loc["close", "tied"]
    assert not forget.loc["far", "tied"]          # 9 points further every seed: resolved
    assert "retrain" not in forget.index
    test = tied_with_best(df, "test_acc", higher_is_better=True, methods=["close", "far", "noisy"])
    assert test.loc["noisy", "tied"] and not test.loc["close", "tied"]  # the swinging one cannot be separated
    with pytest.raises(ValueError, match="retrain"):
        tied_with_best(df[df.method != "retrain"], "forget_acc")


def test_seed_gaps_average_the_chosen_metrics_per_seed():
    from unlearnlib.comparison import seed_gaps

    gaps = seed_gaps(_three_methods(), ["forget_acc", "test_acc"]).set_index(["method", "seed"])["mean |gap|"]
    assert gaps.loc[("close", 0)] == pytest.approx((0.01 + 0.08) / 2)
    assert gaps.loc[("far", 3)] == pytest.approx((0.10 + 0.01) / 2)
    assert "retrain" not in gaps.index.get_level_values("method")


def test_reuse_tuning_takes_only_choices_made_on_the_same_request_seed_and_grid():
    from unlearnlib.comparison import reuse_tuning
    from unlearnlib.provenance import tuning_fingerprints

    config = {"request": "class Sandal", "seed": 100, "budget": 2,
              "grids": {"finetune": [{"lr": 0.01}, {"lr": 0.05}], "gradient_ascent": [{"lr": 1e-4}, {"lr": 1e-3}]},
              "chosen": {"finetune": {"lr": 0.05}, "gradient_ascent": {"lr": 1e-4}},
              "code": tuning_fingerprints({"finetune": "finetune", "gradient_ascent": "gradient_ascent"})}
    grids = {"finetune": [{"lr": 0.01}, {"lr": 0.05}], "gradient_ascent": [{"lr": 1e-3}, {"lr": 1e-2}],
             "npo": [{"stop_acc": 0.0}, {"stop_acc": 0.5}]}
    reused, todo = reuse_tuning(config, grids, requests=["class Sandal"], seed=100)
    assert reused == {"finetune": {"lr": 0.05}}
    assert set(todo) == {"gradient_ascent", "npo"}  # another grid (another budget), or never tuned there
    assert reuse_tuning(config, grids, requests=["class Sandal"], seed=0) == ({}, grids)  # another seed
    assert reuse_tuning(config, grids, requests=["class Coat"], seed=100)[0] == {}
    assert reuse_tuning(None, grids, requests=["class Sandal"], seed=100) == ({}, grids)
    corrupted = {"requests": ["a", "b"], "seed": 100, "grids": {"npo": grids["npo"]}, "chosen": {"npo": {"stop_acc": 0.5}},
                 "code": tuning_fingerprints({"npo": "npo"})}
    assert reuse_tuning(corrupted, {"npo": grids["npo"]}, requests=["a", "b"], seed=100)[0] == {"npo": {"stop_acc": 0.5}}
