"""Metrics of forgetting and of what survives, each defined once here and named after its source.

Accuracies are sample-weighted. Every membership-inference attack (MIA) keeps the definition of the work it comes
from, because the variants answer different questions and are not interchangeable; whatever the variant, read it
against the retrain model's value, never against 0 or 1:

``mia_entropy_lr`` (SSD; Chundawat et al. "bad teacher")
    Logistic regression on the prediction entropy, fitted on retain-train samples (members, 1) against the test
    set (non-members, 0) with balanced class weights, then applied to D_f. Reported: the fraction of D_f predicted
    "member". A model that never saw D_f should score like the retrain model.
``mia_loss_lr`` (NeurIPS 2023 unlearning challenge starting kit, ``simple_mia``)
    Logistic regression on the per-sample cross-entropy loss, D_f (1) against the test set (0), the larger side
    subsampled to the smaller; reported as the mean accuracy of 10 stratified shuffle-split folds. 0.5 means the
    attacker cannot tell D_f from unseen data.
``mia_efficacy_svc`` (SalUn / Sparse unlearning "MIA-Efficacy")
    An RBF ``SVC(C=3, gamma="auto")`` on the confidence of the true class p_y, trained on retain samples (members)
    against test samples (non-members), applied to D_f. Reported: the fraction of D_f judged *non-member*.
    Departure: the original uses the first ``len(test)`` retain samples; we draw at most ``svc_max_samples`` (seeded)
    from each side so that one evaluation costs seconds on a CPU.

Corrupted data (REM, Schoepf et al. 2025), see :func:`corruption_metrics`:

``healed``
    Accuracy on *every* corrupted training sample (the discovered D_f and the hidden rest), scored against its
    clean label, with the images as they were trained on (triggers included). Computed in index order on an
    unshuffled pass (the official code indexes a shuffled loader here, which scores random images instead).
``utility``
    Clean test accuracy; for an interclass label swap, on the classes that were not swapped.
``utility_x_healed``
    Their product per run, REM's single score (the paper reports its mean +- SEM).
``healed_found`` and ``healed_hidden``
    ``healed`` on the two parts of the corrupted set: the discovered samples D_f, which every method is shown, and
    the hidden rest, which sits in D_r with its wrong labels (NaN at 100 % discovery: nothing is hidden). A method
    that only edits what it is shown (``refuse_instances``, a lookup) raises the first and leaves the second where
    the original has it; REM's claim, that redirection also heals what was not found, is about the second.
``healed_test``
    The corruption's test-time counterpart: triggered test images (true labels, target class excluded) for a
    trigger, the two swapped classes of the test set for a label swap; NaN for random labels, which have none.
``target_acc``
    For a trigger: the clean test accuracy on the trigger's target class (NaN otherwise). Healed cannot see a
    model that stops predicting the target class altogether (most triggered images are not of that class), so
    every trigger table shows this beside it: a model that heals keeps it, one that deletes the class loses it.

Divergence: a model whose weights, or whose outputs on the evaluated data, are not finite is *diverged*. Every
evaluation here (:func:`evaluate`, :func:`quick_evaluate`, :func:`validation_evaluate`, :func:`corruption_metrics`)
returns for it a record with ``diverged=True`` and NaN in every metric (:func:`diverged_record`), never a score: NaN
logits turned into numbers would predict class 0 and look like a model. Every other record holds ``diverged=False``.

Collapse: a finite model whose accuracy on the classes it should keep is no better than predicting the most frequent
of them (within three binomial standard errors, :func:`collapse_threshold`) has lost its function; a forget accuracy
of 0 from it is not forgetting. :func:`evaluate`, :func:`quick_evaluate` and :func:`corruption_metrics` return for it
the same unscored record, with ``collapsed=True`` and a ``diverged_reason`` that gives the accuracy it fell to
(:func:`collapsed_record`); tables say "collapsed on k of S seeds" for it (:func:`unlearnlib.stats.seeds_note`).
Selection steps (:func:`validation_evaluate`) score such a model as they score any other: its low validation accuracy
already loses.

``activation_distance`` (SSD's ``actv_dist``): mean over D_f of the L2 distance between the softmax outputs of the
model and of the retrain model; 0 means identical predictions on the forget set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .training import predict_logits

MIA_VARIANTS = ("mia_entropy_lr", "mia_loss_lr", "mia_efficacy_svc")

#: What each metric in a record means and which direction is "good"; tables and the glossary read this.
METRIC_INFO: dict[str, str] = {
    "forget_acc": "accuracy on the forgotten training samples D_f (close to the retrain model is good)",
    "retain_acc": "accuracy on the remaining training samples D_r (high is good)",
    "test_acc": "accuracy on the test samples that are not forgotten (high is good)",
    "test_forget_acc": "accuracy on the test samples of the forgotten class/sub-class (class tasks; ~retrain is good)",
    "mia_entropy_lr": "SSD's entropy MIA: fraction of D_f predicted member (~retrain is good)",
    "mia_loss_lr": "starting-kit loss MIA: CV accuracy of telling D_f from test (~retrain, ideally ~0.5)",
    "mia_efficacy_svc": "SalUn's MIA-Efficacy: fraction of D_f judged non-member (~retrain is good)",
    "activation_distance": "mean L2 distance of softmax outputs to the retrain model on D_f (low is good)",
    "healed": "accuracy on all corrupted training samples against their clean labels (high is good)",
    "utility": "clean test accuracy (label swap: on the unswapped classes) (high is good)",
    "utility_x_healed": "utility x healed, REM's score (high is good)",
    "healed_found": "healed on the discovered corrupted samples D_f only (what every method is shown)",
    "healed_hidden": "healed on the corrupted samples that were not discovered and hide in D_r (NaN at 100 % "
                     "discovery); REM's claim is about these",
    "healed_test": "trigger: triggered test accuracy; label swap: test accuracy on the swapped classes",
    "seconds": "wall-clock seconds of the unlearning call (retrain: of training from scratch)",
    "retrain_gap": "|forget_acc - retrain's| + |test_acc - retrain's|: distance to the retrain model (0 is best); "
                   "in tuning records, with val_acc in place of test_acc",
    "test_acc/<class>": "clean test accuracy of one class, one column per class name (no deletion hides behind an "
                        "aggregate; see per_class)",
    "val_acc": "accuracy on the validation images of what remains (selection only; the counterpart of test_acc)",
    "val_forget_acc": "accuracy on the validation images of the forgotten class/sub-class (selection only)",
}


def accuracy_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose argmax equals the label; NaN when there are no rows."""
    if len(labels) == 0:
        return float("nan")
    return (logits.argmax(1) == labels).float().mean().item()


