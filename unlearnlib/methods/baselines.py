"""Baselines every chapter compares against.

- ``original``: the trained model, untouched (the "do nothing" lower bound on forgetting).
- ``retrain``: a fresh model trained from scratch on D_r with the original recipe: the reference every method is
  measured against. Every layer is re-initialised (the SSD code's "retrain" resets only the last layer).
- ``finetune``: continue training on D_r only, so that D_f is forgotten through catastrophic forgetting.
- ``gradient_ascent``: maximise the loss on D_f (Thudi et al. 2022; "NegGrad").
- ``neggrad_plus``: descend on D_r and ascend on D_f together (Kurmanji et al. 2023, "NegGrad+").
- ``random_labels``: train on D_r together with D_f relabelled at random (Golatkar et al. 2020; Graves et al. 2021,
  "amnesiac"; the "RL" baseline of SalUn).
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models import fresh_copy
from ..training import Recipe, batches, make_optimizer, set_seed, train_model
from . import register


@register("original", paper="no unlearning")
def original(model: nn.Module, task, *, seed: int = 0, device="cpu") -> nn.Module:
    """Return the original model unchanged (a copy)."""
    return model


@register("retrain", paper="exact unlearning by retraining from scratch")
def retrain(model: nn.Module, task, *, seed: int = 0, device="cpu", recipe: Recipe | None = None,
            progress: bool = True) -> nn.Module:
    """Train a freshly initialised copy of the architecture on D_r with ``recipe`` (the original's recipe)."""
    if recipe is None:
        raise ValueError("retrain needs recipe=..., the recipe the original model was trained with "
                         "(e.g. profile.recipe)")
    fresh = fresh_copy(model, seed=seed).to(device)
    return train_model(fresh, task.data, task.retain_idx, recipe, seed=seed, device=device,
                       desc="retrain", progress=progress)


@register("finetune", paper="catastrophic forgetting baseline")
def finetune(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 2, lr: float = 0.01,
             batch_size: int = 128, momentum: float = 0.9, weight_decay: float = 5e-4) -> nn.Module:
    """Fine-tune on D_r only (SGD, cosine schedule) so that D_f fades."""
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                    schedule="cosine")
    return train_model(model, task.data, task.retain_idx, recipe, seed=seed, device=device, desc="finetune")


@register("gradient_ascent", paper="Thudi et al. 2022 (NegGrad)")
def gradient_ascent(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 1, lr: float = 1e-3,
                    batch_size: int = 128, max_grad_norm: float = 5.0) -> nn.Module:
    """Maximise the cross-entropy on D_f with plain SGD (gradients clipped, since the loss is unbounded)."""
    set_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for epoch in range(epochs):
        for x, y in batches(task.data, task.forget_idx, batch_size, shuffle=True, seed=seed * 1000 + epoch,
                            device=device):
            opt.zero_grad(set_to_none=True)
            (-F.cross_entropy(model(x), y)).backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
    return model


@register("neggrad_plus", paper="Kurmanji et al. 2023 (NeurIPS), NegGrad+")
def neggrad_plus(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 1, lr: float = 0.01,
                 alpha: float = 0.95, batch_size: int = 128, max_grad_norm: float = 5.0) -> nn.Module:
    """Minimise alpha * CE(D_r batch) - (1 - alpha) * CE(D_f batch), cycling through D_f alongside D_r."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    set_seed(seed)
    steps = epochs * int(np.ceil(len(task.retain_idx) / batch_size))
    opt, sched = make_optimizer(model, Recipe(epochs=epochs, lr=lr, schedule="cosine", batch_size=batch_size),
                                steps)
    model.train()
    for epoch in range(epochs):
        forget = itertools.cycle(list(batches(task.data, task.forget_idx, batch_size, shuffle=True,
                                              seed=seed * 1000 + epoch + 500, device=device)))
        for (xr, yr), (xf, yf) in zip(batches(task.data, task.retain_idx, batch_size, shuffle=True,
                                              seed=seed * 1000 + epoch, device=device), forget):
            opt.zero_grad(set_to_none=True)
            loss = alpha * F.cross_entropy(model(xr), yr) - (1 - alpha) * F.cross_entropy(model(xf), yf)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
            sched.step()
    return model


@register("random_labels", paper="Golatkar et al. 2020; Graves et al. 2021 (amnesiac)")
def random_labels(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 1, lr: float = 0.01,
                  batch_size: int = 128) -> nn.Module:
    """Train on D_r together with D_f relabelled with uniformly random *wrong* labels."""
    gen = torch.Generator().manual_seed(seed)
    labels = task.data.y_train.clone()
    f = torch.from_numpy(task.forget_idx)
    shift = torch.randint(1, task.num_classes, (len(f),), generator=gen)
    labels[f] = (labels[f] + shift) % task.num_classes
    both = np.concatenate([task.retain_idx, task.forget_idx])
    recipe = Recipe(epochs=epochs, batch_size=batch_size, lr=lr, schedule="cosine")
    return train_model(model, task.data, both, recipe, seed=seed, device=device, desc="random labels",
                       labels=labels)
