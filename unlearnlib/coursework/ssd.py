"""Checks of the SSD chapter's exercises (``coursework/ssd.yml``)."""
from __future__ import annotations

import math

from .checks import expect, expect_close, expect_fraction, expect_mapping, register

#: the paper's CIFAR-100 request: one class of 500 images in a training set of 50,000, batches of 64
CIFAR100_TOTAL, CIFAR100_FORGET, PAPER_ALPHA, PAPER_BATCH = 50_000, 500, 10.0, 64
CIFAR100_KEY = "CIFAR-100, one class (paper)"


def ceiling_from_counts(n_total: int, n_forget: int, batch: int) -> float:
    """#batches of D / #batches of D_f, for D_f of ``n_forget`` images inside D of ``n_total``."""
    return (math.ceil((n_total - n_forget) / batch) + math.ceil(n_forget / batch)) / math.ceil(n_forget / batch)


@register("ex-ssd-ceiling")
def _ceiling(answer, *, tasks, full_class):
    from ..methods import ssd as S

    expect_mapping(answer, ["ceilings", "alpha_here"], "the answer")
    ceilings = expect_mapping(answer["ceilings"], list(tasks) + [CIFAR100_KEY], 'answer["ceilings"]')
    for name, task in tasks.items():
        expect_close(ceilings[name], S.alpha_ceiling(task), f"the ceiling of {name!r}",
                     hint="count batches of D and of D_f at the batch size SSD uses for that kind of task "
                          "(S.default_batch_size), not images")
    expect_close(ceilings[CIFAR100_KEY], ceiling_from_counts(CIFAR100_TOTAL, CIFAR100_FORGET, PAPER_BATCH),
                 "the CIFAR-100 ceiling", hint="500 forget images in 50,000, batches of 64; D contains D_f")
    target = PAPER_ALPHA / ceilings[CIFAR100_KEY] * ceilings[full_class]
    expect_close(answer["alpha_here"], target, 'answer["alpha_here"]',
                 hint="keep alpha's position relative to the ceiling: alpha / ceiling on CIFAR-100 times the "
                      "full-class task's ceiling")
    return f"ceilings right; alpha = 10 on CIFAR-100 sits where alpha = {target:.2f} sits here"


SUBCLASS_METHODS = ("mask_classes", "ssd", "lfssd", "bad_teacher")


@register("ex-ssd-subclass")
def _subclass(answer, *, records, sub_tasks):
    """``answer``: sub-class task -> the method (of :data:`SUBCLASS_METHODS`) whose mean ``test_forget_acc`` is
    closest to the retrain model's, computed from ``records`` (the chapter's results)."""
    import pandas as pd

    df = pd.DataFrame(records)
    expect_mapping(answer, sub_tasks, "the answer")
    for task in sub_tasks:
        part = df[df.task == task]
        means = part.groupby("method")["test_forget_acc"].mean()
        expect("retrain" in means.index, f"the records hold no retrain run of {task!r}: pass the chapter's records")
        gaps = {m: abs(means[m] - means["retrain"]) for m in SUBCLASS_METHODS if m in means.index}
        expect(answer[task] in gaps, f"for {task!r} name one of {sorted(gaps)}, not {answer[task]!r}")
        best = min(gaps.values())
        expect(gaps[answer[task]] <= best + 1e-12,
               f"for {task!r}, {answer[task]!r} is not the method closest to the retrain model's test_forget_acc: "
               "compare each method's mean with retrain's, not with 0")
    return "for every sub-class, the method closest to retraining"


@register("ex-ssd-trivial-subclass")
def _trivial_subclass(answer, *, models, task):
    """``answer``: model role -> share of the sub-class's test images the model puts in their superclass."""
    from ..training import accuracy

    expect_mapping(answer, ["original", "retrain"], "the answer")
    for role, model in models.items():
        value = expect_fraction(answer[role], f'answer["{role}"]')
        expect_close(value, accuracy(model, task.data, task.test_forget_idx), f'answer["{role}"]', tol=1e-4,
                     hint="the share of the sub-class's *test* images (task.test_forget_idx) that the model puts in "
                          "their superclass")
    return "both accuracies follow from the two models"