def entropy(logits: torch.Tensor) -> np.ndarray:
    """Shannon entropy (nats) of softmax(logits), per row."""
    logp = F.log_softmax(logits.float(), dim=1)
    return (-(logp.exp() * logp).sum(1)).numpy()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per-sample cross-entropy loss."""
    return F.cross_entropy(logits.float(), labels, reduction="none").numpy()


def true_class_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Softmax probability of the true label, per row."""
    return F.softmax(logits.float(), dim=1).gather(1, labels.view(-1, 1)).squeeze(1).numpy()


def mia_entropy_lr(retain_logits: torch.Tensor, test_logits: torch.Tensor, forget_logits: torch.Tensor) -> float:
    """SSD / bad-teacher MIA: fraction of D_f that a retain-vs-test entropy classifier calls "member"."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([entropy(retain_logits), entropy(test_logits)]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(retain_logits)), np.zeros(len(test_logits))])
    clf = LogisticRegression(class_weight="balanced", solver="lbfgs").fit(x, y)
    return float(clf.predict(entropy(forget_logits).reshape(-1, 1)).mean())


def mia_loss_lr(forget_losses: np.ndarray, test_losses: np.ndarray, *, n_splits: int = 10, seed: int = 0) -> float:
    """Starting-kit MIA: 10-fold shuffle-split CV accuracy of a loss classifier, D_f (1) vs test (0), balanced."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    rng = np.random.default_rng(seed)
    n = min(len(forget_losses), len(test_losses))
    if n < 2:
        return float("nan")
    f = rng.choice(forget_losses, n, replace=False)
    t = rng.choice(test_losses, n, replace=False)
    x = np.concatenate([f, t]).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    # a tenth of the pairs is held out, but at least one sample of each side (tiny forget sets, e.g. one image)
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=0.1 if 0.1 * 2 * n >= 2 else 2, random_state=seed)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())


