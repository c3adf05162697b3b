"""Selective Synaptic Dampening (SSD; Foster, Schoepf and Brintrup, AAAI 2024) and its loss-free variant (LFSSD;
the same authors, ICLR 2024 Tiny Paper).

SSD edits the trained weights directly, with no optimiser and no retraining:

1. **importance** of every parameter, once on the whole training set D and once on the forget set D_f: the
   diagonal empirical Fisher *at mini-batch level*, ``I[θ] = (1/#batches) Σ_b (∂L̄_b/∂θ)²``, where ``L̄_b`` is the
   mean cross-entropy of batch b, with the model in eval mode;
2. **selection** of the parameters that matter far more for D_f than for D: ``I_Df > α · I_D``;
3. **dampening** of the selected parameters: ``θ ← min(λ · I_D / I_Df, 1) · θ``.

LFSSD keeps steps 2 and 3 and changes step 1: the objective is the squared L2 norm of the logits (mean over the
batch) and the accumulator sums ``|grad|`` instead of ``grad²``, so no label is needed.

What we keep from the official code (github.com/if-loops/selective-synaptic-dampening, commit cdfdc0e), because
α is calibrated to it: every parameter is scored (no layer skipped; BatchNorm buffers are not parameters and are
never touched), the batch size is 64 for class tasks and 128 otherwise, loaders are not shuffled, and D is visited
as D_r (class by class for class tasks) followed by D_f. The pass over D is the expensive one; it does not need
the forget request if D is visited in an order that does not depend on it, so :func:`precompute_importance` can
run it ahead of time and ``ssd(..., importance_d=...)`` then only needs the small pass over D_f.
"""
from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._progress import tqdm
from ..data import ImageData
from ..training import batches, resolve_device
from . import register

Scores = dict[str, torch.Tensor]

#: Orders in which the pass over D visits the training set (see :func:`visit_order`).
ORDERS = ("official", "by_class", "dataset", "shuffled")
CLASS_KINDS = ("full_class", "sub_class")


# ---------------------------------------------------------------------------------------------------------------
# Step 1: importance

def objective(logits: torch.Tensor, labels: torch.Tensor, label_free: bool) -> torch.Tensor:
    """The batch objective whose gradient scores the parameters: the mean cross-entropy (SSD) or the mean squared
    L2 norm of the logits (LFSSD, which ignores ``labels``)."""
    if label_free:
        return logits.pow(2).sum(dim=1).mean()
    return F.cross_entropy(logits, labels)


def importance(model: nn.Module, data: ImageData, indices, *, batch_size: int, label_free: bool = False,
               per_sample: bool = False, device: str | torch.device = "auto", progress: bool = False,
               desc: str = "importance") -> Scores:
    """Diagonal importance of every parameter of ``model`` on ``data.x_train[indices]``, visited in the given order.

    ``per_sample=False`` (SSD): the squared gradient of each *batch-mean* objective, averaged over batches; the
    order and the batch size therefore matter. ``per_sample=True``: the squared gradient of each sample's objective,
    averaged over samples (the textbook empirical Fisher; used only to show why batching matters). With
    ``label_free`` the objective is LFSSD's and ``|grad|`` is accumulated instead of ``grad²``.
    The model is put in eval mode and its parameters are not changed.
    """
    device = resolve_device(device)
    model.eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    reduce = torch.abs if label_free else torch.square
    count = 0
    n_batches = math.ceil(len(indices) / batch_size)
    for x, y in tqdm(batches(data, indices, batch_size, device=device), total=n_batches, desc=desc,
                     disable=not progress, leave=False):
        if per_sample:
            for name, g in _per_sample_gradients(model, params, x, y, label_free).items():
                total[name] += reduce(g).sum(dim=0)
            count += len(x)
        else:
            grads = torch.autograd.grad(objective(model(x), y, label_free), list(params.values()), allow_unused=True)
            for name, g in zip(params, grads):
                if g is not None:  # a parameter the output does not depend on keeps importance 0, as in the code
                    total[name] += reduce(g)
            count += 1
    if count == 0:
        raise ValueError("importance needs at least one sample; the index set is empty")
    return {n: t / count for n, t in total.items()}


