"""Checks of the foundations chapter's exercises (``coursework/foundations.yml``)."""
from __future__ import annotations

from typing import Mapping

from .checks import CheckFailed, expect, expect_close, expect_close_or_nan, expect_mapping, register


def _as_dict(answer):
    """A pandas Series or DataFrame column (anything with ``to_dict``) as the dict it stands for."""
    return answer.to_dict() if hasattr(answer, "to_dict") and not isinstance(answer, Mapping) else answer


def _by_seed(answer, seeds, what: str) -> dict:
    """``answer`` keyed by seed, the keys as ints (a pivot table's index may hold numpy integers)."""
    answer = _as_dict(answer)
    expect(isinstance(answer, Mapping), f"{what} should be a dict from seed to value, not a {type(answer).__name__}")
    try:
        answer = {int(k): v for k, v in answer.items()}
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be keyed by the seeds {sorted(seeds)}, not {list(answer)!r}") from None
    return dict(expect_mapping(answer, sorted(seeds), what))


def _close_or_nan(value, target: float, what: str, hint: str) -> None:
    """``value`` within 1e-6 of ``target``; NaN exactly where ``target`` is NaN (nothing to compute: one seed)."""
    expect_close_or_nan(value, target, what, hint=hint,
                        why_nan="there is nothing to compute it from on this run (a standard deviation or mean over "
                                "no other seed is NaN)")


@register("ex-foundations-random-target")
def _random_target(answer, *, records, task):
    """``answer``: ``{"original": {seed: gap}, "retrain": {seed: gap}}``, gap = forget_acc - test_acc of that model
    on the random task ``task``, read from the chapter's ``records``."""
    import pandas as pd

    df = pd.DataFrame(records)
    part = df[df.task == task]
    expect(not part.empty, f"the records hold no task {task!r}: pass the chapter's records and the random task's name")
    answer = expect_mapping(_as_dict(answer), ["original", "retrain"], "the answer")
    for method in ("original", "retrain"):
        rows = part[part.method == method].set_index("seed")
        given = _by_seed(answer[method], rows.index, f'answer["{method}"]')
        for seed, row in rows.iterrows():
            expect_close(given[seed], row["forget_acc"] - row["test_acc"], f'answer["{method}"][{seed}]',
                         hint="the gap is the accuracy on D_f minus the accuracy on the test data of the same "
                              "model and seed (test_acc, not retain_acc: D_r is training data too)")
    return "the gap between forget and test accuracy, per model and seed"


SPREAD_KEYS = ("unlearning seed only", "across seeds")
SPREAD_METRICS = ("forget_acc", "test_acc")


@register("ex-foundations-seed-scope")
def _seed_scope(answer, *, runs, records, task):
    """``answer``: ``{"unlearning seed only": {metric: std}, "across seeds": {metric: std}}`` for forget and test
    accuracy: the sample std over ``runs`` (fine-tuning of one fixed model under several unlearning seeds) and over
    the chapter's fine-tuning ``records`` of ``task`` (one per training seed)."""
    import pandas as pd

    runs = pd.DataFrame(list(runs))
    expect(len(runs) >= 3, f"pass the evaluation records of at least three unlearning runs, not {len(runs)}")
    expect(all(m in runs.columns for m in SPREAD_METRICS),
           "each run should be the record of metrics.evaluate on the unlearned model (with forget_acc and test_acc)")
    scored = [c for c in runs.columns if runs[c].dtype.kind == "f"]
    expect(len(runs[scored].drop_duplicates()) > 1,
           "all the runs gave the same record: did each run use its own unlearning seed?")
    df = pd.DataFrame(records)
    across = df[(df.task == task) & (df.method == "finetune")]
    expect(not across.empty, f"the records hold no fine-tuning run of {task!r}: pass the chapter's records")
    answer = expect_mapping(_as_dict(answer), list(SPREAD_KEYS), "the answer")
    for key, table in (("unlearning seed only", runs), ("across seeds", across)):
        given = expect_mapping(_as_dict(answer[key]), list(SPREAD_METRICS), f'answer["{key}"]')
        for metric in SPREAD_METRICS:
            where = ("over your runs of the fixed model" if key == "unlearning seed only"
                     else "over the chapter's fine-tuning runs of the class task only, one per seed")
            _close_or_nan(given[metric], float(table[metric].std(ddof=1)), f'answer["{key}"]["{metric}"]',
                          hint=f"the sample standard deviation (ddof=1, as pandas computes it) {where}")
    return "both spreads follow from the runs and the records"


@register("ex-foundations-mia")
def _mia(answer, *, models, tasks):
    """``answer``: task name -> ``{"forget": mean loss on D_f, "test": mean loss on the whole test split}`` of the
    retrain model ``models[name]`` (cross-entropy, what the loss attack ``mia_loss_lr`` separates)."""
    import torch

    from ..metrics import cross_entropy
    from ..training import predict_logits

    answer = expect_mapping(_as_dict(answer), list(tasks), "the answer")
    for name, task in tasks.items():
        entry = expect_mapping(_as_dict(answer[name]), ["forget", "test"], f"answer[{name!r}]")
        d, model = task.data, models[name]
        forget_idx = torch.as_tensor(task.forget_idx)
        losses = {"forget": cross_entropy(predict_logits(model, d, task.forget_idx, split="train"),
                                          d.y_train[forget_idx]),
                  "test": cross_entropy(predict_logits(model, d, None, split="test"), d.y_test)}
        for part, loss in losses.items():
            expect_close(entry[part], float(loss.mean()), f'answer[{name!r}]["{part}"]', tol=1e-4,
                         hint="the mean cross-entropy of the task's retrain model on D_f (training split) and on the "
                              "whole test split, forgotten class included, as the loss attack sees them")
    return "the retrain models' mean losses on D_f and on the test split"


@register("ex-foundations-peeking")
def _peeking(answer, *, records, task, chosen_seed, methods):
    """``answer``: method -> ``{"chosen seed": gap, "other seeds": mean gap}``: the protocol setting's
    ``metrics.retrain_gap`` (to the retrain model of the same seed) on the seed the peeked settings were chosen on,
    and its mean over the other reported seeds (NaN when there is none)."""
    import pandas as pd

    from ..metrics import retrain_gap

    df = pd.DataFrame(records)
    part = df[df.task == task]
    ref = part[part.method == "retrain"].set_index("seed")
    expect(not ref.empty, f"the records hold no retrain run of {task!r}: pass the chapter's records and the class task")
    answer = expect_mapping(_as_dict(answer), list(methods), "the answer")
    hint = ("the distance to the retrain model of the *same* seed, |forget_acc - retrain's| + |test_acc - retrain's| "
            "(metrics.retrain_gap); 'other seeds' averages only the seeds the peeked settings were not chosen on")
    for method in methods:
        gaps = {int(r["seed"]): retrain_gap(r, ref.loc[r["seed"]]) for _, r in part[part.method == method].iterrows()}
        expect(chosen_seed in gaps, f"the records hold no run of {method!r} on seed {chosen_seed}")
        entry = expect_mapping(_as_dict(answer[method]), ["chosen seed", "other seeds"], f"answer[{method!r}]")
        others = [g for s, g in gaps.items() if s != chosen_seed]
        _close_or_nan(entry["chosen seed"], gaps[chosen_seed], f'answer[{method!r}]["chosen seed"]', hint)
        _close_or_nan(entry["other seeds"], sum(others) / len(others) if others else float("nan"),
                      f'answer[{method!r}]["other seeds"]', hint)
    return "the protocol's distances to retraining on the chosen seed and on the others"
