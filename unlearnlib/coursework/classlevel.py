"""Checks of the class-level chapter's exercises (``coursework/classlevel.yml``)."""
from __future__ import annotations

import math

from .checks import expect, expect_close, expect_fraction, expect_mapping, register

ACCURACIES = ("forget acc", "test acc (remaining)", "test acc (restricted)")


def _class_accuracies(model, task) -> dict[str, float]:
    from ..training import accuracy

    return dict(zip(ACCURACIES, (accuracy(model, task.data, task.forget_idx, split="train"),
                                 accuracy(model, task.data, task.test_retain_idx),
                                 accuracy(model, task.data, task.test_forget_idx))))


def _expect_accuracies(given, target: dict[str, float], what: str, hint: str) -> None:
    """``given``: a dict keyed by :data:`ACCURACIES` equal to ``target`` (recomputed from the model)."""
    expect_mapping(given, ACCURACIES, what)
    for name in ACCURACIES:
        value = expect_fraction(given[name], f'{what}["{name}"]')
        expect_close(value, target[name], f'{what}["{name}"]', tol=1e-4, hint=hint)


def _changed(original, model) -> dict:
    """Parameter name -> boolean tensor of the entries that differ between ``original`` and ``model``."""
    return {n: p.detach().cpu() != q.detach().cpu()
            for (n, p), (_, q) in zip(original.named_parameters(), model.named_parameters())}


def _share(masks: dict) -> float:
    return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


@register("ex-cl-filters")
def _filters(answer, *, original, task, models, fraction):
    """``answer``: ``masks`` (whole output channels/units), and the accuracies of the per-weight and per-channel
    runs, recomputed from ``models``; the per-channel model may differ from ``original`` only inside the masks."""
    import torch

    expect_mapping(answer, ["masks", "per-weight", "per-channel"], "the answer")
    params = dict(original.named_parameters())
    masks = expect_mapping(answer["masks"], list(params), 'answer["masks"]')
    channels = selected = 0
    for name, p in params.items():
        mask = torch.as_tensor(masks[name]).detach().cpu()
        expect(tuple(mask.shape) == tuple(p.shape),
               f'the mask of {name!r} has shape {tuple(mask.shape)}, not the parameter\'s {tuple(p.shape)}')
        rows = mask.bool().reshape(p.shape[0], -1)
        whole = bool((rows == rows[:, :1]).all())
        expect(whole, f"the mask of {name!r} selects part of an output channel: a structured mask takes every entry "
                      "of a channel (a conv filter, a row of a linear layer) or none; aggregate the relevance per "
                      "channel before ranking, then expand the channel's choice over its weights")
        channels += rows.shape[0]
        selected += int(rows[:, 0].sum())
    wanted = max(1, int(round(fraction * channels)))
    expect(wanted <= selected <= wanted + max(2, math.ceil(0.01 * channels)),
           f"the masks select {selected} of {channels} channels; the top {fraction:g} of the channels is {wanted}: "
           "rank channels (one score each) in one global ranking, not weights")
    changed = _changed(original, models["per-channel"])
    outside = sum(int((c & ~torch.as_tensor(masks[n]).bool().cpu()).sum()) for n, c in changed.items())
    expect(outside == 0, f"the per-channel model differs from the original in {outside} entries outside your masks: "
                         "make classlevel use your masks (monkeypatch CL.selection_masks) and keep the model it "
                         "returns")
    expect(any(bool(c.any()) for c in changed.values()),
           "the per-channel model equals the original: pass the model that classlevel returned")
    for role, hint in (("per-weight", "class_accuracies of the model classlevel returned with its own selection"),
                       ("per-channel", "class_accuracies of the model returned with your channel masks")):
        _expect_accuracies(answer[role], _class_accuracies(models[role], task), f'answer["{role}"]', hint)
    return f"{selected} of {channels} channels selected, whole; only they moved; accuracies follow from both models"