def _per_sample_gradients(model: nn.Module, params: dict, x: torch.Tensor, y: torch.Tensor,
                          label_free: bool) -> Scores:
    """Gradients of each sample's objective, stacked along dim 0 (torch.func; BatchNorm uses its running stats)."""
    from torch.func import functional_call, grad, vmap

    buffers = dict(model.named_buffers())
    detached = {n: p.detach() for n, p in params.items()}

    def one(p, xi, yi):
        logits = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return objective(logits, yi.unsqueeze(0), label_free)

    return vmap(grad(one), in_dims=(None, 0, 0))(detached, x, y)


def _sort_labels(data: ImageData) -> np.ndarray:
    """The labels D is grouped by for class-ordered visits: fine labels where the dataset has them."""
    labels = data.fine_train if data.fine_train is not None else data.y_train
    return labels.numpy()


def visit_order(data: ImageData, order: str = "by_class", *, task=None, seed: int = 0,
                use_labels: bool = True) -> np.ndarray:
    """The training indices of D in the order the importance pass visits them.

    - ``official``: the official code's order for ``task``: D_r then D_f, unshuffled, with D_r grouped class by class
      for class and sub-class tasks (so that D batches are nearly single-class, like D_f batches) and in dataset
      order otherwise. Depends on the forget request. With ``use_labels=False`` (LFSSD, which must not read labels)
      D_r stays in dataset order.
    - ``by_class``: all of D grouped by class (stable within a class). Needs no request, so it can be precomputed;
      for a full-class task it differs from ``official`` only in the batches at class boundaries.
    - ``dataset``: all of D in dataset order; the precomputable counterpart of ``official`` for random tasks.
    - ``shuffled``: all of D in a seeded random order (the ablation: mixed-class batches).
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
    everything = data.train_idx  # D: the training split without the validation split, which no model trained on
    labels = _sort_labels(data)
    if order == "official":
        if task is None:
            raise ValueError("order='official' depends on the forget request: pass task=...")
        retain = task.retain_idx
        if task.kind in CLASS_KINDS and use_labels:
            retain = retain[np.argsort(labels[retain], kind="stable")]
        return np.concatenate([retain, task.forget_idx])
    if order == "by_class":
        return everything[np.argsort(labels[everything], kind="stable")]
    if order == "dataset":
        return everything
    return np.random.default_rng(seed).permutation(everything)


def default_batch_size(task) -> int:
    """The official code's batch size for both importance passes: 64 for class tasks, 128 for random ones."""
    return 64 if task.kind in CLASS_KINDS else 128


