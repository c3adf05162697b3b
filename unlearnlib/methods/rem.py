"""REM, Redirection for Erasing Memory (Schoepf et al. 2025, arXiv 2505.17730): unlearning corrupted data when only
part of it is known.

The model has extra capacity theta_o2 that pretraining left unused (a "Capacity 0.5" model, see
:class:`~unlearnlib.models.CapacityModel`: half of the channels of the masked layers are zeroed while training, so
their weights stay at their initialisation). REM alternates two steps, starting from a frozen copy ``ref`` of the
model:

1. **Flush** (removal): NPO on the discovered samples D_f through the original part theta_o1 only ("drop" mode),
   repeated while theta_o1 still fits more than ``gamma`` of D_f (at most ``max_flush`` passes).
2. **Repair** (redirection): one pass over the whole training set, corrupted labels and hidden corrupted samples
   included, through the *masked* network: every discovered sample shares one mask over theta_o2, every other sample
   has its own. The bounded fit ``s(CE_masked, CE_ref)`` pulls what the data demands into the network; since the
   discovered samples (and whatever resembles them, such as the hidden rest of a backdoor) share one mask, their
   memory is redirected into those few theta_o2 channels, while ``-s(CE_base, CE_ref)`` keeps pushing D_f out of
   theta_o1.

with ``s(ce, ce_ref) = (2/beta) log sigmoid(beta (ce - ce_ref))``. After each repair pass a proxy that uses no clean
data, ``acc(D_r) x (1 - max(acc(D_f), gamma))`` with the labels as given, picks the model to keep, and theta_o2 is
discarded at the end.

Departures from the official code (if-loops/rem at 05f36dd), each deliberate:

- Masks are per channel and drawn once from a dedicated ``torch.Generator`` (the official code reseeds the global
  RNG inside ``forward`` and caches per-pixel masks on the GPU).
- The shared mask of D_f has an id of its own (the number of training samples), so it cannot coincide with the mask
  of training sample 0 (the official shared id 0 can).
- The frozen reference sees D_f under the same shared mask as the model (the official code copies the reference
  before it sets the shared id, so the two see different masks).
- When no round beats the starting model on the proxy, the starting model is kept (the official code keeps a
  reference to the live model, and so returns the last round).
- The selection proxy reads un-augmented images (the official one reads crop/flip batches): a score that picks a
  model should not depend on the draw of the augmentation.
- At the end theta_o2 is zeroed (:meth:`~unlearnlib.models.CapacityModel.discard_capacity`), not only switched off.
- Batch size, learning rate and number of repair passes are arguments; the chapter states what each profile uses.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._progress import tqdm
from ..models import CapacityModel
from ..training import accuracy, batches, set_seed
from .registry import not_finite, register, report_divergence
from .baselines import npo_loss, selection_proxy


class NonFiniteLoss(RuntimeError):
    """Raised by :func:`flush` and :func:`repair` at a loss that is not finite; ``step`` counts the optimizer steps
    of the whole run, this one included."""

    def __init__(self, step: int):
        super().__init__(f"non-finite loss at step {step}")
        self.step = step


class StepCount:
    """The optimizer steps a REM run has taken (shared by its flush and repair passes)."""

    def __init__(self) -> None:
        self.value = 0

    def next(self, loss: torch.Tensor) -> None:
        """Count one step and raise :class:`NonFiniteLoss` if its ``loss`` is not finite."""
        self.value += 1
        if not_finite(loss):
            raise NonFiniteLoss(self.value)


def preference_score(ce: torch.Tensor, ce_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """``s(ce, ce_ref) = (2/beta) log sigmoid(beta (ce - ce_ref))``, per sample: negative and bounded above by 0;
    it falls (towards -inf, about linearly) as ``ce`` drops below the reference's."""
    return (2.0 / beta) * F.logsigmoid(beta * (ce - ce_ref))


def check_capacity(model: nn.Module) -> CapacityModel:
    """REM needs theta_o2: a clear error for a model without extra capacity."""
    if not isinstance(model, CapacityModel):
        arch = getattr(model, "unlearnlib_spec", {}).get("arch", type(model).__name__)
        raise ValueError(f"REM needs a model with extra capacity; {arch!r} has none. Train the original with "
                         f"arch='small-cnn-capacity' (or 'resnet9-capacity' on CIFAR), and run the baselines on it "
                         f"too so that every method starts from the same model.")
    return model


def flush(model: CapacityModel, ref: CapacityModel, task, opt: torch.optim.Optimizer, *, shared_id: int, beta: float,
          batch_size: int, seed: int, device, augment: bool = False, steps: StepCount | None = None) -> None:
    """One pass of NPO over D_f through theta_o1 ("drop" mode); the reference sees D_f under the shared mask.
    ``steps`` counts the steps and stops the pass at a non-finite loss (:class:`NonFiniteLoss`)."""
    steps = steps or StepCount()
    model.train()
    for x, y in batches(task.data, task.forget_idx, batch_size, shuffle=True, seed=seed, device=device,
                        augment=augment):
        ids = torch.full((len(y),), shared_id, dtype=torch.long)
        with torch.no_grad():
            ref_logits = ref(x, ids)
        opt.zero_grad(set_to_none=True)
        loss = npo_loss(model(x), ref_logits, y, beta).mean()
        steps.next(loss)
        loss.backward()
        opt.step()


