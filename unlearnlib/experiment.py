"""The experiment loop every chapter shares: for each seed, get the original and retrain models from the cache,
run each method on the original, and evaluate everything against the retrain reference.

Seed scope: the seed fixes the training of the original and retrain models *and* the unlearning run, so the
spread over seeds covers both (independent training runs, as Lanyon et al. 2025 recommend).

The evaluation protocol (see the foundations chapter, "How the book chooses hyperparameters"):

- original and retrain models train on D = D_f + D_r, never on the validation split (``data.val_idx``);
- :func:`tune` chooses hyperparameters on a *tuning request* (another class, subset, pool or corruption draw) and a
  *tuning seed*, neither of which is reported, scoring each setting on the validation split against that request's
  own retrain model, with the same number of settings for every method; the test split is removed from what it
  sees (:meth:`~unlearnlib.tasks.ForgetTask.sealed`);
- :func:`run_methods` reports, on the test split, the reported requests and seeds with the chosen settings;
- :func:`tune_custom` applies :func:`tune`'s selection rules (equal budget, ties, grid extensions, diverged settings)
  to a chapter's own models and score, where :func:`tune` cannot build them (the mixed-privacy chapter's paragon).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from ._progress import tqdm

from .methods import unlearn
from .metrics import (QUICK_METRICS, Outputs, diverged_record, evaluate, quick_evaluate, retrain_gap,
                      task_outputs, validation_evaluate)
# tuning: what a finite record holds, the divergence flag, and the fields a method's own report must not overwrite
from .metrics import DIVERGENCE_FIELDS, FINITE, is_diverged
from .profiles import Profile
from .provenance import tuning_fingerprints
from .tasks import ForgetTask, draw_per_class, few_shot as tasks_few_shot
from .training import TrainedModel, accuracy, train_or_load


@dataclass
class References:
    """The two models every method is compared with, for one seed (``retrain`` is None when it was not asked
    for)."""

    original: TrainedModel
    retrain: TrainedModel | None


def reference_models(task: ForgetTask, profile: Profile, seed: int, *, device="auto",
                     progress: bool = True, retrain: bool = True) -> References:
    """The original model (trained on D = D_f + D_r, the training split without the validation split) and the
    retrain-from-scratch model (trained on D_r), both with the profile's recipe and ``seed``; trained once, then loaded from the cache.
    ``retrain=False`` skips the retrain model (for sweeps over many small requests, each of which would need its
    own)."""
    recipe = profile.recipe_for(task.data.name)
    original = train_or_load(task.data, task.train_idx, profile.arch, recipe, seed=seed, role="original",
                             device=device, progress=progress)
    if not retrain:
        return References(original, None)
    retrained = train_or_load(task.data, task.retain_idx, profile.arch, recipe, seed=seed, role="retrain",
                              device=device, progress=progress)
    return References(original, retrained)


@dataclass(frozen=True)
class Setting:
    """A method run under a label of its own, so that one method can appear twice in a comparison (e.g. SSD with and
    without a precomputed importance). ``per_seed(refs)`` returns hyperparameters that depend on the seed's models
    (computed before the timed call, as work done ahead of the forget request). ``view(task, seed)`` returns the
    task the *method* sees, e.g. a sample budget (``lambda t, s: tasks.few_shot(t, 10, seed=s)``); the model it
    returns is still evaluated on the full task."""

    method: str
    hparams: Mapping = field(default_factory=dict)
    per_seed: Callable[[References], dict] | None = None
    view: Callable[[ForgetTask, int], ForgetTask] | None = None


def _resolve(label: str, spec) -> Setting:
    return spec if isinstance(spec, Setting) else Setting(label, dict(spec))


@dataclass
class _Seeded:
    """The references of one seed, with the retrain model's outputs computed once and the kernels warmed up."""

    refs: References
    ref_out: Outputs | None


def _prepare(task: ForgetTask, profile: Profile, seed: int, device, progress: bool,
             retrain: bool = True) -> _Seeded:
    refs = reference_models(task, profile, seed, device=device, progress=progress, retrain=retrain)
    ref_out = task_outputs(refs.retrain.model, task, device=device) if retrain else None
    _warm_up(refs.original.model, task, device)
    return _Seeded(refs, ref_out)


def _score(model, task: ForgetTask, profile: Profile, seed: int, device, quick: bool | str,
           reference: Outputs | None) -> dict:
    """:func:`evaluate`, or :func:`quick_evaluate` when ``quick`` (with D_r's accuracy when ``quick="retain"``)."""
    if quick:
        return quick_evaluate(model, task, device=device, retain=quick == "retain",
                              collapse_guard=profile.collapse_guard)
    return evaluate(model, task, reference=reference, seed=seed, device=device,
                    svc_max_samples=profile.svc_max_samples, collapse_guard=profile.collapse_guard)


def _run_one(name: str, hp: dict, ctx: _Seeded, task: ForgetTask, profile: Profile, seed: int,
             device, *, seen: ForgetTask | None = None, quick: bool | str = False) -> tuple[dict, float, str]:
    """Metrics, seconds and the source of the time for one method run on the original model of ``ctx``; the method
    sees ``seen`` (default: ``task``) and is evaluated on ``task`` (see :func:`_score`). What the method reports
    about its run (``UnlearnResult.info``) joins the metrics."""
    refs = ctx.refs
    info = {}
    if name == "original":
        model, seconds, source = refs.original.model, 0.0, "none"
    elif name == "retrain":  # already evaluated outputs; its time is that of training it from scratch
        if ctx.ref_out is None:
            raise ValueError("method 'retrain' was asked for with retrain=False; drop it or pass retrain=True")
        model, seconds = ctx.ref_out, refs.retrain.train_seconds
        source = "cache" if refs.retrain.cached else "measured"
    else:
        result = unlearn(name, refs.original.model, task if seen is None else seen, seed=seed, device=device, **hp)
        # a method that stopped at a non-finite loss or output gives a diverged record, never a score
        rec = _evaluated(result, lambda m: _score(m, task, profile, seed, device, quick, ctx.ref_out),
                         _score_keys(task, quick, ctx.ref_out is not None))
        return with_run_info(rec, result.info), result.seconds, "measured"
    return with_run_info(_score(model, task, profile, seed, device, quick, ctx.ref_out), info), seconds, source


def unlearned_model(setting: Setting, refs: References, task: ForgetTask, *, seed: int, device="auto"):
    """The model that ``setting`` gives for one seed, with its seconds and what the method reported (plain values
    only): the original itself (0 s), the retrain model (its training time), or the method run on the original.
    For evaluations that read a model's outputs themselves (e.g. :mod:`unlearnlib.ulira`)."""
    if setting.method == "original":
        return refs.original.model, 0.0, {}
    if setting.method == "retrain":
        if refs.retrain is None:
            raise ValueError("method 'retrain' was asked for, but the references hold no retrain model")
        return refs.retrain.model, refs.retrain.train_seconds, {}
    result = unlearn(setting.method, refs.original.model, task, seed=seed, device=device, **setting.hparams)
    info = {k: v for k, v in result.info.items() if v is None or isinstance(v, (int, float, str, bool))}
    return result.model, result.seconds, info


def with_run_info(record: Mapping, info: Mapping) -> dict:
    """``record`` (an evaluation's metrics) joined by what the method reports about its run (``info``: steps, success,
    its own ``diverged: False``...). A record that the evaluation left unscored (a diverged or collapsed model) keeps
    its divergence fields: the method's report that its loss stayed finite must not make a collapsed model look
    scored."""
    merged = {**record, **info}
    if is_diverged(record):
        merged.update({k: record[k] for k in DIVERGENCE_FIELDS if k in record})
    return merged


def _score_keys(task: ForgetTask, quick: bool | str, reference: bool) -> list[str]:
    """The metric fields :func:`_score` would return (what a diverged record fills with NaN)."""
    from .metrics import _metric_keys

    return _metric_keys(task, reference=reference and not quick, quick=bool(quick), retain=quick == "retain")


