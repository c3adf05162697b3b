"""The method registry's machinery: ``register``, the registry itself, the timed ``unlearn`` call and the helpers a
step-loop method uses to report divergence. :mod:`unlearnlib.methods` re-exports all of it and imports every
method module, each of which registers itself from here (so no method module imports the package that imports it).
"""
from __future__ import annotations

import copy
import functools
import inspect
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..models import check_compatible
from ..training import resolve_device


@dataclass
class MethodInfo:
    name: str
    function: Callable[..., nn.Module]
    paper: str
    summary: str

    @property
    def hyperparameters(self) -> dict:
        """Hyperparameter names and defaults (everything after ``model, task`` except ``seed``/``device``)."""
        sig = inspect.signature(inspect.unwrap(self.function))
        return {n: p.default for n, p in list(sig.parameters.items())[2:] if n not in ("seed", "device")}


REGISTRY: dict[str, MethodInfo] = {}

#: hyperparameters that count passes over data or optimisation rounds: what :func:`cap_passes` caps
PASS_HYPERPARAMETERS = ("epochs", "max_epochs", "max_passes", "noise_steps", "noise_batches")
_pass_cap: int | None = None


def cap_passes(cap: int | None) -> None:
    """Cap every method's passes (:data:`PASS_HYPERPARAMETERS`, given or default) at ``cap`` from now on; ``None``
    lifts the cap. Only for code checks (the ``paper-smoke`` profile sets ``Profile.pass_cap``): a capped run is
    a shape check whose numbers mean nothing, and its ``unlearn_info`` says ``pass_cap``."""
    global _pass_cap
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ValueError(f"the pass cap must be a whole number >= 1 or None, got {cap!r}")
    _pass_cap = cap


def _capped(fn: Callable, hp: dict) -> dict:
    """``hp`` with every pass count (given, or the method's default) lowered to the cap, when one is set."""
    if _pass_cap is None:
        return hp
    defaults = {n: p.default for n, p in inspect.signature(fn).parameters.items()}
    out = dict(hp)
    for name in PASS_HYPERPARAMETERS:
        value = hp.get(name, defaults.get(name))
        if name in defaults and isinstance(value, int) and not isinstance(value, bool) and value > _pass_cap:
            out[name] = _pass_cap
    return out


def register(name: str, *, paper: str = "") -> Callable:
    """Decorator: register ``fn(model, task, *, seed, device, **hp)`` under ``name``.

    The wrapper checks the model against the task, validates hyperparameter names, deep-copies the model, resolves
    the device and returns the method's model in eval mode.
    """

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        sig = inspect.signature(fn)
        accepted = [n for n in list(sig.parameters)[2:]]

        @functools.wraps(fn)
        def wrapper(model: nn.Module, task, *, seed: int = 0, device: str | torch.device = "auto", **hp):
            unknown = sorted(set(hp) - set(accepted))
            if unknown:
                raise TypeError(f"method {name!r} got unknown hyperparameter(s) {unknown}; accepted: "
                                f"{', '.join(a for a in accepted if a not in ('seed', 'device'))}")
            check_compatible(model, task.data)
            device = resolve_device(device)
            work = copy.deepcopy(model).to(device)
            out = fn(work, task, seed=seed, device=device, **_capped(fn, hp))
            if _pass_cap is not None:
                out.unlearn_info = {**getattr(out, "unlearn_info", {}), "pass_cap": _pass_cap}
            return out.eval()

        if name in REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        doc = inspect.getdoc(fn) or ""
        REGISTRY[name] = MethodInfo(name, wrapper, paper, doc.splitlines()[0] if doc else "")
        return wrapper

    return decorate


def get_method(name: str) -> Callable[..., nn.Module]:
    """The registered method ``name``; a clear error lists the available ones otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name].function


def available_methods() -> list[str]:
    return sorted(REGISTRY)


def report_divergence(model: nn.Module, step: int | None, reason: str = "non-finite loss") -> nn.Module:
    """Mark ``model`` as diverged (in ``model.unlearn_info``: ``diverged=True``, the ``step`` and the ``reason``) and
    return it. A step-loop method calls this at the first non-finite loss or output and stops there: its run is
    then reported as diverged, never scored (see :mod:`unlearnlib.metrics`)."""
    model.unlearn_info = {**getattr(model, "unlearn_info", {}), "diverged": True, "diverged_step": step,
                          "diverged_reason": reason}
    return model


def not_finite(*tensors: torch.Tensor) -> bool:
    """True when any of ``tensors`` holds a NaN or an infinity (the test a step loop makes on its loss/outputs)."""
    return any(not bool(torch.isfinite(t).all()) for t in tensors)


@dataclass
class UnlearnResult:
    """The unlearned model, the wall-clock seconds of the call, and what the method reported about its run
    (``model.unlearn_info``, e.g. the steps L2UL took; empty for most methods)."""

    model: nn.Module
    seconds: float
    info: dict = field(default_factory=dict)


def unlearn(name: str, model: nn.Module, task, *, seed: int = 0, device: str | torch.device = "auto",
            **hyperparameters) -> UnlearnResult:
    """Run method ``name`` and time it (wall clock, CUDA synchronised)."""
    fn = get_method(name)
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    new = fn(model, task, seed=seed, device=dev, **hyperparameters)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return UnlearnResult(new, seconds, dict(getattr(new, "unlearn_info", {})))


def diverged(result: UnlearnResult) -> bool:
    """Whether the method reported that its run diverged (:func:`report_divergence`)."""
    return bool(result.info.get("diverged", False))
