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
- :func:`run_methods` reports, on the test split, the reported requests and seeds with the chosen settings.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from ._progress import tqdm

from .methods import unlearn
from .metrics import (Outputs, diverged_record, evaluate, quick_evaluate, retrain_gap, task_outputs,
                      validation_evaluate)
from .profiles import Profile
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
        return quick_evaluate(model, task, device=device, retain=quick == "retain")
    return evaluate(model, task, reference=reference, seed=seed, device=device,
                    svc_max_samples=profile.svc_max_samples)


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
        model, seconds, source, info = result.model, result.seconds, "measured", result.info
        if info.get("diverged"):  # the method stopped at a non-finite loss or output: a diverged run, never scored
            keys = _score_keys(task, quick, ctx.ref_out is not None)
            return {**diverged_record(keys, step=info.get("diverged_step"),
                                      reason=info.get("diverged_reason", "non-finite loss")), **info}, seconds, source
    return {**_score(model, task, profile, seed, device, quick, ctx.ref_out), **info}, seconds, source


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
    request and what the method reported (e.g. its steps).
    """
    from .tasks import instances

    if not requests:
        raise ValueError("run_continual needs at least one request")
    data = requests[0].data
    refs = reference_models(requests[0], profile, seed, device=device, progress=progress, retrain=False)
    records = []
    for label, spec in tqdm(list(methods.items()), desc="continual unlearning", disable=not progress, leave=False):
        setting = _resolve(label, spec)
        model, forgotten = refs.original.model, np.array([], np.int64)
        for j, request in enumerate([None, *requests]):
            seconds, info = 0.0, {}
            if request is not None:
                result = unlearn(setting.method, model, request, seed=seed * 1000 + j, device=device,
                                 **setting.hparams)
                model, seconds, info = result.model, result.seconds, result.info
                forgotten = np.concatenate([forgotten, request.forget_idx])
            so_far = instances(data, forgotten if len(forgotten) else requests[0].forget_idx)
            rec = quick_evaluate(model, so_far, device=device, retain=retain)
            if request is None:  # nothing forgotten yet: report the first request's accuracy as a baseline
                rec["forget_acc"] = float("nan")
            current = request if request is not None else requests[0]
            rec["request_acc"] = accuracy(model, data, current.forget_idx, split="train", device=device)
            records.append({"method": label, "algorithm": setting.method, "seed": seed, "request": j,
                            "forgotten": len(forgotten), **rec, "seconds": seconds, **info,
                            "hparams": json.dumps(dict(setting.hparams), default=str)})
    return records


class ProtocolError(ValueError):
    """A selection step was asked to do what the evaluation protocol forbids (read the test split, tune on a
    reported request or seed, give methods unequal budgets). The message says what to do instead."""


@dataclass
class Tuning:
    """What :func:`tune` did: one record per setting tried (scored on the validation split), the setting chosen
    for each method, and ``config``, the facts a results file must record (request, seed, budget, grids, choice)."""

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


def tune(request: ForgetTask, profile: Profile, grids: Mapping[str, Sequence[Mapping]], *, seed: int,
         reported: Sequence[ForgetTask], reported_seeds: Sequence[int] | None = None, split: str = "validation",
         device="auto", progress: bool = True,
         view: Callable[[ForgetTask, int], ForgetTask] | None = None,
         methods: Mapping[str, str] | None = None) -> Tuning:
    """Choose each method's hyperparameters on a tuning request, as the protocol says.

    Every setting in ``grids`` ({method: [settings, ...]}, the same number for every method) runs on ``request``
    (never one of the ``reported`` requests) with the original model of the tuning ``seed`` (never one of the
    ``reported_seeds``, by default the profile's seeds). Each model is scored with
    :func:`~unlearnlib.metrics.validation_evaluate` and ranked by :func:`~unlearnlib.metrics.retrain_gap` on
    ``forget_acc`` and ``val_acc`` against the request's own retrain model (the common practice in the literature;
    that model is never reported). The method sees ``request.sealed()``: its test split is empty, so no choice can
    read it. ``view`` (e.g. a few-shot budget) works as in :func:`run_methods`; with a view the forget accuracy of
    the score is read on the forgotten class's validation images (``val_forget_acc``), since the method may not
    read D_f beyond its budget. Ties go to the first setting tried. A grid key that is not a registered method
    name is a label; ``methods`` maps it to the method it runs (e.g. ``{"lfssd (official order)": "lfssd"}``), so one
    method can be tuned twice under two variants.
    """
    if split != "validation":
        raise ProtocolError(f"tuning on the {split!r} split is refused: the test split is read only to report. Tune on "
                            f"split='validation', carved from the training data (data.val_idx)")
    grids, sizes = _equal_budget(grids, "tune", profile)
    reported_seeds = list(profile.seeds if reported_seeds is None else reported_seeds)
    check_tuning_request(request, seed, reported=reported, reported_seeds=reported_seeds)
    sealed = request.sealed()
    if len(sealed.val_idx) == 0:
        raise ProtocolError(f"{request.describe()} has no validation split to tune on")
    # the reference models train on D and D_r only; they come from the cache under the request's own data key
    refs = reference_models(request, profile, seed, device=device, progress=progress)
    _warm_up(refs.original.model, sealed, device)
    ref_rec = validation_evaluate(refs.retrain.model, sealed, device=device)
    seen = view(sealed, seed) if view else sealed
    forget_key = "forget_acc"
    if view is not None:
        if len(sealed.val_forget_idx) == 0:
            raise ProtocolError("a tuning view (sample budget) needs a class or sub-class request, whose validation "
                                "split holds images of the forgotten class to score forgetting on")
        forget_key = "val_forget_acc"
    methods = dict(methods or {})
    runs = [(name, dict(hp)) for name, grid in grids.items() for hp in grid]
    records = []
    for name, hp in tqdm(runs, desc=f"tuning on {request.describe()}", disable=not progress, leave=False):
        result = unlearn(methods.get(name, name), refs.original.model, seen, seed=seed, device=device, **hp)
        rec = validation_evaluate(result.model, sealed, device=device)
        records.append({"method": name, "hparams": json.dumps(hp, default=str), "seed": seed, **rec,
                        "seconds": result.seconds,
                        "retrain_gap": retrain_gap(rec, ref_rec, utility="val_acc", forget=forget_key)})
    chosen = best_settings(records)
    config = {"request": request.describe(), "request_params": {k: v for k, v in request.params.items()
                                                                 if k != "source_idx"},
              "seed": seed, "reported_seeds": reported_seeds, "budget": min(sizes.values()), **_cap_note(profile),
              "selection": f"retrain_gap on {forget_key} and val_acc (validation split) against the tuning "
                           f"request's retrain model",
              "view": None if view is None else seen.params.get("per_class"),
              "reference": {k: ref_rec[k] for k in ("forget_acc", "val_acc", "val_forget_acc")},
              "grids": {name: [dict(hp) for hp in grid] for name, grid in grids.items()}, "chosen": chosen,
              "methods": {name: methods.get(name, name) for name in grids}}
    return Tuning(records, chosen, config)


def validation_budget(request: ForgetTask, per_class: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` validation images of every class, drawn with ``seed``: those of the forgotten classes and those
    of the others (indices into ``request.data``'s training split). What a few-shot tuning scores on."""
    rng = np.random.default_rng([seed, 4409])
    y = request.data.y_train.numpy()
    return (draw_per_class(request.val_forget_idx, y, per_class, rng),
            draw_per_class(request.val_retain_idx, y, per_class, rng))