def _per_seed_objects(hp: Mapping, setting: Setting) -> str | None:
    """The names of what ``per_seed`` added that is not a plain value (e.g. a precomputed importance)."""
    extra = [k for k, v in hp.items() if k not in setting.hparams and not isinstance(v, (int, float, str, bool))]
    return ",".join(sorted(extra)) or None


def _recorded_hparams(hp: Mapping, setting: Setting) -> str:
    """The hyperparameters a record keeps, as JSON: the setting's own and plain per-seed values; an object that
    ``per_seed`` computed from the seed's models is only named (:func:`_per_seed_objects`), so that a rerun of the
    same setting is recognised as the same (comparison.gather matches on this field)."""
    objects = set((_per_seed_objects(hp, setting) or "").split(","))
    return json.dumps({k: v for k, v in hp.items() if k not in objects}, default=str)


def run_methods(task: ForgetTask, profile: Profile, methods: Mapping[str, Mapping | Setting], *,
                seeds: Sequence[int], task_label: str | None = None, device="auto",
                progress: bool = True, quick: bool | str = False, retrain: bool = True) -> list[dict]:
    """Evaluate ``methods`` ({name: hyperparameters} or {label: Setting}) on ``task`` for each seed; returns one
    record per run, whose ``method`` is the label and ``algorithm`` the registered method.

    ``"original"`` and ``"retrain"`` use the cached models; the retrain row's ``seconds`` is the measured time of
    training it from scratch (stored in its checkpoint with the hardware it ran on), so it can be set against each
    method's time. A Setting's ``view`` decides what the method sees (its ``budget`` column records the samples
    per class when the view is a :func:`~unlearnlib.tasks.few_shot` budget). ``quick`` evaluates with
    :func:`~unlearnlib.metrics.quick_evaluate` (three accuracies; ``quick="retain"`` adds the accuracy on D_r) instead
    of every metric. ``retrain=False`` neither trains nor loads the retrain model (no ``"retrain"`` row, no
    activation distance); every record still carries ``original_train_seconds``, what retraining would roughly cost.
    """
    label = task_label or task.describe()
    records = []
    runs = [(s, m) for s in seeds for m in methods]
    bar = tqdm(runs, desc=f"methods on {label}", disable=not progress, leave=False)
    ctx, ctx_seed = None, None
    for seed, name in bar:
        bar.set_postfix(seed=seed, method=name)
        if ctx_seed != seed:
            ctx, ctx_seed = _prepare(task, profile, seed, device, progress, retrain), seed
        setting = _resolve(name, methods[name])
        hp = {**setting.hparams, **(setting.per_seed(ctx.refs) if setting.per_seed else {})}
        seen = setting.view(task, seed) if setting.view else None
        rec, seconds, source = _run_one(setting.method, hp, ctx, task, profile, seed, device, seen=seen, quick=quick)
        budget = seen.params.get("per_class") if seen is not None else None
        records.append({"task": label, "task_kind": task.kind, "method": name, "algorithm": setting.method,
                        "seed": seed, **rec, "budget": budget,
                        "samples_seen": len(seen.data.y_train) if seen is not None else None,
                        "seconds": seconds, "time_source": source,
                        "original_train_seconds": ctx.refs.original.train_seconds,
                        "dataset_variant": task.data.variant,
                        "hparams": _recorded_hparams(hp, setting), "per_seed": _per_seed_objects(hp, setting)})
    return records


def run_continual(requests: Sequence[ForgetTask], profile: Profile, methods: Mapping[str, Mapping | Setting], *,
                  seed: int, device="auto", progress: bool = True, retain: bool = False) -> list[dict]:
    """Serve a sequence of deletion requests one after the other: each method starts from the original model of
    ``seed`` and unlearns request j from the model it returned for request j - 1.

    After every request (and once before the first, ``request`` 0) the record holds the accuracy on everything
    forgotten so far (``forget_acc``), on the latest request (``request_acc``), on the test set (``test_acc``) and,
    with ``retain=True``, on the training samples not forgotten so far (``retain_acc``), plus the seconds of that
    request and what the method reported (e.g. its steps). A method that reports divergence serves no later request:
    that request's record and every later one are diverged (NaN metrics), never scored.
    """
    from .tasks import instances

    if not requests:
        raise ValueError("run_continual needs at least one request")
    data = requests[0].data
    refs = reference_models(requests[0], profile, seed, device=device, progress=progress, retrain=False)
    records = []
    for label, spec in tqdm(list(methods.items()), desc="continual unlearning", disable=not progress, leave=False):
        setting = _resolve(label, spec)
        model, forgotten, stopped = refs.original.model, np.array([], np.int64), None
        for j, request in enumerate([None, *requests]):
            seconds, info = 0.0, {}
            if request is not None:
                forgotten = np.concatenate([forgotten, request.forget_idx])
                if stopped is None:
                    result = unlearn(setting.method, model, request, seed=seed * 1000 + j, device=device,
                                     **setting.hparams)
                    model, seconds, info = result.model, result.seconds, result.info
                    if info.get("diverged"):
                        stopped = {**info, "request": j}
            so_far = instances(data, forgotten if len(forgotten) else requests[0].forget_idx)
            if stopped is not None:  # a diverged model serves no later request and is never scored
                keys = [*QUICK_METRICS, *(["retain_acc"] if retain else []), "request_acc"]
                rec = diverged_record(keys, step=stopped.get("diverged_step"),
                                      reason=f"{stopped.get('diverged_reason', 'non-finite loss')} at request "
                                             f"{stopped['request']}")
                records.append({"method": label, "algorithm": setting.method, "seed": seed, "request": j,
                                "forgotten": len(forgotten), **rec, "seconds": seconds, **info,
                                "hparams": json.dumps(dict(setting.hparams), default=str)})
                continue
            rec = quick_evaluate(model, so_far, device=device, retain=retain, collapse_guard=profile.collapse_guard)
            if request is None:  # nothing forgotten yet: report the first request's accuracy as a baseline
                rec["forget_acc"] = float("nan")
            current = request if request is not None else requests[0]
            rec["request_acc"] = (float("nan") if is_diverged(rec)  # a collapsed model is not scored on any set
                                  else accuracy(model, data, current.forget_idx, split="train", device=device))
            records.append({"method": label, "algorithm": setting.method, "seed": seed, "request": j,
                            "forgotten": len(forgotten), **with_run_info({**rec, "seconds": seconds}, info),
                            "hparams": json.dumps(dict(setting.hparams), default=str)})
    return records


class ProtocolError(ValueError):
    """A selection step was asked to do what the evaluation protocol forbids (read the test split, tune on a
    reported request or seed, give methods unequal budgets). The message says what to do instead."""


@dataclass
class Tuning:
    """What :func:`tune` did: one record per run of a setting (per tuning seed, and per request for
    :func:`tune_corrupted`; grid extensions included), the setting chosen for each method, and ``config``, the facts
    a results file must record (request, seeds, budget, grids, choice, ties, diverged settings, extensions, choices
    still on an edge, and every record), so that a chapter that saves ``config`` saves them all."""

    records: list[dict]
    chosen: dict[str, dict]
    config: dict


def _equal_budget(grids: Mapping[str, Sequence[Mapping]], caller: str,
                  profile: Profile | None = None) -> tuple[dict[str, list], dict[str, int]]:
    """The grids to run and the number of settings per method; a ProtocolError unless every method has the same
    number (at least one). A profile with a ``grid_cap`` (paper-smoke, a code check) runs only the first
    ``grid_cap`` settings of every grid: the budget stays equal, and the config records the cap."""
    sizes = {name: len(grid) for name, grid in grids.items()}
    if len(set(sizes.values())) > 1:
        raise ProtocolError(f"every method gets the same tuning budget, but the grids differ in size: {sizes}. Give "
                            f"each method as many settings (repeat or add points)")
    if not grids or min(sizes.values()) < 1:
        raise ProtocolError(f"{caller} needs at least one setting per method")
    run = {name: _capped_grid(grid, profile) for name, grid in grids.items()}
    return run, {name: len(grid) for name, grid in run.items()}


