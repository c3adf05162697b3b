"""Class-level forgetting with few samples, after Singh, Mazumder and Karim (ECCV 2022): **a reconstruction**.

What the paper states (abstract and introduction): a model trained on many classes must lose one or more
*restricted* classes; only a few training samples are available, so retraining is impossible; the method
(1) identifies the parameters that are highly relevant to the restricted classes and (2) removes the restricted
knowledge from them with the limited data, (3) without hurting the remaining classes. The code is not public, and
only the abstract and the first page of the introduction were consulted, so every concrete choice below is ours, made
to fit that description:

1. **Relevance** of parameter ``theta_i`` to a set of samples S: the first-order (Taylor) estimate of how much the
   log-likelihood of the true class would change if the parameter were removed, ``mean_{x in S} |theta_i *
   d log p_y(x) / d theta_i|``, per sample (so that samples do not cancel), as pruning criteria score weights.
2. **Contrast and selection**: ``ratio_i = R_c,i / (R_remaining,i + eps)``, how much more the restricted class c
   relies on the parameter than the remaining classes do; for every restricted class, the ``fraction`` of
   parameters with the highest ratio is selected (the union over the restricted classes), so that with several
   restricted classes no class is crowded out by another whose ratios run higher.
3. **Removal**: optionally zero the selected parameters (pruning them), then train *only* them for ``epochs`` full
   passes over the few samples, minimising

       CE(f(x_f), q(x_f))  +  lam * T^2 * KL(p_orig(x_r; T) || f(x_r; T))

   where q(x_f) is the original model's prediction on a restricted sample renormalised over the remaining classes
   (where a model that never saw the class would send it), and the second term distils the original model on the
   few remaining-class samples (it protects what the remaining classes need). BatchNorm stays in eval mode: a few
   samples per class cannot re-estimate its statistics. Parameters outside the selection are bitwise unchanged.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..training import batches, set_seed
from .registry import register

Scores = dict[str, torch.Tensor]
SELECTIONS = ("relevance", "all", "random")
RESETS = ("zero", "none")


def relevance(model: nn.Module, data, indices, *, chunk_size: int = 64, device="cpu") -> Scores:
    """Mean per-sample Taylor saliency ``|theta * d log p_y / d theta|`` of every parameter over ``indices``.

    Per-sample gradients come from ``torch.func`` (``vmap`` over ``grad``), ``chunk_size`` samples at a time; the
    model is in eval mode, so BatchNorm uses its running statistics and samples do not interact.
    """
    model = model.eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def log_likelihood(p, x, y):
        logits = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return -F.cross_entropy(logits, y.unsqueeze(0))

    per_sample = vmap(grad(log_likelihood), in_dims=(None, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    for x, y in batches(data, indices, chunk_size, device=device):
        grads = per_sample(params, x, y)
        for n, g in grads.items():
            total[n] += (g * params[n]).abs().sum(0)
        count += len(y)
    if count == 0:
        raise ValueError("relevance needs at least one sample")
    return {n: t / count for n, t in total.items()}


def relevance_ratio(restricted: Scores, remaining: Scores, *, eps: float = 1e-12) -> Scores:
    """How much more the restricted classes rely on each parameter than the remaining classes do."""
    return {n: restricted[n] / (remaining[n] + eps) for n in restricted}


def select_top(scores: Scores, fraction: float) -> dict[str, torch.Tensor]:
    """Boolean masks of the ``fraction`` of all parameters with the highest score (one global ranking)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = max(1, int(round(fraction * flat.numel())))
    threshold = torch.topk(flat, k, sorted=True).values[-1]
    return {n: s >= threshold for n, s in scores.items()}


def random_masks(model: nn.Module, fraction: float, seed: int, *, size: int | None = None) -> dict[str, torch.Tensor]:
    """Exactly ``size`` parameters drawn uniformly at random (the ablation's control); ``size`` None means the
    ``fraction`` of all parameters that one :func:`select_top` ranking would choose. To compare with a relevance
    selection, pass its size (:func:`mask_size`): with several restricted classes that selection is a union of
    per-class top-``fraction`` sets and holds up to that many times more."""
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values())
    if size is None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        size = max(1, int(round(fraction * total)))
    if not 0 < size <= total:
        raise ValueError(f"size must be between 1 and the number of parameters ({total}), got {size}")
    gen = torch.Generator().manual_seed(seed)
    flat = torch.zeros(total, dtype=torch.bool)
    flat[torch.randperm(total, generator=gen)[:size]] = True
    masks, start = {}, 0
    for n, p in params.items():
        masks[n] = flat[start:start + p.numel()].view(p.shape).to(p.device)
        start += p.numel()
    return masks


def mask_size(masks: dict[str, torch.Tensor]) -> int:
    """How many parameters ``masks`` select."""
    return int(sum(int(m.sum()) for m in masks.values()))