def tune_few_shot(request: ForgetTask, profile: Profile, grids: Mapping[str, Sequence[Mapping]], *, per_class: int,
                  seed: int, reported: Sequence[ForgetTask], reported_seeds: Sequence[int] | None = None,
                  device="auto", progress: bool = True, methods: Mapping[str, str] | None = None) -> Tuning:
    """Choose hyperparameters for a few-shot class request within the setting's budget, as the protocol says.

    A class-level method given ``per_class`` samples per class must be tuned with that budget too, not with the
    complete data a retrain model needs. Every setting in ``grids`` (the same number per method) runs on the tuning
    ``request`` (a class or sub-class request that is not reported) with the tuning ``seed``'s original model,
    seeing ``tasks.few_shot(request, per_class)`` drawn from the training split; it is scored on another
    ``per_class`` images per class drawn from the *validation* split (:func:`validation_budget`). No retrain model
    is trained or read: for a forgotten class the target is known, a model that never saw the class recognises none
    of its images (forget target 0), and the remaining classes should keep the original model's accuracy on the
    same validation images. The score is ``retrain_gap`` against that target. The whole procedure reads
    2 x ``per_class`` images per class and the original model.
    """
    grids, sizes = _equal_budget(grids, "tune_few_shot", profile)
    if request.kind != "full_class":
        raise ProtocolError(f"tune_few_shot scores forgetting against the known target of a forgotten class (0 %); "
                            f"a {request.kind!r} request has no such target: use tune() with its retrain model")
    reported_seeds = list(profile.seeds if reported_seeds is None else reported_seeds)
    check_tuning_request(request, seed, reported=reported, reported_seeds=reported_seeds)
    sealed = request.sealed()
    score_forget, score_retain = validation_budget(sealed, per_class, seed=seed)
    if len(score_forget) == 0 or len(score_retain) == 0:
        raise ProtocolError(f"{request.describe()} has no validation images of the forgotten or the remaining classes "
                            f"to score on")
    original = reference_models(request, profile, seed, device=device, progress=progress, retrain=False).original.model
    seen = tasks_few_shot(sealed, per_class, seed=seed)
    target = {"val_forget_acc": 0.0,
              "val_acc": accuracy(original, sealed.data, score_retain, split="train", device=device)}
    methods = dict(methods or {})
    runs = [(name, dict(hp)) for name, grid in grids.items() for hp in grid]
    records = []
    for name, hp in tqdm(runs, desc=f"few-shot tuning on {request.describe()}", disable=not progress, leave=False):
        result = unlearn(methods.get(name, name), original, seen, seed=seed, device=device, **hp)
        rec = {"val_forget_acc": accuracy(result.model, sealed.data, score_forget, split="train", device=device),
               "val_acc": accuracy(result.model, sealed.data, score_retain, split="train", device=device)}
        records.append({"method": name, "hparams": json.dumps(hp, default=str), "seed": seed, **rec,
                        "seconds": result.seconds,
                        "retrain_gap": retrain_gap(rec, target, utility="val_acc", forget="val_forget_acc")})
    chosen = best_settings(records)
    config = {"request": request.describe(), "seed": seed, "reported_seeds": reported_seeds,
              "budget": min(sizes.values()), **_cap_note(profile), "per_class": per_class,
              "selection": f"retrain_gap on val_forget_acc (target 0) and val_acc (target: the original model's "
                           f"accuracy) over {per_class} validation images per class; no retrain model",
              "images_read": int(len(seen.data.y_train) + len(score_forget) + len(score_retain)),
              "target": target, "grids": {name: [dict(hp) for hp in grid] for name, grid in grids.items()},
              "chosen": chosen, "methods": {name: methods.get(name, name) for name in grids}}
    return Tuning(records, chosen, config)


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


