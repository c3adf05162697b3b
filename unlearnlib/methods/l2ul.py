"""Learning to Unlearn (L2UL): instance-wise unlearning for pre-trained classifiers, after Cha et al. (AAAI 2024).

Only the trained model and the k training instances to delete are available (no remaining data). The model is
trained to *misclassify* every forget instance, by gradient ascent on their cross-entropy, and stops as soon as all
of them are misclassified. Two regularisers keep the rest of the model intact:

1. **Adversarial examples as stand-ins for the remaining data.** For every forget instance, ``per_instance`` targeted
   L2 PGD examples are made, each pushed towards a random label that is never the instance's own. They lie just
   across a decision boundary next to the instance; training the model to keep predicting their attack labels
   keeps those boundaries where they are while the instance itself is pushed away.
2. **Inverted weight importance (MAS).** The importance of every weight for the forget instances is the mean
   absolute gradient of the L2 norm of the logits (Aljundi et al. 2018); normalised to [0, 1] per tensor and
   inverted, it weights a quadratic anchor to the original weights: weights that matter for the forget instances
   move freely, the others are held back.

The loss of one step (forget batch of n_f instances, adversarial batch of n_a examples, each CE a batch mean):

    L = [ -n_f * CE(f(x_f), y_f) + n_a * CE(f(x_adv), t) ] / (n_f + n_a) + lam/2 * sum_i Omega'_i (theta_i - theta0_i)^2

Choices that differ from the official code (github.com/csm9493/L2UL), each because the code is wrong there:

- attack targets are drawn uniformly among the *other* classes of the real class count (the code hard-codes 10
  classes in one version and replaces a collision with ``C // 2``, which can be the true label);
- the inverted importance divides by ``max - min + eps``, so that a tensor of constant importance gets 1 instead of
  NaN;
- the PGD attack is written here (about 20 lines) instead of importing advertorch.

Where the attack and the loop differ from the official code without a bug to fix (the chapter measures the gradient
floor's effect; the others are not measured one by one):

- the gradient-norm floor of the L2 step is advertorch's 1e-6 by default (``pgd_grad_floor``); 1e-12 lets the
  examples run on to larger margins once the attack has won, which may weaken what they anchor;
- the random start is a uniform point of the eps-ball (Gaussian direction, radius eps * u^(1/d)); advertorch draws
  a uniform random *image* and projects ``image - x`` onto the ball, which nearly always lands on its surface;
- each step projects onto the ball, then clips to [0, 1]; advertorch clips, then projects (both end inside both
  sets here because clipping only shrinks the perturbation);
- the adversarial batches are reshuffled on every pass (the official loop visits them in one fixed order), and a
  step evaluates the forget batch before the adversarial batch (official: adversarial, then forget; the loss is
  the same, only BatchNorm's running statistics see the batches in the other order in ``bn="train"``);
- a non-finite loss stops the run and is reported as ``diverged`` (the official loop would go on with NaN weights
  and could count the NaN model's "misclassifications" as success).

BatchNorm: the code trains in ``train()`` mode, so batches of 16-32 forget instances re-estimate the running
statistics; ``bn="frozen"`` keeps them (and the batch statistics) fixed instead. The chapter measures both.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._progress import tqdm
from ..training import batches, set_seed
from .registry import register, report_divergence

VARIANTS = {  # the settings the paper compares, as keyword arguments of :func:`l2ul`
    "naive": dict(adversarial=False, importance=False),
    "adv": dict(adversarial=True, importance=False),
    "adv_imp": dict(adversarial=True, importance=True),
    "oracle": dict(adversarial=False, importance=False, retain_oracle=True),
}
BN_MODES = ("train", "frozen")
OBJECTIVES = ("ascent", "relabel")


# ---------------------------------------------------------------------------------------------------------------
# Pixel space: the attack works on images in [0, 1], with the normalisation inside the model

class PixelSpace(nn.Module):
    """``model`` preceded by the dataset's standardisation, so that it takes images with pixels in [0, 1]."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean.to(x.device)) / self.std.to(x.device))


def unit_images(data, indices, device="cpu") -> torch.Tensor:
    """Training images ``indices`` of ``data`` as floats in [0, 1]."""
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    return data.x_train[idx].to(device).float().div_(255.0)


# ---------------------------------------------------------------------------------------------------------------
# Targeted L2 PGD

