"""Checks of the L2UL chapter's exercises (``coursework/l2ul.yml``)."""
from __future__ import annotations

import math

import numpy as np

from .checks import expect, expect_close, expect_fraction, expect_mapping, expect_number, register

GROUPS = ("least typical 8", "most typical 8")


def _device(model):
    return next(model.parameters()).device


def _is_nan(value) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _expect_nan_if_diverged(value, info: dict, what: str) -> bool:
    """A diverged run is reported as NaN, never scored. Returns whether it diverged."""
    if info.get("diverged"):
        expect(_is_nan(value), f"{what} is {value!r}, but that run diverged: a diverged run has no score, report NaN "
                               "(math.nan) and say that it diverged")
        return True
    return False


@register("ex-l2ul-typical")
def _typical(answer, *, model, pool, runs):
    """``answer``: group -> the 8 correctly classified pool images with the smallest / largest own-label margin of
    ``model`` (recomputed with ``L2.logit_margin``), and the steps, success, divergence and test accuracy of the naive
    run in ``runs[group]`` (NaN when it diverged)."""
    import torch

    from ..methods import l2ul as L2
    from ..training import accuracy

    expect_mapping(answer, GROUPS, "the answer")
    expect_mapping(runs, GROUPS, "typical_runs")
    data, dev = pool.data, _device(model)
    idx = torch.as_tensor(np.asarray(pool.forget_idx))
    with torch.no_grad():
        margin = L2.logit_margin(model.eval()(data.normalize(data.x_train[idx].to(dev))),
                                 data.y_train[idx].to(dev)).cpu().numpy()
    correct = np.flatnonzero(margin > 0)
    order = correct[np.argsort(margin[correct])]
    expected = {GROUPS[0]: set(np.asarray(pool.forget_idx)[order[:8]].tolist()),
                GROUPS[1]: set(np.asarray(pool.forget_idx)[order[-8:]].tolist())}
    for group in GROUPS:
        entry = expect_mapping(answer[group], ["indices", "steps", "success", "diverged", "test_acc"],
                               f'answer["{group}"]')
        given = set(np.asarray(entry["indices"]).astype(int).tolist())
        expect(given == expected[group],
               f'answer["{group}"]["indices"] are not the 8 images of the pool with the '
               f'{"smallest" if group == GROUPS[0] else "largest"} margin for their own label among those the '
               "original model classifies correctly (margin = own logit minus the largest other one)")
        info = runs[group].info
        expect(info.get("adv_examples", 0) == 0 and "steps" in info,
               f'typical_runs["{group}"] is not a naive L2UL run (no adversarial examples): use official("naive")')
        for key in ("steps", "success", "diverged"):
            expect(entry[key] == info[key], f'answer["{group}"]["{key}"] is {entry[key]!r}, but the run reports '
                                            f"{info[key]!r}: read it from the run's info")
        if not _expect_nan_if_diverged(entry["test_acc"], info, f'answer["{group}"]["test_acc"]'):
            value = expect_fraction(entry["test_acc"], f'answer["{group}"]["test_acc"]')
            expect_close(value, accuracy(runs[group].model, data, device=dev), f'answer["{group}"]["test_acc"]',
                         tol=1e-4, hint="the test accuracy of the model the run returned (the whole test split)")
            gidx = torch.as_tensor(sorted(given))
            with torch.no_grad():
                still = (runs[group].model.eval()(data.normalize(data.x_train[gidx].to(dev))).argmax(1).cpu()
                         == data.y_train[gidx]).float().mean().item()
            expect((still == 0) == bool(info["success"]),
                   f'typical_runs["{group}"] was not run on that group: run it on tasks.instances(data, indices)')
    return "both groups follow from the margins; steps, outcome and test accuracy follow from the runs"