def best_settings(records: Sequence[dict]) -> dict[str, dict]:
    """For each method, the setting with the smallest ``retrain_gap`` (ties: the first tried, i.e. the cheaper
    one if grids are ordered by cost)."""
    best: dict[str, dict] = {}
    for rec in records:
        if rec["method"] not in best or rec["retrain_gap"] < best[rec["method"]]["retrain_gap"]:
            best[rec["method"]] = rec
    return {name: json.loads(rec["hparams"]) for name, rec in best.items()}


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
                   seed: int, reported: Sequence[ForgetTask], reported_seeds: Sequence[int] | None = None,
                   device="auto", progress: bool = True) -> Tuning:
    """Choose each method's hyperparameters for REM's benchmark on tuning requests, as the protocol says.

    ``requests`` are corrupted tasks (typically one per corruption) drawn with the tuning ``seed``, never one of the
    ``reported`` tasks or seeds. Every setting of ``grids`` (the same number for every method) runs on every request
    from the request's own original model (trained on its corrupted data, through the cache), and is scored by
    ``val_acc x healed``: the clean validation accuracy times the clean-label accuracy on the request's corrupted
    set. The request is never reported, so its clean labels may be read; the test split is not. The setting with the
    best mean score over the requests wins (ties: the first tried). Partial discovery makes the retrain model a poor
    target here (it relearns the hidden corruption), which is why the score is not :func:`tune`'s retrain gap.
    """
    from .metrics import healed_accuracy

    grids, sizes = _equal_budget(grids, "tune_corrupted", profile)
    reported_seeds = list(profile.seeds if reported_seeds is None else reported_seeds)
    records = []
    for request in requests:
        if request.kind != "corrupted":
            raise ProtocolError(f"tune_corrupted needs corrupted tasks (tasks.corrupted), got {request.describe()}")
        check_tuning_request(request, seed, reported=reported, reported_seeds=reported_seeds)
        sealed = request.sealed()
        if len(sealed.val_idx) == 0:
            raise ProtocolError(f"{request.describe()} has no validation split to tune on")
        original = train_or_load(sealed.data, sealed.train_idx, profile.arch, profile.recipe_for(sealed.data.name),
                                 seed=seed, role=f"original ({request.corruption['kind']}, tuning)", device=device,
                                 progress=progress).model
        _warm_up(original, sealed, device)
        runs = [(name, dict(hp)) for name, grid in grids.items() for hp in grid]
        for name, hp in tqdm(runs, desc=f"tuning on {request.corruption['kind']}", disable=not progress,
                             leave=False):
            result = unlearn(name, original, sealed, seed=seed, device=device, **hp)
            val = validation_evaluate(result.model, sealed, device=device)
            healed = healed_accuracy(result.model, sealed, device=device)
            records.append({"method": name, "hparams": json.dumps(hp, default=str), "seed": seed,
                            "corruption": request.corruption["kind"], "val_acc": val["val_acc"], "healed": healed,
                            "score": val["val_acc"] * healed, "seconds": result.seconds})
    mean = {}
    for rec in records:
        mean.setdefault((rec["method"], rec["hparams"]), []).append(rec["score"])
    chosen: dict[str, dict] = {}
    best: dict[str, float] = {}
    for (name, hp), scores in mean.items():  # insertion order = order tried, so ties go to the first
        if name not in best or np.mean(scores) > best[name]:
            best[name], chosen[name] = float(np.mean(scores)), json.loads(hp)
    config = {"requests": [r.describe() for r in requests], "seed": seed, "reported_seeds": reported_seeds,
              "budget": min(sizes.values()), **_cap_note(profile),
              "selection": "mean over the tuning requests of val_acc (clean validation split) x healed (the "
                           "request's corrupted set, clean labels)",
              "grids": {name: [dict(hp) for hp in grid] for name, grid in grids.items()}, "chosen": chosen}
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
        # paper-smoke: the same dataset, model and code paths at the smoke profile's size, one pass of everything
        return {**paper, "train_size": profile.train_size, "test_size": profile.test_size,
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
    stopped: runs already in the file are not repeated. ``only`` ({label: [corruption, ...]}) runs a method on
    some corruptions only, e.g. ``suppress_target``, which needs a trigger.
    """
    from pathlib import Path

    from . import _io
    from .metrics import corruption_metrics
    from .tasks import corrupted, fixed

    corruption_kw, only = corruption_kw or {}, dict(only or {})
    unknown = sorted(set(corruptions) - set(REGULARITY))
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; choose from {', '.join(REGULARITY)}")
    done: list[dict] = []
    if progress_file is not None and Path(progress_file).exists():
        done = _io.read_json(progress_file, remedy="delete it to start the grid afresh")
    key = lambda r: (r["corruption"], r["discovery_rate"], r["seed"], r["method"])  # noqa: E731
    seen = {key(r) for r in done}
    records = list(done)
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
            if (corruption, rate, seed, label) in seen or corruption not in only.get(label, corruptions):
                continue
            setting = _resolve(label, spec)
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
            records.append({"task": f"corrupted: {corruption}", "corruption": corruption,
                            "regularity": REGULARITY[corruption], "discovery_rate": rate, "seed": seed,
                            "method": label, "algorithm": setting.method, "n_forget": int(len(task.forget_idx)),
                            **corruption_metrics(model, task, device=device), "seconds": seconds,
                            "original_train_seconds": original.train_seconds, **info,
                            "hparams": json.dumps(dict(setting.hparams), default=str)})
            if progress_file is not None:
                _io.atomic_write_json(progress_file, records)
    wanted = {(c, r, s, m) for c in corruptions for r in rates for s in seeds for m in methods
              if c in only.get(m, corruptions)}
    return [r for r in records if key(r) in wanted]
