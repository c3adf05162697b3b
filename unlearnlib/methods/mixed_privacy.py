"""Mixed-Privacy forgetting (ML-Forgetting): Golatkar, Achille, Ravichandran, Polito and Soatto, "Mixed-Privacy
Forgetting in Deep Networks", CVPR 2021.

The training data are split into *core* data D_c, which never has to be forgotten, and *user* data D_u, which may
get deletion requests. A network is trained non-linearly on D_c (weights ``w_core``); the user data are then learned
by a second set of weights ``w_user`` that enter the model *linearly*, through the first-order Taylor expansion of
the network's last layers around ``w_core``::

    f(x) = f_{w_core}(x) + J(x) w_user,        J(x) = d f_{w_core}(x) / d w_core   (never materialised)
    L(w_user) = 1/(2|D|) sum_{(x,y) in D} ||f(x) - s*onehot(y)||^2 + mu/2 ||w_user||^2.

L is quadratic and strongly convex in ``w_user``, so forgetting D_f has an exact answer: one Newton step on the
remaining user data D_r, ``w_user - H^{-1} g`` with ``g`` the exact gradient of L on D_r and ``H = J^T J/|D_r| + mu I``.
The step is found with Jacobian-vector products only, then Gaussian noise of standard deviation ``sigma`` hides the
residual error of an inexact solve. Setting ``w_user = 0`` forgets every user sample at once and leaves the core
model.

Registered methods (all take a :class:`MixedLinear` model, made by :func:`fit_mixed_linear`):

- ``ml-forgetting``: the Newton step, solved as the paper does (``solver="sgd"``: a few epochs of SGD on the
  auxiliary quadratic ``1/2 v^T H v - g^T v`` with the exact residual gradient and mini-batch Hessian terms) or
  exactly (``solver="cg"``: conjugate gradient with full-batch Hessian-vector products), then noise;
- ``ml-zero``: ``w_user = 0`` (forget all user data);
- ``ml-retrain``: the paragon, ``w_user`` re-solved from zero on D_r with the same core.

Where we depart from the paper and from the public reimplementation (UCR), and why:

- The paper has no official code and defers its hyperparameters to an appendix we do not have: ``mu``, the target
  scale ``s``, the SGD learning rates and the linearized layers are ours (chapter and profile say which).
- Eq. 13 multiplies the noise by sigma^2 but the plots sweep a standard deviation: we add ``sigma * N(0, I)``.
- ``w_user`` starts at exactly 0 and the linearized tail keeps its BatchNorm statistics frozen (UCR re-initialises
  the tangent weights and resets BN; both break the "zero the user weights" semantics and the exact linearity).
- The auxiliary variable ``v`` starts at 0 (UCR draws it at random) and runs for the paper's 2-3 epochs (UCR: 150).
- The noise generator is seeded from fresh OS entropy on every request (``noise_seed`` makes it reproducible, for
  figures): noise that a caller could regenerate from a default seed could be subtracted again, and would hide
  nothing. The generator itself is torch's (a Mersenne Twister), not a cryptographic one
  (:func:`~unlearnlib.training.noise_generator`); the paper does not discuss where the noise comes from.
- The SGD solver of the Newton step keeps a constant step by default: at the paper's 2-3 epochs it lands closer to
  the exact step than a cosine-annealed one. A constant step stalls at a noise floor after many epochs; pass
  ``anneal=True`` for long solves (:func:`newton_step`).
- Learning rates default to ``1/L``, with ``L`` the largest eigenvalue of the quadratic's Hessian estimated by
  power iteration on a mini-batch: the quadratic is badly conditioned (LQF's remark), and a step size tied to its
  curvature is the stable choice that needs no tuning per dataset.
"""
from __future__ import annotations

import copy
import hashlib
import time
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp, vjp

from .._progress import tqdm
from ..training import noise_generator, resolve_device, set_seed
from .registry import register

# --------------------------------------------------------------------------------------------------------------
# The mixed-linear model