def model_digest(model: nn.Module) -> str:
    """A cheap fingerprint of the parameter values, to check that a precomputed importance belongs to this model."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p64 = p.detach().double()
            h.update(f"{name}{tuple(p.shape)}{p64.sum().item():.12e}{p64.abs().sum().item():.12e}".encode())
    return h.hexdigest()[:16]


@dataclass(repr=False)
class Importance:
    """The importance on D, computed ahead of a forget request, with what is needed to use it safely."""

    scores: Scores
    label_free: bool
    batch_size: int
    order: str
    seconds: float
    model_digest: str

    def __repr__(self) -> str:  # also what results files record as the hyperparameter's value
        kind = "label-free" if self.label_free else "loss"
        return f"Importance(D, {kind}, {self.order} order, B={self.batch_size}, {self.seconds:.1f} s)"

    __str__ = __repr__

    def check(self, model: nn.Module, label_free: bool) -> None:
        """Refuse an importance computed for another model or for the other variant."""
        if self.label_free != label_free:
            raise ValueError(f"this importance was computed {'without' if self.label_free else 'with'} labels, "
                             f"for {'LFSSD' if self.label_free else 'SSD'}; precompute it with "
                             f"label_free={label_free} for this method")
        if model_digest(model) != self.model_digest:
            raise ValueError("this importance was computed on a different model (the parameters differ); call "
                             "precompute_importance on the model you are unlearning")


def precompute_importance(model: nn.Module, data: ImageData, *, label_free: bool = False, batch_size: int = 64,
                          order: str = "by_class", seed: int = 0, device: str | torch.device = "auto",
                          progress: bool = True) -> Importance:
    """The importance on all of D, before any forget request (``order`` must not need one), timed."""
    if order == "official":
        raise ValueError("order='official' depends on the forget request; precompute with 'by_class' (class "
                         "tasks) or 'dataset' (random tasks)")
    device = resolve_device(device)
    model = model.to(device)
    start = time.perf_counter()
    scores = importance(model, data, visit_order(data, order, seed=seed), batch_size=batch_size,
                        label_free=label_free, device=device, progress=progress, desc="importance on D")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return Importance(scores, label_free, batch_size, order, time.perf_counter() - start, model_digest(model))


# ---------------------------------------------------------------------------------------------------------------
# Steps 2 and 3: selection and dampening

def select(importance_d: Scores, importance_f: Scores, alpha: float) -> dict[str, torch.Tensor]:
    """Boolean masks of the parameters specialised to D_f: ``I_Df > α · I_D``, elementwise."""
    return {n: importance_f[n] > alpha * importance_d[n] for n in importance_d}


@torch.no_grad()
def dampen(model: nn.Module, importance_d: Scores, importance_f: Scores, *, alpha: float,
           lam: float) -> dict[str, int]:
    """Multiply every selected parameter by ``β = min(λ · I_D / I_Df, 1)`` in place; the others are not touched.

    Returns the number of selected entries per parameter tensor. No division by zero can occur on a selected entry,
    since there ``I_Df > α · I_D ≥ 0``.
    """
    selected = {}
    for name, p in model.named_parameters():
        if name not in importance_d:
            continue
        mask = importance_f[name] > alpha * importance_d[name]
        beta = (lam * importance_d[name][mask] / importance_f[name][mask]).clamp(max=1.0)
        p[mask] = p[mask] * beta
        selected[name] = int(mask.sum())
    return selected


def sensitivity(model: nn.Module, task, scores_d: Scores, scores_f: Scores, alphas, lams, *,
                device: str | torch.device = "auto", progress: bool = True) -> list[dict]:
    """Forget and test accuracy after dampening with every (alpha, lam) pair, reusing one pair of importances:
    each cell costs one dampening and two accuracy passes, so a whole grid costs about one SSD call.

    Returns one record per cell with the number of selected parameters, ``forget_acc`` (on D_f), ``test_acc`` (on
    the retained test data) and, for class tasks, ``test_forget_acc``.
    """
    import copy

    from ..training import accuracy

    records = []
    cells = [(a, lam) for a in alphas for lam in lams]
    for alpha, lam in tqdm(cells, desc="alpha x lambda", disable=not progress, leave=False):
        work = copy.deepcopy(model)
        selected = dampen(work, scores_d, scores_f, alpha=alpha, lam=lam)
        rec = {"alpha": alpha, "lam": lam, "selected": sum(selected.values()),
               "forget_acc": accuracy(work, task.data, task.forget_idx, split="train", device=device),
               "test_acc": accuracy(work, task.data, task.test_retain_idx, device=device)}
        if len(task.test_forget_idx):
            rec["test_forget_acc"] = accuracy(work, task.data, task.test_forget_idx, device=device)
        records.append(rec)
    return records


def alpha_ceiling(task, batch_size: int | None = None) -> float:
    """About the largest useful alpha: #batches of D / #batches of D_f.

    D contains D_f, so the batches of D_f contribute to I_D too: ``I_D ≥ (n_f / n_D) · I_Df`` for batch counts
    n_f and n_D, hence ``I_Df / I_D ≤ n_D / n_f``. The bound is exact when D's last n_f batches are D_f's batches;
    in the official order one batch straddles D_r and D_f, and the ratio can exceed it slightly (12 for a ceiling of
    10 in the SSD chapter). An alpha above it selects (almost) nothing. The paper's alpha = 10 fits a forget class of 1 % of D (CIFAR-100);
    a class of 10 % (CIFAR-10, Fashion-MNIST) caps alpha near 10.
    """
    b = batch_size or default_batch_size(task)
    n_d = math.ceil(len(task.retain_idx) / b) + math.ceil(len(task.forget_idx) / b)
    return n_d / math.ceil(len(task.forget_idx) / b)


def _check_hparams(alpha: float, lam: float) -> None:
    for name, value, hint in (("alpha", alpha, "selection weighting; the official code uses 10 for ResNet-18"),
                              ("lam", lam, "dampening constant; the official code uses 1")):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number ({hint}), got {value!r}")


def _ssd(model: nn.Module, task, *, alpha: float, lam: float, batch_size: int | None, order: str,
         importance_d: Importance | None, label_free: bool, seed: int, device) -> nn.Module:
    _check_hparams(alpha, lam)
    ceiling = alpha_ceiling(task, batch_size or (importance_d.batch_size if importance_d else None))
    if alpha >= 0.9 * ceiling:
        warnings.warn(f"alpha={alpha:g} is near or above {ceiling:.1f} = #batches(D) / #batches(D_f), the largest "
                      f"ratio I_Df / I_D can reach when D_f is part of D, so SSD will select (almost) no parameter "
                      f"and forget nothing. Choose a smaller alpha (see ssd.alpha_ceiling).", stacklevel=3)
    if importance_d is not None:
        importance_d.check(model, label_free)
        if batch_size is not None and batch_size != importance_d.batch_size:
            raise ValueError(f"batch_size={batch_size} differs from the precomputed importance's "
                             f"{importance_d.batch_size}; both passes must use the same batch size")
        batch_size = importance_d.batch_size
        scores_d = {n: s.to(device) for n, s in importance_d.scores.items()}
    else:
        batch_size = batch_size or default_batch_size(task)
        visit = visit_order(task.data, order, task=task, seed=seed, use_labels=not label_free)
        scores_d = importance(model, task.data, visit,
                              batch_size=batch_size, label_free=label_free, device=device, desc="importance on D")
    scores_f = importance(model, task.data, task.forget_idx, batch_size=batch_size, label_free=label_free,
                          device=device, desc="importance on D_f")
    dampen(model, scores_d, scores_f, alpha=alpha, lam=lam)
    return model


@register("ssd", paper="Foster, Schoepf and Brintrup, AAAI 2024")
def ssd(model: nn.Module, task, *, seed: int = 0, device="cpu", alpha: float = 10.0, lam: float = 1.0,
        batch_size: int | None = None, order: str = "official",
        importance_d: Importance | None = None) -> nn.Module:
    """Selective Synaptic Dampening: dampen the parameters whose Fisher importance on D_f exceeds alpha times
    their importance on D, by min(lam * I_D / I_Df, 1).

    ``batch_size`` None means the official 64 (class tasks) or 128 (others); ``order`` is how D is visited
    (:func:`visit_order`); ``importance_d`` a precomputed :class:`Importance` (then only D_f is scored).
    """
    return _ssd(model, task, alpha=alpha, lam=lam, batch_size=batch_size, order=order, importance_d=importance_d,
                label_free=False, seed=seed, device=device)


@register("lfssd", paper="Foster, Schoepf and Brintrup, ICLR 2024 Tiny Paper")
def lfssd(model: nn.Module, task, *, seed: int = 0, device="cpu", alpha: float = 10.0, lam: float = 1.0,
          batch_size: int | None = None, order: str = "official",
          importance_d: Importance | None = None) -> nn.Module:
    """Loss-free SSD: SSD with the importance of the squared logit norm (|grad| accumulated), so no labels are
    used. Hyperparameters as for :func:`ssd`; the default order visits D_r in dataset order, since grouping it by
    class would read the labels."""
    return _ssd(model, task, alpha=alpha, lam=lam, batch_size=batch_size, order=order, importance_d=importance_d,
                label_free=True, seed=seed, device=device)
