"""A per-example membership attack for unlearning in the style of U-LiRA (Hayes et al., "Inexact unlearning needs
more careful evaluations to avoid a false sense of privacy", SaTML 2025).

The question the attack asks is the one that defines exact unlearning: looking at one example ``x`` of the forget set
and at a model, can an attacker tell whether the model was *unlearned* by the method under test or *retrained* without
``x``? The population attacks of :mod:`unlearnlib.metrics` train one classifier for all examples; this one builds a
dedicated test for each example from models the attacker trains itself (*shadow models*):

1. for each of ``M`` model seeds, the original (trained on D) unlearned by the method, and the retrain model (trained
   on D \\ D_f), from the checkpoint cache;
2. each model's **logit-scaled confidence** on each forgotten example, ``phi = log p_y - log(1 - p_y)``
   (:func:`logit_confidence`), which is close to Gaussian over training randomness (Carlini et al., LiRA, 2022);
3. leave one seed out: the two models of that seed are the *targets*, the models of the other ``K = M - 1`` seeds the
   shadows. Per example, a Gaussian is fitted to the shadows' ``phi`` under each hypothesis, and a target model's
   ``phi`` is scored by the log-likelihood ratio ``log N(phi; unlearned) - log N(phi; retrained)``;
4. the attack's verdicts on the unlearned target (positives) and the retrained target (negatives) give an ROC curve:
   its area (AUC) and the true-positive rate at 1 % and 5 % false positives, one value per held-out seed.

Simplifications against the paper, each named in the chapter:

- **one fixed request.** U-LiRA draws a forget set per shadow model, so that every example is forgotten by some
  shadows and never seen by others; here every model forgets the same request (as in the NeurIPS 2023 unlearning
  challenge's evaluation), so the shadows differ only by their seed, and the attack measures how distinguishable the
  method's models are from retrained ones *on this request*.
- **a pooled variance.** With ``K`` of the order of 8, a per-example variance is itself noisy; as LiRA advises for
  few shadow models, each hypothesis gets one variance (the mean over examples of the per-example variances) and a
  per-example mean. ``variance="per_example"`` gives the paper's per-example Gaussians.
- **one query per example**, without the augmented queries LiRA can average.
- **leave-one-seed-out targets.** The held-out seeds' AUCs are paired across methods (the same targets), but they
  are not independent (two folds share ``K - 1`` shadows); intervals over them are an approximation.

A model that the evaluation finds diverged or collapsed (:func:`~unlearnlib.metrics.quick_evaluate`) is neither a
shadow nor a target: its seed's fold is an unscored record, and the shadows of the other folds are the seeds left.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from . import _io
from ._progress import tqdm
from .config import REPO_ROOT
from .fingerprint import modules_fingerprint
from .experiment import Setting, _resolve, reference_models, unlearned_model, with_run_info
from .metrics import cross_entropy, is_diverged, mia_loss_lr, quick_evaluate, task_outputs
from .profiles import Profile
from .provenance import store_key
from .tasks import ForgetTask

#: the false-positive rates at which the attack's true-positive rate is reported
FPR_LEVELS = (0.01, 0.05)
#: the attack's scores in every record
ATTACK_METRICS = ("ulira_auc", "ulira_tpr_at_1", "ulira_tpr_at_5")
#: the smallest number of shadow models per hypothesis a Gaussian is fitted to
MIN_SHADOWS = 2
#: the modules whose code makes a stored entry besides the method's own (which ``store_key`` already covers, with the
#: core): this module (the statistic, the loss attack) and the experiment layer (how a method's model is made)
ATTACK_MODULES = ("ulira", "experiment")


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """``log p_y - log(1 - p_y)`` for each row, computed from the logits without forming ``p`` (so that a confident
    model's 1 - p_y does not round to 0): ``z_y - logsumexp_{j != y} z_j``."""
    z = logits.detach().double()
    y = labels.long().view(-1, 1)
    true = z.gather(1, y).squeeze(1)
    others = z.scatter(1, y, float("-inf"))
    return (true - torch.logsumexp(others, dim=1)).cpu().numpy()


@dataclass(frozen=True)
class Gaussians:
    """Per-example means and standard deviations of ``phi`` under one hypothesis, from ``k`` shadow models."""

    mean: np.ndarray
    std: np.ndarray
    k: int


def fit_gaussians(scores: np.ndarray, *, variance: str = "global", min_std: float = 1e-3) -> Gaussians:
    """Gaussians fitted to ``scores`` (shadow models x examples): per-example means, and either one pooled standard
    deviation (``variance="global"``: the root of the mean per-example variance) or one per example
    (``"per_example"``). ``min_std`` keeps a hypothesis whose shadows agree exactly from giving an infinite ratio."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[0] < MIN_SHADOWS:
        raise ValueError(f"fitting a Gaussian per example needs at least {MIN_SHADOWS} shadow models "
                         f"(got an array of shape {scores.shape}); train more seeds")
    if variance not in ("global", "per_example"):
        raise ValueError(f"variance must be 'global' or 'per_example', not {variance!r}")
    var = scores.var(axis=0, ddof=1)
    if variance == "global":
        var = np.full_like(var, var.mean())
    return Gaussians(scores.mean(axis=0), np.maximum(np.sqrt(var), min_std), scores.shape[0])


def log_likelihood_ratio(phi: np.ndarray, unlearned: Gaussians, retrained: Gaussians) -> np.ndarray:
    """``log N(phi; unlearned) - log N(phi; retrained)`` per example: above 0, the target's confidence is more
    typical of an unlearned model than of a retrained one."""
    def log_density(g: Gaussians) -> np.ndarray:
        return -0.5 * ((phi - g.mean) / g.std) ** 2 - np.log(g.std)

    return log_density(unlearned) - log_density(retrained)


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """The area under the ROC curve: the probability that a random positive scores above a random negative (ties
    count one half), by the rank-sum formula."""
    from scipy.stats import rankdata

    pos, neg = np.asarray(positives, float), np.asarray(negatives, float)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("an ROC curve needs positives and negatives")
    ranks = rankdata(np.concatenate([pos, neg]))   # ties get their average rank
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def tpr_at_fpr(positives: np.ndarray, negatives: np.ndarray, fpr: float) -> float:
    """The share of positives above the strictest threshold that lets at most ``fpr`` of the negatives through
    (a score equal to the threshold counts as negative, so ties never buy true positives)."""
    pos, neg = np.asarray(positives, float), np.sort(np.asarray(negatives, float))[::-1]
    allowed = int(math.floor(fpr * len(neg)))
    threshold = neg[allowed] if allowed < len(neg) else -np.inf
    return float(np.mean(pos > threshold))


def attack_scores(positives: np.ndarray, negatives: np.ndarray) -> dict:
    """AUC and TPR at :data:`FPR_LEVELS` of an attack's scores on positives and negatives."""
    out = {"ulira_auc": roc_auc(positives, negatives)}
    for level in FPR_LEVELS:
        out[f"ulira_tpr_at_{round(level * 100)}"] = tpr_at_fpr(positives, negatives, level)
    return out


def leave_one_seed_out(unlearned: Mapping[int, np.ndarray | None], retrained: Mapping[int, np.ndarray | None], *,
                       targets: Sequence[int] | None = None, variance: str = "global") -> list[dict]:
    """The attack with each seed's pair of models as the targets and the other seeds' models as the shadows.

    ``unlearned`` and ``retrained`` map a seed to its model's ``phi`` on the forget set (None: the model is not
    usable, e.g. diverged). ``targets`` (default: every seed) are the seeds held out in turn; a seed not in
    ``targets`` is only ever a shadow. Returns one dict per target seed: the scores (NaN when a target is missing or
    fewer than :data:`MIN_SHADOWS` shadows are left), ``shadows_unlearned`` and ``shadows_retrained`` (K used) and the
    per-example log-likelihood ratios (``llr_unlearned``, ``llr_retrained``) for figures."""
    seeds = sorted(set(unlearned) | set(retrained))
    out = []
    for target in (seeds if targets is None else targets):
        shadow_u = [unlearned[s] for s in seeds if s != target and unlearned.get(s) is not None]
        shadow_r = [retrained[s] for s in seeds if s != target and retrained.get(s) is not None]
        row = {"seed": target, "shadows_unlearned": len(shadow_u), "shadows_retrained": len(shadow_r)}
        pos, neg = unlearned.get(target), retrained.get(target)
        if pos is None or neg is None or min(len(shadow_u), len(shadow_r)) < MIN_SHADOWS:
            row.update({k: float("nan") for k in ATTACK_METRICS})
            row["why_unscored"] = ("the target model is not usable" if pos is None or neg is None
                                   else f"fewer than {MIN_SHADOWS} usable shadow models")
            out.append(row)
            continue
        g_u = fit_gaussians(np.stack(shadow_u), variance=variance)
        g_r = fit_gaussians(np.stack(shadow_r), variance=variance)
        llr_pos, llr_neg = log_likelihood_ratio(pos, g_u, g_r), log_likelihood_ratio(neg, g_u, g_r)
        row.update(attack_scores(llr_pos, llr_neg))
        row.update({"llr_unlearned": llr_pos, "llr_retrained": llr_neg})
        out.append(row)
    return out


def memorisation(original: Mapping[int, np.ndarray], retrained: Mapping[int, np.ndarray],
                 seeds: Sequence[int]) -> np.ndarray:
    """Per example, how much more confident the models that trained on it are than those that did not: the mean of
    ``phi`` over the originals of ``seeds`` minus its mean over their retrain models (Feldman's memorisation, read
    on the logit scale). Only shadow seeds should be passed, so that the examples it selects are not chosen on a
    model that is later attacked."""
    return (np.mean([original[s] for s in seeds], axis=0) - np.mean([retrained[s] for s in seeds], axis=0))


# -- running it: shadow models from the checkpoint cache, methods through the registry -------------------------------

def model_scores(task: ForgetTask, profile: Profile, methods: Mapping[str, Mapping | Setting], *,
                 seeds: Sequence[int], device="auto", progress: bool = True,
                 store: str | Path | None = None) -> dict[str, dict[int, dict]]:
    """For every method (``{label: hyperparameters or Setting}``; ``"original"`` and ``"retrain"`` are the cached
    models) and seed: the method's model from that seed's original, its quick evaluation (the collapse guard of
    ``profile``) and population loss attack, its ``phi`` on the forget set (None for a diverged or collapsed model) and the seconds it took.

    ``store`` (a JSON file, written atomically after every run) makes an interrupted run resume: an entry is reused
    only when its :func:`~unlearnlib.provenance.store_key` (method, hyperparameters, request, seed, the original's
    and the retrain model's cache keys, the method's and the core's code, and the code of :data:`ATTACK_MODULES`)
    equals the key of the run it stands for."""
    stored = {}
    if store is not None and Path(store).exists():
        stored = _io.read_json(store, remedy="delete it to recompute the attack's models")
    out: dict[str, dict[int, dict]] = {label: {} for label in methods}
    runs = [(s, label) for s in seeds for label in methods]
    bar = tqdm(runs, desc="shadow and target models", disable=not progress, leave=False)
    refs, refs_seed = None, None
    for seed, label in bar:
        bar.set_postfix(seed=seed, method=label)
        if refs_seed != seed:
            refs, refs_seed = reference_models(task, profile, seed, device=device, progress=progress), seed
        setting = _resolve(label, methods[label])
        key = store_key(method=setting.method, hparams=setting.hparams, request=task, seed=seed,
                        extra={"original": refs.original.key, "retrain": refs.retrain.key,
                               "attack": modules_fingerprint(ATTACK_MODULES)})
        entry_id = f"{label}|{seed}"
        if stored.get(entry_id, {}).get("store_key") == key:
            entry = dict(stored[entry_id])
        else:
            entry = _score_model(setting, refs, task, profile, seed, device)
            entry["store_key"] = key
            stored[entry_id] = entry
            if store is not None:
                _io.atomic_write_json(store, stored)
        phi = entry.get("phi")
        out[label][seed] = {**entry, "phi": None if phi is None else np.asarray(phi, float)}
    return out


def _score_model(setting: Setting, refs, task: ForgetTask, profile: Profile, seed: int, device) -> dict:
    """One model's quick metrics, the population loss attack (:func:`~unlearnlib.metrics.mia_loss_lr`, for the
    comparison with this attack) and ``phi`` on the forget set, from one pass over D_f and the test split."""
    model, seconds, info = unlearned_model(setting, refs, task, seed=seed, device=device)
    out = task_outputs(model, task, device=device, retain=False)
    record = with_run_info(quick_evaluate(out, task, device=device, collapse_guard=profile.collapse_guard), info)
    phi = None
    record["mia_loss_lr"] = float("nan")
    if not is_diverged(record):
        d = task.data
        y_forget = d.y_train[torch.from_numpy(task.forget_idx)]
        y_test = torch.cat([d.y_test[torch.from_numpy(task.test_retain_idx)],
                            d.y_test[torch.from_numpy(task.test_forget_idx)]])
        phi = logit_confidence(out.forget, y_forget)
        record["mia_loss_lr"] = mia_loss_lr(cross_entropy(out.forget, y_forget),
                                            cross_entropy(torch.cat([out.test_retain, out.test_forget]), y_test),
                                            seed=seed)
    return {**record, "seconds": float(seconds), "algorithm": setting.method,
            "hparams": json.dumps(dict(setting.hparams), sort_keys=True, default=str),
            "phi": None if phi is None else [float(v) for v in phi]}


def attack_records(scores: Mapping[str, Mapping[int, dict]], *, task_label: str, targets: Sequence[int] | None = None,
                   variance: str = "global") -> tuple[list[dict], dict[str, list[dict]]]:
    """One record per method and held-out target seed: the attack's scores, the K used, the target model's quick
    metrics, seconds and divergence fields; and, per method, the folds with their per-example ratios (for figures).

    Every method is attacked against the same retrained models (``scores["retrain"]``); a target whose unlearned
    model is unusable gives an unscored record that keeps its divergence fields."""
    if "retrain" not in scores:
        raise ValueError("the attack needs the retrain models: include 'retrain' in the methods")
    retrained = {s: e["phi"] for s, e in scores["retrain"].items()}
    records, folds = [], {}
    for label, by_seed in scores.items():
        unlearned = {s: e["phi"] for s, e in by_seed.items()}
        folds[label] = leave_one_seed_out(unlearned, retrained, targets=targets, variance=variance)
        for fold in folds[label]:
            entry = by_seed[fold["seed"]]
            kept = {k: v for k, v in entry.items() if k not in ("phi", "store_key")}
            records.append({"task": task_label, "method": label, "seed": fold["seed"], **kept,
                            **{k: fold[k] for k in (*ATTACK_METRICS, "shadows_unlearned", "shadows_retrained")},
                            "why_unscored": fold.get("why_unscored"), "variance": variance})
    return records, folds


def null_check(retrained: Mapping[int, np.ndarray], *, variance: str = "global") -> list[dict]:
    """The attack with no difference to find: the retrain models split into two halves by seed, one half labelled
    "unlearned". Each pair of seeds (one from each half) is held out in turn; the AUCs scatter around 0.5 by as much
    as the seeds' randomness alone moves them (with about half the shadows of the real attack)."""
    seeds = sorted(s for s, v in retrained.items() if v is not None)
    half = len(seeds) // 2
    group_a, group_b = seeds[:half], seeds[half:2 * half]
    out = []
    for a, b in zip(group_a, group_b):
        shadow_a = np.stack([retrained[s] for s in group_a if s != a])
        shadow_b = np.stack([retrained[s] for s in group_b if s != b])
        if min(len(shadow_a), len(shadow_b)) < MIN_SHADOWS:
            raise ValueError(f"the null check needs at least {2 * (MIN_SHADOWS + 1)} usable retrain models")
        g_a, g_b = fit_gaussians(shadow_a, variance=variance), fit_gaussians(shadow_b, variance=variance)
        out.append({"seeds": (a, b), "shadows": len(shadow_a),
                    **attack_scores(log_likelihood_ratio(retrained[a], g_a, g_b),
                                    log_likelihood_ratio(retrained[b], g_a, g_b))})
    return out


def chosen_setting(chapter: str, path: Sequence[str], *, profile: str = "cpu",
                   root: str | Path | None = None) -> tuple[dict, str]:
    """The hyperparameters another chapter chose, read from its committed results config (``path`` is the chain of
    keys under ``config``, e.g. ``("chosen", "random", "npo")``), with a note naming where they came from. An error
    says which file or key is missing."""
    file = (Path(root) if root is not None else REPO_ROOT / "results") / chapter / f"{profile}.json"
    payload = _io.read_json(file, remedy=f"restore it from git or execute the {chapter} chapter on {profile}") \
        if file.exists() else None
    if payload is None:
        raise FileNotFoundError(f"{file} does not exist: execute the {chapter} chapter on profile {profile!r} first "
                                "(make reproduce PROFILE=" + profile + f" CHAPTER={chapter})")
    node = payload.get("config", {})
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(f"{file} has no config entry {'/'.join(path)} (missing {key!r}); re-execute the "
                           f"{chapter} chapter")
        node = node[key]
    return dict(node), f"{chapter} ({profile}): {' / '.join(path)}"