def mia_efficacy_svc(retain_conf: np.ndarray, test_conf: np.ndarray, forget_conf: np.ndarray, *,
                     max_samples: int = 2000, seed: int = 0) -> float:
    """SalUn MIA-Efficacy: fraction of D_f that a retain-vs-test SVC on p_y judges non-member."""
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    n = min(len(retain_conf), len(test_conf), max_samples)
    r = rng.choice(retain_conf, n, replace=False)
    t = rng.choice(test_conf, n, replace=False)
    x = np.concatenate([r, t]).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return float(1.0 - clf.predict(forget_conf.reshape(-1, 1)).mean())


def activation_distance(logits: torch.Tensor, reference_logits: torch.Tensor) -> float:
    """Mean L2 distance between the softmax outputs of two models on the same samples."""
    p, q = F.softmax(logits.float(), 1), F.softmax(reference_logits.float(), 1)
    return (p - q).norm(dim=1).mean().item()


def retrain_gap(record: dict, retrain_record: dict, *, utility: str = "test_acc", forget: str = "forget_acc") -> float:
    """How far a model is from the retrain model on the two accuracies that define forgetting and utility:
    ``|forget_acc - forget_acc_retrain| + |test_acc - test_acc_retrain|`` (0 = indistinguishable on both).

    Reports and plots use it with the test accuracy. Tuning (:func:`unlearnlib.experiment.tune`) uses it with
    ``utility="val_acc"``, the accuracy on the validation split, so that no choice reads the test split, and with
    ``forget="val_forget_acc"`` when the method may read only a few samples (its forget accuracy is then read on the
    forgotten class's validation images, not on training data beyond the budget). It deliberately ignores the MIAs,
    which are reported separately."""
    return (abs(record[forget] - retrain_record[forget])
            + abs(record[utility] - retrain_record[utility]))


#: the prefix of the per-class test accuracies in a record: ``test_acc/Sneaker``
CLASS_PREFIX = "test_acc/"


