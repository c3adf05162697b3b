"""Baselines every chapter compares against.

- ``original``: the trained model, untouched (the "do nothing" lower bound on forgetting).
- ``retrain``: a fresh model trained from scratch on D_r with the original recipe: the reference every method is
  measured against. Every layer is re-initialised (the SSD code's "retrain" resets only the last layer).
- ``finetune``: continue training on D_r only, so that D_f is forgotten through catastrophic forgetting.
- ``gradient_ascent``: maximise the loss on D_f (Thudi et al. 2022; "NegGrad").
- ``neggrad_plus``: descend on D_r and ascend on D_f together (Kurmanji et al. 2023, "NegGrad+").
- ``random_labels``: train on D_r together with D_f relabelled at random (Golatkar et al. 2020; Graves et al. 2021,
  "amnesiac"; the "RL" baseline of SalUn).
- ``npo``: Negative Preference Optimization on D_f alone (Zhang et al. 2024): gradient ascent made bounded by a
  frozen reference model; no retain data.
- ``scrub``: SCRUB (Kurmanji et al. 2023): a student that moves away from the original (teacher) on D_f and stays
  close to it, and to the labels, on D_r.

Trivial baselines (no training, 0 s), so that a reader sees what a method adds beyond them:

- ``mask_classes``: the original with the forgotten classes' logits set to a large negative value. For a class
  task that is the class; for a sub-class task it is the whole superclass (a logit cannot tell the fine classes
  apart), which shows what a sub-class method must beat.
- ``suppress_target``: the original that never predicts one class, the target of a trigger (backdoor) by default.
"""
from __future__ import annotations

import copy
import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models import MaskedLogits, fresh_copy
from ..training import Recipe, accuracy, batches, make_optimizer, set_seed, train_model
from . import register


@register("original", paper="no unlearning")
def original(model: nn.Module, task, *, seed: int = 0, device="cpu") -> nn.Module:
    """Return the original model unchanged (a copy)."""
    return model


@register("mask_classes", paper="trivial baseline: mask the forgotten classes' logits")
def mask_classes(model: nn.Module, task, *, seed: int = 0, device="cpu", value: float = -1e4) -> nn.Module:
    """Never predict the forgotten classes: their logits become ``value``; the others are left bitwise unchanged."""
    if task.kind == "full_class":
        classes = task.forget_classes
    elif task.kind == "sub_class":
        classes = [task.params["superclass"]]
    else:
        raise ValueError(f"mask_classes needs a class or sub-class task, got a {task.kind!r} task: there is no class to "
                         f"mask. The trivial baseline there is 'original' (do nothing)")
    return MaskedLogits(model, classes, task.num_classes, value)


@register("suppress_target", paper="trivial baseline: never predict the trigger's target class")
def suppress_target(model: nn.Module, task, *, seed: int = 0, device="cpu", target_class: int | str | None = None,
                    value: float = -1e4) -> nn.Module:
    """Never predict ``target_class`` (by default a trigger task's target): its logit becomes ``value``."""
    if target_class is None:
        if task.kind != "corrupted" or "target_class" not in task.params:
            raise ValueError(f"suppress_target needs a trigger task (tasks.corrupted(..., 'trigger')) or an explicit "
                             f"target_class=...; got a {task.kind!r} task without a target")
        target = task.params["target_class"]
    else:
        target = task.data.class_index(target_class)
    return MaskedLogits(model, [target], task.num_classes, value)


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


def npo_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Per-sample NPO loss ``-(2/beta) log sigmoid(beta (CE - CE_ref))``: minimising it raises the model's loss on
    these samples above the frozen reference's, and it flattens out once it is well above (unlike gradient ascent,
    whose loss is unbounded)."""
    gap = F.cross_entropy(logits, labels, reduction="none") - F.cross_entropy(ref_logits, labels, reduction="none")
    return -(2.0 / beta) * F.logsigmoid(beta * gap)


@register("npo", paper="Zhang et al. 2024, Negative Preference Optimization")
def npo(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 100, lr: float = 0.005,
        beta: float = 1.0, stop_acc: float = 0.2, batch_size: int = 512, weight_decay: float = 5e-4) -> nn.Module:
    """NPO on D_f with the original as the frozen reference (SGD, momentum 0.9), stopping as soon as the accuracy
    on D_f is at most ``stop_acc``: REM's "flush" step alone, with its defaults (gamma 0.2, at most 100 epochs)."""
    set_seed(seed)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    epochs_run = 0
    while epochs_run < epochs and accuracy(model, task.data, task.forget_idx, split="train",
                                           device=device) > stop_acc:
        model.train()
        for x, y in batches(task.data, task.forget_idx, batch_size, shuffle=True, seed=seed * 1000 + epochs_run,
                            device=device):
            with torch.no_grad():
                ref_logits = ref(x)
            opt.zero_grad(set_to_none=True)
            npo_loss(model(x), ref_logits, y, beta).mean().backward()
            opt.step()
        epochs_run += 1
    model.unlearn_info = {"epochs": epochs_run}
    return model


@register("scrub", paper="Kurmanji et al. 2023 (NeurIPS), SCRUB")
def scrub(model: nn.Module, task, *, seed: int = 0, device="cpu", epochs: int = 3, max_epochs: int = 2,
          lr: float = 0.005, alpha: float = 0.01, temperature: float = 4.0, batch_size: int = 128,
          weight_decay: float = 5e-4) -> nn.Module:
    """SCRUB: for ``epochs`` rounds, a "max" pass over D_f that pushes the student's softened outputs away from the
    teacher's (the first ``max_epochs`` rounds only), then a "min" pass over D_r on CE + ``alpha`` x KL to the
    teacher. KL at ``temperature`` (4 in the paper's code), SGD with momentum 0.9."""
    if max_epochs > epochs:
        raise ValueError(f"max_epochs ({max_epochs}) cannot exceed epochs ({epochs})")
    set_seed(seed)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)

    def kl(student_logits, x):
        with torch.no_grad():
            t = F.softmax(teacher(x) / temperature, 1)
        return F.kl_div(F.log_softmax(student_logits / temperature, 1), t, reduction="batchmean")

    model.train()
    for epoch in range(epochs):
        parts = ([("max", task.forget_idx)] if epoch < max_epochs else []) + [("min", task.retain_idx)]
        for kind, idx in parts:
            for x, y in batches(task.data, idx, batch_size, shuffle=True, seed=seed * 1000 + 2 * epoch,
                                device=device):
                opt.zero_grad(set_to_none=True)
                logits = model(x)
                loss = -kl(logits, x) if kind == "max" else F.cross_entropy(logits, y) + alpha * kl(logits, x)
                loss.backward()
                opt.step()
    return model
