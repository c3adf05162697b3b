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
as D_r followed by D_f: for a class task D_r class by class (by the training label for a full class, by the fine
label for a sub-class), for a random task both parts in a seeded random permutation (``random_split``). The pass
over D is the expensive one; it does not need the forget request if D is visited in an order that does not depend
on it, so :func:`precompute_importance` can run it ahead of time and ``ssd(..., importance_d=...)`` then only needs
the small pass over D_f. LFSSD defaults to a label-free order (``label_free``); ``order="official"`` gives it the
class-ordered loaders the official pipeline builds, which read labels.
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
from .registry import register

Scores = dict[str, torch.Tensor]

#: Orders in which the pass over D visits the training set (see :func:`visit_order`).
REQUEST_ORDERS = ("official", "label_free", "sorted")
ORDERS = REQUEST_ORDERS + ("by_class", "dataset", "shuffled")
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


def _class_labels(data: ImageData, grouping: str) -> np.ndarray:
    """The labels D is grouped by in a class-ordered visit: ``"label"`` is the label the model is trained on (the
    superclass on CIFAR-20 or ``fashion-mnist-super``), ``"fine"`` the fine class where the dataset has one."""
    if grouping == "fine" and data.fine_train is not None:
        return data.fine_train.numpy()
    return data.y_train.numpy()


def official_grouping(task) -> str:
    """How the official pipeline groups D_r for ``task``: by fine class for a sub-class task, by the training label
    (for CIFAR-20, the coarse label) for a full-class task."""
    return "fine" if task.kind == "sub_class" else "label"


def _permuted(indices: np.ndarray, seed: int, part: int) -> np.ndarray:
    """A seeded random permutation of one part of D (part 0: D_r, part 1: D_f), as ``random_split`` returns it."""
    return np.random.default_rng([seed, 7309, part]).permutation(indices)