@register("ex-cl-one-shot")
def _one_shot(answer, *, task, models, originals):
    """``answer``: (epochs, fraction) -> mean over the seeds of the three accuracies of ``models[seed, epochs,
    fraction]``; each model changed about ``fraction`` of the original's entries (the selected weights)."""
    import numpy as np

    seeds = sorted(originals)
    grid = [(e, f) for e in (20, 50, 200) for f in (0.02, 0.05, 0.1)]
    expect(all((s, e, f) in models for s in seeds for e, f in grid),
           "one_shot_models should hold a model for every seed, every epochs in (20, 50, 200) and every fraction in "
           "(0.02, 0.05, 0.1), keyed by (seed, epochs, fraction)")
    expect_mapping(answer, grid, "the answer")
    for (s, e, f) in ((s, e, f) for s in seeds for e, f in grid):
        share = _share(_changed(originals[s], models[s, e, f]))
        expect(0.5 * f <= share <= 1.05 * f + 1e-4,
               f"the model of seed {s}, {e} epochs, fraction {f:g} changed {share:.4f} of the weights: run classlevel "
               "from the seed's original model on the k = 1 budget with that fraction")
    for e, f in grid:
        per_seed = [_class_accuracies(models[s, e, f], task) for s in seeds]
        target = {name: float(np.mean([acc[name] for acc in per_seed])) for name in ACCURACIES}
        _expect_accuracies(answer[e, f], target, f"answer[{e}, {f}]",
                           "the mean over the seeds of class_accuracies on the full task (all of the class's training "
                           "images, and the test images of both sides), not on the budget")
    return "every setting ran, changed its fraction of the weights, and its accuracies follow from the models"


@register("ex-cl-no-distillation")
def _no_distillation(answer, *, task, models, original, view, hparams):
    """``answer``: (selection, lam) -> the accuracies of ``models[selection, lam]``, and ``"needs it more"``: the
    selection whose remaining-class accuracy falls more without the distillation term."""
    from ..methods import classlevel as CL

    lam = hparams.get("lam", 1.0)
    keys = [("relevance", lam), ("relevance", 0.0), ("all", lam), ("all", 0.0)]
    expect(all(k in models for k in keys),
           f"no_distill_models should hold the keys {keys!r} (selection, lam), lam the tuned one and 0")
    expect_mapping(answer, keys + ["needs it more"], "the answer")
    for key in keys:
        _expect_accuracies(answer[key], _class_accuracies(models[key], task), f"answer[{key!r}]",
                           "class_accuracies of that run's model on the three-class task")
    selected = CL.selection_masks(original, view, selection="relevance", fraction=hparams["fraction"])
    for key in keys[:2]:
        changed = _changed(original, models[key])
        outside = sum(int((c & ~selected[n].cpu()).sum()) for n, c in changed.items())
        expect(outside == 0, f"the model {key!r} moved {outside} weights outside the relevance selection: run it "
                             "with selection='relevance' on the first seed's budget and the tuned fraction")
    expect(_share(_changed(original, models["all", 0.0])) > 0.5,
           "the all-weights model without the term changed fewer than half of the weights: use selection='all'")
    for selection in ("relevance", "all"):
        same = all(not bool(c.any()) for c in _changed(models[selection, lam], models[selection, 0.0]).values())
        expect(not same, f"the {selection!r} runs with lam = {lam:g} and lam = 0 gave the same model: pass lam")
    drop = {s: answer[s, lam]["test acc (remaining)"] - answer[s, 0.0]["test acc (remaining)"]
            for s in ("relevance", "all")}
    best = max(drop.values())
    expect(answer["needs it more"] in drop, f'answer["needs it more"] should be "relevance" or "all", not '
                                            f'{answer["needs it more"]!r}')
    expect(drop[answer["needs it more"]] >= best - 1e-9,
           'answer["needs it more"] is not the selection whose remaining-class test accuracy falls more when lam '
           "goes to 0: compare the falls of test acc (remaining), not the forget accuracies")
    return f"four runs consistent with their models; {answer['needs it more']!r} loses more without the term"