@register("ex-l2ul-small-eps")
def _small_eps(answer, *, run, model, task, probe, eps_grid, cap, traces, records, seed, k, attack):
    """``answer``: the small-radius +ADV run's radius, hit rate (recomputed from the attack), steps and the forget and
    probe accuracies of the returned model (NaN if it diverged), and section 6's +ADV run read at step ``cap``."""
    import pandas as pd
    import torch

    from ..methods import l2ul as L2

    expect_mapping(answer, ["eps", "hit rate", "steps", "forget acc", "probe acc", "official"], "the answer")
    eps = expect_number(answer["eps"], 'answer["eps"]')
    expect(0 < eps <= min(eps_grid), f'answer["eps"] is {eps:g}: the exercise asks for a radius no larger than the '
                                     f"smallest of section 4 ({min(eps_grid):g}), where only part of the attacks win")
    info = run.info
    expect(info.get("adv_examples", 0) > 0, "small_run used no adversarial examples: run the +ADV variant")
    expect(answer["steps"] == info["steps"], f'answer["steps"] is {answer["steps"]!r}, the run took {info["steps"]}')
    expect(info["steps"] <= cap, f"the run took {info['steps']} steps, more than the cap of {cap}: pass max_steps=CAP")
    dev = _device(model)
    adv = L2.adversarial_examples(model, task.data, task.forget_idx, eps=eps, seed=seed, device=dev, **attack)
    with torch.no_grad():
        hit = (L2.PixelSpace(model, task.data.mean, task.data.std).eval()(adv.x).argmax(1) == adv.targets)
    hit = hit.float().mean().item()
    expect_close(answer["hit rate"], info["adv_hit_rate"], 'answer["hit rate"]', tol=1e-6,
                 hint="the share of adversarial examples the original model assigns to their target (the run's info)")
    expect_close(answer["hit rate"], hit, 'answer["hit rate"]', tol=1e-4,
                 hint=f'an attack at radius {eps:g} on the request gives another hit rate: was the run made with '
                      'answer["eps"] as its radius, from the original model, with seed seed0?')
    x_f, y_f = task.data.normalize(task.data.x_train[torch.as_tensor(task.forget_idx)]).to(dev), \
        task.data.y_train[torch.as_tensor(task.forget_idx)].to(dev)
    x_p, y_p = probe
    if not _expect_nan_if_diverged(answer["forget acc"], info, 'answer["forget acc"]'):
        with torch.no_grad():
            m = run.model.eval()
            forget = (m(x_f).argmax(1) == y_f).float().mean().item()
            probe_acc = (m(x_p.to(dev)).argmax(1) == y_p.to(dev)).float().mean().item()
        expect_close(expect_fraction(answer["forget acc"], 'answer["forget acc"]'), forget, 'answer["forget acc"]',
                     tol=1e-4, hint="the share of the request's images the returned model still classifies correctly "
                                    "(the trace's last row, after finish())")
        expect_close(expect_fraction(answer["probe acc"], 'answer["probe acc"]'), probe_acc, 'answer["probe acc"]',
                     tol=1e-4, hint="the accuracy of the returned model on the probe images (the trace's last row)")
    else:
        _expect_nan_if_diverged(answer["probe acc"], info, 'answer["probe acc"]')
    rows = traces[("+ADV", seed, k)]
    at = [r for r in rows if r["step"] <= cap][-1]
    official = expect_mapping(answer["official"], ["step", "forget_acc", "probe_acc", "hit rate"],
                              'answer["official"]')
    for key in ("step", "forget_acc", "probe_acc"):
        expect_close(official[key], at[key], f'answer["official"]["{key}"]', tol=1e-9,
                     hint="section 6's +ADV trace of this request, read at the last traced step at or before CAP")
    df = pd.DataFrame(records)
    row = df[(df.task == f"k={k}") & (df.method == "+ADV") & (df.seed == seed)]
    expect(len(row) == 1, "the records hold no single section-6 +ADV run of this request: pass the chapter's records")
    expect_close(official["hit rate"], float(row.adv_hit_rate.iloc[0]), 'answer["official"]["hit rate"]', tol=1e-9,
                 hint="the adv_hit_rate of section 6's +ADV record of this seed")
    return f"radius {eps:g}: hit rate {hit:.2f} against {official['hit rate']:.2f}; accuracies follow from the run"


@register("ex-l2ul-loss")
def _loss(answer, *, runs, original, retrain, forget, test):
    """``answer``: the median cross-entropy of the request's images under each model (NaN for a diverged run) and of
    the probe images under the retrain model, recomputed from the models."""
    import torch
    import torch.nn.functional as F

    expect_mapping(answer, ["original", "retrain", "naive", "+ADV+IMP", "test (retrain)"], "the answer")
    expect_mapping(runs, ["naive", "+ADV+IMP"], "loss_runs")
    expect(runs["naive"].info.get("adv_examples", 1) == 0, 'loss_runs["naive"] used adversarial examples')
    expect(runs["+ADV+IMP"].info.get("adv_examples", 0) > 0, 'loss_runs["+ADV+IMP"] used no adversarial examples')
    dev = _device(original)
    x_f, y_f = forget
    x_t, y_t = test

    def median_ce(model, x, y):
        with torch.no_grad():
            return float(np.median(F.cross_entropy(model.to(dev).eval()(x.to(dev)), y.to(dev),
                                                   reduction="none").cpu().numpy()))

    hint = "the median (not the mean) over the request's images of the per-image cross-entropy, model in eval mode"
    expect_close(answer["original"], median_ce(original, x_f, y_f), 'answer["original"]', tol=1e-4, hint=hint)
    expect_close(answer["retrain"], median_ce(retrain, x_f, y_f), 'answer["retrain"]', tol=1e-4, hint=hint)
    expect_close(answer["test (retrain)"], median_ce(retrain, x_t, y_t), 'answer["test (retrain)"]', tol=1e-4,
                 hint="the median cross-entropy of the retrain model on the first 200 probe images")
    for name, res in runs.items():
        if not _expect_nan_if_diverged(answer[name], res.info, f'answer["{name}"]'):
            value = expect_close(answer[name], median_ce(res.model, x_f, y_f), f'answer["{name}"]', tol=1e-4,
                                 hint=hint)
            if res.info.get("success"):
                expect(value > math.log(2), f'answer["{name}"] is below log 2 although every image ends '
                                            "misclassified: compute it with the model the run returned")
    return "every median follows from its model; the diverged run is reported as such"
