"""Seeded training and prediction with progress bars, and a checkpoint cache shared by every chapter.

The cache key is a hash of everything that defines a trained model (dataset and its fingerprint, the training
indices, architecture, recipe, seed), so the original model and the retrain reference are trained once and reused
by every chapter and every profile that asks for the same thing. Checkpoints are written atomically; a corrupt one
is rebuilt with a warning.

On CUDA, training and prediction keep the data on the device, use channels_last, cuDNN autotuning and mixed
precision (``Recipe.amp``); on the CPU they are the plain loop, so CPU results do not depend on those switches.
"""
from __future__ import annotations

import contextlib
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
from .data import ImageData, resident
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
    augment: bool = False           # per-image random crop (pad 4, black) and horizontal flip, for CIFAR-like data
    rotation: float = 0.0           # with augment: per-image rotation, uniform in [-rotation, rotation] degrees
    amp: bool | None = None         # mixed precision; None: on when training on CUDA (see autocast_dtype)

    def __post_init__(self):
        if self.rotation < 0:
            raise ValueError(f"rotation is a maximum angle in degrees and cannot be negative, got {self.rotation}")
        if self.rotation > 0 and not self.augment:
            raise ValueError("rotation is part of the augmentation: set augment=True as well")

    def replace(self, **changes) -> "Recipe":
        return Recipe(**{**asdict(self), **changes})


#: Recipe fields added after the first checkpoints were cached, with the value that leaves them out of a cache key
_LATER_FIELDS = {"rotation": 0.0, "amp": None}


def recipe_spec(recipe: Recipe) -> dict:
    """The recipe as it enters a cache key: :func:`dataclasses.asdict` without the later fields that still have
    their default. A recipe that does not use them keeps the key it had before they existed, so no cached model
    is retrained for nothing; one that does gets a key of its own."""
    spec = asdict(recipe)
    for name, default in _LATER_FIELDS.items():
        if spec[name] == default:
            del spec[name]
    return spec


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so that a run is repeatable on the same hardware."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def noise_generator(noise_seed: int | None) -> tuple[torch.Generator, str]:
    """A generator for noise that must hide something (the noise of a forgetting method), and how it was seeded.

    Without ``noise_seed`` it is seeded from fresh OS entropy, different on every call: noise that anyone can
    regenerate from a known seed can be subtracted again, and hides nothing. With ``noise_seed`` it is reproducible,
    for figures and tests only. The description goes into a method's ``unlearn_info`` (never the entropy seed).

    Only the seed comes from the operating system's entropy (:mod:`secrets`); the generator is torch's CPU
    generator, a Mersenne Twister, which is not cryptographically secure: whoever sees enough of its output could in
    principle recover its state. Noise that must stay unpredictable against such an observer needs a cryptographic
    generator."""
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


# --------------------------------------------------------------------------------------------------------------
# Augmentation, on pixel values (before normalisation), one random draw per image, vectorised over the batch.
# The draws come from the batch generator on the CPU, so a seed gives the same augmentation on every device.