def _capped_grid(grid: Sequence[Mapping], profile: Profile | None) -> list:
    """The settings of ``grid`` that ``profile`` runs: all, or the first ``profile.grid_cap``."""
    cap = profile.grid_cap if profile is not None else None
    return list(grid)[:cap] if cap else list(grid)


def _cap_note(profile: Profile) -> dict:
    """``{"grid_cap": n}`` when the profile truncated the grids (recorded beside the budget), else nothing."""
    return {"grid_cap": profile.grid_cap} if profile.grid_cap else {}


# --------------------------------------------------------------------------------------------------------------
# Choosing among settings: several tuning seeds, diverged settings left out, ties within the score's resolution,
# grids extended past an edge. Shared by tune, tune_few_shot and tune_corrupted.

#: how a tuning run breaks ties (its config repeats it): machine-independent, never by measured seconds
TIE_RULE = ("settings whose mean scores differ by less than the score's resolution (one image on each scored set) "
            "are tied; the cheapest of them wins: the fewest passes (the sum of the pass hyperparameters "
            "methods.PASS_HYPERPARAMETERS, as given or the method's default), then the first tried (grid order; "
            "extensions come after the grid). Measured seconds are never used: they differ between machines")

#: how a grid is extended past an edge (its config repeats it)
EXTENSION_RULE = ("when a method's choice sits at the smallest or largest value tried on a numeric axis of its grid "
                  "(a hyperparameter that varies across the grid), that value is moved one step past the edge and "
                  "scored again: positive values by the ratio to their neighbour (log spacing; integers rounded, at "
                  "least 1; a share, SHARE_HYPERPARAMETERS, that would reach 1 steps in log(1 - x) instead), "
                  "others by the difference to their neighbour (never across 0). Every method gets the same number of rounds; a "
                  "value the method refuses (ValueError) ends that direction. A choice still on an extendable edge "
                  "after the last round is listed in on_edge")


#: hyperparameters that are shares in (0, 1) (a weight or a fraction; by method, "*" for every method): a grid is
#: extended towards 1 in log(1 - x) steps, e.g. NegGrad+'s alpha 0.99, 0.995 -> 0.9975 (a learning rate below 1 is not
#: a share: it is extended by its ratio, past 1 if need be)
SHARE_HYPERPARAMETERS = {"neggrad_plus": ("alpha",), "*": ("fraction", "sparsity", "retain_fraction")}


def tuning_seeds(seed: int | Sequence[int] | None, profile: Profile) -> list[int]:
    """The tuning seeds of a call: ``seed`` (one, or several), or the profile's ``tuning_seeds`` when it is None."""
    if seed is None:
        seeds = list(profile.tuning_seeds)
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        seeds = [int(seed)]
    else:
        seeds = [int(s) for s in seed]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ProtocolError(f"tuning needs at least one tuning seed, each once; got {seed!r}")
    return seeds


def _plain(obj):
    """JSON for what is not a plain value: a numpy number as a number, any other object by its type name (e.g. SSD's
    precomputed importance), so that a record names it without a memory address."""
    return obj.item() if isinstance(obj, np.generic) else f"<{type(obj).__name__}>"


def _hparams_json(hp: Mapping) -> str:
    """A setting's hyperparameters as the records keep them (:func:`_plain` for objects)."""
    return json.dumps(dict(hp), default=_plain)


def _identity(hp: Mapping) -> str:
    """What tells two settings apart (objects by identity, unlike :func:`_hparams_json`)."""
    return json.dumps(dict(hp), default=lambda o: o.item() if isinstance(o, np.generic) else f"<{id(o)}>")


def pass_cost(method: str, hp: Mapping) -> float:
    """The passes a setting of registered ``method`` makes: the sum of its pass hyperparameters
    (:data:`unlearnlib.methods.PASS_HYPERPARAMETERS`, as given or the method's default). What breaks a tie."""
    from .methods import PASS_HYPERPARAMETERS, REGISTRY

    defaults = REGISTRY[method].hyperparameters if method in REGISTRY else {}
    values = [hp.get(name, defaults.get(name)) for name in PASS_HYPERPARAMETERS]
    return float(sum(v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)))


@dataclass
class _Trial:
    """One setting of one method in a tuning run: its runs (one per tuning seed, or per seed and request), where it
    came from (the grid, or extension round ``extension`` of ``extends``), and why the method refused it."""

    method: str
    hp: dict
    order: int
    extension: int = 0
    extends: dict | None = None
    runs: list = field(default_factory=list)
    refused: str | None = None

    def score(self, key: str) -> float:
        """The mean score over the runs; NaN when any run diverged (or the method refused the setting)."""
        from .metrics import is_diverged

        values = [r[key] for r in self.runs]
        if self.refused or not values or any(is_diverged(r) or not np.isfinite(v) for r, v in zip(self.runs, values)):
            return float("nan")
        return float(np.mean(values))


def _choose(trials: Sequence[_Trial], *, key: str, higher: bool, resolution: float,
            method: str) -> tuple[_Trial | None, list[_Trial]]:
    """The chosen trial and every trial tied with the best score (:data:`TIE_RULE`); ``(None, [])`` when every
    trial diverged or was refused."""
    valid = [t for t in trials if np.isfinite(t.score(key))]
    if not valid:
        return None, []
    sign = -1.0 if higher else 1.0
    top = min(valid, key=lambda t: (sign * t.score(key), t.order)).score(key)
    tied = [t for t in valid if t.score(key) == top or abs(t.score(key) - top) < resolution * (1 - 1e-9)]
    return min(tied, key=lambda t: (pass_cost(method, t.hp), t.order)), tied


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def numeric_axes(grid: Sequence[Mapping], method: str = "") -> dict[str, str]:
    """The numeric axes of a grid of registered ``method``: hyperparameters that every setting gives as a number and
    that take at least two values across it, each with its kind: ``"int"`` (whole numbers), ``"share"``
    (:data:`SHARE_HYPERPARAMETERS`) or ``"real"``."""
    names = set.intersection(*(set(hp) for hp in grid)) if grid else set()
    shares = set(SHARE_HYPERPARAMETERS.get(method, ())) | set(SHARE_HYPERPARAMETERS["*"])
    axes = {}
    for name in sorted(names, key=list(grid[0]).index):
        values = [hp[name] for hp in grid]
        if all(_is_number(v) for v in values) and len(set(values)) > 1:
            axes[name] = ("int" if all(isinstance(v, (int, np.integer)) for v in values)
                          else "share" if name in shares else "real")
    return axes


def step_past(values: Sequence[float], direction: int, kind: str = "real") -> tuple[float | int | None, str | None]:
    """The next value past the edge of ``values`` (the largest for ``direction`` +1, the smallest for -1) on an axis
    of ``kind`` (:func:`numeric_axes`), by :data:`EXTENSION_RULE`; ``(None, reason)`` when there is none."""
    integer = kind == "int"
    distinct = sorted(set(float(v) for v in values))
    edge, neighbour = (distinct[-1], distinct[-2]) if direction > 0 else (distinct[0], distinct[1])
    if distinct[0] > 0:
        new = edge * edge / neighbour
        if kind == "share" and direction > 0 and distinct[-1] < 1 <= new:  # approach 1, never reach it
            new = 1 - (1 - edge) ** 2 / (1 - neighbour)
    else:
        new = 2 * edge - neighbour
        if (edge >= 0 > new) or (edge <= 0 < new):
            return None, f"the axis stops at 0 (next value {new:g})"
    if integer:
        new = int(round(new))
        new = new if new != edge else int(edge) + direction
        if new < 1:
            return None, "a whole-number axis stays >= 1"
        return new, None
    return float(f"{new:.12g}"), None


