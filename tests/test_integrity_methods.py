"""Issue 34, method side: step loops stop at the first non-finite loss or output and say so; SCRUB selects on what
remains; SalUn's mask is its share of the live weights; SSD's label names the order that ran; the random-weights
ablation has the size of the selection it is compared with. Real data (the conftest fixtures) throughout."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unlearnlib import tasks
from unlearnlib.experiment import run_methods
from unlearnlib.methods import REGISTRY, unlearn
from unlearnlib.profiles import Profile
from unlearnlib.training import train_or_load

from conftest import TINY_RECIPE

#: a planted learning rate no run survives: the first update makes the weights infinite or NaN
HUGE_LR = float("inf")


def _profile() -> Profile:
    return Profile(name="test", dataset="fashion-mnist", arch="small-cnn", recipe=TINY_RECIPE, seeds=(0,),
                   train_size=3000, test_size=1000, svc_max_samples=300)


def _assert_reported(info: dict, name: str) -> None:
    assert info.get("diverged") is True, f"{name} did not report its divergence: {info}"
    step = info["diverged_step"]
    assert isinstance(step, int) and step >= 1, f"{name}: diverged_step {step!r}"
    assert "non-finite" in info["diverged_reason"], info["diverged_reason"]


STEP_LOOPS = {"gradient_ascent": {"epochs": 2}, "neggrad_plus": {"alpha": 0.5},
              "npo": {"epochs": 3, "stop_acc": 0.0}, "scrub": {"epochs": 1, "max_epochs": 1}}


@pytest.mark.parametrize("name", sorted(STEP_LOOPS))
def test_a_step_loop_stops_at_its_first_non_finite_loss_and_reports_the_step(trained, class_task, name):
    """Before: the loops went on with NaN weights (NPO and SCRUB then crashed on a selection with no candidate, the
    others returned a NaN model that argmax scored as class 0)."""
    result = unlearn(name, trained[0], class_task, device="cpu", lr=HUGE_LR, **STEP_LOOPS[name])
    _assert_reported(result.info, name)
    # the first update breaks the weights: the next check (the second step's loss, or the outputs after a pass of
    # one batch, NPO's 512 here) is the first non-finite one, and the run stops there
    assert result.info["diverged_step"] <= 2, result.info


def test_run_methods_records_a_diverged_run_with_nan_metrics_never_a_number(trained, class_task):
    methods = {name: {**hp, "lr": HUGE_LR} for name, hp in STEP_LOOPS.items()}
    records = run_methods(class_task, _profile(), methods, seeds=[0], device="cpu", progress=False, quick=True,
                          retrain=False)
    assert [r["method"] for r in records] == list(methods)
    for rec in records:
        assert rec["diverged"] is True and rec["diverged_step"] <= 2, rec
        for key in ("forget_acc", "test_acc", "test_forget_acc"):
            assert math.isnan(rec[key]), f"{rec['method']}: {key} = {rec[key]} is a number for a diverged run"


def _instances(data, k: int = 16) -> tasks.ForgetTask:
    pool = np.setdiff1d(np.arange(len(data.y_train)), data.val_idx if data.val_idx is not None else [])
    return tasks.instances(data, np.random.default_rng(0).choice(pool, k, replace=False))


def test_l2ul_reports_the_step_and_its_trace_keeps_no_row_of_a_diverged_model(trained, small_fashion):
    """Before: the trace recorded the NaN model (its NaN logits "misclassify" every instance), so a matched-progress
    reading at forget accuracy 0 came from a diverged model."""
    from unlearnlib.methods import l2ul as L

    task = _instances(small_fashion)
    f = torch.as_tensor(task.forget_idx)
    x_f, y_f = small_fashion.normalize(small_fashion.x_train[f]), small_fashion.y_train[f]
    x_p, y_p = small_fashion.normalize(small_fashion.x_test[:200]), small_fashion.y_test[:200]
    trace = L.ProgressTrace(x_f, y_f, x_p, y_p)
    trace.record(0, trained[0])
    result = unlearn("l2ul", trained[0], task, device="cpu", lr=HUGE_LR, max_steps=20, on_step=trace,
                     **L.VARIANTS["naive"])
    trace.finish()
    _assert_reported(result.info, "l2ul")
    assert result.info["success"] is False
    assert trace.diverged_step is not None and trace.diverged_step <= result.info["diverged_step"]
    assert [r["step"] for r in trace.rows] == [0], trace.rows         # the only finite model is the original
    assert L.at_matched_progress(trace.rows, 0.0) is None


@pytest.fixture(scope="module")
def capacity_trigger(small_fashion):
    """A trigger task and a Capacity-0.5 small CNN trained on it (two epochs: enough to learn the data)."""
    task = tasks.corrupted(small_fashion, "trigger", n_corrupt=150, discovery_rate=0.5, target_class=0, seed=0)
    model = train_or_load(task.data, task.train_idx, "small-cnn-capacity", TINY_RECIPE.replace(epochs=2), seed=0,
                          role="original", device="cpu", progress=False).model
    return task, model


def test_rem_stops_at_its_first_non_finite_loss_and_reports_the_step(capacity_trigger):
    task, model = capacity_trigger
    result = unlearn("rem", model, task, device="cpu", lr=HUGE_LR, epochs=2, progress=False)
    _assert_reported(result.info, "rem")
    assert result.info["best_round"] == 0        # no diverged round is kept: the starting model is returned
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


# ---------------------------------------------------------------------------------------------------------------
# SCRUB as its authors run it

def test_scrub_defaults_are_the_official_ones_and_its_grid_holds_the_official_rate_and_lower(trained, class_task):
    hp = REGISTRY["scrub"].hyperparameters
    assert {k: hp[k] for k in ("lr", "alpha", "gamma", "temperature", "epochs", "max_epochs", "batch_size",
                               "forget_batch_size", "weight_decay", "max_loss", "schedule")} == {
        "lr": 5e-4, "alpha": 0.001, "gamma": 0.99, "temperature": 4.0, "epochs": 3, "max_epochs": 2,
        "batch_size": 128, "forget_batch_size": 32, "weight_decay": 5e-4, "max_loss": "kl", "schedule": "official"}
    from unlearnlib.methods.baselines import SCRUB_LRS, scrub_grid

    assert 5e-4 in SCRUB_LRS and min(SCRUB_LRS) < 5e-4 and max(SCRUB_LRS) == 5e-4
    assert scrub_grid(epochs=1) == [{"epochs": 1, "lr": lr} for lr in SCRUB_LRS]
    with pytest.raises(ValueError, match="schedule"):
        unlearn("scrub", trained[0], class_task, device="cpu", schedule="cosine")


def test_scrub_selects_on_the_remaining_classes_validation_images_only(trained, class_task, monkeypatch):
    """Scoring the forgotten class's validation images would reward the pass that forgot least."""
    from unlearnlib.methods import baselines

    read = []
    real = baselines.accuracy
    monkeypatch.setattr(baselines, "accuracy", lambda m, d, idx, **kw: read.append(np.asarray(idx)) or real(
        m, d, idx, **kw))
    result = unlearn("scrub", trained[0], class_task, device="cpu", epochs=2, max_epochs=1)
    assert len(read) == result.info["passes"] == 3
    labels = class_task.data.y_train.numpy()
    for idx in read:
        np.testing.assert_array_equal(idx, class_task.val_retain_idx)
        assert not np.isin(labels[idx], class_task.forget_classes).any()
    assert result.info["selection_images"] == len(class_task.val_retain_idx)


