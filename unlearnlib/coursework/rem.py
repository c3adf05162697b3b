"""Checks of the REM chapter's exercises (``coursework/rem.yml``)."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .checks import expect, expect_close, expect_fraction, expect_mapping, expect_number, register

GAPS = (-4.0, 0.0, 4.0, 8.0)
P_MEMS = (0.05, 0.2, 0.5)
SPLIT_COLUMNS = ("corruption", "rate", "healed (found)", "healed (hidden)")


def _score_derivative(gap: float, beta: float) -> float:
    """d s / d l of the library's preference score at ``l - l_ref = gap``, by autograd (l_ref held fixed)."""
    import torch

    from ..methods.rem import preference_score

    ref = torch.tensor(1.0, dtype=torch.float64)
    ce = (ref + gap).clone().requires_grad_(True)
    preference_score(ce, ref, beta).backward()
    return float(ce.grad)


@register("rem-ex-bounded")
def _bounded(answer, *, beta):
    """``answer``: gap l - l_ref -> ds/dl at ``beta``; every gap the answer gives is checked, the four asked for must
    be there."""
    beta = expect_number(beta, "beta")
    expect(beta > 0, f"beta is {beta:g}: the score needs beta > 0")
    expect(isinstance(answer, Mapping), f"ds_dl should be a dict from the gap to ds/dl, not a {type(answer).__name__}")
    missing = [g for g in GAPS if g not in answer]
    expect(not missing, f"ds_dl has no entry for the gap(s) {missing}")
    for gap, value in answer.items():
        gap = expect_number(gap, "a gap (key of ds_dl)")
        expect_close(value, _score_derivative(gap, beta), f"ds/dl at l - l_ref = {gap:g}", tol=1e-4,
                     hint="differentiate s = (2/beta) log sigmoid(beta (l - l_ref)) with respect to l, with l_ref "
                          "fixed; keep the factor 2/beta")
    return "ds/dl matches the library's score at every gap"


def _theta_o2_zero(model) -> bool:
    """Whether every weight of the model's extra capacity is 0 (REM discards theta_o2 at the end)."""
    params = dict(model.named_parameters())
    return all(bool((params[name].detach()[where] == 0).all()) for name, where in model.extra_capacity().items())


@register("rem-ex-pmem")
def _pmem(answer, *, task, models, original):
    """``answer``: p_mem -> {healed, utility, product} of REM's model for that p_mem (``models[p_mem]``) on the
    trigger ``task``."""
    from ..metrics import corruption_metrics
    from ..models import CapacityModel

    expect_mapping(answer, P_MEMS, "pmem_results")
    expect_mapping(models, P_MEMS, "pmem_models")
    expect(getattr(task, "kind", None) == "corrupted" and task.corruption["kind"] == "trigger",
           "pmem_task should be the chapter's trigger task (tasks.corrupted(..., 'trigger', ...))")
    expect(isinstance(original, CapacityModel) and not _theta_o2_zero(original),
           "orig should be the trigger original (a Capacity 0.5 model whose extra capacity is still at its "
           "initialisation), not an unlearned model")
    for p in P_MEMS:
        model = models[p]
        expect(model is not original, f"pmem_models[{p}] is the original itself: store the model REM returns")
        expect(isinstance(model, CapacityModel) and _theta_o2_zero(model),
               f"pmem_models[{p}] still has its extra capacity: it is not a model REM returned (REM discards "
               f"theta_o2 at the end)")
        row = expect_mapping(answer[p], ["healed", "utility", "product"], f"pmem_results[{p}]")
        device = next(model.parameters()).device
        metrics = corruption_metrics(model, task, device=device)
        for key, source in (("healed", "healed"), ("utility", "utility")):
            value = expect_fraction(row[key], f'pmem_results[{p}]["{key}"]')
            expect_close(value, metrics[source], f'pmem_results[{p}]["{key}"]', tol=1e-5,
                         hint="Healed is the accuracy on *every* corrupted training sample (found or hidden) "
                              "against its clean label, Utility the clean test accuracy: corruption_metrics gives "
                              "both")
        expect_close(row["product"], float(row["healed"]) * float(row["utility"]), f'pmem_results[{p}]["product"]',
                     hint="Utility x Healed")
    return "Healed, Utility and their product follow from the three REM models"


def _split_rows(answer: Any) -> dict:
    import pandas as pd

    expect(isinstance(answer, pd.DataFrame),
           f"split_healed should be a pandas DataFrame (one row per task), not a {type(answer).__name__}")
    missing = [c for c in SPLIT_COLUMNS if c not in answer.columns]
    expect(not missing, f"split_healed has no column {missing!r}")
    rows = {}
    for rec in answer.to_dict("records"):
        key = (rec["corruption"], float(rec["rate"]))
        expect(key not in rows, f"split_healed has two rows for {key}")
        rows[key] = rec
    return rows


def _same_nan(value: Any, what: str) -> None:
    try:
        ok = value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        ok = False
    expect(ok, f"{what} is {value!r}, but no corrupted sample is hidden there: give NaN")


@register("rem-ex-hidden")
def _hidden(answer, *, tasks, models):
    """``answer``: one row per (corruption, rate) with the retrain model's clean-label accuracy on the found and on
    the hidden corrupted samples, recomputed from ``tasks`` (their corruption indices) and ``models`` (what
    ``train_or_load`` returned for each task's D_r)."""
    from ..training import indices_digest, predict_logits

    rows = _split_rows(answer)
    keys = {(c, float(r)) for c, r in tasks}
    expect(set(rows) == keys, f"split_healed should have one row per task in hidden_tasks: rows {sorted(rows)}, "
                              f"tasks {sorted(keys)}")
    expect(set(tasks) == set(models), "hidden_tasks and retrains should have the same keys")
    for (corruption, rate), task in tasks.items():
        trained = models[(corruption, rate)]
        where = f"({corruption}, {rate:g})"
        expect(hasattr(trained, "meta") and hasattr(trained, "model"),
               f"retrains[{where}] should be what train_or_load returns (a TrainedModel), not a "
               f"{type(trained).__name__}")
        expect(trained.meta.get("indices") == indices_digest(task.retain_idx),
               f"retrains[{where}] was not trained on the task's D_r (task.retain_idx): the retrain model of the "
               f"grid learns everything not known to be corrupted")
        c = task.corruption
        corrupt, clean = np.asarray(c["corrupt_idx"]), np.asarray(c["clean_labels"])
        found = np.isin(corrupt, c["known_idx"])
        device = next(trained.model.parameters()).device
        pred = predict_logits(trained.model, task.data, corrupt, split="train", device=device).argmax(1).numpy()
        ok = pred == clean
        row = rows[(corruption, float(rate))]
        value = expect_fraction(row["healed (found)"], f'"healed (found)" of {where}')
        expect_close(value, float(ok[found].mean()), f'"healed (found)" of {where}', tol=1e-6,
                     hint="the accuracy on the discovered corrupted samples (corruption['known_idx']) against their "
                          "clean labels (corruption['clean_labels'], in the order of corruption['corrupt_idx'])")
        if (~found).any():
            value = expect_fraction(row["healed (hidden)"], f'"healed (hidden)" of {where}')
            expect_close(value, float(ok[~found].mean()), f'"healed (hidden)" of {where}', tol=1e-6,
                         hint="the accuracy on the corrupted samples that were *not* discovered, against their "
                              "clean labels")
        else:
            _same_nan(row["healed (hidden)"], f'"healed (hidden)" of {where}')
    return "found and hidden Healed follow from every task's corruption and its retrain model"