def redirect_targets(original: nn.Module, x: torch.Tensor, restricted: list[int]) -> torch.Tensor:
    """The original model's probabilities on ``x`` with the restricted classes removed and the rest renormalised."""
    with torch.no_grad():
        logits = original(x).clone()
    logits[:, restricted] = float("-inf")
    return F.softmax(logits, dim=1)


def distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation loss, ``T^2 KL(softmax(teacher/T) || softmax(student/T))``, batch mean."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t


def restricted_classes(task) -> list[int]:
    """The classes to forget; a clear error for tasks that are not class requests."""
    if task.kind != "full_class":
        raise ValueError(f"class-level forgetting needs a full-class task (tasks.full_class); got a {task.kind!r} "
                         f"task ({task.describe()})")
    return list(task.forget_classes)


def selection_masks(model: nn.Module, task, *, selection: str, fraction: float, seed: int = 0,
                    chunk_size: int = 64, device="cpu") -> dict[str, torch.Tensor]:
    """Which parameters the removal step may change: by relevance ratio (the top ``fraction`` for each restricted
    class, united), all of them, or a random set of exactly as many parameters as the relevance selection holds
    (the union, counted; so the random control has the same size on any number of restricted classes)."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; choose one of {', '.join(SELECTIONS)}")
    if selection == "all":
        return {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters()}
    if selection == "random":
        relevant = selection_masks(model, task, selection="relevance", fraction=fraction, seed=seed,
                                   chunk_size=chunk_size, device=device)
        return random_masks(model, fraction, seed, size=mask_size(relevant))
    r_r = relevance(model, task.data, task.retain_idx, chunk_size=chunk_size, device=device)
    y = task.data.y_train.numpy()
    masks = None
    for c in restricted_classes(task):  # each restricted class gets its own share of the network
        own = task.forget_idx[y[task.forget_idx] == c]
        chosen = select_top(relevance_ratio(relevance(model, task.data, own, chunk_size=chunk_size, device=device),
                                            r_r), fraction)
        masks = chosen if masks is None else {n: masks[n] | chosen[n] for n in masks}
    return masks


@register("classlevel", paper="Singh, Mazumder and Karim, ECCV 2022 (our reconstruction)")
def classlevel(model: nn.Module, task, *, seed: int = 0, device="cpu", fraction: float = 0.05,
               selection: str = "relevance", reset: str = "zero", epochs: int = 50, lr: float = 1e-3,
               lam: float = 1.0, temperature: float = 2.0, batch_size: int = 256,
               chunk_size: int = 64) -> nn.Module:
    """Select the parameters most relevant to the restricted classes, then retrain only them on the few samples:
    restricted samples are redirected to the remaining classes, remaining samples distilled from the original.

    Pass the budget as the task (``tasks.few_shot(task, k)``): the method reads every sample it is given.
    """
    restricted = restricted_classes(task)
    if reset not in RESETS:
        raise ValueError(f"unknown reset {reset!r}; choose one of {', '.join(RESETS)}")
    if epochs < 0 or lr <= 0 or lam < 0 or temperature <= 0:
        raise ValueError("epochs must be >= 0, lr and temperature > 0, lam >= 0")
    set_seed(seed)
    original = copy.deepcopy(model).eval()
    masks = selection_masks(model, task, selection=selection, fraction=fraction, seed=seed, chunk_size=chunk_size,
                            device=device)
    params = dict(model.named_parameters())
    start = {n: p.detach().clone() for n, p in params.items()}
    if reset == "zero":
        with torch.no_grad():
            for n, p in params.items():
                p[masks[n]] = 0.0
    trainable = [p for n, p in params.items() if masks[n].any()]
    opt = torch.optim.Adam(trainable, lr=lr)
    model.eval()  # BatchNorm keeps its running statistics (see the module docstring)
    for epoch in range(epochs):
        forget = batches(task.data, task.forget_idx, batch_size, shuffle=True, seed=seed * 100_003 + 2 * epoch,
                         device=device)
        retain = batches(task.data, task.retain_idx, batch_size, shuffle=True, seed=seed * 100_003 + 2 * epoch + 1,
                         device=device)
        needed = int(np.ceil(len(task.retain_idx) / batch_size))
        for (xf, _), (xr, _) in zip(_repeat(forget, needed), retain):
            opt.zero_grad(set_to_none=True)
            loss_f = -(redirect_targets(original, xf, restricted) * F.log_softmax(model(xf), dim=1)).sum(1).mean()
            with torch.no_grad():
                teacher = original(xr)
            loss = loss_f + lam * distillation(model(xr), teacher, temperature)
            loss.backward()
            opt.step()
            with torch.no_grad():  # only the selected entries move; Adam's state never reaches the others
                for n, p in params.items():
                    if masks[n].any():
                        p.copy_(torch.where(masks[n], p, start[n]))
    model.unlearn_info = {"selected": mask_size(masks), "selection": selection}
    return model


def _repeat(forget_batches, needed: int):
    """``needed`` forget batches, cycling, so that every retain batch of a pass has a forget batch beside it."""
    cached = list(forget_batches)
    for i in range(needed):
        yield cached[i % len(cached)]