# ---------------------------------------------------------------------------------------------------------------
# SalUn on REM's capacity model

def test_salun_masks_its_share_of_the_live_weights_on_the_capacity_model_and_is_not_random_labels(
        capacity_trigger):
    """Most of a capacity model's weights (the held-back extra capacity) get no gradient, so ranking all weights put
    SalUn's threshold at 0 and its mask on every live weight: SalUn was random labelling. Weight decay off, so that
    a weight moves only if it is trained."""
    from unlearnlib.methods.baselines import saliency_mask

    task, model = capacity_trigger
    live = _live_weights(model, task)
    n_live, n_all = sum(int(m.sum()) for m in live.values()), sum(m.numel() for m in live.values())
    assert n_live < 0.5 * n_all, "the capacity model's held-back weights should be most of its weights"
    mask = saliency_mask(model, task.data, task.forget_idx, sparsity=0.5)
    assert all(not bool(mask[n][~live[n]].any()) for n in mask), "a weight without gradient is never salient"
    assert abs(sum(float(m.sum()) for m in mask.values()) / n_live - 0.5) < 0.02

    hp = dict(epochs=1, lr=0.01, weight_decay=0.0)
    sal = unlearn("salun", model, task, device="cpu", sparsity=0.5, **hp)
    rl = unlearn("random_labels", model, task, device="cpu", **hp)
    before = dict(model.named_parameters())

    def moved(out) -> float:   # share of the live weights that training changed
        after = dict(out.model.named_parameters())
        return sum(int((after[n].detach() != before[n].detach())[live[n]].sum()) for n in live) / n_live

    assert moved(rl) > 0.9 and moved(sal) < 0.55, (moved(rl), moved(sal))
    assert abs(sal.info["salient_share"] - 0.5) < 0.02
    assert sal.info["salient_share_all"] == pytest.approx(sal.info["salient_share"] * sal.info["live_share"])
    assert sal.info["live_share"] == pytest.approx(n_live / n_all)