def split_core(core: nn.Module, linearize: str = "head") -> tuple[nn.Module, nn.Module]:
    """Cut ``core`` into a frozen trunk and the tail that the mixed-linear model linearizes (copies, not views).

    ``linearize="head"`` takes the final block(s): the two fully connected layers of the small CNN / MLP, or
    ``layer4`` + pooling + ``fc`` of a ResNet (as UCR does). ``"last"`` takes only the final linear layer, for which
    the linearization is exact and the model is ridge regression on fixed features (the paper's "last-layer" bar).
    """
    if linearize not in ("head", "last"):
        raise ValueError(f"linearize must be 'head' or 'last', not {linearize!r}")
    arch = getattr(core, "unlearnlib_spec", {}).get("arch", "")
    core = copy.deepcopy(core)
    if arch.startswith("small-cnn"):
        if linearize == "head":
            return core.features, core.head
        return nn.Sequential(core.features, core.head[:-1]), core.head[-1:]
    if arch.startswith("mlp"):
        net = core.net
        return (net[:1], net[1:]) if linearize == "head" else (net[:-1], net[-1:])
    if arch.startswith("resnet18"):
        stem = [core.conv1, core.bn1, core.act1, core.maxpool, core.layer1, core.layer2, core.layer3]
        if linearize == "head":
            return nn.Sequential(*stem), nn.Sequential(core.layer4, core.global_pool, core.fc)
        return nn.Sequential(*stem, core.layer4, core.global_pool), nn.Sequential(core.fc)
    raise ValueError(f"mixed-linear models know how to split 'small-cnn', 'mlp' and 'resnet18' cores, not {arch!r}; "
                     f"build the core with unlearnlib.models.model_for(data, 'small-cnn-leaky')")


