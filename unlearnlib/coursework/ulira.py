"""Checks of the U-LiRA chapter's exercises (``coursework/ulira.yml``): every number is recomputed with
:mod:`unlearnlib.ulira` from the models' scores the student passes (``random_scores`` of the setup)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from .checks import CheckFailed, expect, expect_close_or_nan, expect_mapping, expect_number, register

#: the keys of ``ex-ulira-variance``'s answer, and the ``variance`` argument of ``ulira.attack_records`` for each
VARIANCES = {"pooled": "global", "per example": "per_example"}
#: the method whose traces ``ex-ulira-exposed`` correlates with memorisation
EXPOSED_METHOD = "neggrad_plus"


def _as_dict(answer):
    """A pandas Series (anything with ``to_dict``) as the dict it stands for."""
    return answer.to_dict() if hasattr(answer, "to_dict") and not isinstance(answer, Mapping) else answer


def _expect_scores(scores, methods: Sequence[str]) -> None:
    expect(isinstance(scores, Mapping) and all(m in scores for m in methods),
           f"scores should be the models' scores of the setup (random_scores, from ulira.model_scores) with the "
           f"methods {list(methods)!r}")


def _mean_auc(scores: Mapping, variance: str) -> float:
    """The original's AUC averaged over the held-out seeds (unscored folds left out; NaN when none is scored)."""
    from .. import ulira

    records, _ = ulira.attack_records({m: scores[m] for m in ("original", "retrain")}, task_label="check",
                                      variance=variance)
    values = np.array([r["ulira_auc"] for r in records if r["method"] == "original"], float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else math.nan


def _close(value: float, target: float) -> bool:
    return not math.isnan(value) and not math.isnan(target) and abs(value - target) <= 1e-9 * (1 + abs(target))


@register("ex-ulira-variance")
def _variance(answer, *, scores):
    """``answer``: ``{"pooled": auc, "per example": auc}``, the original's mean AUC over the held-out seeds of
    ``scores`` with the pooled and with the per-example variance, recomputed with ``ulira.attack_records``."""
    _expect_scores(scores, ("original", "retrain"))
    answer = expect_mapping(_as_dict(answer), list(VARIANCES), "the answer")
    given = {}
    for key in VARIANCES:
        value = expect_number(answer[key], f'answer["{key}"]') if not _is_nan(answer[key]) else math.nan
        expect(math.isnan(value) or 0.0 <= value <= 1.0,
               f'answer["{key}"] is {value:.4g}: an AUC is a fraction in [0, 1], not a percentage')
        given[key] = value
    target = {key: _mean_auc(scores, variance) for key, variance in VARIANCES.items()}
    expect(not (_close(given["pooled"], target["per example"]) and _close(given["per example"], target["pooled"])
                and not _close(given["pooled"], target["pooled"])),
           'the two entries are swapped: "pooled" is the chapter\'s attack (variance="global", the default), '
           '"per example" the one with variance="per_example"')
    for key, variance in VARIANCES.items():
        expect_close_or_nan(given[key], target[key], f'answer["{key}"]', tol=1e-9,
                            why_nan="no held-out seed of your run is scored (every fold lacks a usable model)",
                            hint=f'the original\'s ulira_auc from ulira.attack_records(random_scores, ..., '
                                 f'variance="{variance}"), averaged over the held-out seeds (one record per seed; '
                                 f"an unscored seed, NaN, is left out)")
    moved = target["per example"] - target["pooled"]
    return (f"the original's AUC is {target['pooled']:.3f} with the pooled variance and {target['per example']:.3f} "
            f"with one per example ({100 * moved:+.1f} points)")


def _is_nan(value) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _exposure(scores: Mapping, seeds: Sequence[int], targets: Sequence[int] | None = None) -> np.ndarray | None:
    """Per image, the mean over the scored folds of the log-likelihood ratio of the unlearned target, with the
    models of ``seeds`` as shadows and ``targets`` (default: the same seeds) held out in turn; None without a fold."""
    from .. import ulira

    u = {s: scores[EXPOSED_METHOD][s]["phi"] for s in seeds}
    r = {s: scores["retrain"][s]["phi"] for s in seeds}
    folds = [f for f in ulira.leave_one_seed_out(u, r, targets=targets) if "llr_unlearned" in f]
    return np.mean([f["llr_unlearned"] for f in folds], axis=0) if folds else None


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return math.nan if a is None else float(spearmanr(a, b).statistic)


@register("ex-ulira-exposed")
def _exposed(answer, *, exposure, scores, targets, selection, memo):
    """``answer``: the Spearman correlation between ``exposure`` (NegGrad+'s per-image log-likelihood ratio on the
    unlearned targets, averaged over the folds of an attack that uses only the seeds in ``targets``, as targets and
    as shadows) and ``memo`` (the memorisation score of the seeds in ``selection``), both recomputed from ``scores``."""
    from .. import ulira

    _expect_scores(scores, ("original", "retrain", EXPOSED_METHOD))
    targets, selection = [int(s) for s in targets], [int(s) for s in selection]
    expect(not set(targets) & set(selection),
           f"the seeds {sorted(set(targets) & set(selection))} both chose the memorised images and are attacked: "
           "pass the targets of section 6 (mem_targets) and its selection seeds (select_seeds)")
    missing = [s for s in targets + selection if s not in scores[EXPOSED_METHOD] or s not in scores["retrain"]]
    expect(not missing, f"scores hold no model of the seeds {missing}: pass random_scores of the setup")
    expected_memo = ulira.memorisation({s: scores["original"][s]["phi"] for s in selection},
                                       {s: scores["retrain"][s]["phi"] for s in selection}, selection)
    memo = np.asarray(memo, float)
    expect(memo.shape == expected_memo.shape and np.allclose(memo, expected_memo, atol=1e-9),
           "memo is not the memorisation score of the selection seeds (ulira.memorisation on their originals and "
           "retrain models): use memo from the setup")
    right = _exposure(scores, targets)
    everyone = sorted(set(scores[EXPOSED_METHOD]) | set(scores["retrain"]))
    all_seeds = _exposure(scores, everyone)
    pooled_shadows = _exposure(scores, everyone, targets=targets)
    try:
        given = np.asarray(exposure, float)
    except (TypeError, ValueError):
        raise CheckFailed(f"exposure should be an array of numbers, one per forgotten image, not "
                          f"{type(exposure).__name__}") from None
    expect(right is None or given.shape == right.shape,
           f"exposure has shape {given.shape}; it should hold one value per forgotten image ({len(memo)}), in the "
           "order of the request: average the folds' llr_unlearned arrays over the folds (axis=0)")
    if right is not None and not np.allclose(given, right, atol=1e-9, rtol=1e-9):
        for wrong, why in ((all_seeds, "every seed of the pool is held out and used as a shadow"),
                           (pooled_shadows, "the selection seeds are among the shadows (the folds of the attack on "
                                            "the whole pool)")):
            expect(wrong is None or not np.allclose(given, wrong, atol=1e-9, rtol=1e-9),
                   f"exposure comes from an attack where {why}: the seeds that chose the memorised images share "
                   "their models with memo; keep only the seeds in mem_targets, as targets and as shadows")
        raise CheckFailed("exposure is not the mean, over the scored held-out seeds, of NegGrad+'s log-likelihood "
                          "ratios on the unlearned target (llr_unlearned of ulira.leave_one_seed_out on the phi of "
                          "neggrad_plus and retrain, restricted to mem_targets)")
    target = _spearman(right, expected_memo)
    if not _is_nan(answer) and not math.isnan(target):
        value = expect_number(answer, "the answer")
        expect(-1.0 <= value <= 1.0, f"the answer is {value:.4g}; a correlation lies in [-1, 1]")
        if not _close(value, target):
            for wrong, why in ((all_seeds, "with every seed of the pool"),
                               (pooled_shadows, "with the selection seeds among the shadows")):
                expect(not _close(value, _spearman(wrong, expected_memo)),
                       f"the answer is the correlation of an attack {why}: the seeds that chose the memorised images "
                       "share their models with memo; keep only the seeds in mem_targets, as targets and as shadows")
            pearson = float(np.corrcoef(right, expected_memo)[0, 1])
            expect(not _close(value, pearson), "the answer is Pearson's correlation: the exercise asks for "
                                               "Spearman's (a correlation of ranks, scipy.stats.spearmanr)")
    expect_close_or_nan(answer, target, "the answer", tol=1e-9,
                        why_nan="no held-out seed of the attack is scored (every fold lacks a usable model)",
                        hint="the Spearman correlation between exposure and memo (scipy.stats.spearmanr)")
    return f"Spearman correlation {target:.2f} over {len(memo)} images, with no selection seed in the attack"