def _search(grids: Mapping[str, list], run: Callable[[str, dict], list[dict]], *, key: str, higher: bool,
            resolution: float, extensions: int, methods: Mapping[str, str], progress: bool,
            desc: str) -> tuple[list[dict], dict[str, dict], dict]:
    """Score every setting of ``grids`` with ``run(name, hp)`` (its records, one per tuning seed or per seed and
    request, each with the score ``key``; ``higher``: larger is better), then extend the grids past their edges for
    up to ``extensions`` rounds (:data:`EXTENSION_RULE`). Returns the records (extensions included), the chosen
    setting of each method and the config entries that say how it was chosen."""
    trials: dict[str, list[_Trial]] = {name: [] for name in grids}
    closed: dict[str, dict[tuple[str, int], str]] = {name: {} for name in grids}  # (axis, direction) -> why
    axes = {name: numeric_axes(grid, methods.get(name, name)) for name, grid in grids.items()}
    order = iter(range(10 ** 9))

    def attempt(batch, round_):
        for name, hp, extends in tqdm(batch, desc=desc if not round_ else f"{desc} (extension {round_})",
                                      disable=not progress, leave=False):
            trial = _Trial(name, hp, next(order), round_, extends)
            try:
                trial.runs = [{**r, "extension": round_, "refused": None} for r in run(name, hp)]
            except ValueError as e:
                if not round_:
                    raise  # a setting of the grid itself is the caller's to fix
                trial.refused = str(e).splitlines()[0]
                closed[name][extends["axis"], 1 if extends["direction"] == "up" else -1] = \
                    f"{name} refused {extends['axis']}={hp[extends['axis']]}: {trial.refused}"
            trials[name].append(trial)

    def choose(name):
        return _choose(trials[name], key=key, higher=higher, resolution=resolution, method=methods.get(name, name))

    def edges(name, best):
        """(axis, direction, kind, values tried) of each edge of the tried values that ``best`` sits on."""
        for axis, kind in axes[name].items():
            values = [t.hp[axis] for t in trials[name] if t.refused is None]
            for direction, edge in ((1, max(values)), (-1, min(values))):
                if best.hp[axis] == edge:
                    yield axis, direction, kind, values

    attempt([(name, dict(hp), None) for name, grid in grids.items() for hp in grid], 0)
    for name in grids:
        if choose(name)[0] is None:
            raise ProtocolError(f"every setting of {name!r} diverged on the tuning request (non-finite loss, weights "
                                f"or outputs): nothing can be chosen. Lower its learning rate (or step size) in the "
                                f"grid and tune again")
    rounds_used = 0
    for round_ in range(1, extensions + 1):
        batch, tried = [], {name: {_identity(t.hp) for t in trials[name]} for name in grids}
        for name in grids:
            best = choose(name)[0]
            for axis, direction, kind, values in edges(name, best):
                if (axis, direction) in closed[name]:
                    continue
                value, why = step_past(values, direction, kind)
                if value is None:
                    closed[name][axis, direction] = why
                    continue
                hp = {**best.hp, axis: value}
                if _identity(hp) not in tried[name]:
                    batch.append((name, hp, {"axis": axis, "direction": "up" if direction > 0 else "down",
                                             "from": best.hp[axis]}))
        if not batch:
            break
        attempt(batch, round_)
        rounds_used = round_
    return _report(trials, closed, axes, choose, edges, key=key, resolution=resolution, extensions=extensions,
                   rounds_used=rounds_used)


def _report(trials, closed, axes, choose, edges, *, key, resolution, extensions, rounds_used):
    """The records, the choices and the config entries of :func:`_search`."""
    records, chosen, ties, on_edge, limits, diverged, settings, extended = [], {}, {}, {}, {}, {}, [], {}
    for name, tried in trials.items():
        best, tied = choose(name)
        chosen[name] = json.loads(_hparams_json(best.hp))
        if len(tied) > 1:
            ties[name] = [json.loads(_hparams_json(t.hp)) for t in tied]
        for axis, direction, _, _ in edges(name, best):
            why = closed[name].get((axis, direction))
            if why is None:
                on_edge.setdefault(name, []).append(axis)
            else:
                limits.setdefault(name, {})[axis] = why
        for t in tried:
            hp, score = json.loads(_hparams_json(t.hp)), t.score(key)
            outcome = "refused" if t.refused else "diverged" if not np.isfinite(score) else "scored"
            if outcome == "diverged":
                diverged.setdefault(name, []).append(hp)
            if t.extends:
                extended.setdefault(name, []).append({"round": t.extension, **t.extends, "to": hp[t.extends["axis"]],
                                                      "outcome": outcome if not t.refused else t.refused})
            settings.append({"method": name, "hparams": _hparams_json(t.hp), "extension": t.extension,
                             key: score, "runs": len(t.runs), "outcome": outcome, "tied": any(t is u for u in tied),
                             "chosen": t is best})
            records += t.runs or [{"method": name, "hparams": _hparams_json(t.hp), "seed": None, key: float("nan"),
                                   "diverged": False, "extension": t.extension, "refused": t.refused}]
    config = {"resolution": resolution, "tie_rule": TIE_RULE, "ties": ties, "diverged": diverged,
              "extension_rule": EXTENSION_RULE, "extensions_allowed": extensions, "extension_rounds_used": rounds_used,
              "axes": {name: list(a) for name, a in axes.items()}, "extensions": extended, "on_edge": on_edge,
              "edge_limits": limits, "settings": settings, "records": records}
    return records, chosen, config


def choose_from_records(records: Sequence[Mapping], key: str, *, resolution: float, higher: bool = True,
                        methods: Mapping[str, str] | None = None) -> dict[str, dict]:
    """The tuning rule's choice (:data:`TIE_RULE`), recomputed from a tuning run's records on the score ``key``.

    Per method (the records' ``method``), every setting (its ``hparams``) is scored by the mean of ``key`` over its
    runs; the best wins, settings within ``resolution`` of it are tied and the cheapest of them is chosen (the fewest
    passes, then the first in the records' order, which is the order tried); a setting with a diverged or non-finite
    run is never chosen, and refused settings (no runs) are skipped. ``methods`` maps a label to its registered
    method, for the pass count. With ``key`` the run's own score this gives the run's ``chosen`` back; with another
    score computed from the same records (e.g. REM's ``val_acc x healed`` without its class factor) it shows what
    that score would choose among the settings the run tried (its grid extensions followed its own score)."""
    trials: dict[str, dict[str, _Trial]] = {}
    for r in records:
        if r.get("refused"):
            continue
        tried = trials.setdefault(r["method"], {})
        if r["hparams"] not in tried:
            tried[r["hparams"]] = _Trial(r["method"], json.loads(r["hparams"]), len(tried))
        tried[r["hparams"]].runs.append(r)
    chosen = {}
    for name, tried in trials.items():
        best, _ = _choose(list(tried.values()), key=key, higher=higher, resolution=resolution,
                          method=(methods or {}).get(name, name))
        if best is not None:
            chosen[name] = json.loads(_hparams_json(best.hp))
    return chosen


def _same_request(a: ForgetTask, b: ForgetTask) -> bool:
    """Two requests are the same when they forget the same samples of the same data (or the same classes)."""
    if a.kind in ("full_class", "sub_class") and a.kind == b.kind and a.data.name == b.data.name:
        if {k: v for k, v in a.params.items() if k in ("classes", "fine_class")} == \
                {k: v for k, v in b.params.items() if k in ("classes", "fine_class")}:
            return True
    return (len(a.forget_idx) == len(b.forget_idx) and np.array_equal(a.forget_idx, b.forget_idx)
            and a.data.fingerprint() == b.data.fingerprint())


def check_tuning_request(request: ForgetTask, seed: int, *, reported: Sequence[ForgetTask],
                         reported_seeds: Sequence[int]) -> None:
    """Refuse a tuning request that is one of the ``reported`` requests, or a tuning ``seed`` that is reported."""
    if seed in set(reported_seeds):
        raise ProtocolError(f"tuning seed {seed} is also a reported seed {sorted(reported_seeds)}: a setting chosen on "
                            f"it would be scored on the models it was chosen with. Tune on a seed that is not reported "
                            f"(e.g. profile.tuning_seed)")
    for task in reported:
        if _same_request(request, task):
            raise ProtocolError(f"the tuning request ({request.describe()}) is a reported request: choosing settings "
                                f"on it, against its own retrain model, flatters every method. Tune on another class, "
                                f"subset, pool or corruption draw (e.g. unlearnlib.tasks.full_class with another class)")


