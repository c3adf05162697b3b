"""Seeded training and prediction with progress bars, and a checkpoint cache shared by every chapter.

The cache key is a hash of everything that defines a trained model (dataset and its fingerprint, the training
indices, architecture, recipe, seed), so the original model and the retrain reference are trained once and reused
by every chapter and every profile that asks for the same thing. Checkpoints are written atomically; a corrupt one
is rebuilt with a warning.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import random
import secrets
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from ._progress import tqdm

from . import _io
from .config import cache_root
from .data import ImageData
from .models import model_for


@dataclass(frozen=True)
class Recipe:
    """How to train a model. Frozen, so that it can be hashed into a cache key."""

    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"          # "sgd" or "adam"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"      # "onecycle", "cosine", "multistep" or "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.2
    warmup_epochs: int = 0
    augment: bool = False           # random crop (pad 4) and horizontal flip, for CIFAR-like data

    def replace(self, **changes) -> "Recipe":
        return Recipe(**{**asdict(self), **changes})


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so that a run is repeatable on the same hardware."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def noise_generator(noise_seed: int | None) -> tuple[torch.Generator, str]:
    """A generator for noise that must hide something (the noise of a forgetting method), and how it was seeded.

    Without ``noise_seed`` it is seeded from fresh OS entropy, different on every call: noise that anyone can
    regenerate from a known seed can be subtracted again, and hides nothing. With ``noise_seed`` it is reproducible,
    for figures and tests only. The description goes into a method's ``unlearn_info`` (never the entropy seed)."""
    if noise_seed is None:
        return torch.Generator().manual_seed(secrets.randbits(63)), "fresh OS entropy"
    return torch.Generator().manual_seed(int(noise_seed)), f"noise_seed={noise_seed}"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def hardware() -> dict:
    """What ran the computation: recorded next to every timing."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel zero padding and random horizontal flip, on a normalised batch."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dx, dy = torch.randint(0, 9, (2,), generator=gen).tolist()  # one offset per batch keeps it vectorised
    x = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)


def _stamp_again(x: torch.Tensor, data: ImageData, rows: torch.Tensor) -> torch.Tensor:
    """Stamp a backdoor's white patch on the ``rows`` of an augmented batch, bottom right: crop and flip moved the
    stored one, and the official REM code stamps after augmenting."""
    if not rows.any():
        return x
    size = int(data.trigger["size"])
    white = data.normalize(torch.full((1, x.shape[1], 1, 1), 255, dtype=torch.uint8, device=x.device))
    x = x.clone()
    x[rows.to(x.device), :, -size:, -size:] = white
    return x


def batches(data: ImageData, indices, batch_size: int, *, split: str = "train", shuffle: bool = False,
            seed: int = 0, device: str | torch.device = "cpu", augment: bool = False,
            labels: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalised ``(x, y)`` batches of ``data`` restricted to ``indices``.

    ``labels`` (same length as the split) overrides the stored labels, e.g. for random relabelling.
    Shuffling uses its own generator seeded by ``seed``, so the order never depends on global state.
    """
    x_all, y_all = data.split(split)
    if labels is not None:
        y_all = labels
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    if shuffle:
        idx = idx[torch.randperm(len(idx), generator=gen)]
    device = resolve_device(device)
    for start in range(0, len(idx), batch_size):
        b = idx[start:start + batch_size]
        x = data.normalize(x_all[b].to(device, non_blocking=True))
        if augment:
            x = _augment(x, gen)
            if split == "train" and data.trigger is not None:
                x = _stamp_again(x, data, data.trigger["mask"][b])
        yield x, y_all[b].to(device, non_blocking=True)


def make_optimizer(model: nn.Module, recipe: Recipe, steps: int):
    """Optimiser and per-step LR scheduler for ``recipe`` over ``steps`` optimisation steps."""
    if recipe.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay)
    elif recipe.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; use 'sgd' or 'adam'")
    per_epoch = max(1, steps // max(1, recipe.epochs))
    warm = recipe.warmup_epochs * per_epoch
    if recipe.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=max(steps, 1))
        return opt, sched
    if recipe.schedule == "cosine":
        main = lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, (s - warm) / max(1, steps - warm))))
    elif recipe.schedule == "multistep":
        main = lambda s: recipe.gamma ** sum(s >= m * per_epoch for m in recipe.milestones)
    elif recipe.schedule == "constant":
        main = lambda s: 1.0
    else:
        raise ValueError(f"unknown schedule {recipe.schedule!r}")
    factor = lambda s: (s + 1) / warm if s < warm else main(s)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_model(model: nn.Module, data: ImageData, indices, recipe: Recipe, *, seed: int = 0,
                device: str | torch.device = "auto", desc: str = "train", progress: bool = True,
                labels: torch.Tensor | None = None) -> nn.Module:
    """Train ``model`` in place on ``data.x_train[indices]`` with cross-entropy, following ``recipe``."""
    device = resolve_device(device)
    model.to(device)
    n_steps = recipe.epochs * int(np.ceil(len(indices) / recipe.batch_size))
    opt, sched = make_optimizer(model, recipe, n_steps)
    set_seed(seed)
    bar = tqdm(total=n_steps, desc=desc, disable=not progress, leave=False, mininterval=2.0)
    for epoch in range(recipe.epochs):
        model.train()
        for x, y in batches(data, indices, recipe.batch_size, shuffle=True, seed=seed * 1000 + epoch,
                            device=device, augment=recipe.augment, labels=labels):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, data: ImageData, indices=None, *, split: str = "test",
                   batch_size: int = 1024, device: str | torch.device = "auto") -> torch.Tensor:
    """Logits (on the CPU) of ``model`` in eval mode for the given samples of ``split`` (all when None)."""
    device = resolve_device(device)
    model.to(device).eval()
    if indices is None:
        indices = np.arange(len(data.split(split)[1]))
    out = [model(x).float().cpu() for x, _ in batches(data, indices, batch_size, split=split, device=device)]
    return torch.cat(out) if out else torch.empty(0, data.num_classes)