class MixedLinear(nn.Module):
    """``f(x) = tail_{w_core}(z) + J_tail(z) w_user`` with ``z = trunk(x)``: linear in ``w_user``, non-linear in x.

    ``w_user`` is one flat parameter vector (the only trainable parameter); trunk and tail are frozen and always in
    eval mode, so that J(x) depends on x alone (a per-sample linear model). The model remembers which training
    samples are core (``core_idx``, never forgotten) and which user samples ``w_user`` currently encodes
    (``user_idx``, shrinking with every deletion), and the loss it was fitted with (``mu``, ``target_scale``).
    """

    def __init__(self, core: nn.Module, *, core_idx, user_idx, linearize: str = "head", mu: float = 1e-3,
                 target_scale: float = 1.0):
        super().__init__()
        trunk, tail = split_core(core, linearize)
        self.trunk, self.tail = trunk.requires_grad_(False).eval(), tail.requires_grad_(False).eval()
        self._names = [n for n, _ in self.tail.named_parameters()]
        self._shapes = [p.shape for _, p in self.tail.named_parameters()]
        d = sum(p.numel() for p in self.tail.parameters())
        like = next(self.tail.parameters())
        self.w_user = nn.Parameter(torch.zeros(d, device=like.device, dtype=like.dtype))
        self.core_idx = np.sort(np.asarray(core_idx, dtype=np.int64))
        self.user_idx = np.sort(np.asarray(user_idx, dtype=np.int64))
        if np.intersect1d(self.core_idx, self.user_idx).size:
            raise ValueError("core and user data overlap: a sample is either core (never forgotten) or user")
        self.linearize, self.mu, self.target_scale = linearize, float(mu), float(target_scale)
        self.unlearnlib_spec = {**getattr(core, "unlearnlib_spec", {}), "mixed_linear": linearize}
        self.trunk_key = _state_digest(self.trunk)

    # -- structure ------------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "MixedLinear":
        """Only the flag changes: trunk and tail stay in eval mode (frozen BatchNorm keeps the model linear)."""
        super().train(mode)
        self.trunk.eval()
        self.tail.eval()
        return self

    @property
    def num_user_weights(self) -> int:
        return self.w_user.numel()

    def as_tangent(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat vector laid out as the tail's parameters (views, so gradients flow back to ``v``)."""
        sizes = [int(np.prod(s)) for s in self._shapes]
        return {n: t.view(s) for n, t, s in zip(self._names, v.split(sizes), self._shapes)}

    def _tail_fn(self, z: torch.Tensor) -> tuple[Callable, dict]:
        w_core = {n: p for n, p in self.tail.named_parameters()}
        buffers = dict(self.tail.named_buffers())
        return (lambda params: functional_call(self.tail, {**params, **buffers}, (z,))), w_core

    # -- the model ------------------------------------------------------------------------------------------
    def head(self, z: torch.Tensor, w_user: torch.Tensor | None = None) -> torch.Tensor:
        """Mixed-linear output on trunk features ``z``: one forward and one JVP of the tail."""
        w = self.w_user if w_user is None else w_user
        fn, w_core = self._tail_fn(z)
        out, jv = jvp(fn, (w_core,), (self.as_tangent(w),))
        return out + jv

    def jvp(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``J(z) v`` alone (the part of the output that the user weights add)."""
        fn, w_core = self._tail_fn(z)
        return jvp(fn, (w_core,), (self.as_tangent(v),))[1]

    def jtj(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``sum_x J(x)^T J(x) v`` over the batch ``z`` (a Gauss-Newton product: one JVP and one VJP)."""
        fn, w_core = self._tail_fn(z)
        jv = jvp(fn, (w_core,), (self.as_tangent(v),))[1]
        _, pull = vjp(fn, w_core)
        grads = pull(jv)[0]
        return torch.cat([grads[n].reshape(-1) for n in self._names])

    def core_output(self, z: torch.Tensor) -> torch.Tensor:
        """``f_{w_core}``: the output with ``w_user = 0``."""
        return self.tail(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def _state_digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------------
# Cached trunk features: the trunk is frozen, so its output is computed once per dataset split and reused by every
# training epoch, Newton step and evaluation (work done ahead of any request, like SSD's precomputed importances).

_FEATURES: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
_MAX_CACHED = 2


def features(model: MixedLinear, data, split: str = "train", *, device="auto", batch_size: int = 1024) -> torch.Tensor:
    """Trunk outputs of every sample of ``split`` (on ``device``), computed once per trunk and dataset."""
    from ..training import batches

    device = resolve_device(device)
    key = (model.trunk_key, data.fingerprint(), data.variant, split, str(device), str(model.w_user.dtype))
    if key not in _FEATURES:
        model.to(device)
        n = len(data.split(split)[1])
        with torch.no_grad():
            parts = [model.trunk(x.to(model.w_user.dtype))
                     for x, _ in batches(data, np.arange(n), batch_size, split=split, device=device)]
        _FEATURES[key] = torch.cat(parts)
        while len(_FEATURES) > _MAX_CACHED:
            _FEATURES.popitem(last=False)
    _FEATURES.move_to_end(key)
    return _FEATURES[key]


def _targets(model: MixedLinear, data, idx: np.ndarray, device) -> torch.Tensor:
    y = data.y_train[torch.as_tensor(idx)]
    return model.target_scale * F.one_hot(y, data.num_classes).to(device, model.w_user.dtype)


def _chunks(idx: np.ndarray, size: int):
    for s in range(0, len(idx), size):
        yield idx[s:s + size]


# --------------------------------------------------------------------------------------------------------------
# The user loss, its exact gradient and Hessian-vector products


def data_loss(model: MixedLinear, data, idx, w_user: torch.Tensor | None = None, *, device="auto",
              batch_size: int = 2048) -> float:
    """Mean half squared error ``1/(2|idx|) sum ||f(x) - s*onehot(y)||^2`` on the training samples ``idx``."""
    device = resolve_device(device)
    w = model.w_user if w_user is None else w_user
    z_all, idx = features(model, data, device=device), np.asarray(idx)
    total = 0.0
    with torch.no_grad():
        for b in _chunks(idx, batch_size):
            total += 0.5 * (model.head(z_all[b], w) - _targets(model, data, b, device)).pow(2).sum().item()
    return total / max(len(idx), 1)


def user_loss(model: MixedLinear, data, idx, w_user: torch.Tensor | None = None, *, device="auto") -> float:
    """``L(w_user)`` on ``idx`` (eq. 8): :func:`data_loss` plus ``mu/2 ||w_user||^2``."""
    w = model.w_user if w_user is None else w_user
    return data_loss(model, data, idx, w, device=device) + 0.5 * model.mu * w.detach().pow(2).sum().item()


def user_gradient(model: MixedLinear, data, idx, w_user: torch.Tensor | None = None, *, device="auto",
                  batch_size: int = 2048) -> torch.Tensor:
    """The exact gradient of ``L`` on ``idx`` at ``w_user``: ``J^T (f(x) - y) / |idx| + mu w`` over a full pass."""
    device = resolve_device(device)
    w = (model.w_user if w_user is None else w_user).detach()
    z_all, idx = features(model, data, device=device), np.asarray(idx)
    grad = torch.zeros_like(w)
    for b in _chunks(idx, batch_size):
        wb = w.clone().requires_grad_(True)
        loss = 0.5 * (model.head(z_all[b], wb) - _targets(model, data, b, device)).pow(2).sum()
        grad += torch.autograd.grad(loss, wb)[0]
    return grad / len(idx) + model.mu * w


def hessian_vector(model: MixedLinear, data, idx, v: torch.Tensor, *, device="auto",
                   batch_size: int = 2048) -> torch.Tensor:
    """``H v = J^T J v / |idx| + mu v``, the Hessian of ``L`` on ``idx`` times ``v``, over a full pass."""
    device = resolve_device(device)
    z_all, idx = features(model, data, device=device), np.asarray(idx)
    out = torch.zeros_like(v)
    with torch.no_grad():
        for b in _chunks(idx, batch_size):
            out += model.jtj(z_all[b], v)
    return out / len(idx) + model.mu * v


def largest_curvature(model: MixedLinear, data, idx, *, device="auto", batch_size: int = 1024, iters: int = 20,
                      seed: int = 0) -> float:
    """The largest eigenvalue of ``J^T J / B + mu I`` on one random batch of ``idx``, by power iteration: the
    curvature that bounds a stable SGD step size on the quadratic (``lr = 1/L``)."""
    device = resolve_device(device)
    rng = np.random.default_rng(seed)
    idx = np.asarray(idx)
    b = rng.choice(idx, size=min(batch_size, len(idx)), replace=False)
    z = features(model, data, device=device)[b]
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(model.num_user_weights, generator=gen).to(device, model.w_user.dtype)
    lam = 0.0
    with torch.no_grad():
        for _ in range(iters):
            v = v / v.norm()
            hv = model.jtj(z, v) / len(b) + model.mu * v
            lam = float(v @ hv)
            v = hv
    return lam


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, *, tol: float = 1e-6,
                       max_iter: int = 500, x0: torch.Tensor | None = None, scale: float | None = None,
                       progress: bool = False, desc: str = "CG") -> tuple[torch.Tensor, dict]:
    """Solve ``A x = b`` for symmetric positive definite ``A`` given as ``matvec``; stop when
    ``||A x - b|| <= tol * scale``, with ``scale = ||b||`` unless given. Returns ``x`` and ``{"iterations",
    "relative_residual"}`` (the residual divided by ``scale``).

    ``scale`` lets two solves stop at the same *absolute* accuracy: the Newton step of a forget request has a right-
    hand side far smaller than retraining's, and a tolerance relative to it asks for a far more accurate answer
    (:func:`newton_step` passes retraining's scale)."""
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - matvec(x) if x0 is not None else b.clone()
    p, rs = r.clone(), r @ r
    b_norm = (b.norm() if scale is None else torch.as_tensor(float(scale), dtype=b.dtype, device=b.device))
    b_norm = b_norm.clamp_min(1e-30)
    it = 0
    bar = tqdm(total=max_iter, desc=desc, disable=not progress, leave=False, mininterval=2.0)
    while it < max_iter and rs.sqrt() > tol * b_norm:
        ap = matvec(p)
        alpha = rs / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rs_new = r @ r
        p = r + (rs_new / rs) * p
        rs = rs_new
        it += 1
        bar.update()
        bar.set_postfix(residual=f"{(rs.sqrt() / b_norm).item():.1e}")
    bar.close()
    return x, {"iterations": it, "relative_residual": float(rs.sqrt() / b_norm)}


# --------------------------------------------------------------------------------------------------------------
# Training the user weights (eq. 8) and the Newton step (eqs. 9-12)


def train_user_weights(model: MixedLinear, data, idx, *, epochs: int = 50, batch_size: int = 256,
                       lr: float | None = None, momentum: float = 0.9, seed: int = 0, device="auto",
                       progress: bool = True, desc: str = "user weights") -> MixedLinear:
    """Fit ``w_user`` from zero on the training samples ``idx`` by SGD with momentum and a cosine-annealed step
    (the paper: SGD, annealed learning rate, 50 epochs). ``lr=None`` uses ``1/L`` (:func:`largest_curvature`)."""
    device = resolve_device(device)
    model.to(device)
    idx = np.asarray(idx)
    z_all = features(model, data, device=device)
    if lr is None:
        lr = 1.0 / largest_curvature(model, data, idx, device=device, seed=seed)
    with torch.no_grad():
        model.w_user.zero_()
    set_seed(seed)
    opt = torch.optim.SGD([model.w_user], lr=lr, momentum=momentum)
    steps = epochs * int(np.ceil(len(idx) / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    rng = np.random.default_rng(seed)
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False, mininterval=2.0)
    for _ in range(epochs):
        for b in _chunks(rng.permutation(idx), batch_size):
            opt.zero_grad(set_to_none=True)
            loss = 0.5 * (model.head(z_all[b]) - _targets(model, data, b, device)).pow(2).sum(1).mean()
            (loss + 0.5 * model.mu * model.w_user.pow(2).sum()).backward()
            opt.step()
            sched.step()
            bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.user_idx = np.sort(idx)
    return model


def solve_user_weights(model: MixedLinear, data, idx, *, tol: float = 1e-6, max_iter: int = 1000, device="auto",
                       progress: bool = True) -> tuple[MixedLinear, dict]:
    """The exact optimum of ``L`` on ``idx``, from ``w_user = 0``, by conjugate gradient:
    ``H w = J^T (y - f_core) / |idx|``. This is "retraining" the user weights to numerical precision."""
    device = resolve_device(device)
    model.to(device)
    idx = np.asarray(idx)
    zero = torch.zeros_like(model.w_user.detach())
    rhs = -user_gradient(model, data, idx, zero, device=device)  # gradient at 0 is J^T (f_core - y) / n
    w, info = conjugate_gradient(lambda v: hessian_vector(model, data, idx, v, device=device), rhs, tol=tol,
                                 max_iter=max_iter, progress=progress, desc="CG retrain")
    with torch.no_grad():
        model.w_user.copy_(w)
    model.user_idx = np.sort(idx)
    return model, info


def newton_step(model: MixedLinear, data, remaining, *, solver: str = "sgd", epochs: int = 3, batch_size: int = 256,
                lr: float | None = None, momentum: float = 0.9, anneal: bool = False, cg_tol: float = 1e-6,
                cg_max_iter: int = 1000, seed: int = 0, device="auto",
                progress: bool = False) -> tuple[torch.Tensor, dict]:
    """The step ``v ~ H^{-1} g`` with ``g`` the exact gradient of ``L`` on ``remaining`` at the current weights.

    ``solver="sgd"`` (the paper, eqs. 11-12): minimise ``1/2 v^T H v - g^T v`` for ``epochs`` passes over
    ``remaining``, with the ``v^T H v`` term estimated on mini-batches (``||J_B v||^2 / |B| + mu ||v||^2``) and ``g``
    computed once, exactly. The step size is constant by default. With a constant step the mini-batch noise of the
    Hessian term leaves the solution at a noise floor that more epochs do not lower; ``anneal=True`` cosine-anneals
    the step to 0 over the run (as :func:`train_user_weights` does) and keeps converging. We keep the constant step
    as the default because the paper's operating point is 2-3 epochs, far from the floor, where annealing halves the
    average step and lands further from the exact step (``tests/test_mixed_privacy.py`` measures both).
    ``solver="cg"``: conjugate gradient with full-batch Hessian-vector products. It stops at the accuracy that
    retraining with the same ``cg_tol`` reaches: the new weights ``w - v`` solve retraining's system
    ``H w' = J^T (y - f_core) / |D_r|`` with residual ``||H v - g||``, so the step stops when that residual is
    ``cg_tol`` times the norm of retraining's right-hand side (one more gradient pass), not ``cg_tol`` times the far
    smaller ``||g||``. ``relative_residual`` is on that scale, comparable with :func:`solve_user_weights`'.
    Returns ``v`` and what the solver did.
    """
    device = resolve_device(device)
    remaining = np.asarray(remaining)
    g = user_gradient(model, data, remaining, device=device)
    if solver == "cg":
        zero = torch.zeros_like(model.w_user.detach())
        scale = float(user_gradient(model, data, remaining, zero, device=device).norm())
        v, info = conjugate_gradient(lambda u: hessian_vector(model, data, remaining, u, device=device), g,
                                     tol=cg_tol, max_iter=cg_max_iter, scale=scale, progress=progress,
                                     desc="CG Newton step")
        return v, {"solver": "cg", "cg_iterations": info["iterations"],
                   "relative_residual": info["relative_residual"], "residual_scale": "retraining's right-hand side",
                   "passes": 2 + info["iterations"]}
    if solver != "sgd":
        raise ValueError(f"solver must be 'sgd' (the paper's) or 'cg' (exact), not {solver!r}")
    if lr is None:
        lr = 1.0 / largest_curvature(model, data, remaining, device=device, seed=seed)
    z_all = features(model, data, device=device)
    v = torch.zeros_like(g, requires_grad=True)
    opt = torch.optim.SGD([v], lr=lr, momentum=momentum)
    steps = epochs * int(np.ceil(len(remaining) / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1)) if anneal else None
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for b in _chunks(rng.permutation(remaining), batch_size):
            opt.zero_grad(set_to_none=True)
            jv = model.jvp(z_all[b], v)
            aux = 0.5 * jv.pow(2).sum(1).mean() + 0.5 * model.mu * v.pow(2).sum() - g @ v
            aux.backward()
            opt.step()
            if sched is not None:
                sched.step()
    return v.detach(), {"solver": "sgd", "epochs": epochs, "lr": lr, "anneal": anneal, "passes": 1 + epochs}


# --------------------------------------------------------------------------------------------------------------
# Building the mixed-linear model


def core_split(data, fraction: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A class-stratified random ``fraction`` of the training split (without its validation split, on which no
    model trains) as core data; the rest is user data."""
    if not 0 < fraction < 1:
        raise ValueError(f"core fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    pool = data.train_idx
    y = data.y_train.numpy()[pool]
    core = np.concatenate([rng.choice(pool[y == c], int(round(fraction * (y == c).sum())), replace=False)
                           for c in range(data.num_classes)])
    core = np.sort(core)
    return core, np.setdiff1d(pool, core)


def fit_mixed_linear(core: nn.Module, data, core_idx, user_idx, *, linearize: str = "head", mu: float = 1e-3,
                     target_scale: float = 1.0, epochs: int = 50, batch_size: int = 256, lr: float | None = None,
                     seed: int = 0, device="auto", progress: bool = True) -> MixedLinear:
    """The mixed-linear model of ``core`` with ``w_user`` trained on ``user_idx`` (eq. 8). The seconds spent on
    ``w_user`` (after the trunk features are cached) are in ``model.train_seconds``: what "retraining" costs."""
    device = resolve_device(device)
    model = MixedLinear(core, core_idx=core_idx, user_idx=user_idx, linearize=linearize, mu=mu,
                        target_scale=target_scale).to(device)
    features(model, data, device=device)
    features(model, data, "test", device=device)
    start = time.perf_counter()
    train_user_weights(model, data, user_idx, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                       device=device, progress=progress)
    model.train_seconds = time.perf_counter() - start
    return model.eval()


# --------------------------------------------------------------------------------------------------------------
# Readouts specific to this model


def information_proxy(w_pre_noise: torch.Tensor, w_optimum: torch.Tensor, sigma: float) -> float:
    """``||w_pre - w*||^2 / (2 sigma^2)`` in nats: the KL divergence between the noisy scrubbed weights
    ``N(w_pre, sigma^2 I)`` and the noisy exact optimum ``N(w*, sigma^2 I)``. Our proxy for the remaining
    information, not the paper's bound (Theorem 1, whose constants are in the appendix)."""
    return float((w_pre_noise - w_optimum).pow(2).sum() / (2 * sigma ** 2))


def relearn_steps(model: MixedLinear, data, forget_idx, retain_idx, *, threshold: float, lr: float = 0.1,
                  momentum: float = 0.0, max_steps: int = 200, seed: int = 0, device="auto") -> int:
    """Steps of full-batch gradient descent on ``L`` over D_f plus as many samples of D_r until the loss on D_f
    falls to ``threshold``; ``max_steps`` if it never does. Fewer steps mean that more information about D_f was
    left in the weights (the paper's re-learn time readout).

    ``momentum`` > 0 uses Nesterov momentum, which on this quadratic reaches a threshold in far fewer steps than
    plain descent at the same stable step ``lr = 1/L``. Choose ``threshold`` between the original model's loss on
    D_f (reached only in the limit) and the paragon's, e.g. half way, so that every model can reach it within the
    cap and the count measures something.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    device = resolve_device(device)
    work = copy.deepcopy(model).to(device)
    rng = np.random.default_rng(seed)
    forget_idx = np.asarray(forget_idx)
    subset = np.concatenate([forget_idx, rng.choice(np.asarray(retain_idx), len(forget_idx), replace=False)])
    opt = torch.optim.SGD([work.w_user], lr=lr, momentum=momentum, nesterov=momentum > 0)
    for step in range(max_steps):
        if data_loss(work, data, forget_idx, device=device) <= threshold:
            return step
        work.w_user.grad = user_gradient(work, data, subset, device=device)
        opt.step()
    return max_steps


# --------------------------------------------------------------------------------------------------------------
# The registered methods


def _checked_forget(model: nn.Module, task, method: str) -> np.ndarray:
    if not isinstance(model, MixedLinear):
        raise TypeError(f"{method!r} unlearns a MixedLinear model (core weights + linear user weights), got "
                        f"{type(model).__name__}. Build one with unlearnlib.methods.mixed_privacy.fit_mixed_linear"
                        f"(core_model, data, core_idx, user_idx).")
    forget = np.asarray(task.forget_idx)
    in_core = np.intersect1d(forget, model.core_idx)
    if in_core.size:
        raise ValueError(f"{in_core.size} of the {forget.size} samples to forget are core data (e.g. training index "
                         f"{int(in_core[0])}), which the mixed-linear model never forgets: core data are in w_core. "
                         f"Forget only user samples (model.user_idx), or retrain the core without them.")
    gone = np.setdiff1d(forget, model.user_idx)
    if gone.size:
        raise ValueError(f"{gone.size} of the samples to forget (e.g. training index {int(gone[0])}) are not in the "
                         f"user data this model encodes: they were forgotten before or never trained on.")
    return forget


@register("ml-forgetting", paper="Golatkar et al., Mixed-Privacy Forgetting in Deep Networks, CVPR 2021")
def ml_forgetting(model: nn.Module, task, *, seed: int = 0, device="cpu", sigma: float = 1e-3, solver: str = "sgd",
                  epochs: int = 3, batch_size: int = 256, lr: float | None = None, momentum: float = 0.9,
                  anneal: bool = False, cg_tol: float = 1e-6, cg_max_iter: int = 1000,
                  noise_seed: int | None = None) -> nn.Module:
    """Newton step of the user weights to the optimum on the remaining user data, then Gaussian noise (std sigma).

    ``solver="sgd"`` is the paper's (``epochs`` passes of SGD on the auxiliary quadratic, exact residual gradient);
    ``"cg"`` solves the step exactly. The weights before the noise are kept in ``model.pre_noise`` (for the
    information proxy); ``model.user_idx`` loses the forgotten samples, so requests can follow one another.

    The noise hides what the inexact step leaves of the forgotten data, so nobody may be able to regenerate it: by
    default its generator is seeded from fresh operating-system entropy, a new seed on every call, whatever
    ``seed`` is (``seed`` only orders the solver's mini-batches). The generator is torch's Mersenne Twister, which
    is not cryptographically secure (:func:`~unlearnlib.training.noise_generator`): a deployment that needs
    unpredictable noise should draw it from a cryptographic generator. Pass ``noise_seed`` to make it reproducible,
    for figures and tests only: anyone who knows that seed can subtract the noise again.
    """
    forget = _checked_forget(model, task, "ml-forgetting")
    remaining = np.setdiff1d(model.user_idx, forget)
    if remaining.size == 0:
        raise ValueError("the request forgets every user sample: use the 'ml-zero' method (w_user = 0)")
    v, info = newton_step(model, task.data, remaining, solver=solver, epochs=epochs, batch_size=batch_size, lr=lr,
                          momentum=momentum, anneal=anneal, cg_tol=cg_tol, cg_max_iter=cg_max_iter, seed=seed,
                          device=device)
    gen, noise_source = noise_generator(noise_seed)
    noise = torch.randn(model.num_user_weights, generator=gen).to(model.w_user.device, model.w_user.dtype)
    with torch.no_grad():
        model.w_user -= v
        model.pre_noise = model.w_user.detach().clone()
        model.w_user += sigma * noise
    model.user_idx = remaining
    model.unlearn_info = {**info, "sigma": sigma, "noise": noise_source}
    return model


@register("ml-zero", paper="Golatkar et al., Mixed-Privacy Forgetting in Deep Networks, CVPR 2021")
def ml_zero(model: nn.Module, task, *, seed: int = 0, device="cpu") -> nn.Module:
    """Forget every user sample at once: ``w_user = 0`` leaves exactly the core model."""
    _checked_forget(model, task, "ml-zero")
    with torch.no_grad():
        model.w_user.zero_()
    model.user_idx = np.array([], dtype=np.int64)
    return model


@register("ml-retrain", paper="Golatkar et al., Mixed-Privacy Forgetting in Deep Networks, CVPR 2021")
def ml_retrain(model: nn.Module, task, *, seed: int = 0, device="cpu", solver: str = "cg", epochs: int = 50,
               batch_size: int = 256, lr: float | None = None, cg_tol: float = 1e-6,
               cg_max_iter: int = 1000) -> nn.Module:
    """The paragon: the user weights re-solved from zero on the remaining user data, with the same core.

    ``solver="cg"`` solves to ``cg_tol`` (exact retraining); ``"sgd"`` repeats the original training recipe
    (``epochs`` of annealed SGD), the cost that forgetting is compared with.
    """
    forget = _checked_forget(model, task, "ml-retrain")
    remaining = np.setdiff1d(model.user_idx, forget)
    if solver == "cg":
        _, info = solve_user_weights(model, task.data, remaining, tol=cg_tol, max_iter=cg_max_iter, device=device,
                                     progress=False)
        model.unlearn_info = {"solver": "cg", "cg_iterations": info["iterations"],
                              "relative_residual": info["relative_residual"]}
    elif solver == "sgd":
        train_user_weights(model, task.data, remaining, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                           device=device, progress=False)
        model.unlearn_info = {"solver": "sgd", "epochs": epochs}
    else:
        raise ValueError(f"solver must be 'cg' or 'sgd', not {solver!r}")
    return model