def repair(model: CapacityModel, ref: CapacityModel, task, opt: torch.optim.Optimizer, *, shared_id: int,
           beta: float, batch_size: int, seed: int, device, augment: bool = False,
           steps: StepCount | None = None) -> float:
    """One pass over the whole training set through the masked network (D_f under the shared mask, every other
    sample under its own), with NPO on theta_o1 for the D_f samples of each batch. Returns the mean loss. ``steps``
    counts the steps and stops the pass at a non-finite loss (:class:`NonFiniteLoss`)."""
    steps = steps or StepCount()
    model.train()
    everything = task.train_idx  # D_f + D_r; the validation split is never trained on
    known = torch.zeros(len(task.data.y_train), dtype=torch.bool)
    known[torch.from_numpy(task.forget_idx)] = True
    order = everything[torch.randperm(len(everything), generator=torch.Generator().manual_seed(seed)).numpy()]
    total, n = 0.0, 0
    for start, (x, y) in zip(range(0, len(order), batch_size),
                             batches(task.data, order, batch_size, seed=seed, device=device, augment=augment)):
        idx = torch.from_numpy(order[start:start + batch_size])
        in_forget = known[idx]
        ids = torch.where(in_forget, torch.full_like(idx, shared_id), idx)
        with torch.no_grad():
            ce_ref = F.cross_entropy(ref(x, ids), y, reduction="none")
        ce_masked = F.cross_entropy(model(x, ids), y, reduction="none")
        loss = preference_score(ce_masked, ce_ref, beta)
        f = in_forget.to(x.device)
        if f.any():
            ce_base = F.cross_entropy(model(x[f]), y[f], reduction="none")
            loss = torch.cat([loss[~f], loss[f] - preference_score(ce_base, ce_ref[f], beta)])
        opt.zero_grad(set_to_none=True)
        steps.next(loss.mean())
        loss.mean().backward()
        opt.step()
        total, n = total + loss.sum().item(), n + len(y)
    return total / max(n, 1)


@register("rem", paper="Schoepf et al. 2025, REM (arXiv 2505.17730)")
def rem(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 10, lr: float = 0.005,
        batch_size: int = 512, p_mem: float = 0.2, beta: float = 1.0, gamma: float = 0.2, max_flush: int = 100,
        weight_decay: float = 5e-4, redirect: bool = True, augment: bool = False, progress: bool = True) -> nn.Module:
    """Flush D_f out of theta_o1 with NPO, then repair on the full training set through example-tied masks over the
    extra capacity (D_f sharing one mask), for ``epochs`` rounds; keep the round with the best proxy; drop theta_o2.

    ``redirect=False`` is the paper's "REMGEN" ablation: the repair pass runs through theta_o1 only (no masks), so
    nothing can be redirected. A non-finite loss stops the run, which is reported as diverged
    (:func:`~unlearnlib.methods.report_divergence`); a round whose proxy is not finite is never kept and stops it too.
    The official defaults are ``epochs`` ~10 passes (980 steps at batch 512 on CIFAR-10),
    SGD lr 0.005, p_mem 0.2, beta 1, gamma 0.2 and at most 100 flush passes per round.
    """
    model = check_capacity(model)
    set_seed(seed)
    n = len(task.data.y_train)
    shared_id = n  # a row of its own: never the mask of a training sample
    model.draw_masks(n + 1, p_mem=p_mem, seed=seed)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    if not redirect:
        for m in model.masks:  # every id maps to the "drop" gate: masked forward = theta_o1 only
            m.table = torch.zeros_like(m.table)
        ref = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    best_proxy, acc_r, acc_f = selection_proxy(model, task, gamma=gamma, device=device)
    best_state, best_round = copy.deepcopy(model.state_dict()), 0
    history = [{"round": 0, "flush_passes": 0, "proxy": best_proxy, "acc_retain": acc_r, "acc_forget": acc_f}]
    steps, diverged = StepCount(), None
    for rnd in tqdm(range(1, epochs + 1), desc="REM rounds", disable=not progress, leave=False):
        passes = 0
        try:
            while passes < max_flush and accuracy(model, task.data, task.forget_idx, split="train",
                                                  device=device) > gamma:
                flush(model, ref, task, opt, shared_id=shared_id, beta=beta, batch_size=batch_size,
                      seed=seed * 100_000 + rnd * 1000 + passes, device=device, augment=augment, steps=steps)
                passes += 1
            loss = repair(model, ref, task, opt, shared_id=shared_id, beta=beta, batch_size=batch_size,
                          seed=seed * 100_000 + rnd, device=device, augment=augment, steps=steps)
        except NonFiniteLoss as stop:
            diverged = (stop.step, "non-finite loss")
            break
        proxy, acc_r, acc_f = selection_proxy(model, task, gamma=gamma, device=device)
        history.append({"round": rnd, "flush_passes": passes, "proxy": proxy, "acc_retain": acc_r,
                        "acc_forget": acc_f, "repair_loss": loss})
        if not np.isfinite(proxy):   # NaN outputs: never kept
            diverged = (steps.value, "non-finite outputs")
            break
        if proxy > best_proxy:
            best_proxy, best_state, best_round = proxy, copy.deepcopy(model.state_dict()), rnd
    model.load_state_dict(best_state)
    model.discard_capacity()
    model.unlearn_info = {"best_round": best_round, "best_proxy": best_proxy,
                          "flush_passes": sum(h["flush_passes"] for h in history), "history": history,
                          "steps": steps.value}
    if diverged:
        return report_divergence(model, *diverged)
    return model