def accuracy(model: nn.Module, data: ImageData, indices=None, *, split: str = "test",
             device: str | torch.device = "auto") -> float:
    """Fraction of correctly classified samples (sample-weighted; NaN for an empty index set)."""
    if indices is not None and len(indices) == 0:
        return float("nan")
    logits = predict_logits(model, data, indices, split=split, device=device)
    y = data.split(split)[1]
    y = y if indices is None else y[torch.as_tensor(np.asarray(indices), dtype=torch.long)]
    return (logits.argmax(1) == y).float().mean().item()


# --------------------------------------------------------------------------------------------------------------
# Checkpoint cache

@dataclass
class TrainedModel:
    """A model from the cache with what it cost to train it (seconds and hardware of the run that trained it)."""

    model: nn.Module
    train_seconds: float
    hardware: dict
    cached: bool
    key: str
    meta: dict = field(default_factory=dict)


def cache_key(spec: dict) -> str:
    """A stable 16-hex-digit hash of a JSON-able description of a model."""
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def indices_digest(indices) -> str:
    """Hash of an index set (order-insensitive)."""
    arr = np.sort(np.asarray(indices, dtype=np.int64))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def cached_model(spec: dict, build: Callable[[], nn.Module], *, root: str | Path | None = None,
                 label: str = "model") -> TrainedModel:
    """Return the model described by ``spec`` from the cache, or call ``build()`` (timed) and cache it.

    ``build`` must return a trained model. The file ``<root>/<label>-<hash>.pt`` holds the state dict, the spec,
    the training time and the hardware. A file that cannot be read is rebuilt with a warning.
    """
    root = Path(root) if root is not None else cache_root()
    key = cache_key(spec)
    path = root / f"{label}-{key}.pt"
    if path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
            template = _template(spec)
            template.load_state_dict(blob["state_dict"])
            template.eval()
            return TrainedModel(template, blob["train_seconds"], blob["hardware"], True, key, blob.get("spec", {}))
        except Exception as e:
            warnings.warn(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); retraining it")
    start = time.perf_counter()
    model = build()
    seconds = time.perf_counter() - start
    blob = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "spec": spec,
            "train_seconds": seconds, "hardware": hardware(), "torch": torch.__version__}
    _io.atomic_write(path, lambda f: torch.save(blob, f))
    model.eval()
    return TrainedModel(model, seconds, blob["hardware"], False, key, spec)


def _template(spec: dict) -> nn.Module:
    """An untrained model with the architecture in ``spec`` (weights come from the checkpoint)."""
    from .models import build_model

    m = spec["model"]
    return build_model(m["arch"], m["num_classes"], m["in_channels"], m["image_size"],
                       pretrained=False)


def train_or_load(data: ImageData, indices, arch: str, recipe: Recipe, *, seed: int, role: str,
                  device: str | torch.device = "auto", progress: bool = True, pretrained: bool = False,
                  root: str | Path | None = None) -> TrainedModel:
    """Train ``arch`` on ``data.x_train[indices]`` with ``recipe`` and ``seed`` once; afterwards load it.

    ``role`` ("original", "retrain", ...) only labels the progress bar; the key is the content: dataset
    fingerprint, the indices, the architecture, the recipe and the seed. So the retrain model of a task is shared by
    every chapter that uses the same task and profile, whatever it calls the model.
    """
    model_spec = {"arch": arch, "num_classes": data.num_classes, "in_channels": data.in_channels,
                  "image_size": data.image_size, "pretrained": pretrained}  # what build_model records
    spec = {"dataset": data.spec, "data_fingerprint": data.fingerprint(), "indices": indices_digest(indices),
            "n_train": int(len(indices)), "model": model_spec, "recipe": asdict(recipe), "seed": seed, "version": 1}

    def build() -> nn.Module:  # only on a cache miss: no model is built (or weights fetched) for a hit
        model = model_for(data, arch, seed=seed, pretrained=pretrained)
        return train_model(model, data, indices, recipe, seed=seed, device=device, progress=progress,
                           desc=f"{role} (seed {seed})")

    trained = cached_model(spec, build, root=root, label=f"{data.name}-{arch}")
    trained.model.to(resolve_device(device))
    if pretrained:
        trained.model.unlearnlib_spec["pretrained"] = True
    return trained


def clone(model: nn.Module) -> nn.Module:
    """A deep copy that keeps ``unlearnlib_spec``."""
    return copy.deepcopy(model)