def tune(request: ForgetTask, profile: Profile, grids: Mapping[str, Sequence[Mapping]], *,
         seed: int | Sequence[int] | None = None, reported: Sequence[ForgetTask],
         reported_seeds: Sequence[int] | None = None, split: str = "validation", device="auto",
         progress: bool = True, view: Callable[[ForgetTask, int], ForgetTask] | None = None,
         methods: Mapping[str, str] | None = None, extensions: int | None = None,
         per_seed: Callable[[str, References], Mapping] | None = None) -> Tuning:
    """Choose each method's hyperparameters on a tuning request, as the protocol says.

    Every setting in ``grids`` ({method: [settings, ...]}, the same number for every method) runs on ``request``
    (never one of the ``reported`` requests) with the original model of each tuning seed (``seed``: one or several;
    by default the profile's ``tuning_seeds``; never one of the ``reported_seeds``, by default the profile's seeds).
    Each model is scored with :func:`~unlearnlib.metrics.validation_evaluate` and ranked by
    :func:`~unlearnlib.metrics.retrain_gap` on ``forget_acc`` and ``val_acc`` against the request's own retrain model
    of the same seed (the common practice in the literature; that model is never reported), averaged over the tuning
    seeds. The method sees ``request.sealed()``: its test split is empty, so no choice can read it. ``view`` (e.g. a
    few-shot budget) works as in :func:`run_methods`; with a view the forget accuracy of the score is read on the
    forgotten class's validation images (``val_forget_acc``), since the method may not read D_f beyond its budget.

    A setting that diverged on any tuning seed is recorded (``diverged``) and never chosen; a method whose settings
    all diverged is a ProtocolError. Settings within one image of the best score on each scored set are tied and the
    cheapest wins (:data:`TIE_RULE`). A choice on the edge of a numeric axis of its grid is extended past it for up to
    ``extensions`` rounds (default: the profile's ``tuning_extensions``; :data:`EXTENSION_RULE`); the config
    records every setting tried (``records``, ``settings``), the ties, the diverged settings and the choices still on
    an edge (``on_edge``). A grid key that is not a registered method name is a label; ``methods`` maps it to the
    method it runs (e.g. ``{"lfssd (official order)": "lfssd"}``), so one method can be tuned twice under two
    variants. ``per_seed(label, refs)`` returns hyperparameters computed from a tuning seed's models (e.g. SSD's
    precomputed importance): they join each of that label's settings on that seed, are named (not dumped) in the
    records and are never extended.
    """
    if split != "validation":
        raise ProtocolError(f"tuning on the {split!r} split is refused: the test split is read only to report. Tune on "
                            f"split='validation', carved from the training data (data.val_idx)")
    grids, sizes = _equal_budget(grids, "tune", profile)
    reported_seeds = list(profile.seeds if reported_seeds is None else reported_seeds)
    seeds = tuning_seeds(seed, profile)
    for s in seeds:
        check_tuning_request(request, s, reported=reported, reported_seeds=reported_seeds)
    sealed = request.sealed()
    if len(sealed.val_idx) == 0:
        raise ProtocolError(f"{request.describe()} has no validation split to tune on")
    forget_key = "forget_acc"
    if view is not None:
        if len(sealed.val_forget_idx) == 0:
            raise ProtocolError("a tuning view (sample budget) needs a class or sub-class request, whose validation "
                                "split holds images of the forgotten class to score forgetting on")
        forget_key = "val_forget_acc"
    contexts = {}
    for s in seeds:  # the reference models train on D and D_r only; from the cache under the request's data key
        refs = reference_models(request, profile, s, device=device, progress=progress)
        _warm_up(refs.original.model, sealed, device)
        contexts[s] = (refs, validation_evaluate(refs.retrain.model, sealed, device=device),
                       view(sealed, s) if view else sealed)
    methods = dict(methods or {})
    extra: dict[tuple[str, int], Mapping] = {}

    def run(name, hp):
        out = []
        for s, (refs, ref_rec, seen) in contexts.items():
            if per_seed is not None and (name, s) not in extra:
                extra[name, s] = dict(per_seed(name, refs))
            result = unlearn(methods.get(name, name), refs.original.model, seen, seed=s, device=device,
                             **{**hp, **extra.get((name, s), {})})
            rec = _evaluated(result, lambda m: validation_evaluate(m, sealed, device=device),
                             ("forget_acc", "val_acc", "val_forget_acc"))
            out.append({"method": name, "hparams": _hparams_json(hp), "seed": s, **rec, "seconds": result.seconds,
                        "retrain_gap": retrain_gap(rec, ref_rec, utility="val_acc", forget=forget_key)})
        return out

    n_forget = len(sealed.val_forget_idx) if view is not None else len(sealed.forget_idx)
    n_val = len(sealed.val_idx) - len(sealed.val_forget_idx)
    records, chosen, search = _search(grids, run, key="retrain_gap", higher=False, resolution=1 / n_forget + 1 / n_val,
                                      extensions=profile.tuning_extensions if extensions is None else extensions,
                                      methods=methods, progress=progress, desc=f"tuning on {request.describe()}")
    references = [{"seed": s, **{k: ref[k] for k in ("forget_acc", "val_acc", "val_forget_acc")}}
                  for s, (_, ref, _) in contexts.items()]
    config = {"request": request.describe(), "request_params": {k: v for k, v in request.params.items()
                                                                 if k != "source_idx"},
              "seed": seeds[0], "seeds": seeds, "reported_seeds": reported_seeds, "budget": min(sizes.values()),
              **_cap_note(profile),
              "selection": f"retrain_gap on {forget_key} and val_acc (validation split) against the tuning "
                           f"request's retrain model of the same seed, averaged over the tuning seeds {seeds}",
              "view": None if view is None else contexts[seeds[0]][2].params.get("per_class"),
              "reference": {k: v for k, v in references[0].items() if k != "seed"}, "references": references,
              "grids": {name: [json.loads(_hparams_json(hp)) for hp in grid] for name, grid in grids.items()},
              "chosen": chosen, "methods": {name: methods.get(name, name) for name in grids},
              "code": tuning_fingerprints({name: methods.get(name, name) for name in grids}), **search}
    return Tuning(records, chosen, config)


def tune_custom(grids: Mapping[str, Sequence[Mapping]], run: Callable[[str, dict], list[dict]], profile: Profile, *,
                score: str, resolution: float, selection: str, higher: bool = False,
                seed: int | Sequence[int] | None = None, reported_seeds: Sequence[int] | None = None,
                methods: Mapping[str, str] | None = None, extensions: int | None = None, progress: bool = True,
                desc: str = "tuning") -> Tuning:
    """The selection rules of :func:`tune` for a chapter whose models, request and score :func:`tune` cannot build
    (e.g. a mixed-linear model, scored against its own paragon).

    ``run(label, hp)`` runs one setting on the chapter's tuning request(s) of the tuning seed(s) and returns its
    records (one per tuning seed or request), each with ``method``, ``hparams``, ``seed``, the score field ``score``
    (``higher``: larger is better) and ``diverged`` (a diverged run carries a NaN score). As in :func:`tune`: every
    method gets the same number of settings (the profile's ``grid_cap`` applies), a diverged setting is never
    chosen, settings within ``resolution`` of the best score are tied and the cheapest wins (:data:`TIE_RULE`), and a
    choice on the edge of a numeric axis of its grid is extended past it for up to ``extensions`` rounds (default:
    the profile's ``tuning_extensions``; :data:`EXTENSION_RULE`). ``methods`` maps a label to the registered method
    it runs (what prices a tie and fingerprints the code). The tuning ``seed`` (one or several; default the
    profile's ``tuning_seeds``) must not be one of the ``reported_seeds`` (default the profile's seeds).

    What :func:`tune` enforces and this cannot, the chapter keeps itself: ``run`` scores on the validation split and
    on models of the tuning seed only. ``selection`` says in words what the score is; it goes into the config with
    the grids, the choices, the ties, the extensions, the choices still on an edge and every record."""
    grids, sizes = _equal_budget(grids, "tune_custom", profile)
    reported_seeds = list(profile.seeds if reported_seeds is None else reported_seeds)
    seeds = tuning_seeds(seed, profile)
    clash = sorted(set(seeds) & set(reported_seeds))
    if clash:
        raise ProtocolError(f"tuning seed(s) {clash} are also reported seeds {sorted(reported_seeds)}: a setting "
                            f"chosen on them would be scored on the models it was chosen with. Tune on a seed that "
                            f"is not reported (e.g. profile.tuning_seed)")
    methods = dict(methods or {})
    records, chosen, search = _search(grids, run, key=score, higher=higher, resolution=resolution,
                                      extensions=profile.tuning_extensions if extensions is None else extensions,
                                      methods=methods, progress=progress, desc=desc)
    config = {"seed": seeds[0], "seeds": seeds, "reported_seeds": reported_seeds, "budget": min(sizes.values()),
              **_cap_note(profile), "selection": selection, "score": score, "higher_is_better": higher,
              "grids": {name: [json.loads(_hparams_json(hp)) for hp in grid] for name, grid in grids.items()},
              "chosen": chosen, "methods": {name: methods.get(name, name) for name in grids},
              "code": tuning_fingerprints({name: methods.get(name, name) for name in grids}), **search}
    return Tuning(records, chosen, config)


