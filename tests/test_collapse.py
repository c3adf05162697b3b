"""A collapsed model is not a result: a finite model no better than a constant on the classes it should keep (forget
accuracy 0 because it predicts one class everywhere) gets an unscored record, like a diverged one, and every table
says "collapsed on k of S seeds" in its place. Checked on real Fashion-MNIST with a constant predictor against the
trained small CNN."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from unlearnlib import metrics, stats
from unlearnlib.comparison import format_leaderboard, leaderboard, tied_with_best
from unlearnlib.results import summarize

ACC = ["forget_acc", "test_acc"]


class Constant(nn.Module):
    """Predicts ``cls`` for every image, whatever the image: the extreme of a collapsed model."""

    def __init__(self, n_classes: int, cls: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_classes))
        with torch.no_grad():
            self.logits[cls] = 5.0

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_chance_and_threshold_known_values():
    labels = np.repeat(np.arange(10), 100)  # 1,000 balanced labels
    assert metrics.chance_accuracy(labels) == pytest.approx(0.1)
    assert metrics.collapse_threshold(labels) == pytest.approx(0.1 + 3 * math.sqrt(0.09 / 1000))
    assert metrics.chance_accuracy(np.array([0, 0, 0, 1])) == pytest.approx(0.75)  # the most frequent class
    assert metrics.collapse_reason(0.5, labels) is None
    assert "no better than predicting the most frequent class" in metrics.collapse_reason(0.11, labels)


def test_a_constant_predictor_is_collapsed_and_never_scored(class_task):
    n = len(class_task.data.classes)
    remaining = next(i for i, c in enumerate(class_task.data.classes) if c != "Trouser")
    model = Constant(n, remaining)
    for rec in (metrics.evaluate(model, class_task, device="cpu", svc_max_samples=300),
                metrics.quick_evaluate(model, class_task, device="cpu")):
        assert rec["collapsed"] is True and metrics.is_collapsed(rec) and metrics.is_diverged(rec)
        assert rec["diverged_reason"].startswith("collapsed:")
        scores = {k: v for k, v in rec.items() if k not in metrics.DIVERGENCE_FIELDS}
        assert scores and all(math.isnan(v) for v in scores.values())  # forget_acc 0 is not reported as forgetting


def test_a_model_that_predicts_only_the_forgotten_class_is_collapsed(class_task):
    forgotten = class_task.data.classes.index("Trouser")
    rec = metrics.quick_evaluate(Constant(len(class_task.data.classes), forgotten), class_task, device="cpu")
    assert rec["collapsed"] is True and "0.0%" in rec["diverged_reason"]


def test_a_trained_model_is_not_collapsed(trained, class_task):
    original, retrain = trained
    for model in (original, retrain):
        rec = metrics.evaluate(model, class_task, device="cpu", svc_max_samples=300)
        assert rec["collapsed"] is False and not metrics.is_diverged(rec)
        assert rec["test_acc"] > metrics.collapse_threshold(
            class_task.data.y_test[torch.from_numpy(class_task.test_retain_idx)])


def _runs(collapsed_seeds: set, diverged_seeds: set = frozenset(), n_seeds: int = 4) -> pd.DataFrame:
    """retrain and two methods; 'lost' collapses (or diverges) on the given seeds, where its forget accuracy of 0
    would otherwise look like perfect forgetting."""
    rows = []
    for s in range(n_seeds):
        rows.append({"task": "t", "method": "retrain", "seed": s, "forget_acc": 0.0, "test_acc": 0.9, "seconds": 100.0,
                     "diverged": False, "collapsed": False})
        rows.append({"task": "t", "method": "good", "seed": s, "forget_acc": 0.05 + 0.01 * s, "test_acc": 0.88,
                     "seconds": 10.0, "diverged": False, "collapsed": False})
        gone, flat = s in diverged_seeds, s in collapsed_seeds
        values = {"forget_acc": math.nan, "test_acc": math.nan} if gone or flat else \
            {"forget_acc": 0.3, "test_acc": 0.7}
        rows.append({"task": "t", "method": "lost", "seed": s, **values, "seconds": 5.0,
                     "diverged": gone or flat, "collapsed": flat})
    return pd.DataFrame(rows)


def test_seeds_note_names_collapse_and_divergence_apart():
    assert stats.seeds_note(2, 5) == "diverged on 2 of 5 seeds"
    assert stats.seeds_note(2, 5, collapsed=2) == "collapsed on 2 of 5 seeds"
    assert stats.seeds_note(3, 5, collapsed=1) == "diverged on 2 and collapsed on 1 of 5 seeds"
    flags = stats.collapsed_flags(pd.DataFrame({"diverged": [True, True, False], "collapsed": [True, None, True]}))
    assert list(flags) == [True, False, False]  # collapsed only where the record is also unscored


def test_tables_leave_collapsed_runs_out_and_say_so():
    df = _runs(collapsed_seeds={0, 1}, diverged_seeds={2})
    table = summarize(df, ACC).droplevel("task")
    assert table.loc["lost", "seeds"] == "1 of 4"
    assert table.loc["lost", "diverged"] == "diverged on 1 and collapsed on 2 of 4 seeds"
    compared = stats.compare_with(df, "forget_acc", "retrain")
    assert compared.loc["lost", "excluded"] == "diverged on 1 and collapsed on 2 of 4 seeds"
    assert compared.loc["lost", "seeds"] == 1
    everywhere = _runs(collapsed_seeds=set(range(4)))
    shown = format_leaderboard(leaderboard(everywhere, ACC), ACC)
    assert shown.loc[("t", "lost"), "mean |gap|"] == "collapsed on 4 of 4 seeds"
    tied = tied_with_best(everywhere, "forget_acc")
    assert tied.loc["lost", "excluded"] == "collapsed on 4 of 4 seeds" and not tied.loc["lost", "tied"]


def test_a_method_s_own_report_does_not_make_a_collapsed_model_look_scored():
    """L2UL reports ``diverged: False`` when its loss stayed finite; the evaluation may still find the model collapsed.
    The record keeps the evaluation's verdict, so that every table counts it as collapsed (and as left out)."""
    from unlearnlib.experiment import with_run_info

    collapsed = metrics.collapsed_record(["forget_acc", "test_acc"], "collapsed: 10.1% accuracy on ...")
    own_report = {"diverged": False, "diverged_step": None, "diverged_reason": None, "collapsed": False,
                  "steps": 5, "success": True}
    merged = with_run_info(collapsed, own_report)
    assert merged["diverged"] and merged["collapsed"] and merged["diverged_reason"].startswith("collapsed")
    assert merged["steps"] == 5 and merged["success"] and math.isnan(merged["test_acc"])
    frame = pd.DataFrame([merged])
    assert stats.collapsed_flags(frame).all() and stats.diverged_flags(frame).all()
    # a scored record takes the method's report as it is
    scored = {"forget_acc": 0.0, "test_acc": 0.9, **metrics.FINITE}
    assert with_run_info(scored, own_report) == {**scored, **own_report}
