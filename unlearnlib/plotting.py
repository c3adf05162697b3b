"""Figures shared by every chapter: metric bars with the retrain reference, and time versus quality."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def method_palette(methods: Sequence[str]) -> dict:
    """One colour per method, by position in ``methods``, so that every figure of a chapter agrees."""
    import seaborn as sns

    return dict(zip(methods, sns.color_palette("tab10", len(methods))))


def metric_bars(df, metrics: Sequence[str], *, task: str | None = None, reference: str = "retrain",
                order: Sequence[str] | None = None, ncols: int = 4, height: float = 2.6):
    """One panel per metric: mean over seeds with std error bars per method; a dashed line marks the retrain
    reference so every bar is read against it."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if task is not None:
        df = df[df["task"] == task]
    order = list(order or dict.fromkeys(df["method"]))
    metrics = [m for m in metrics if m in df.columns and df[m].notna().any()]
    ncols = min(ncols, len(metrics))
    nrows = int(np.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, height * nrows), squeeze=False)
    palette = method_palette(order)
    for ax, metric in zip(axes.flat, metrics):
        sns.barplot(data=df, x="method", y=metric, hue="method", order=order, hue_order=order, palette=palette,
                    errorbar="sd", ax=ax, legend=False)
        ref = df.loc[df["method"] == reference, metric]
        if len(ref):
            ax.axhline(ref.mean(), ls="--", c="k", lw=1, label=f"{reference}")
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", rotation=60, labelsize=8)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    if task:
        fig.suptitle(task, fontsize=11)
    fig.tight_layout()
    return fig


def time_vs_quality(df, *, quality: str = "retrain_gap", time: str = "seconds", reference: str = "retrain",
                    ax=None):
    """Scatter of mean unlearning time (log scale) against a quality measure, one point per method and task.

    ``quality="retrain_gap"`` is :func:`unlearnlib.metrics.retrain_gap` against the mean of the ``reference`` rows
    of the same task: the distance to the retrain model on forget and test accuracy (0 = like retraining).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .metrics import retrain_gap

    df = df.copy()
    if quality == "retrain_gap" and quality not in df.columns:
        ref = df[df["method"] == reference].groupby("task")[["forget_acc", "test_acc"]].mean()
        df[quality] = [retrain_gap(r._asdict(), ref.loc[r.task]) for r in df.itertuples()]
    palette = method_palette(list(dict.fromkeys(df["method"])))  # same colours as metric_bars
    means = df.groupby(["task", "method"], sort=False)[[time, quality]].mean().reset_index()
    means = means[means[time] > 0]  # "original" takes no time and cannot sit on a log axis
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    sns.scatterplot(data=means, x=time, y=quality, hue="method", palette=palette, style="task", s=70, ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("time (s, log scale)")
    ax.set_ylabel(quality + (" (lower is better)" if quality == "retrain_gap" else ""))
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    ax.figure.tight_layout()
    return ax.figure