def class_accuracies(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict[str, float]:
    """Accuracy on each class's test samples as record fields ``test_acc/<class name>`` (NaN for a class with
    none). Flat fields, so that records stay tables of numbers."""
    hits = (logits.argmax(1) == labels).float()
    return {f"{CLASS_PREFIX}{name}": (hits[labels == c].mean().item() if (labels == c).any() else float("nan"))
            for c, name in enumerate(classes)}


def per_class(record: dict) -> dict[str, float]:
    """The per-class test accuracies of a record, by class name."""
    return {k[len(CLASS_PREFIX):]: v for k, v in record.items() if k.startswith(CLASS_PREFIX)}


def is_metric(name: str) -> bool:
    """Whether ``name`` is a documented metric (``METRIC_INFO``, per-class accuracies included)."""
    return name in METRIC_INFO or name.startswith(CLASS_PREFIX)


def validation_evaluate(model: nn.Module, task, *, device: str | torch.device = "auto") -> dict:
    """What a selection step may look at: ``forget_acc`` on D_f (training data the method is given) and, on the
    validation split, ``val_acc`` (what remains) and ``val_forget_acc`` (the forgotten class's validation images;
    NaN for sample-level tasks). Never reads the test split."""
    d = task.data
    if len(task.val_idx) == 0:
        raise ValueError(f"{task.describe()} has no validation split to select on; load the data with "
                         f"unlearnlib.load_dataset (which attaches data.val_idx), not a view without one")
    y = d.y_train
    keys = ("forget_acc", "val_acc", "val_forget_acc")
    if not parameters_finite(model):
        return diverged_record(keys, reason="non-finite weights")
    forget = predict_logits(model, d, task.forget_idx, split="train", device=device)
    val = predict_logits(model, d, task.val_idx, split="train", device=device)
    if not (outputs_finite(forget) and outputs_finite(val)):
        return diverged_record(keys, reason="non-finite outputs")
    gone = np.isin(task.val_idx, task.val_forget_idx)
    y_val = y[torch.from_numpy(task.val_idx)]
    keep, drop = torch.from_numpy(~gone), torch.from_numpy(gone)
    return {"forget_acc": accuracy_from_logits(forget, y[torch.from_numpy(task.forget_idx)]),
            "val_acc": accuracy_from_logits(val[keep], y_val[keep]),
            "val_forget_acc": accuracy_from_logits(val[drop], y_val[drop]), **FINITE}


@dataclass
class Outputs:
    """A model's logits on the four parts of a task (computed once per model, reused by every metric).
    ``finite`` is False when the model's weights or any of these logits are not finite (the model diverged)."""

    forget: torch.Tensor
    retain: torch.Tensor
    test_retain: torch.Tensor
    test_forget: torch.Tensor
    weights_finite: bool = True

    @property
    def finite(self) -> bool:
        return self.weights_finite and all(outputs_finite(t) for t in
                                           (self.forget, self.retain, self.test_retain, self.test_forget))


def task_outputs(model: nn.Module, task, *, device: str | torch.device = "auto", retain: bool = True) -> Outputs:
    """Logits of ``model`` on D_f, D_r and on the test split (retained part and forgotten part).

    ``retain=False`` skips D_r (by far the largest part; its logits are then an empty tensor). The logits are
    returned as they are: a model whose weights or outputs are not finite gives ``Outputs.finite == False``, and
    :func:`evaluate` turns it into a diverged record, never into scores."""
    d = task.data
    weights_finite = parameters_finite(model)
    test_all = predict_logits(model, d, None, split="test", device=device)
    return Outputs(
        forget=predict_logits(model, d, task.forget_idx, split="train", device=device),
        retain=(predict_logits(model, d, task.retain_idx, split="train", device=device) if retain
                else test_all[:0]),
        test_retain=test_all[torch.from_numpy(task.test_retain_idx)],
        test_forget=test_all[torch.from_numpy(task.test_forget_idx)],
        weights_finite=weights_finite,
    )


# ----------------------------------------------------------------------------------------------------------------
# Divergence: one rule for the whole library. A model whose weights, or whose outputs on the evaluated data, are not
# finite is *diverged*. Its record holds ``diverged=True``, the step where the method saw it (``diverged_step``, None
# when only the evaluation saw it) and NaN in every metric, so that no consumer can score it by accident; every
# other record holds ``diverged=False``. Nothing on a scored path converts non-finite values.

#: the fields every evaluation record carries about divergence
DIVERGENCE_FIELDS = ("diverged", "diverged_step", "diverged_reason", "collapsed")
#: what a finite model's record holds in those fields
FINITE = {"diverged": False, "diverged_step": None, "diverged_reason": None, "collapsed": False}
#: how many binomial standard errors above chance a model must be to count as working (:func:`collapse_threshold`)
COLLAPSE_STANDARD_ERRORS = 3.0


def outputs_finite(logits: torch.Tensor) -> bool:
    """Whether every logit is finite (an empty tensor is)."""
    return bool(torch.isfinite(logits).all())


def parameters_finite(model) -> bool:
    """Whether every floating-point parameter and buffer of ``model`` is finite (True for precomputed outputs)."""
    if not isinstance(model, nn.Module):
        return True
    tensors = list(model.parameters()) + list(model.buffers())
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def diverged_record(keys, *, step: int | None = None, reason: str = "non-finite outputs") -> dict:
    """The record of a diverged run: NaN for every metric in ``keys``, ``diverged=True``, the ``step`` where the
    method stopped (None when only the evaluation found it) and the ``reason``."""
    return {**{k: float("nan") for k in keys if k not in DIVERGENCE_FIELDS},
            "diverged": True, "diverged_step": step, "diverged_reason": reason, "collapsed": False}


def chance_accuracy(labels) -> float:
    """The accuracy of the best constant prediction on ``labels``: the share of the most frequent class (1/k for k
    balanced classes). NaN for no labels."""
    labels = np.asarray(labels.numpy() if isinstance(labels, torch.Tensor) else labels)
    if labels.size == 0:
        return float("nan")
    return float(np.bincount(labels).max() / labels.size)


def collapse_threshold(labels) -> float:
    """The accuracy on ``labels`` at or below which a model counts as collapsed: :func:`chance_accuracy` plus
    ``COLLAPSE_STANDARD_ERRORS`` binomial standard errors of an accuracy measured on that many samples (with 1,000
    test images of ten classes: 0.1 + 3 x 0.0095 = 0.128). A model above it does better than a constant on the data
    it should keep, however badly."""
    p, n = chance_accuracy(labels), len(labels)
    return p + COLLAPSE_STANDARD_ERRORS * math.sqrt(p * (1 - p) / n) if n else float("nan")


def collapse_reason(accuracy: float, labels, *, what: str = "the remaining classes' test images") -> str | None:
    """Why a model whose ``accuracy`` on ``labels`` is at or below :func:`collapse_threshold` counts as collapsed
    (None when it does not)."""
    threshold = collapse_threshold(labels)
    if not (accuracy <= threshold):
        return None
    return (f"collapsed: {accuracy:.1%} accuracy on {what}, no better than predicting the most frequent class "
            f"({chance_accuracy(labels):.1%}; threshold {threshold:.1%}, {COLLAPSE_STANDARD_ERRORS:g} standard errors "
            f"above it)")


def collapsed_record(keys, reason: str) -> dict:
    """The record of a collapsed model: as :func:`diverged_record` (NaN for every metric, never scored), with
    ``collapsed=True`` and the ``reason`` (:func:`collapse_reason`) that says what it fell to."""
    return {**diverged_record(keys, reason=reason), "collapsed": True}


def is_collapsed(record) -> bool:
    """Whether a record (a dict or a DataFrame row) is of a collapsed model (a subset of :func:`is_diverged`: both
    are never scored); records without the field count as not collapsed."""
    from .stats import diverged_value

    return diverged_value(record.get("collapsed", False) if hasattr(record, "get") else False)


def is_diverged(record) -> bool:
    """Whether a record (a dict or a DataFrame row) is of a diverged run; records without the field (older results
    files) count as not diverged."""
    from .stats import diverged_value

    return diverged_value(record.get("diverged", False) if hasattr(record, "get") else False)


def _metric_keys(task, *, reference: bool, quick: bool = False, retain: bool = False) -> list[str]:
    """The metric fields of :func:`evaluate` (or :func:`quick_evaluate`) for ``task``: what a diverged record
    fills with NaN."""
    if quick:
        keys = list(QUICK_METRICS) + (["retain_acc"] if retain else [])
    else:
        keys = ["forget_acc", "retain_acc", "test_acc", "test_forget_acc", *MIA_VARIANTS]
        if reference:
            keys.append("activation_distance")
    return keys + [f"{CLASS_PREFIX}{name}" for name in task.data.classes]


def evaluate(model: nn.Module | Outputs, task, *, reference: nn.Module | Outputs | None = None, seed: int = 0,
             device: str | torch.device = "auto", svc_max_samples: int = 2000, collapse_guard: bool = True) -> dict:
    """All metrics of ``model`` (or of its precomputed :class:`Outputs`) on ``task`` as one flat record
    (see ``METRIC_INFO``). A collapsed model gets the unscored :func:`collapsed_record` unless ``collapse_guard`` is
    False (:attr:`unlearnlib.profiles.Profile.collapse_guard`: only for a code check whose models are at chance).

    ``reference`` is the retrain model (or its precomputed :class:`Outputs`); with it the record also holds the
    activation distance. The MIAs use the full test split (forgotten class included), as their sources do.
    """
    out = model if isinstance(model, Outputs) else task_outputs(model, task, device=device)
    if not out.finite:
        return diverged_record(_metric_keys(task, reference=reference is not None),
                               reason="non-finite weights" if not out.weights_finite else "non-finite outputs")
    d = task.data
    y_f = d.y_train[torch.from_numpy(task.forget_idx)]
    y_r = d.y_train[torch.from_numpy(task.retain_idx)]
    y_tr = d.y_test[torch.from_numpy(task.test_retain_idx)]
    y_tf = d.y_test[torch.from_numpy(task.test_forget_idx)]
    reason = collapse_reason(accuracy_from_logits(out.test_retain, y_tr), y_tr) if collapse_guard else None
    if reason:
        return collapsed_record(_metric_keys(task, reference=reference is not None), reason)
    test_logits = torch.cat([out.test_retain, out.test_forget])
    test_y = torch.cat([y_tr, y_tf])
    record = {
        "forget_acc": accuracy_from_logits(out.forget, y_f),
        "retain_acc": accuracy_from_logits(out.retain, y_r),
        "test_acc": accuracy_from_logits(out.test_retain, y_tr),
        "test_forget_acc": accuracy_from_logits(out.test_forget, y_tf),
        "mia_entropy_lr": mia_entropy_lr(out.retain, test_logits, out.forget),
        "mia_loss_lr": mia_loss_lr(cross_entropy(out.forget, y_f), cross_entropy(test_logits, test_y), seed=seed),
        "mia_efficacy_svc": mia_efficacy_svc(true_class_confidence(out.retain, y_r),
                                             true_class_confidence(test_logits, test_y),
                                             true_class_confidence(out.forget, y_f),
                                             max_samples=svc_max_samples, seed=seed),
        **class_accuracies(test_logits, test_y, d.classes),
    }
    if reference is not None:
        ref = reference if isinstance(reference, Outputs) else task_outputs(reference, task, device=device)
        record["activation_distance"] = activation_distance(out.forget, ref.forget)
    return {**record, **FINITE}


#: the metrics of :func:`quick_evaluate`
QUICK_METRICS = ("forget_acc", "test_acc", "test_forget_acc")


def quick_evaluate(model: nn.Module | Outputs, task, *, device: str | torch.device = "auto",
                   retain: bool = False, collapse_guard: bool = True) -> dict:
    """The three accuracies that define class forgetting (``forget_acc``, ``test_acc``, ``test_forget_acc``) without
    the pass over D_r and the attacks: for sweeps with many runs, where :func:`evaluate` would cost minutes.
    ``retain=True`` adds ``retain_acc`` (one pass over D_r, still no attacks).

    The definitions are those of :func:`evaluate` (see ``METRIC_INFO``), and so is ``collapse_guard``."""
    d = task.data
    out = model if isinstance(model, Outputs) else task_outputs(model, task, device=device, retain=retain)
    if not out.finite:
        return diverged_record(_metric_keys(task, reference=False, quick=True, retain=retain),
                               reason="non-finite weights" if not out.weights_finite else "non-finite outputs")
    y_tr = d.y_test[torch.from_numpy(task.test_retain_idx)]
    reason = collapse_reason(accuracy_from_logits(out.test_retain, y_tr), y_tr) if collapse_guard else None
    if reason:
        return collapsed_record(_metric_keys(task, reference=False, quick=True, retain=retain), reason)
    record = {
        "forget_acc": accuracy_from_logits(out.forget, d.y_train[torch.from_numpy(task.forget_idx)]),
        "test_acc": accuracy_from_logits(out.test_retain, y_tr),
        "test_forget_acc": accuracy_from_logits(out.test_forget, d.y_test[torch.from_numpy(task.test_forget_idx)]),
    }
    if retain:
        record["retain_acc"] = accuracy_from_logits(out.retain, d.y_train[torch.from_numpy(task.retain_idx)])
    test_y = torch.cat([d.y_test[torch.from_numpy(task.test_retain_idx)], d.y_test[torch.from_numpy(task.test_forget_idx)]])
    record.update(class_accuracies(torch.cat([out.test_retain, out.test_forget]), test_y, d.classes))
    return {**record, **FINITE}


#: the parts of a corrupted set that :func:`healed_accuracy` scores: every corrupted sample (the paper's Healed), the
#: discovered ones (D_f) or the hidden ones (in D_r, with their wrong labels)
HEALED_PARTS = ("all", "found", "hidden")


def corrupted_part(task, part: str = "all") -> np.ndarray:
    """A boolean mask over ``task.corruption["corrupt_idx"]`` (sorted, the order of ``clean_labels``): every corrupted
    sample (``"all"``), the discovered ones (``"found"``: ``known_idx``, the task's D_f) or the rest (``"hidden"``)."""
    if part not in HEALED_PARTS:
        raise ValueError(f"part must be one of {', '.join(HEALED_PARTS)}, got {part!r}")
    c = task.corruption
    corrupt = np.asarray(c["corrupt_idx"])
    if part == "all":
        return np.ones(len(corrupt), bool)
    found = np.isin(corrupt, c["known_idx"])
    return found if part == "found" else ~found


def healed_accuracy(model: nn.Module, task, *, device: str | torch.device = "auto", part: str = "all") -> float:
    """``healed`` alone: the accuracy on the corrupted training samples of a corrupted task against their clean
    labels (index order, images as trained on). Reads no test data, so a tuning step may use it on a tuning request.

    ``part`` picks the samples (:func:`corrupted_part`): ``"all"`` (the default: the paper's Healed, every corrupted
    sample), ``"found"`` (the discovered D_f, which a method is shown) or ``"hidden"`` (the undiscovered rest, which
    sits in D_r with its wrong labels). NaN when the model diverged (non-finite weights or outputs), and also for a
    part with no sample (``"hidden"`` at 100 % discovery): a caller that must tell the two apart checks the part's
    size (:func:`corruption_metrics` does)."""
    if task.kind != "corrupted":
        raise ValueError(f"healed_accuracy needs a corrupted task (tasks.corrupted), got a {task.kind!r} task")
    keep = corrupted_part(task, part)
    c = task.corruption
    if not keep.any():
        return float("nan")  # nothing in this part (e.g. nothing hidden at 100 % discovery)
    corrupt = np.asarray(c["corrupt_idx"])[keep]  # sorted; clean_labels follow the same order
    logits = predict_logits(model, task.data, corrupt, split="train", device=device)
    if not (parameters_finite(model) and outputs_finite(logits)):
        return float("nan")  # diverged: never a score
    return accuracy_from_logits(logits, torch.as_tensor(np.asarray(c["clean_labels"])[keep]))


def protected_classes(task) -> list[int]:
    """The classes a corrupted task's *labels* point at, which a method can "heal" by deleting: the trigger's target
    class, the two classes of a label swap; none for random labels (they point everywhere)."""
    c = task.corruption or {}
    if c.get("kind") == "trigger":
        return [int(c["target_class"])]
    if c.get("kind") == "label_swap":
        return [int(k) for k in task.params["swap_classes"]]
    return []


def protected_validation_accuracy(model: nn.Module, task, *, device: str | torch.device = "auto") -> float:
    """Accuracy on the validation images of :func:`protected_classes` (clean labels; NaN when there are none). A
    selection score multiplies ``healed`` by it relative to the original's, so that deleting the class a corruption
    points at is not rewarded as healing. Never reads the test split."""
    classes = protected_classes(task)
    if not classes or len(task.val_idx) == 0:
        return float("nan")
    y = task.data.y_train[torch.from_numpy(np.asarray(task.val_idx))]
    keep = torch.from_numpy(np.isin(y.numpy(), classes))
    if not bool(keep.any()):
        return float("nan")
    logits = predict_logits(model, task.data, np.asarray(task.val_idx)[keep.numpy()], split="train", device=device)
    if not outputs_finite(logits):
        return float("nan")
    return accuracy_from_logits(logits, y[keep])


def corruption_metrics(model: nn.Module, task, *, device: str | torch.device = "auto",
                       collapse_guard: bool = True) -> dict:
    """REM's metrics for a corrupted task (``healed``, ``utility``, ``utility_x_healed``, ``healed_test``; see the
    module docstring), ``healed`` split into ``healed_found`` and ``healed_hidden`` (the discovered and the hidden
    corrupted samples; :func:`healed_accuracy`), plus ``forget_acc`` (on D_f with the labels as given, i.e.
    corrupted) and ``test_acc`` (the whole clean test set), the fields every chapter's records share.
    ``collapse_guard`` as in :func:`evaluate`."""
    from .tasks import triggered_test

    if task.kind != "corrupted":
        raise ValueError(f"corruption_metrics needs a corrupted task (tasks.corrupted), got a {task.kind!r} task")
    d, c = task.data, task.corruption
    keys = ["healed", "healed_found", "healed_hidden", "target_acc", "utility", "utility_x_healed", "healed_test",
            "forget_acc", "test_acc", *(f"{CLASS_PREFIX}{name}" for name in d.classes)]
    if not parameters_finite(model):
        return diverged_record(keys, reason="non-finite weights")
    # one pass over the corrupted set: Healed on all of it, and on its found and hidden parts (healed_accuracy)
    corrupt_logits = predict_logits(model, d, np.asarray(c["corrupt_idx"]), split="train", device=device)
    test_logits = predict_logits(model, d, None, split="test", device=device)
    if not (outputs_finite(corrupt_logits) and outputs_finite(test_logits)):
        return diverged_record(keys, reason="non-finite outputs")
    clean = torch.as_tensor(np.asarray(c["clean_labels"]))
    found = torch.from_numpy(corrupted_part(task, "found"))
    healed = accuracy_from_logits(corrupt_logits, clean)
    healed_found = accuracy_from_logits(corrupt_logits[found], clean[found])      # NaN when nothing was found
    healed_hidden = accuracy_from_logits(corrupt_logits[~found], clean[~found])   # NaN when nothing is hidden
    correct = (test_logits.argmax(1) == d.y_test).numpy()
    reason = collapse_reason(float(correct.mean()), d.y_test, what="the clean test images") if collapse_guard else None
    if reason:
        return collapsed_record(keys, reason)
    if c["kind"] == "label_swap":
        swapped = np.isin(d.y_test.numpy(), task.params["swap_classes"])
        utility, healed_test = float(correct[~swapped].mean()), float(correct[swapped].mean())
    elif c["kind"] == "trigger":
        x, y = triggered_test(task)
        stamped = predict_logits(model, d.with_train(x, y), None, split="train", device=device)  # (x, y) as a split
        utility, healed_test = float(correct.mean()), accuracy_from_logits(stamped, y)
    else:
        utility, healed_test = float(correct.mean()), float("nan")
    # the trigger's target class on the clean test set: Healed cannot tell healing the backdoor from deleting the class
    target_acc = float(correct[d.y_test.numpy() == c["target_class"]].mean()) if c["kind"] == "trigger" \
        else float("nan")
    forget = predict_logits(model, d, task.forget_idx, split="train", device=device)
    if not outputs_finite(forget) or (c["kind"] == "trigger" and not outputs_finite(stamped)):
        return diverged_record(keys, reason="non-finite outputs")
    return {**FINITE, "healed": healed, "healed_found": healed_found, "healed_hidden": healed_hidden,
            "target_acc": target_acc, "utility": utility, "utility_x_healed": healed * utility,
            "healed_test": healed_test,
            "forget_acc": accuracy_from_logits(forget, d.y_train[torch.from_numpy(task.forget_idx)]),
            "test_acc": float(correct.mean()), **class_accuracies(test_logits, d.y_test, d.classes)}
