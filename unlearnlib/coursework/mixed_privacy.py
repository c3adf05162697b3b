"""Checks of the mixed-privacy chapter's exercises (``coursework/mixed_privacy.yml``)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .checks import expect, expect_close, expect_fraction, expect_mapping, expect_number, register

MUS = (1e-3, 1e-1, 1.0)
MU_COLUMNS = ("test acc", "largest curvature L", "condition number L/mu (at least)", "||w_u||")
CLASS_MODELS = ("original", "ML-Forgetting", "retrain (exact)", "core only")
DISTANCES = ("original (no step)", "complete residual gradient", "stochastic (fine-tuning)")


def _rows(answer: Any, what: str) -> Mapping:
    """A DataFrame indexed by the rows as {row: {column: value}}; a mapping as it is."""
    import pandas as pd

    if isinstance(answer, pd.DataFrame):
        expect(answer.index.is_unique, f"{what} has repeated index values: one row per value")
        return answer.to_dict("index")
    return answer


def _device(model) -> Any:
    return next(model.parameters()).device


def _is_mixed_linear(model: Any, what: str) -> None:
    from ..methods import mixed_privacy as mp

    expect(isinstance(model, mp.MixedLinear),
           f"{what} should be a mixed-linear model (mp.MixedLinear), not a {type(model).__name__}")


def _same_set(a, b) -> bool:
    a, b = np.unique(np.asarray(a, dtype=np.int64)), np.unique(np.asarray(b, dtype=np.int64))
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _frozen_parts_equal(a, b) -> bool:
    """Whether two mixed-linear models have the same trunk and linearized tail (every tensor of their state)."""
    import torch

    for part in ("trunk", "tail"):
        sa, sb = getattr(a, part).state_dict(), getattr(b, part).state_dict()
        if sa.keys() != sb.keys():
            return False
        if not all(torch.equal(sa[k].detach().cpu(), sb[k].detach().cpu()) for k in sa):
            return False
    return True


@register("ex-mp-mu")
def _mu(answer, *, models, data, user_idx):
    """``answer``: mu -> {test acc, largest curvature L, condition number L/mu, ||w_u||} of the mixed-linear model
    fitted with that mu (``models[mu]``) on ``user_idx``."""
    from ..methods import mixed_privacy as mp
    from ..training import accuracy

    table = expect_mapping(_rows(answer, "mu_table"), MUS, "mu_table (its index)")
    expect_mapping(models, MUS, "mu_models")
    trunk_keys = set()
    for mu in MUS:
        row = expect_mapping(table[mu], MU_COLUMNS, f"the row mu = {mu:g} of mu_table")
        model = models[mu]
        _is_mixed_linear(model, f"mu_models[{mu:g}]")
        expect(abs(model.mu - mu) <= 1e-12 * max(mu, 1.0),
               f"mu_models[{mu:g}] was fitted with mu = {model.mu:g}: pass mu=... to mp.fit_mixed_linear")
        expect(_same_set(model.user_idx, user_idx),
               f"mu_models[{mu:g}] was not fitted on user_idx: fit w_u on the user data of the first seed")
        expect(bool(model.w_user.detach().abs().sum() > 0),
               f"mu_models[{mu:g}] has w_u = 0: it is the core model, not a fitted one")
        trunk_keys.add(model.trunk_key)
        device = _device(model)
        expect_close(row["test acc"], accuracy(model, data, device=device), f"test acc at mu = {mu:g}", tol=1e-4,
                     hint="the model's accuracy on the whole test split, as a fraction")
        L = mp.largest_curvature(model, data, user_idx, device=device)
        value = expect_number(row["largest curvature L"], f"L at mu = {mu:g}")
        expect(value >= mu * (1 - 1e-6),
               f"L at mu = {mu:g} is {value:.4g}, below mu: the Hessian is J^T J / B + mu I, so its largest "
               f"eigenvalue is at least mu. Use mp.largest_curvature on the model and the user data")
        # power iteration on a random batch: another seed gives a slightly different estimate of the same eigenvalue
        expect(abs(value - L) <= 0.1 * L,
               f"L at mu = {mu:g} is {value:.4g}, which does not follow from the model: compute it with "
               f"mp.largest_curvature(model, data, user_idx) on that mu's model")
        expect_close(row["condition number L/mu (at least)"], value / mu, f"the condition number at mu = {mu:g}",
                     hint="the largest curvature over the smallest one; the smallest curvature of the quadratic is mu")
        expect_close(row["||w_u||"], model.w_user.detach().norm().item(), f"||w_u|| at mu = {mu:g}", tol=1e-5,
                     hint="the Euclidean norm of the model's user weights (model.w_user)")
    expect(len(trunk_keys) == 1, "the three models do not share one core network: fit all of them on `core`")
    return "curvature, condition number, ||w_u|| and accuracy follow from the three models"


@register("ex-mp-class")
def _class(answer, *, models, forget_idx, user_idx, class_name, data):
    """``answer``: model name -> {class: test accuracy on ``class_name``, overall: test accuracy}; ``forget_idx``
    must be every user sample of the class and nothing else."""
    from ..training import accuracy

    expect_mapping(answer, CLASS_MODELS, "class_acc")
    expect_mapping(models, CLASS_MODELS, "class_models")
    k = data.class_index(class_name)
    y = data.y_train.numpy()
    forget = np.asarray(forget_idx, dtype=np.int64)
    expect(len(np.unique(forget)) == len(forget), "cls_forget lists a sample twice")
    expect(np.isin(forget, user_idx).all(),
           "cls_forget holds samples that are not user data: core samples are never forgotten (they are in w_c)")
    expect(_same_set(forget, np.asarray(user_idx)[y[user_idx] == k]),
           f"cls_forget is not the set of user samples of class {class_name!r}: take every user sample whose "
           f"training label is that class, and nothing else")
    original = models["original"]
    _is_mixed_linear(original, 'class_models["original"]')
    remaining = np.setdiff1d(original.user_idx, forget)
    for name in ("ML-Forgetting", "retrain (exact)"):
        _is_mixed_linear(models[name], f'class_models["{name}"]')
        expect(_same_set(models[name].user_idx, remaining),
               f'class_models["{name}"] did not forget exactly cls_forget from the original: run the method on '
               f"tasks.instances(data, cls_forget) from `original`")
        expect(_frozen_parts_equal(models[name], original),
               f'class_models["{name}"] has another core than the original: start from `original`')
        expect(not bool((models[name].w_user.detach() == original.w_user.detach()).all()),
               f'class_models["{name}"] has the original\'s user weights: it did not forget anything')
    expect(getattr(models["ML-Forgetting"], "unlearn_info", {}).get("solver") == "sgd",
           'class_models["ML-Forgetting"] should come from the paper\'s solver (TUNED["ML-Forgetting"])')
    expect(getattr(models["retrain (exact)"], "unlearn_info", {}).get("solver") == "cg",
           'class_models["retrain (exact)"] should be the exact paragon (ml-retrain with its CG solver)')
    test_k = np.flatnonzero(data.y_test.numpy() == k)
    for name in CLASS_MODELS:
        row = expect_mapping(answer[name], ["class", "overall"], f'class_acc["{name}"]')
        model = models[name]
        device = _device(model)
        got = expect_fraction(row["class"], f'class_acc["{name}"]["class"]')
        expect_close(got, accuracy(model, data, test_k, device=device), f'class_acc["{name}"]["class"]', tol=1e-4,
                     hint=f"the accuracy on the *test* images of {class_name!r} (data.y_test), not on the forgotten "
                          f"training images")
        got = expect_fraction(row["overall"], f'class_acc["{name}"]["overall"]')
        expect_close(got, accuracy(model, data, device=device), f'class_acc["{name}"]["overall"]', tol=1e-4,
                     hint="the accuracy on the whole test split")
    return f"the request is every user sample of {class_name!r}; the accuracies follow from the four models"


@register("ex-mp-stochastic")
def _stochastic(answer, *, original, finetuned, complete, paragon):
    """``answer``: variant -> relative distance of its user weights to the paragon's; ``finetuned`` must differ from
    ``original`` in its user weights only."""
    expect_mapping(answer, DISTANCES, "stochastic_dist")
    for name, model in (("original", original), ("ft_model", finetuned), ("complete", complete),
                        ("paragon1", paragon)):
        _is_mixed_linear(model, name)
    remaining = np.asarray(paragon.user_idx)
    expect(_same_set(complete.user_idx, remaining),
           "complete and paragon1 forgot different requests: use the ones of the setup")
    expect(_frozen_parts_equal(finetuned, original),
           "ft_model's trunk or linearized tail differ from the original's: fine-tuning here changes w_u only")
    expect(finetuned.mu == original.mu and finetuned.target_scale == original.target_scale,
           "ft_model has another loss (mu or target scale) than the original: work on a copy of the original")
    expect(finetuned is not original and finetuned.w_user.data_ptr() != original.w_user.data_ptr(),
           "ft_model is the original itself: fine-tune a copy (copy.deepcopy), or the original is lost")
    moved = (finetuned.w_user.detach() - original.w_user.detach()).norm().item()
    expect(moved > 0, "ft_model has the original's user weights: the fine-tuning did not take a step")
    expect(hasattr(complete, "pre_noise"), "complete should be the paper's solver's model (ml-forgetting), which "
                                           "keeps its weights before the noise in .pre_noise")
    w_star = paragon.w_user.detach()

    def rel(w):
        return ((w.detach().to(w_star.device) - w_star).norm() / w_star.norm()).item()

    targets = {"original (no step)": rel(original.w_user), "complete residual gradient": rel(complete.pre_noise),
               "stochastic (fine-tuning)": rel(finetuned.w_user)}
    for name, target in targets.items():
        expect_close(answer[name], target, f'stochastic_dist["{name}"]', tol=1e-5,
                     hint="||w - w*|| / ||w*||, with w* the paragon's user weights (w_star) and w the variant's "
                          "user weights before any noise")
    return "the three distances to w* follow from the models; fine-tuning changed w_u only"