def random_crop(x: torch.Tensor, gen: torch.Generator, padding: int = 4) -> torch.Tensor:
    """torchvision's ``RandomCrop(size, padding)``: pad each image with ``padding`` black (0) pixels on every side
    and cut it back to its size at an offset drawn per image, uniform in ``0 .. 2*padding`` on each axis.

    One gather indexes every image at its own offset (no loop over images)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, n, 1), generator=gen).to(x.device)
    span = lambda k: torch.arange(k, device=x.device)
    rows, cols = dy + span(h), dx + span(w)  # (n, h) and (n, w): where each output row and column comes from
    return padded[span(n).view(n, 1, 1, 1), span(c).view(1, c, 1, 1), rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """torchvision's ``RandomHorizontalFlip()``: each image mirrored left-right with probability 0.5."""
    flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Turn each image of ``x`` about its centre by its own angle (``degrees``, one per image, positive:
    counter-clockwise), as torchvision's ``rotate`` does with its defaults: nearest-neighbour, corners filled black
    (0), same size. One ``affine_grid`` + ``grid_sample`` for the whole batch; keeps ``x``'s dtype (nearest-neighbour
    only moves pixel values, so uint8 survives the float round trip exactly)."""
    n, _, h, w = x.shape
    angle = torch.deg2rad(degrees.to(torch.float64))
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    # output pixel -> input pixel, in grid_sample's [-1, 1] coordinates (the aspect ratio undone for h != w)
    theta = torch.stack([torch.stack([cos, -sin * h / w, zero], 1), torch.stack([sin * w / h, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(device=x.device, dtype=torch.float32), [n, 1, h, w], align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype)


def random_rotation(x: torch.Tensor, gen: torch.Generator, degrees: float) -> torch.Tensor:
    """torchvision's ``RandomRotation(degrees)``: each image turned by an angle drawn per image, uniform in
    ``[-degrees, degrees]``, with :func:`rotate`."""
    return rotate(x, (torch.rand(len(x), generator=gen, dtype=torch.float64) * 2 - 1) * degrees)


def augment_pixels(x: torch.Tensor, gen: torch.Generator, rotation: float = 0.0) -> torch.Tensor:
    """The official CIFAR training transform on a batch of pixel values: crop (pad 4), flip, then rotation when
    ``rotation`` > 0 (SSD's pytorch-cifar100 recipe uses 15 degrees). Normalise afterwards, so that the padding and
    the corners are black pixels, as in torchvision."""
    x = random_flip(random_crop(x, gen), gen)
    return random_rotation(x, gen, rotation) if rotation > 0 else x


def _stamp_again(x: torch.Tensor, data: ImageData, rows: torch.Tensor) -> torch.Tensor:
    """Stamp a backdoor's white (255) patch on the ``rows`` of an augmented batch of pixel values, bottom right:
    crop, flip and rotation moved the stored one, and the official REM code stamps after augmenting."""
    if not rows.any():
        return x
    size = int(data.trigger["size"])
    x = x.clone()
    x[rows.to(x.device), :, -size:, -size:] = 255
    return x


def batches(data: ImageData, indices, batch_size: int, *, split: str = "train", shuffle: bool = False,
            seed: int = 0, device: str | torch.device = "cpu", augment: bool = False, rotation: float = 0.0,
            labels: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalised ``(x, y)`` batches of ``data`` restricted to ``indices``.

    ``labels`` (same length as the split) overrides the stored labels, e.g. for random relabelling.
    Shuffling and augmentation (:func:`augment_pixels`, with ``rotation`` degrees) use one generator seeded by
    ``seed``, so the order and the draws never depend on global state. On CUDA the split stays on the device as
    uint8 (:func:`~unlearnlib.data.resident`) and each batch is indexed there; elsewhere rows are gathered on the
    host and copied, as they always were.
    """
    x_all, y_all = data.split(split)
    if labels is not None:
        y_all = labels
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    if shuffle:
        idx = idx[torch.randperm(len(idx), generator=gen)]
    device = resolve_device(device)
    x_src, y_src, idx_src = _sources(x_all, y_all, idx, device)
    stamp = augment and split == "train" and data.trigger is not None
    for start in range(0, len(idx), batch_size):
        b = idx_src[start:start + batch_size]
        x = x_src[b].to(device, non_blocking=True)
        if augment:
            x = augment_pixels(x, gen, rotation)
            if stamp:
                x = _stamp_again(x, data, data.trigger["mask"][idx[start:start + batch_size]])
        yield data.normalize(x), y_src[b].to(device, non_blocking=True)


def _sources(x_all: torch.Tensor, y_all: torch.Tensor, idx: torch.Tensor,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where :func:`batches` indexes: device-resident copies of the split and the indices on CUDA (when the split
    is small enough to be kept there), else the host tensors themselves."""
    if device.type == "cuda":
        x_dev, y_dev = resident(x_all, device), resident(y_all, device)
        if x_dev is not None and y_dev is not None:
            return x_dev, y_dev, idx.to(device)
    return x_all, y_all, idx


def make_optimizer(model: nn.Module, recipe: Recipe, steps: int):
    """Optimiser and per-step LR scheduler for ``recipe`` over ``steps`` optimisation steps.

    Warm-up (every schedule but "onecycle") rises linearly per step to ``lr`` over the first ``warmup_epochs``.
    "multistep" follows the official SSD / pytorch-cifar100 loop (``MultiStepLR.step(epoch)`` called with the
    1-indexed epoch before training it): the rate in 1-indexed epoch e is ``lr * gamma ** #(milestones <= e)``, so
    a milestone m decays the rate from the m-th epoch on (0-indexed epoch m - 1), not after it.
    """
    if recipe.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay)
    elif recipe.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; use 'sgd' or 'adam'")
    per_epoch = max(1, steps // max(1, recipe.epochs))
    epoch_no = lambda s: s // per_epoch + 1  # the 1-indexed epoch that step s (0-indexed) belongs to
    warm = recipe.warmup_epochs * per_epoch
    if recipe.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=max(steps, 1))
        return opt, sched
    if recipe.schedule == "cosine":
        main = lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, (s - warm) / max(1, steps - warm))))
    elif recipe.schedule == "multistep":
        main = lambda s: recipe.gamma ** sum(m <= epoch_no(s) for m in recipe.milestones)
    elif recipe.schedule == "constant":
        main = lambda s: 1.0
    else:
        raise ValueError(f"unknown schedule {recipe.schedule!r}")
    factor = lambda s: (s + 1) / warm if s < warm else main(s)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


# --------------------------------------------------------------------------------------------------------------
# Training and prediction. On CUDA: device-resident data, channels_last, cuDNN autotuning and mixed precision;
# on the CPU none of them, so CPU results are the plain loop's, bit for bit.

def autocast_dtype(amp: bool | None, device: str | torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for ``amp`` on ``device``, or ``None`` for full float32.

    ``amp=None`` means on for CUDA (bfloat16 where the GPU supports it, else float16 with a gradient scaler) and
    off everywhere else. ``amp=True`` on the CPU is honoured with bfloat16 autocast (slow on CPUs without bf16
    instructions, and its numbers differ from float32); on other devices it is an error, ``amp=False`` the fix."""
    device = torch.device(device)
    if amp is None:
        amp = device.type == "cuda"
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16
    raise ValueError(f"mixed precision (amp=True) is supported on CUDA and the CPU, not on {device.type!r}; "
                     f"use amp=False or None")


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype``; a context that does nothing at all for ``None``."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """A batch of images in channels_last layout (what cuDNN's fastest convolutions read); others as they are."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def train_model(model: nn.Module, data: ImageData, indices, recipe: Recipe, *, seed: int = 0,
                device: str | torch.device = "auto", desc: str = "train", progress: bool = True,
                labels: torch.Tensor | None = None) -> nn.Module:
    """Train ``model`` in place on ``data.x_train[indices]`` with cross-entropy, following ``recipe``.

    On CUDA the model is switched to channels_last, cuDNN picks its fastest kernels (``cudnn.benchmark``) and
    ``recipe.amp`` (on by default there) runs the forward pass in mixed precision. On the CPU, unless
    ``recipe.amp`` is True, this is the plain loop: forward, cross-entropy, backward, step."""
    device = resolve_device(device)
    cuda = device.type == "cuda"
    model.to(device)
    if cuda:
        torch.backends.cudnn.benchmark = True
        model.to(memory_format=torch.channels_last)
    n_steps = recipe.epochs * int(np.ceil(len(indices) / recipe.batch_size))
    opt, sched = make_optimizer(model, recipe, n_steps)
    dtype = autocast_dtype(recipe.amp, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    set_seed(seed)
    bar = tqdm(total=n_steps, desc=desc, disable=not progress, leave=False, mininterval=2.0)
    for epoch in range(recipe.epochs):
        model.train()
        for x, y in batches(data, indices, recipe.batch_size, shuffle=True, seed=seed * 1000 + epoch,
                            device=device, augment=recipe.augment, rotation=recipe.rotation, labels=labels):
            opt.zero_grad(set_to_none=True)
            loss = _train_step(model, _channels_last(x) if cuda else x, y, opt, dtype, scaler)
            sched.step()
            bar.update()
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    return model


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
                dtype: torch.dtype | None, scaler: "torch.amp.GradScaler | None") -> torch.Tensor:
    """One optimisation step on the cross-entropy of ``(x, y)``; returns the loss. A float16 step goes through
    ``scaler`` (loss scaling, skipped when gradients overflow); float32 and bfloat16 need none."""
    with _autocast(x.device, dtype):
        loss = F.cross_entropy(model(x), y)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return loss


def predict_logits(model: nn.Module, data: ImageData, indices=None, *, split: str = "test",
                   batch_size: int | None = None, device: str | torch.device = "auto",
                   amp: bool | None = None) -> torch.Tensor:
    """Logits (float32, on the CPU) of ``model`` in eval mode for the given samples of ``split`` (all when None).

    ``batch_size`` defaults to 4096 on CUDA and 1024 elsewhere. ``amp`` as in :func:`autocast_dtype` (on CUDA by
    default: the logits then come from a bfloat16 forward pass, cast back to float32); on the CPU the logits are
    those of a plain ``model(x)`` under ``no_grad``, bit for bit. The result is an ordinary tensor (not an
    inference-mode one), so callers may use it in autograd."""
    device = resolve_device(device)
    model.to(device).eval()
    if indices is None:
        indices = np.arange(len(data.split(split)[1]))
    if batch_size is None:
        batch_size = 4096 if device.type == "cuda" else 1024
    out = _forward_all(model, batches(data, indices, batch_size, split=split, device=device), device,
                       autocast_dtype(amp, device))
    return torch.cat(out) if out else torch.empty(0, data.num_classes)


@torch.inference_mode()
def _forward_all(model: nn.Module, loader: Iterator[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
                 dtype: torch.dtype | None) -> list[torch.Tensor]:
    """float32 CPU logits of every batch of ``loader``; channels_last input on CUDA."""
    cuda = device.type == "cuda"
    out = []
    for x, _ in loader:
        with _autocast(device, dtype):
            out.append(model(_channels_last(x) if cuda else x).float().cpu())
    return out


def accuracy(model: nn.Module, data: ImageData, indices=None, *, split: str = "test",
             device: str | torch.device = "auto") -> float:
    """Fraction of correctly classified samples (sample-weighted; NaN for an empty index set, and NaN when the
    model's outputs are not finite: a diverged model is never scored, see :mod:`unlearnlib.metrics`)."""
    if indices is not None and len(indices) == 0:
        return float("nan")
    logits = predict_logits(model, data, indices, split=split, device=device)
    if not bool(torch.isfinite(logits).all()):
        return float("nan")
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

    The file name is a hash of ``spec`` (:func:`cache_key`), so the spec must hold everything that determines the
    model; :func:`train_or_load` puts the fingerprint of the training code in it, so a change there retrains.

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
    fingerprint, the indices, the architecture, the recipe, the seed and the fingerprint of the code that trains
    (:func:`~unlearnlib.fingerprint.training_fingerprint`: ``training``, ``models`` and ``data``, blind to docstrings
    and comments). So the retrain model of a task is shared by every chapter that uses the same task and profile,
    whatever it calls the model, and a change to the code of those modules retrains every model (a checkpoint
    trained by other code is never loaded as if this code had trained it).
    """
    from .fingerprint import training_fingerprint

    model_spec = {"arch": arch, "num_classes": data.num_classes, "in_channels": data.in_channels,
                  "image_size": data.image_size, "pretrained": pretrained}  # what build_model records
    spec = {"dataset": data.spec, "data_fingerprint": data.fingerprint(), "indices": indices_digest(indices),
            "n_train": int(len(indices)), "model": model_spec, "recipe": recipe_spec(recipe), "seed": seed,
            "version": 1, "code": training_fingerprint()}

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