def other_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A label drawn uniformly among the ``num_classes - 1`` classes that are *not* ``labels`` (per entry)."""
    if num_classes < 2:
        raise ValueError("attack targets need at least two classes")
    shift = torch.randint(1, num_classes, labels.shape, generator=generator).to(labels.device)
    return (labels + shift) % num_classes


#: advertorch's floor on the gradient norm in its L2 step (``normalize_by_pnorm``'s ``small_constant``)
ADVERTORCH_GRAD_FLOOR = 1e-6


def l2_pgd(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, *, eps: float, step: float = 0.1,
           iters: int = 100, rand_init: bool = True, grad_floor: float = ADVERTORCH_GRAD_FLOOR,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Targeted L2 projected gradient descent: images within L2 distance ``eps`` of ``x`` (pixels in [0, 1]) that
    ``model`` (taking pixel-space input) classifies as ``targets``.

    Each of ``iters`` steps moves ``step`` along the normalised gradient that lowers CE(model(x + delta), target),
    then projects delta back into the ball and x + delta into [0, 1] (clipping only shrinks delta, so both
    constraints hold at the end). The model's parameters receive no gradient.

    The gradient is divided by ``max(||g||, grad_floor)``. With advertorch's floor (1e-6, the default), a step
    shrinks once the attack has won by a wide margin and the gradient of the cross-entropy has all but vanished,
    so an example stops about where the target leads by some 20 logits; with a floor of 1e-12 every step keeps its
    full length and the examples go on to larger margins.
    """
    if eps <= 0 or step <= 0 or iters < 1 or grad_floor <= 0:
        raise ValueError(f"need eps > 0, step > 0, iters >= 1 and grad_floor > 0; got eps={eps}, step={step}, "
                         f"iters={iters}, grad_floor={grad_floor}")
    flat = lambda t: t.flatten(1)
    shape = (-1,) + (1,) * (x.dim() - 1)

    def project(delta: torch.Tensor) -> torch.Tensor:
        norm = flat(delta).norm(dim=1).clamp_min(1e-12)
        delta = delta * (eps / norm).clamp(max=1.0).view(shape)
        return (x + delta).clamp(0, 1) - x

    delta = torch.zeros_like(x)
    if rand_init:  # a uniform point of the ball: Gaussian direction, radius eps * u^(1/d)
        direction = torch.randn(x.shape, generator=generator).to(x.device)
        direction = direction / flat(direction).norm(dim=1).view(shape)
        radius = eps * torch.rand(len(x), generator=generator).to(x.device) ** (1.0 / flat(x).shape[1])
        delta = project(direction * radius.view(shape))
    for _ in range(iters):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), targets, reduction="sum")
        (g,) = torch.autograd.grad(loss, delta)
        g = g / flat(g).norm(dim=1).clamp_min(grad_floor).view(shape)
        delta = project(delta.detach() - step * g)
    return (x + delta).detach()


@dataclass
class AdversarialSet:
    """Adversarial examples of the forget instances: images in [0, 1], their attack labels and the position (in
    the forget set) of the instance each one was made from."""

    x: torch.Tensor
    targets: torch.Tensor
    source: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)


def adversarial_examples(model: nn.Module, data, indices, *, per_instance: int = 20, eps: float = 2.0,
                         step: float = 0.1, iters: int = 100, grad_floor: float = ADVERTORCH_GRAD_FLOOR,
                         batch_size: int = 512, seed: int = 0, device="cpu",
                         progress: bool = False) -> AdversarialSet:
    """``per_instance`` targeted L2 PGD examples of every training sample ``indices`` against ``model`` (in eval
    mode), each towards its own random wrong label."""
    if per_instance < 1:
        raise ValueError(f"per_instance must be >= 1, got {per_instance}")
    gen = torch.Generator().manual_seed(seed)
    idx = np.asarray(indices)
    x0 = unit_images(data, idx, device)
    y0 = data.y_train[torch.as_tensor(idx, dtype=torch.long)].to(device)
    source = torch.arange(len(idx), device=device).repeat(per_instance)
    targets = other_labels(y0[source], data.num_classes, gen)
    pixel = PixelSpace(model, data.mean, data.std).eval()
    out = []
    for start in tqdm(range(0, len(source), batch_size), desc="adversarial examples", disable=not progress,
                      leave=False):
        b = slice(start, start + batch_size)
        out.append(l2_pgd(pixel, x0[source[b]], targets[b], eps=eps, step=step, iters=iters, grad_floor=grad_floor,
                          generator=gen))
    return AdversarialSet(torch.cat(out), targets, source)