def _evaluated(result, evaluate: Callable, keys: Sequence[str]) -> dict:
    """``evaluate(result.model)``, or a diverged record (NaN ``keys``) when the method reported a divergence."""
    from .methods import diverged

    if diverged(result):
        return diverged_record(keys, step=result.info.get("diverged_step"),
                               reason=result.info.get("diverged_reason", "non-finite loss"))
    return evaluate(result.model)


def validation_budget(request: ForgetTask, per_class: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` validation images of every class, drawn with ``seed``: those of the forgotten classes and those
    of the others (indices into ``request.data``'s training split). What a few-shot tuning scores on."""
    rng = np.random.default_rng([seed, 4409])
    y = request.data.y_train.numpy()
    return (draw_per_class(request.val_forget_idx, y, per_class, rng),
            draw_per_class(request.val_retain_idx, y, per_class, rng))


def tune_few_shot(request: ForgetTask, profile: Profile, grids: Mapping[str, Sequence[Mapping]], *, per_class: int,
                  seed: int | Sequence[int] | None = None, reported: Sequence[ForgetTask],
                  reported_seeds: Sequence[int] | None = None, device="auto", progress: bool = True,
                  methods: Mapping[str, str] | None = None, extensions: int | None = None) -> Tuning:
    """Choose hyperparameters for a few-shot class request within the setting's budget, as the protocol says.

    A class-level method given ``per_class`` samples per class must be tuned with that budget too, not with the
    complete data a retrain model needs. Every setting in ``grids`` (the same number per method) runs on the tuning
    ``request`` (a class or sub-class request that is not reported) with each tuning seed's original model (``seed``:
    one or several, by default the profile's ``tuning_seeds``), seeing ``tasks.few_shot(request, per_class)`` drawn
    from the training split; it is scored on another ``per_class`` images per class drawn from the *validation* split
    (:func:`validation_budget`). No retrain model is trained or read: for a forgotten class the target is known, a
    model that never saw the class recognises none of its images (forget target 0), and the remaining classes should
    keep the original model's accuracy on the same validation images. The score is ``retrain_gap`` against that
    target, averaged over the tuning seeds; diverged settings, ties and grid extensions are handled as in
    :func:`tune`. Each seed reads 2 x ``per_class`` images per class and the original model.
    """
    grids, sizes = _equal_budget(grids, "tune_few_shot", profile)
    if request.kind != "full_class":
        raise ProtocolError(f"tune_few_shot scores forgetting against the known target of a forgotten class (0 %); "
                            f"a {request.kind!r} request has no such target: use tune() with its retrain model")
    reported_seeds = list(profile.seeds if reported_seeds is None else reported_seeds)
    seeds = tuning_seeds(seed, profile)
    for s in seeds:
        check_tuning_request(request, s, reported=reported, reported_seeds=reported_seeds)
    sealed = request.sealed()
    contexts, images_read = {}, 0
    for s in seeds:
        score_forget, score_retain = validation_budget(sealed, per_class, seed=s)
        if len(score_forget) == 0 or len(score_retain) == 0:
            raise ProtocolError(f"{request.describe()} has no validation images of the forgotten or the remaining "
                                f"classes to score on")
        original = reference_models(request, profile, s, device=device, progress=progress,
                                    retrain=False).original.model
        seen = tasks_few_shot(sealed, per_class, seed=s)
        target = {"val_forget_acc": 0.0,
                  "val_acc": accuracy(original, sealed.data, score_retain, split="train", device=device)}
        contexts[s] = (original, seen, score_forget, score_retain, target)
        images_read += int(len(seen.data.y_train) + len(score_forget) + len(score_retain))
    methods = dict(methods or {})

    def run(name, hp):
        out = []
        for s, (original, seen, score_forget, score_retain, target) in contexts.items():
            result = unlearn(methods.get(name, name), original, seen, seed=s, device=device, **hp)
            rec = _evaluated(result, lambda m: _few_shot_score(m, sealed.data, score_forget, score_retain, device),
                             ("val_forget_acc", "val_acc"))
            out.append({"method": name, "hparams": _hparams_json(hp), "seed": s, **rec, "seconds": result.seconds,
                        "retrain_gap": retrain_gap(rec, target, utility="val_acc", forget="val_forget_acc")})
        return out

    first = contexts[seeds[0]]
    records, chosen, search = _search(grids, run, key="retrain_gap", higher=False,
                                      resolution=1 / len(first[2]) + 1 / len(first[3]),
                                      extensions=profile.tuning_extensions if extensions is None else extensions,
                                      methods=methods, progress=progress,
                                      desc=f"few-shot tuning on {request.describe()}")
    config = {"request": request.describe(), "seed": seeds[0], "seeds": seeds, "reported_seeds": reported_seeds,
              "budget": min(sizes.values()), **_cap_note(profile), "per_class": per_class,
              "selection": f"retrain_gap on val_forget_acc (target 0) and val_acc (target: the original model's "
                           f"accuracy) over {per_class} validation images per class, averaged over the tuning seeds "
                           f"{seeds}; no retrain model",
              "images_read": images_read, "target": first[4],
              "targets": [{"seed": s, **c[4]} for s, c in contexts.items()],
              "grids": {name: [json.loads(_hparams_json(hp)) for hp in grid] for name, grid in grids.items()},
              "chosen": chosen, "methods": {name: methods.get(name, name) for name in grids},
              "code": tuning_fingerprints({name: methods.get(name, name) for name in grids}), **search}
    return Tuning(records, chosen, config)


def _few_shot_score(model, data, score_forget, score_retain, device) -> dict:
    """The accuracies a few-shot tuning scores (:func:`tune_few_shot`), or a diverged record."""
    from .metrics import parameters_finite

    keys = ("val_forget_acc", "val_acc")
    if not parameters_finite(model):
        return diverged_record(keys, reason="non-finite weights")
    rec = {"val_forget_acc": accuracy(model, data, score_forget, split="train", device=device),
           "val_acc": accuracy(model, data, score_retain, split="train", device=device)}
    if not np.isfinite(list(rec.values())).all():  # training.accuracy is NaN for non-finite outputs
        return diverged_record(keys, reason="non-finite outputs")
    return {**rec, **FINITE}


def tune_on_reported_task(task: ForgetTask, profile: Profile, grids: Mapping[str, Sequence[Mapping]], *, seed: int,
                          device="auto", progress: bool = True,
                          view: Callable[[ForgetTask, int], ForgetTask] | None = None,
                          quick: bool | str = False) -> list[dict]:
    """The selection the book used before its evaluation protocol: every setting scored by the test accuracy
    against the *reported* task's retrain model, on a seed that is also reported. It selects on the test split and
    flatters every method, and warns so. Kept only so that chapters executed before the protocol (SSD,
    class-level, comparison) still run as they ran until they are re-executed with :func:`tune`."""
    import warnings

    warnings.warn("tune_on_reported_task selects on the test split of a reported task; use experiment.tune",
                  ProtocolWarning, stacklevel=2)
    ctx = _prepare(task, profile, seed, device, progress)
    ref_rec = _score(ctx.ref_out, task, profile, seed, device, quick, None)
    seen = view(task, seed) if view else None
    runs = [(name, dict(hp)) for name, grid in grids.items() for hp in _capped_grid(grid, profile)]
    records = []
    for name, hp in tqdm(runs, desc=f"tuning on {task.describe()}", disable=not progress, leave=False):
        rec, seconds, _ = _run_one(name, hp, ctx, task, profile, seed, device, seen=seen, quick=quick)
        records.append({"method": name, "hparams": json.dumps(hp, default=str), "seed": seed, **rec, "seconds": seconds,
                        "retrain_gap": retrain_gap(rec, ref_rec)})
    return records


class ProtocolWarning(UserWarning):
    """A step that the evaluation protocol would refuse ran anyway (kept for chapters not yet re-executed)."""


def best_settings(records: Sequence[dict], *, resolution: float = 0.0,
                  methods: Mapping[str, str] | None = None) -> dict[str, dict]:
    """For each method, the setting with the smallest ``retrain_gap``, averaged over its records (e.g. one per seed).
    A setting with a diverged record (or a NaN gap) is never chosen; settings within ``resolution`` of the best
    (default: exactly equal) are tied and the cheapest wins (:data:`TIE_RULE`). ``methods`` maps a label to the
    registered method whose pass hyperparameters price it. A method whose every setting diverged has no entry."""
    trials: dict[str, dict[str, _Trial]] = {}
    for rec in records:
        by_key = trials.setdefault(rec["method"], {})
        trial = by_key.setdefault(rec["hparams"], _Trial(rec["method"], json.loads(rec["hparams"]),
                                                         sum(len(t) for t in trials.values())))
        trial.runs.append(rec)
    methods = dict(methods or {})
    chosen = {}
    for name, by_key in trials.items():
        best, _ = _choose(list(by_key.values()), key="retrain_gap", higher=False, resolution=resolution,
                          method=methods.get(name, name))
        if best is not None:
            chosen[name] = best.hp
    return chosen


def _warm_up(model, task: ForgetTask, device) -> None:
    """One throw-away forward/backward pass on a copy, so that the first timed method does not pay the one-off
    cost of allocating kernels and buffers."""
    import copy

    import torch.nn.functional as F

    from .training import batches

    work = copy.deepcopy(model).train()
    x, y = next(batches(task.data, task.forget_idx, 128, device=device))
    F.cross_entropy(work(x), y).backward()


#: the regularity each corruption stands for (REM's second axis)
REGULARITY = {"trigger": "high", "label_swap": "medium", "random_label": "low"}


def tune_corrupted(requests: Sequence[ForgetTask], profile: Profile, grids: Mapping[str, Sequence[Mapping]], *,
                   seed: int | Sequence[int] | None = None, reported: Sequence[ForgetTask],
                   reported_seeds: Sequence[int] | None = None, device="auto", progress: bool = True,
                   extensions: int | None = None) -> Tuning:
    """Choose each method's hyperparameters for REM's benchmark on tuning requests, as the protocol says.

    ``requests`` are corrupted tasks (typically one per corruption) drawn with the tuning seed, never one of the
    ``reported`` tasks or seeds. Every setting of ``grids`` (the same number for every method) runs on every request
    from the request's own original model of each tuning seed (``seed``: one or several, by default the profile's
    ``tuning_seeds``; trained on the request's corrupted data, through the cache), and is scored by
    ``val_acc x healed``: the clean validation accuracy times the clean-label accuracy on the request's corrupted
    set, times ``min(1, a / a_0)``, with ``a`` the validation accuracy on the classes the corruption points at (the
    trigger's target class, the swapped classes; :func:`~unlearnlib.metrics.protected_classes`) and ``a_0`` the
    original's: healed rises when a method deletes the target class, and this factor keeps that from being scored
    as healing (random labels point at no class: factor 1). The request is never reported, so its clean labels may
    be read; the test split is not. The setting with the best mean score over the requests and seeds wins; diverged
    settings, ties (one image on each term of each request) and grid extensions are handled as in :func:`tune`.
    Partial discovery makes the retrain model a poor target here (it relearns the hidden corruption), which is why
    the score is not :func:`tune`'s retrain gap.
    """
    from .metrics import healed_accuracy, protected_validation_accuracy

    grids, sizes = _equal_budget(grids, "tune_corrupted", profile)
    reported_seeds = list(profile.seeds if reported_seeds is None else reported_seeds)
    seeds = tuning_seeds(seed, profile)
    contexts, resolutions = [], []
    for request in requests:
        if request.kind != "corrupted":
            raise ProtocolError(f"tune_corrupted needs corrupted tasks (tasks.corrupted), got {request.describe()}")
        for s in seeds:
            check_tuning_request(request, s, reported=reported, reported_seeds=reported_seeds)
        sealed = request.sealed()
        if len(sealed.val_idx) == 0:
            raise ProtocolError(f"{request.describe()} has no validation split to tune on")
        resolutions.append(1 / (len(sealed.val_idx) - len(sealed.val_forget_idx))
                           + 1 / len(request.corruption["corrupt_idx"]))
        for s in seeds:
            original = train_or_load(sealed.data, sealed.train_idx, profile.arch, profile.recipe_for(sealed.data.name),
                                     seed=s, role=f"original ({request.corruption['kind']}, tuning)", device=device,
                                     progress=progress).model
            _warm_up(original, sealed, device)
            contexts.append((request, sealed, s, original, protected_validation_accuracy(original, sealed,
                                                                                         device=device)))

    keys = ("val_acc", "healed", "protected_val_acc", "protected_factor")

    def score(model, sealed, protected_before) -> dict:
        val = validation_evaluate(model, sealed, device=device)
        healed = float("nan") if is_diverged(val) else healed_accuracy(model, sealed, device=device)
        if is_diverged(val) or not np.isfinite(healed):
            return {**diverged_record(keys, reason=val.get("diverged_reason") or "non-finite outputs")}
        protected = protected_validation_accuracy(model, sealed, device=device)
        factor = 1.0 if not np.isfinite(protected_before) or protected_before <= 0 else \
            min(1.0, protected / protected_before)
        return {"val_acc": val["val_acc"], "healed": healed, "protected_val_acc": protected,
                "protected_factor": factor, **FINITE}

    def run(name, hp):
        out = []
        for request, sealed, s, original, protected_before in contexts:
            result = unlearn(name, original, sealed, seed=s, device=device, **hp)
            rec = _evaluated(result, lambda m: score(m, sealed, protected_before), keys)
            out.append({"method": name, "hparams": _hparams_json(hp), "seed": s,
                        "corruption": request.corruption["kind"], **rec,
                        "score": rec["val_acc"] * rec["healed"] * rec["protected_factor"],
                        "seconds": result.seconds})
        return out

    records, chosen, search = _search(grids, run, key="score", higher=True, resolution=float(np.mean(resolutions)),
                                      extensions=profile.tuning_extensions if extensions is None else extensions,
                                      methods={}, progress=progress, desc="tuning on corrupted requests")
    config = {"requests": [r.describe() for r in requests], "seed": seeds[0], "seeds": seeds,
              "reported_seeds": reported_seeds, "budget": min(sizes.values()), **_cap_note(profile),
              "selection": f"mean over the tuning requests and seeds {seeds} of val_acc (clean validation split) x "
                           f"healed (the request's corrupted set, clean labels) x min(1, validation accuracy on the "
                           f"classes the corruption points at / the original's)",
              "grids": {name: [json.loads(_hparams_json(hp)) for hp in grid] for name, grid in grids.items()},
              "chosen": chosen, "code": tuning_fingerprints({name: name for name in grids}), **search}
    return Tuning(records, chosen, config)


def corruption_benchmark(profile: Profile) -> dict:
    """REM's corrupted-data benchmark on ``profile``: dataset and subset sizes, the capacity model and its recipe,
    how many training samples are corrupted, the discovery rates, the swapped classes, REM's rounds and batch size
    (the values of the REM chapter, so that the comparison shares its cached original models). ``lr`` is a default
    only: the REM chapter chooses every method's step size on tuning requests (:func:`tune_corrupted`) and records
    the choice in ``results/rem/<profile>.json`` under ``config.tuning.chosen``.

    ``paper`` is the official ResNet-9 setting: SGD 0.025, batch 512, 4,000 iterations (~41 epochs), crop + flip."""
    from .training import Recipe

    if profile.name in ("paper", "paper-smoke"):
        paper = dict(dataset="cifar10", train_size=None, test_size=None, arch="resnet9-capacity",
                     recipe=Recipe(epochs=41, batch_size=512, lr=0.025, momentum=0.9, weight_decay=5e-4,
                                   schedule="onecycle", augment=True),
                     n_corrupt=1000, rates=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], swap=("cat", "dog"),
                     lr=0.005, batch_size=512, rem_epochs=10, scrub_epochs=3)
        if profile.name == "paper":
            return paper
        # paper-smoke: the same dataset, model and code paths at the smoke profile's size, one pass of everything,
        # the model at the profile's width (models.with_width: the paper's when arch_width is None)
        from .models import with_width

        return {**paper, "arch": with_width(paper["arch"], profile.arch_width),
                "train_size": profile.train_size, "test_size": profile.test_size,
                "recipe": paper["recipe"].replace(epochs=1, batch_size=128), "n_corrupt": 10, "rates": [0.5, 1.0],
                "batch_size": 128, "rem_epochs": 1, "scrub_epochs": 1}
    if profile.name == "cpu":
        return dict(dataset="fashion-mnist", train_size=10_000, test_size=5_000, arch="small-cnn-capacity",
                    recipe=profile.recipe, n_corrupt=200, rates=[0.1, 0.25, 0.5, 1.0],
                    swap=("T-shirt/top", "Shirt"), lr=0.02, batch_size=128, rem_epochs=4, scrub_epochs=3)
    if profile.name == "smoke":
        return dict(dataset="fashion-mnist", train_size=3000, test_size=1000, arch="small-cnn-capacity",
                    recipe=profile.recipe, n_corrupt=60, rates=[0.5, 1.0], swap=("T-shirt/top", "Shirt"),
                    lr=0.02, batch_size=128, rem_epochs=1, scrub_epochs=1)
    raise ValueError(f"no corrupted-data benchmark for profile {profile.name!r}; use smoke, cpu, paper or "
                     f"paper-smoke")


def run_discovery_grid(data, profile: Profile, methods: Mapping[str, Mapping | Setting], *,
                       corruptions: Sequence[str], rates: Sequence[float], seeds: Sequence[int], n_corrupt: int,
                       corruption_kw: Mapping[str, Mapping] | None = None, forget_sets: str | None = None,
                       progress_file: str | None = None, only: Mapping[str, Sequence[str]] | None = None,
                       device="auto", progress: bool = True) -> list[dict]:
    """REM's task space: for every corruption (regularity), seed and discovery rate, corrupt ``n_corrupt`` training
    samples of ``data``, train the original on the corrupted set (cached; one per corruption and seed, since the
    corrupted set does not depend on the rate), and run every method on the discovered part D_f, scoring it with
    :func:`~unlearnlib.metrics.corruption_metrics`.

    ``"original"`` is the untouched model and ``"retrain"`` a fresh model trained on everything not known to be
    corrupted (hidden corrupted samples included), through the checkpoint cache, its time that of training it.
    ``forget_sets`` (a folder) pins each task to a saved ``.npz`` (:func:`~unlearnlib.tasks.fixed`).
    ``progress_file`` (JSON, rewritten atomically after every run) makes an interrupted grid resume where it
    stopped: a run already in the file is reused only when its ``store_key`` (:func:`~unlearnlib.provenance.store_key`:
    method, hyperparameters, request, seed, original model, and the fingerprint of the code that ran) equals the key
    of the run it stands for; any other is recomputed and replaced, so a changed setting or a changed method re-runs
    that method's records and nothing else. ``only`` ({label: [corruption, ...]}) runs a method on
    some corruptions only, e.g. ``suppress_target``, which needs a trigger.
    """
    from pathlib import Path

    from . import _io
    from .metrics import corruption_metrics
    from .provenance import store_key
    from .tasks import corrupted, fixed
    from .training import recipe_spec

    corruption_kw, only = corruption_kw or {}, dict(only or {})
    unknown = sorted(set(corruptions) - set(REGULARITY))
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; choose from {', '.join(REGULARITY)}")
    records: list[dict] = []
    if progress_file is not None and Path(progress_file).exists():
        records = list(_io.read_json(progress_file, remedy="delete it to start the grid afresh"))
    key = lambda r: (r["corruption"], r["discovery_rate"], r["seed"], r["method"])  # noqa: E731
    stored = {key(r): i for i, r in enumerate(records)}
    recipe = profile.recipe_for(data.name)
    cells = [(c, s, r) for c in corruptions for s in seeds for r in rates]
    for corruption, seed, rate in tqdm(cells, desc="discovery grid", disable=not progress):
        task = corrupted(data, corruption, n_corrupt=n_corrupt, discovery_rate=rate, seed=seed,
                         **corruption_kw.get(corruption, {}))
        if forget_sets is not None:
            task = fixed(task, Path(forget_sets) / f"{corruption}-rate{rate:g}-seed{seed}.npz")
        original = train_or_load(task.data, task.train_idx, profile.arch, recipe, seed=seed,
                                 role=f"original ({corruption})", device=device, progress=progress)
        for label, spec in methods.items():
            if corruption not in only.get(label, corruptions):
                continue
            setting = _resolve(label, spec)
            produced_by = store_key(method=setting.method, hparams=setting.hparams, request=task, seed=seed,
                                    extra={"original": original.key, "arch": profile.arch,
                                           "recipe": recipe_spec(recipe)})
            at = stored.get((corruption, rate, seed, label))
            if at is not None and records[at].get("store_key") == produced_by:
                continue
            info: dict = {}
            if setting.method == "original":
                model, seconds = original.model, 0.0
            elif setting.method == "retrain":
                trained = train_or_load(task.data, task.retain_idx, profile.arch, recipe, seed=seed,
                                        role=f"retrain ({corruption}, {rate:g})", device=device, progress=progress)
                model, seconds = trained.model, trained.train_seconds
            else:
                result = unlearn(setting.method, original.model, task, seed=seed, device=device, **setting.hparams)
                model, seconds = result.model, result.seconds
                info = {k: v for k, v in result.info.items() if isinstance(v, (int, float, str, bool))}
                if result.info.get("diverged"):
                    info["diverged_step"] = result.info.get("diverged_step")
            metrics = corruption_metrics(model, task, device=device, collapse_guard=profile.collapse_guard)
            if info.get("diverged"):  # the method stopped at a non-finite loss: a diverged run, never scored
                metrics = diverged_record(list(metrics), step=info.get("diverged_step"),
                                          reason=info.get("diverged_reason", "non-finite loss"))
            record = {"task": f"corrupted: {corruption}", "corruption": corruption,
                      "regularity": REGULARITY[corruption], "discovery_rate": rate, "seed": seed,
                      "method": label, "algorithm": setting.method, "n_forget": int(len(task.forget_idx)),
                      **with_run_info({**metrics, "seconds": seconds,
                                       "original_train_seconds": original.train_seconds}, info),
                      "hparams": json.dumps(dict(setting.hparams), default=str), "store_key": produced_by}
            if at is None:
                stored[key(record)] = len(records)
                records.append(record)
            else:  # made by other code or settings: replaced, never kept beside the new run
                records[at] = record
            if progress_file is not None:
                _io.atomic_write_json(progress_file, records)
    wanted = {(c, r, s, m) for c in corruptions for r in rates for s in seeds for m in methods
              if c in only.get(m, corruptions)}
    return [r for r in records if key(r) in wanted]