def visit_order(data: ImageData, order: str = "by_class", *, task=None, seed: int = 0,
                grouping: str | None = None) -> np.ndarray:
    """The training indices of D in the order the importance pass visits them (D_f's own pass: :func:`forget_order`).

    Orders that depend on the forget request (``task=`` needed):

    - ``official``: the official pipeline's order, D_r then D_f, with unshuffled loaders. For a class task D_r is
      grouped class by class (by the training label for a full-class task, by the fine label for a sub-class task,
      as the official code does; see :func:`official_grouping`), so that D batches are nearly single-class like D_f
      batches. For a random task the official script draws D_f with ``random_split``, which returns both parts as
      random permutations: D_r and D_f are each visited in a permutation seeded by ``seed``.
    - ``label_free``: D_r then D_f, each in dataset order; reads no label (LFSSD's order in this book). The official
      pipeline gives LFSSD the class-ordered loaders of ``official``, which read labels.
    - ``sorted``: D_r then D_f in dataset order for any task: the library's order for random tasks before it matched
      the official one (kept to show what the order changes).

    Orders that need no request, so that the pass over D can be precomputed:

    - ``by_class``: all of D grouped by class (``grouping``: ``"label"`` or ``"fine"``; by default the fine class
      where the dataset has one, else the label), stable within a class. For a class task it differs from
      ``official`` only in the batches at class boundaries.
    - ``dataset``: all of D in dataset order.
    - ``shuffled``: all of D in a seeded random order (the ablation: mixed-class batches).
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
    if grouping not in (None, "label", "fine"):
        raise ValueError(f"unknown grouping {grouping!r}; choose 'label' (the training label) or 'fine'")
    everything = data.train_idx  # D: the training split without the validation split, which no model trained on
    if order in REQUEST_ORDERS:
        if task is None:
            raise ValueError(f"order={order!r} depends on the forget request: pass task=...")
        retain = task.retain_idx
        if order == "official":
            if task.kind in CLASS_KINDS:
                labels = _class_labels(data, grouping or official_grouping(task))
                retain = retain[np.argsort(labels[retain], kind="stable")]
            else:
                retain = _permuted(retain, seed, 0)
        return np.concatenate([retain, forget_order(task, order, seed=seed)])
    if order == "by_class":
        labels = _class_labels(data, grouping or "fine")
        return everything[np.argsort(labels[everything], kind="stable")]
    if order == "dataset":
        return everything
    return np.random.default_rng(seed).permutation(everything)


def forget_order(task, order: str = "official", *, seed: int = 0) -> np.ndarray:
    """The order of D_f's own importance pass, the same as D_f's place at the end of the pass over D: a seeded
    permutation for a random task in the ``official`` order (``random_split``), dataset order otherwise."""
    if order == "official" and task.kind not in CLASS_KINDS:
        return _permuted(task.forget_idx, seed, 1)
    return task.forget_idx


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


def request_digest(task) -> str:
    """A fingerprint of a forget request (its kind, D_f and D_r), to check that an importance precomputed in a
    request-dependent order is used for that request."""
    h = hashlib.sha256(f"{task.data.name}|{task.kind}".encode())
    for part in (task.forget_idx, task.retain_idx):
        h.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@dataclass(repr=False)
class Importance:
    """The importance on D, computed ahead of the dampening, with what is needed to use it safely.

    In an order that needs no request (``by_class``, ``dataset``, ``shuffled``) it is computed before any request
    arrives and serves them all; in a request order (``official``, ``label_free``, ``sorted``) it belongs to one
    request (``request`` is its digest) and serves many (alpha, lambda) settings for that request.
    """

    scores: Scores
    label_free: bool
    batch_size: int
    order: str
    seconds: float
    model_digest: str
    seed: int = 0
    request: str | None = None

    def __repr__(self) -> str:  # also what results files record as the hyperparameter's value
        kind = "label-free" if self.label_free else "loss"
        return f"Importance(D, {kind}, {self.order} order, B={self.batch_size}, {self.seconds:.1f} s)"

    __str__ = __repr__

    def check(self, model: nn.Module, label_free: bool, task=None) -> None:
        """Refuse an importance computed for another model, for the other variant, or for another request."""
        if self.label_free != label_free:
            raise ValueError(f"this importance was computed {'without' if self.label_free else 'with'} labels, "
                             f"for {'LFSSD' if self.label_free else 'SSD'}; precompute it with "
                             f"label_free={label_free} for this method")
        if model_digest(model) != self.model_digest:
            raise ValueError("this importance was computed on a different model (the parameters differ); call "
                             "precompute_importance on the model you are unlearning")
        if self.request is not None and task is not None and request_digest(task) != self.request:
            raise ValueError(f"this importance was computed in the {self.order!r} order of another forget request; "
                             f"precompute it with task=<this request>, or in an order that needs no request "
                             f"('by_class', 'dataset')")


def precompute_importance(model: nn.Module, data: ImageData, *, label_free: bool = False, batch_size: int = 64,
                          order: str = "by_class", task=None, seed: int = 0, grouping: str | None = None,
                          device: str | torch.device = "auto", progress: bool = True) -> Importance:
    """The importance on all of D, timed. In an order that needs no request it is computed before any request; in a
    request order (``official``, ``label_free``, ``sorted``) pass ``task=``: the result then serves only that request
    (for example every cell of a tuning grid)."""
    if order in REQUEST_ORDERS and task is None:
        raise ValueError(f"order={order!r} depends on the forget request: pass task=..., or precompute ahead of any "
                         f"request with 'by_class' (class tasks) or 'dataset' (random tasks)")
    device = resolve_device(device)
    model = model.to(device)
    start = time.perf_counter()
    visit = visit_order(data, order, task=task if order in REQUEST_ORDERS else None, seed=seed, grouping=grouping)
    scores = importance(model, data, visit, batch_size=batch_size, label_free=label_free, device=device,
                        progress=progress, desc="importance on D")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return Importance(scores, label_free, batch_size, order, time.perf_counter() - start, model_digest(model), seed,
                      request_digest(task) if order in REQUEST_ORDERS else None)


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
                split: str = "validation", device: str | torch.device = "auto", progress: bool = True) -> list[dict]:
    """Forget and held-out accuracy after dampening with every (alpha, lam) pair, reusing one pair of importances:
    each cell costs one dampening and a few accuracy passes, so a whole grid costs about one SSD call.

    Returns one record per cell with the number of selected entries and ``forget_acc`` (on D_f). With
    ``split="validation"`` (for choosing settings, on a tuning request) the held-out accuracies are ``val_acc`` (the
    validation images outside the forgotten class) and, for class tasks, ``val_forget_acc``; with ``split="test"``
    (for reporting only) ``test_acc`` and ``test_forget_acc``.
    """
    import copy

    from ..training import accuracy

    if split not in ("validation", "test"):
        raise ValueError(f"split must be 'validation' (to choose) or 'test' (to report), got {split!r}")
    if split == "validation":
        held_out = {"val_acc": (task.val_retain_idx, "train"), "val_forget_acc": (task.val_forget_idx, "train")}
    else:
        held_out = {"test_acc": (task.test_retain_idx, "test"), "test_forget_acc": (task.test_forget_idx, "test")}
    records = []
    cells = [(a, lam) for a in alphas for lam in lams]
    for alpha, lam in tqdm(cells, desc="alpha x lambda", disable=not progress, leave=False):
        work = copy.deepcopy(model)
        selected = dampen(work, scores_d, scores_f, alpha=alpha, lam=lam)
        rec = {"alpha": alpha, "lam": lam, "selected": sum(selected.values()),
               "forget_acc": accuracy(work, task.data, task.forget_idx, split="train", device=device)}
        for key, (idx, part) in held_out.items():
            if len(idx):
                rec[key] = accuracy(work, task.data, idx, split=part, device=device)
        records.append(rec)
    return records


def alpha_ceiling(task, batch_size: int | None = None) -> float:
    """About the largest useful alpha: #batches of D / #batches of D_f.

    D contains D_f, so the pass over D sums the squared gradients of batches made of D_f samples too. If those
    batches were exactly D_f's own batches, ``I_D ≥ (n_f / n_D) · I_Df`` for batch counts n_f and n_D, hence
    ``I_Df / I_D ≤ n_D / n_f``, exactly. They are not, unless |D_r| is a multiple of the batch size: otherwise every
    D_f batch of the pass over D is shifted by ``|D_r| mod B`` samples against the pass over D_f alone (it holds the
    tail of one D_f batch and the head of the next). A batch mean over a shifted window can be smaller or larger
    than over the aligned one, so the ceiling is a heuristic, not a bound: it holds only up to the ratio of the two
    sums of squares over D_f, which need not be near 1 for a single parameter. What it predicts is the bulk: few
    ratios pass it, and an alpha far above it selects (almost) nothing. Where it fails is the maximum: the SSD
    chapter's estimator ablation measures largest ratios above the ceiling, further above it at B = 256 than at
    B = 64. Only the per-sample estimator obeys ``I_Df / I_D ≤ |D| / |D_f|`` exactly. Examples with B = 64: one
    CIFAR-100 class (500 of 50,000) gives about 98, one CIFAR-20 class (2,500 of 50,000) about 19.6, one
    Fashion-MNIST class (5,500 of 55,000) 10.
    """
    b = batch_size or default_batch_size(task)
    n_d = math.ceil(len(task.retain_idx) / b) + math.ceil(len(task.forget_idx) / b)
    return n_d / math.ceil(len(task.forget_idx) / b)


def _check_hparams(alpha: float, lam: float) -> None:
    for name, value, hint in (("alpha", alpha, "selection weighting; the official code uses 10 for ResNet-18"),
                              ("lam", lam, "dampening constant; the official code uses 1")):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number ({hint}), got {value!r}")


def resolve_order(order: str | None, importance_d: Importance | None, default: str) -> str:
    """The order D is visited in: the precomputed importance's own order when one is given (an explicit ``order``
    that differs is refused, since the run would then be labelled with an order it did not run in), else ``order``,
    else ``default``."""
    if importance_d is None:
        return default if order is None else order
    if order is not None and order != importance_d.order:
        raise ValueError(f"order={order!r} differs from the precomputed importance's {importance_d.order!r} order: "
                         f"the pass over D was visited in {importance_d.order!r}, so the run cannot be the "
                         f"{order!r} one. Leave order out (the importance's order is used and recorded), pass "
                         f"order={importance_d.order!r}, or precompute the importance in the {order!r} order "
                         f"(precompute_importance(..., order={order!r}, task=<the request>))")
    return importance_d.order


def _ssd(model: nn.Module, task, *, alpha: float, lam: float, batch_size: int | None, order: str | None,
         importance_d: Importance | None, label_free: bool, seed: int, device,
         default_order: str = "official") -> nn.Module:
    _check_hparams(alpha, lam)
    order = resolve_order(order, importance_d, default_order)
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
    ceiling = alpha_ceiling(task, batch_size or (importance_d.batch_size if importance_d else None))
    if alpha >= 0.9 * ceiling:
        warnings.warn(f"alpha={alpha:g} is near or above {ceiling:.1f} = #batches(D) / #batches(D_f), a heuristic "
                      f"ceiling on I_Df / I_D when D_f is part of D (few ratios pass it), so SSD will select "
                      f"(almost) no parameter and forget nothing. Choose a smaller alpha (see ssd.alpha_ceiling).",
                      stacklevel=3)
    if importance_d is not None:
        importance_d.check(model, label_free, task)
        if batch_size is not None and batch_size != importance_d.batch_size:
            raise ValueError(f"batch_size={batch_size} differs from the precomputed importance's "
                             f"{importance_d.batch_size}; both passes must use the same batch size")
        batch_size = importance_d.batch_size
        scores_d = {n: s.to(device) for n, s in importance_d.scores.items()}
        # D_f is visited as it was at the end of the pass over D
        f_order = forget_order(task, importance_d.order, seed=importance_d.seed)
    else:
        batch_size = batch_size or default_batch_size(task)
        visit = visit_order(task.data, order, task=task, seed=seed)
        scores_d = importance(model, task.data, visit, batch_size=batch_size, label_free=label_free, device=device,
                              desc="importance on D")
        f_order = forget_order(task, order, seed=seed)
    scores_f = importance(model, task.data, f_order, batch_size=batch_size, label_free=label_free,
                          device=device, desc="importance on D_f")
    selected = dampen(model, scores_d, scores_f, alpha=alpha, lam=lam)
    model.unlearn_info = {"selected": sum(selected.values()), "order": order,
                          "importance": "precomputed" if importance_d is not None else "computed in the call"}
    return model


@register("ssd", paper="Foster, Schoepf and Brintrup, AAAI 2024")
def ssd(model: nn.Module, task, *, seed: int = 0, device="cpu", alpha: float = 10.0, lam: float = 1.0,
        batch_size: int | None = None, order: str | None = None,
        importance_d: Importance | None = None) -> nn.Module:
    """Selective Synaptic Dampening: dampen the parameters whose Fisher importance on D_f exceeds alpha times
    their importance on D, by min(lam * I_D / I_Df, 1).

    ``batch_size`` None means the official 64 (class tasks) or 128 (others); ``order`` is how D is visited
    (:func:`visit_order`; None: the official order, with D_r and D_f permuted by ``seed`` for a random task);
    ``importance_d`` a precomputed :class:`Importance` (then only D_f is scored, in the matching order, and D was
    visited in the importance's order: leave ``order`` out, or pass that same order; another is refused).
    ``model.unlearn_info`` records the number of dampened entries and the order that ran.
    """
    return _ssd(model, task, alpha=alpha, lam=lam, batch_size=batch_size, order=order, importance_d=importance_d,
                label_free=False, seed=seed, device=device)


@register("lfssd", paper="Foster, Schoepf and Brintrup, ICLR 2024 Tiny Paper")
def lfssd(model: nn.Module, task, *, seed: int = 0, device="cpu", alpha: float = 10.0, lam: float = 1.0,
          batch_size: int | None = None, order: str | None = None,
          importance_d: Importance | None = None) -> nn.Module:
    """Loss-free SSD: SSD with the importance of the squared logit norm (|grad| accumulated), so no labels are
    used. Hyperparameters as for :func:`ssd`. The default order (None: ``label_free``) visits D_r and D_f in dataset
    order, so that nothing reads a label; ``order="official"`` is what the official pipeline runs (the class-ordered
    loaders it builds for SSD), which does read the labels to order D."""
    return _ssd(model, task, alpha=alpha, lam=lam, batch_size=batch_size, order=order, importance_d=importance_d,
                label_free=True, seed=seed, device=device, default_order="label_free")