def logit_margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``logit[label] - max_{j != label} logit[j]``: positive when the sample is classified as ``label``; its size
    says how far (in logit units) the sample is from the nearest decision boundary."""
    own = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf"))
    return own - others.max(1).values


# ---------------------------------------------------------------------------------------------------------------
# Inverted MAS importance

def mas_importance(model: nn.Module, data, indices, *, batch_size: int = 32, bn: str = "train",
                   device="cpu") -> dict[str, torch.Tensor]:
    """Memory-aware-synapses importance of every parameter for the samples ``indices`` (no labels needed), as the
    official code computes it: per batch B, the absolute gradient of the *batch mean* of the logits' L2 norm,
    ``|d (1/|B| sum_{x in B} ||f(x)||_2) / d theta|``, averaged over batches weighted by their size. This is not the
    mean over samples of per-sample absolute gradients: within a batch, samples whose gradients have opposite signs
    cancel before the absolute value is taken. BatchNorm runs in ``bn`` mode on a copy, so the model's running
    statistics are untouched."""
    import copy

    work = copy.deepcopy(model)
    _set_mode(work, bn)
    omega = {n: torch.zeros_like(p) for n, p in work.named_parameters()}
    count = 0
    for x, _ in batches(data, indices, batch_size, device=device):
        work.zero_grad(set_to_none=True)
        work(x).norm(dim=1).mean().backward()
        for n, p in work.named_parameters():
            if p.grad is not None:
                omega[n] += p.grad.abs() * len(x)
        count += len(x)
    if count == 0:
        raise ValueError("importance needs at least one sample")
    return {n: w / count for n, w in omega.items()}


def invert_importance(omega: dict[str, torch.Tensor], eps: float = 1e-12) -> dict[str, torch.Tensor]:
    """Per tensor: ``1 - (w - min) / (max - min + eps)``, so that 0 marks the weights most important for the forget
    instances (free to change) and 1 the least important (anchored). A constant tensor gets 1 everywhere."""
    return {n: 1 - (w - w.min()) / (w.max() - w.min() + eps) for n, w in omega.items()}


# ---------------------------------------------------------------------------------------------------------------
# The method

def _set_mode(model: nn.Module, bn: str) -> None:
    """Train mode, except that with ``bn="frozen"`` BatchNorm layers use and keep their running statistics."""
    model.train()
    if bn == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _endless(data, indices, batch_size: int, seed: int, device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches of ``indices`` for ever, reshuffled on every pass."""
    for epoch in itertools.count():
        yield from batches(data, indices, batch_size, shuffle=True, seed=seed * 1000 + epoch, device=device)