def _live_weights(model, task) -> dict[str, torch.Tensor]:
    """Where the summed forget cross-entropy has a non-zero gradient (BatchNorm on its running statistics)."""
    import copy

    work = copy.deepcopy(model).eval()
    x = task.data.normalize(task.data.x_train[torch.as_tensor(task.forget_idx)])
    torch.nn.functional.cross_entropy(work(x), task.data.y_train[torch.as_tensor(task.forget_idx)],
                                      reduction="sum").backward()
    return {n: (p.grad != 0) if p.grad is not None else torch.zeros_like(p, dtype=torch.bool)
            for n, p in work.named_parameters()}


# ---------------------------------------------------------------------------------------------------------------
# SSD: the label names the order that ran

def test_ssd_with_a_precomputed_importance_runs_and_names_its_order_and_refuses_another(trained, class_task):
    from unlearnlib.methods import ssd as S

    model = trained[0]
    pre = S.precompute_importance(model, class_task.data, order="by_class", device="cpu", progress=False)
    for other in ("official", "dataset"):   # a request order and a request-free one: both are refused
        with pytest.raises(ValueError, match=r"differs from the precomputed importance's 'by_class' order.*"
                                             r"Leave order out"):
            unlearn("ssd", model, class_task, device="cpu", alpha=3.0, importance_d=pre, order=other)
    run = unlearn("ssd", model, class_task, device="cpu", alpha=3.0, importance_d=pre)
    same = unlearn("ssd", model, class_task, device="cpu", alpha=3.0, importance_d=pre, order="by_class")
    assert all(torch.equal(a, b) for a, b in zip(run.model.parameters(), same.model.parameters()))
    assert run.info["order"] == "by_class" and run.info["importance"] == "precomputed"
    assert unlearn("ssd", model, class_task, device="cpu", alpha=3.0).info["order"] == "official"


# ---------------------------------------------------------------------------------------------------------------
# Class-level forgetting: the random-weights ablation has the size of the relevance selection

def test_random_weights_ablation_has_exactly_the_size_of_the_union_it_is_compared_with(trained, small_fashion):
    from unlearnlib.methods import classlevel as CL

    model = trained[0]
    three = tasks.few_shot(tasks.full_class(small_fashion, ["Trouser", "Sandal", "Bag"]), 3, seed=0)
    relevant = CL.selection_masks(model, three, selection="relevance", fraction=0.05)
    rand = CL.selection_masks(model, three, selection="random", fraction=0.05, seed=1)
    total = sum(m.numel() for m in rand.values())
    size = lambda masks: sum(int(m.sum()) for m in masks.values())  # noqa: E731
    # the union of three per-class top-5 % sets is larger than one top-5 % set: the old draw (5 % once) was smaller
    assert size(relevant) > 0.06 * total
    assert size(rand) == size(relevant)
    assert any(not torch.equal(rand[n], relevant[n]) for n in rand)
    run = unlearn("classlevel", model, three, device="cpu", selection="random", fraction=0.05, epochs=1)
    assert run.info["selected"] == CL.mask_size(relevant) == size(relevant)
