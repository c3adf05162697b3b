"""The method registry: every unlearning method behind one signature.

    new_model = method(model, task, *, seed=0, device="auto", **hyperparameters)

A model and a :class:`~unlearnlib.tasks.ForgetTask` go in, a new model comes out, and the input model is left
untouched (the registry hands the method a private deep copy). A method may report facts about its run (steps
taken, success) in a dict ``model.unlearn_info``; :func:`unlearn` returns it as ``UnlearnResult.info``.
Hyperparameters are keyword arguments with defaults; an unknown one is an error that lists the accepted ones. Use
:func:`unlearn` to also time the call.

Register a method with ``@register("name", paper="...")`` in its own module and import that module below.
"""
from __future__ import annotations

from .registry import (  # noqa: F401 (the registry's public API, re-exported)
    MethodInfo, cap_passes, register, get_method, available_methods, report_divergence, not_finite, UnlearnResult,
    unlearn, diverged, REGISTRY, PASS_HYPERPARAMETERS)

from . import baselines  # noqa: E402,F401  (registers the baselines)
from . import ssd  # noqa: E402,F401  (SSD and LFSSD)
from . import classlevel  # noqa: E402,F401  (Singh et al., reconstructed)
from . import l2ul  # noqa: E402,F401  (Cha et al., instance-wise unlearning)
from . import mixed_privacy  # noqa: E402,F401  (Golatkar et al., ML-Forgetting)
from . import rem  # noqa: E402,F401  (Schoepf et al., REM)