def _endless_positions(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Positions 0..n-1 in shuffled batches for ever (the forget set is small and held in memory)."""
    while True:
        order = torch.randperm(n, generator=generator)
        yield from order.split(batch_size)


def _relabel_targets(model: nn.Module, x_f: torch.Tensor, y_f: torch.Tensor, relabel_to,
                     num_classes: int) -> torch.Tensor:
    """The label each forget instance (normalised images ``x_f``, labels ``y_f``) is moved to: ``relabel_to`` (one
    label or one per instance), or by default the original model's runner-up class (the nearest wrong class)."""
    if relabel_to is None:
        with torch.no_grad():
            logits = model.eval()(x_f)
        return logits.scatter(1, y_f.view(-1, 1), float("-inf")).argmax(1)
    t = torch.as_tensor(relabel_to, device=y_f.device).long().expand(len(y_f)).clone()
    if len(t) != len(y_f):
        raise ValueError(f"relabel_to has {len(t)} labels for {len(y_f)} forget instances")
    if ((t < 0) | (t >= num_classes)).any():
        raise ValueError(f"relabel_to labels must be in 0..{num_classes - 1}")
    if (t == y_f).any():
        raise ValueError("relabel_to names an instance's own label; choose a different label for every instance")
    return t


@register("l2ul", paper="Cha et al., AAAI 2024 (Learning to Unlearn)")
def l2ul(model: nn.Module, task, *, seed: int = 0, device="cpu", adversarial: bool = True, importance: bool = True,
         retain_oracle: bool = False, objective: str = "ascent", relabel_to=None, lr: float = 1e-3,
         momentum: float = 0.9, weight_decay: float = 1e-4, lam: float = 1.0, per_instance: int = 20,
         eps: float = 2.0, pgd_step: float = 0.1, pgd_iters: int = 100,
         pgd_grad_floor: float = ADVERTORCH_GRAD_FLOOR, adv_batch_size: int = 256,
         forget_batch_size: int = 32, max_passes: int = 1000, max_steps: int | None = None,
         bn: str = "train", max_grad_norm: float | None = None,
         on_step: Callable[[int, nn.Module], None] | None = None, progress: bool = False) -> nn.Module:
    """Train until every forget instance is misclassified (L2UL); see the module docstring for the loss.

    ``adversarial`` / ``importance`` switch the two regularisers (both off: the "naive" variant); ``retain_oracle``
    adds CE on batches of the real remaining data (the paper's oracle, which the setting does not allow).
    ``objective="relabel"`` replaces the ascent with descent towards a chosen label (``relabel_to``, default the
    runner-up class) and stops when every instance is predicted as its chosen label. One pass goes over the
    adversarial examples (or over the forget set without them); training stops after ``max_passes`` passes or
    ``max_steps`` optimizer steps at the latest (a step cap makes runs with and without adversarial examples cost
    alike on a CPU). ``max_grad_norm`` clips the gradient norm of every step (the official code does not clip;
    ascent on an unbounded loss can then run away). ``on_step(step, model)`` is called after every optimizer step,
    to trace a run (e.g. the test accuracy as it unlearns); it must not train the model. ``pgd_grad_floor`` is the
    attack's floor on the gradient norm (:func:`l2_pgd`; advertorch's 1e-6 by default).

    Divergence guard: gradient ascent on an unbounded loss can run away. When the loss of a step, or the forget
    instances' logits, stop being finite, training stops there and the run reports ``diverged``; it never counts as
    success, even though a model that outputs NaN "misclassifies" everything. It is reported with
    :func:`~unlearnlib.methods.report_divergence`: ``diverged_step`` is the step whose loss was not finite (one past
    the last update) or the last update, after which the forget instances' logits were not finite; a run scorer
    then records NaN metrics, never the NaN model's accuracies. The returned model's ``unlearn_info``
    holds the steps taken, whether every instance ended misclassified (``success``), whether the run diverged, and the
    share of adversarial examples the original model assigns to their attack label.
    """
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if relabel_to is not None and objective != "relabel":
        raise ValueError("relabel_to only applies with objective='relabel'")
    data, forget = task.data, task.forget_idx
    if len(forget) == 0:
        raise ValueError("the forget set is empty: there is nothing to unlearn")
    set_seed(seed)
    model = model.to(device)
    y_f = data.y_train[torch.as_tensor(forget, dtype=torch.long)].to(device)
    x_f = data.normalize(data.x_train[torch.as_tensor(forget, dtype=torch.long)].to(device))
    goal = _relabel_targets(model, x_f, y_f, relabel_to, data.num_classes) if objective == "relabel" else None
    pixel = PixelSpace(model, data.mean, data.std)

    diverged, diverged_at = False, None   # diverged_at: (step, reason) of the first non-finite loss or output

    @torch.no_grad()
    def done() -> bool:
        nonlocal diverged, diverged_at
        logits = model.eval()(x_f)
        if not torch.isfinite(logits).all():
            diverged, diverged_at = True, (steps, "non-finite outputs")
            return False
        pred = logits.argmax(1)
        return bool((pred == goal).all()) if goal is not None else bool((pred != y_f).all())

    adv, hit_rate = None, float("nan")
    if adversarial:
        adv = adversarial_examples(model, data, forget, per_instance=per_instance, eps=eps, step=pgd_step,
                                   iters=pgd_iters, grad_floor=pgd_grad_floor, seed=seed, device=device,
                                   progress=progress)
        with torch.no_grad():
            hit_rate = (pixel.eval()(adv.x).argmax(1) == adv.targets).float().mean()
        hit_rate = float(hit_rate)
    anchor = None
    if importance:
        weights = invert_importance(mas_importance(model, data, forget, batch_size=forget_batch_size, bn=bn,
                                                   device=device))
        anchor = [(p, weights[n], p.detach().clone()) for n, p in model.named_parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    forget_batches = _endless_positions(len(forget), forget_batch_size, gen)
    retain_batches = _endless(data, task.retain_idx, adv_batch_size, seed + 7, device) if retain_oracle else None
    steps, passes = 0, 0
    success = done()
    bar = tqdm(desc="L2UL steps", disable=not progress, leave=False)
    step_cap = math.inf if max_steps is None else max_steps
    while not success and not diverged and passes < max_passes and steps < step_cap:
        passes += 1
        if adv is not None:
            order = torch.randperm(len(adv), generator=gen).to(device)
            drivers = [order[i:i + adv_batch_size] for i in range(0, len(adv), adv_batch_size)]
        else:
            drivers = [None] * math.ceil(len(forget) / forget_batch_size)
        for b in drivers:
            f = next(forget_batches).to(device)
            _set_mode(model, bn)
            logits_f = model(x_f[f])
            forget_term = (-F.cross_entropy(logits_f, y_f[f]) if goal is None
                           else F.cross_entropy(logits_f, goal[f]))
            terms = [(len(f), forget_term)]
            if b is not None:
                terms.append((len(b), F.cross_entropy(pixel(adv.x[b]), adv.targets[b])))
            if retain_batches is not None:
                xr, yr = next(retain_batches)
                terms.append((len(yr), F.cross_entropy(model(xr), yr)))
            loss = sum(n * t for n, t in terms) / sum(n for n, _ in terms)
            if anchor is not None:
                loss = loss + lam / 2 * sum((w * (p - p0) ** 2).sum() for p, w, p0 in anchor)
            if not torch.isfinite(loss):
                diverged, diverged_at = True, (steps + 1, "non-finite loss")
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
            steps += 1
            bar.update()
            if on_step is not None:
                with torch.no_grad():
                    on_step(steps, model)
            success = done()
            if success or diverged or steps >= step_cap:
                break
    bar.close()
    model.eval()
    model.unlearn_info = {"steps": steps, "passes": passes, "success": success and not diverged,
                          "diverged": diverged,
                          "adv_examples": 0 if adv is None else len(adv), "adv_hit_rate": hit_rate}
    if diverged:
        return report_divergence(model, *diverged_at)
    return model


# ---------------------------------------------------------------------------------------------------------------
# Comparing variants at matched progress

class ProgressTrace:
    """An ``on_step`` callback for :func:`l2ul` that records, every ``every`` optimizer steps, the forget accuracy
    (share of the forget instances still classified as their label) and the accuracy on held-out probe images.

    Variants that stop at a step cap have made different amounts of progress; comparing them at the step where each
    reaches the *same* forget accuracy (:func:`at_matched_progress`) separates "forgets with less damage" from "has
    forgotten less so far". Inputs are normalised images; the model is only evaluated, never trained.

    A model whose outputs on the forget or probe images are not finite is never recorded: the trace stops there and
    ``diverged_step`` holds that step, so no row (and no :func:`at_matched_progress` reading) comes from a model that
    has diverged, whose NaN outputs would "misclassify" everything.
    """

    def __init__(self, x_forget: torch.Tensor, y_forget: torch.Tensor, x_probe: torch.Tensor,
                 y_probe: torch.Tensor, *, every: int = 1):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.x_forget, self.y_forget, self.x_probe, self.y_probe = x_forget, y_forget, x_probe, y_probe
        self.every = every
        self.rows: list[dict] = []
        self.last_step, self.last_model = 0, None
        self.diverged_step: int | None = None

    def __call__(self, step: int, model: nn.Module) -> None:
        self.last_step, self.last_model = step, model
        if step % self.every == 0:
            self.record(step, model)

    def finish(self) -> None:
        """Record the last step seen (a run that stops between two traced steps), so that the trace ends where the
        run ended. ``last_model`` keeps that model, e.g. to inspect it afterwards."""
        if self.last_model is not None:
            self.record(self.last_step, self.last_model)

    @torch.no_grad()
    def record(self, step: int, model: nn.Module) -> None:
        """Record the state at ``step`` whatever ``every`` is (e.g. step 0, before training, and the last step)."""
        if self.diverged_step is not None or (self.rows and self.rows[-1]["step"] == step):
            return
        model.eval()
        logits_forget, logits_probe = model(self.x_forget), model(self.x_probe)
        if not (torch.isfinite(logits_forget).all() and torch.isfinite(logits_probe).all()):
            self.diverged_step = step
            return
        forget = (logits_forget.argmax(1) == self.y_forget).float().mean().item()
        probe = (logits_probe.argmax(1) == self.y_probe).float().mean().item()
        self.rows.append({"step": step, "forget_acc": forget, "probe_acc": probe})


def at_matched_progress(rows: Sequence[dict], forget_acc: float, *, value: str = "probe_acc") -> float | None:
    """``value`` (by default the probe accuracy) at the first traced step whose forget accuracy is at most
    ``forget_acc``; ``None`` when the run never gets there (report it as such, not as a number)."""
    for row in rows:
        if row["forget_acc"] <= forget_acc:
            return row[value]
    return None
