"""Figures shared by every chapter: metric bars with the retrain reference, and time versus quality.

Every figure is drawn to be read at the width of the book's text column (:data:`PAGE_WIDTH_IN`): a figure wider
than the column is scaled down to it, so its text shrinks with it. :func:`show` refuses a figure whose smallest text
would be under :data:`MIN_FONT_PT` at that width, and glues the figure for a captioned ``{glue:figure}``.

No figure draws a diverged run (a record with ``diverged`` True, :func:`unlearnlib.stats.diverged_flags`) as a
value: its runs are left out, and the figure says "diverged on k of S seeds" where the method is named."""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: the width of the book's text column in inches (sphinx-book-theme at a laptop's width): wider figures are scaled down
PAGE_WIDTH_IN = 7.5
#: the smallest text a reader should have to read, in points, once the figure is scaled to the column
MIN_FONT_PT = 8.0


def smallest_text_pt(fig, page_width_in: float = PAGE_WIDTH_IN) -> float:
    """The size in points of the smallest visible text of ``fig`` as a reader sees it: a figure wider than the page
    is shown scaled down to the page's width, and its text with it. ``inf`` when the figure has no text."""
    from matplotlib.text import Text

    fig.canvas.draw()  # tick labels exist only once drawn
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    scale = min(1.0, page_width_in / fig.get_figwidth())
    return scale * min(sizes) if sizes else float("inf")


def show(fig, name: str | None = None, *, min_pt: float = MIN_FONT_PT) -> None:
    """Show ``fig``; in the book also glue it as ``name`` so that a ``{glue:figure}`` gives it a caption.

    Raises ``ValueError`` when the figure's smallest text would be under ``min_pt`` points at the page's width: make
    the figure narrower or its fonts larger. The cell that calls it is tagged ``remove-output`` in a chapter, so that
    the book shows the captioned figure once; in Colab or Jupyter the figure shows in the cell as usual."""
    import matplotlib.pyplot as plt

    smallest = smallest_text_pt(fig)
    if smallest < min_pt:
        raise ValueError(f"figure {name or ''}: its smallest text is {smallest:.1f} pt at the page's width "
                         f"({PAGE_WIDTH_IN} in; the figure is {fig.get_figwidth():.1f} in wide): make it narrower "
                         f"or its fonts larger (at least {min_pt:g} pt)")
    if name:
        try:
            from myst_nb import glue
        except ImportError:  # Colab: no book build
            pass
        else:
            glue(name, fig, display=False)
    plt.show()


def _divergence_notes(df, by: str = "method") -> dict[str, str]:
    """{method: "diverged on k of S seeds"} for every method of ``df`` with a diverged run (S: its runs)."""
    from .stats import collapsed_flags, diverged_flags, seeds_note

    if df.empty:
        return {}
    flags = diverged_flags(df)
    counts = flags.groupby(df[by], sort=False).agg(["sum", "size"])
    collapsed = collapsed_flags(df).groupby(df[by], sort=False).sum()
    return {m: seeds_note(int(k), int(n), collapsed=int(collapsed.get(m, 0))) for m, (k, n) in counts.iterrows() if k}


def _without_diverged(df):
    from .stats import diverged_flags

    return df[~diverged_flags(df)]


def _note_left_out(ax, notes: dict[str, str]) -> None:
    """Write, under the axes, which methods are not drawn or drawn from fewer seeds, and why."""
    if notes:
        ax.text(0, -0.22, "; ".join(f"{m}: {n}" for m, n in notes.items()), transform=ax.transAxes, fontsize=8,
                va="top", ha="left", color="crimson", wrap=True)


def method_palette(methods: Sequence[str]) -> dict:
    """One colour per method, by position in ``methods``, so that every figure of a chapter agrees."""
    import seaborn as sns

    name = "tab10" if len(methods) <= 10 else "tab20"  # never two methods in one colour
    return dict(zip(methods, sns.color_palette(name, len(methods))))


def metric_bars(df, metrics: Sequence[str], *, task: str | None = None, reference: str = "retrain",
                order: Sequence[str] | None = None, ncols: int = 3, height: float = 2.9):
    """One panel per metric: mean over seeds with std error bars per method; a dashed line marks the retrain
    reference so every bar is read against it. Diverged runs are not drawn: the method's label says "diverged on k
    of S seeds" (no bar at all when every seed diverged)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if task is not None:
        df = df[df["task"] == task]
    order = list(order or dict.fromkeys(df["method"]))
    notes = _divergence_notes(df)
    df = _without_diverged(df)
    metrics = [m for m in metrics if m in df.columns and df[m].notna().any()]
    ncols = min(ncols, len(metrics))
    nrows = int(np.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.45 * ncols, height * nrows), squeeze=False)
    palette = method_palette(order)
    for ax, metric in zip(axes.flat, metrics):
        sns.barplot(data=df, x="method", y=metric, hue="method", order=order, hue_order=order, palette=palette,
                    errorbar="sd", ax=ax, legend=False)
        ref = df.loc[df["method"] == reference, metric]
        if len(ref):
            ax.axhline(ref.mean(), ls="--", c="k", lw=1, label=f"{reference}")
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.set_xticks(range(len(order)), [f"{m}\n({notes[m]})" if m in notes else m for m in order])
        ax.tick_params(axis="x", rotation=60, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    if task:
        fig.suptitle(task, fontsize=10)
    fig.tight_layout()
    return fig


def time_vs_quality(df, *, quality: str = "retrain_gap", time: str = "seconds", reference: str = "retrain",
                    ax=None):
    """Scatter of mean unlearning time (log scale) against a quality measure, one point per method and task.

    ``quality="retrain_gap"`` is :func:`unlearnlib.metrics.retrain_gap` against the mean of the ``reference`` rows
    of the same task: the distance to the retrain model on forget and test accuracy (0 = like retraining). Diverged
    runs are left out, and a note under the axes names the methods they came from ("diverged on k of S seeds").
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .metrics import retrain_gap

    notes = _divergence_notes(df)
    palette = method_palette(list(dict.fromkeys(df["method"])))  # same colours as metric_bars
    df = _without_diverged(df).copy()
    if quality == "retrain_gap" and quality not in df.columns:
        ref = df[df["method"] == reference].groupby("task")[["forget_acc", "test_acc"]].mean()
        df[quality] = [retrain_gap(r._asdict(), ref.loc[r.task]) for r in df.itertuples()]
    means = df.groupby(["task", "method"], sort=False)[[time, quality]].mean().reset_index()
    means = means[means[time] > 0]  # "original" takes no time and cannot sit on a log axis
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    sns.scatterplot(data=means, x=time, y=quality, hue="method", palette=palette, style="task", s=70, ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("time (s, log scale)")
    ax.set_ylabel(quality + (" (lower is better)" if quality == "retrain_gap" else ""))
    ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    _note_left_out(ax, notes)
    ax.figure.tight_layout()
    return ax.figure


def grid_heatmap(df, *, x: str, y: str, value: str, ax=None, marks: dict | None = None, fmt: str = ".2f",
                 cmap: str = "viridis_r", title: str | None = None):
    """An annotated heatmap of ``value`` over a hyperparameter grid (``x`` by ``y``, one row of ``df`` per cell).

    ``marks`` ({label: (x_value, y_value)}) outlines cells, e.g. the paper's setting and the one chosen. A cell whose
    runs diverged is not a value: it reads "diverged" (or "div. k/S" when only some of its S runs did) and its
    colour comes from the runs that did not.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .stats import diverged_flags

    flags = diverged_flags(df)
    gone = df.assign(_div=flags).pivot_table(index=y, columns=x, values="_div", aggfunc=["sum", "size"])
    table = (df[~flags].pivot_table(index=y, columns=x, values=value)
             .reindex(index=gone["size"].index, columns=gone["size"].columns).sort_index(ascending=False))
    gone_k = gone["sum"].reindex_like(table).fillna(0)
    gone_n = gone["size"].reindex_like(table).fillna(0)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.75 * table.shape[1] + 2, 0.5 * table.shape[0] + 1.2))
    im = ax.imshow(table.values, cmap=cmap, aspect="auto")
    ax.set_xticks(range(table.shape[1]), [f"{v:g}" for v in table.columns])
    ax.set_yticks(range(table.shape[0]), [f"{v:g}" for v in table.index])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    lo, hi = np.nanmin(table.values), np.nanmax(table.values)
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            v, k, n = table.values[i, j], int(gone_k.values[i, j]), int(gone_n.values[i, j])
            dark = (v - lo) / (hi - lo + 1e-12) > 0.5  # viridis_r is dark at high values
            text = "diverged" if n and k == n else format(v, fmt) + (f"\ndiv. {k}/{n}" if k else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="w" if dark else "k")
    styles = ["-", "--", ":"]
    for k, (label, (xv, yv)) in enumerate((marks or {}).items()):
        if xv in table.columns and yv in table.index:
            j, i = list(table.columns).index(xv), list(table.index).index(yv)
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2, ls=styles[k % 3],
                                   label=label))
    if marks:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.25, 1))
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title or value, fontsize=9)
    ax.tick_params(labelsize=8)
    return ax


def gap_heatmap(board, metrics: Sequence[str], *, task: str, scale: float = 100.0, ax=None, title: str | None = None):
    """A method x metric heatmap of the paired gaps to the reference in ``board`` (see
    :func:`unlearnlib.comparison.leaderboard`, one ``task``), each cell annotated with the mean gap and its 95 %
    interval; a cell whose interval includes 0 is hatched, so that "cannot be told from the reference" is seen at a
    glance. Colour is the absolute gap (lighter is closer to the reference). A method with diverged seeds (the
    board's ``excluded`` column) has it in its label; one diverged on every seed reads "diverged" in its cells, never
    a number. With a Holm-adjusted board (``holm``) the title says so."""
    import matplotlib.pyplot as plt

    part = board.xs(task, level="task")
    notes = part["excluded"] if "excluded" in part.columns else {}
    adjusted = "holm" in part.columns and bool(part["holm"].any())
    gap = np.array([[part[f"{m} gap"].get(meth, np.nan) for m in metrics] for meth in part.index]) * scale
    low = np.array([[part[f"{m} gap low"].get(meth, np.nan) for m in metrics] for meth in part.index]) * scale
    high = np.array([[part[f"{m} gap high"].get(meth, np.nan) for m in metrics] for meth in part.index]) * scale
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 * len(metrics) + 2.5, 0.5 * len(part.index) + 1.2))
    im = ax.imshow(np.abs(gap), cmap="Reds", aspect="auto", vmin=0)
    for i in range(gap.shape[0]):
        for j in range(gap.shape[1]):
            if np.isnan(gap[i, j]):
                if notes is not None and len(notes) and notes.iloc[i]:
                    ax.text(j, i, "diverged", ha="center", va="center", fontsize=8, color="crimson")
                continue
            interval = "" if not np.isfinite(low[i, j]) else f"\n[{low[i, j]:+.1f}, {high[i, j]:+.1f}]"
            ax.text(j, i, f"{gap[i, j]:+.1f}{interval}", ha="center", va="center", fontsize=8)
            if not (low[i, j] > 0 or high[i, j] < 0):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0, ec="0.6"))
    ax.set_xticks(range(len(metrics)), list(metrics), fontsize=8, rotation=20)
    labels = [f"{m} ({notes[m]})" if len(notes) and notes[m] else m for m in part.index]
    ax.set_yticks(range(len(part.index)), labels, fontsize=8)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="|gap to the reference| (points)")
    interval = "Holm-adjusted 95 % interval" if adjusted else "95 % interval"
    ax.set_title((title + (" (Holm-adjusted)" if adjusted else "")) if title
                 else f"{task}: gap to the reference, mean [{interval}]; hatched: includes 0", fontsize=9)
    return ax


def pareto_panel(points, *, cost: str, time: str = "seconds", ax=None, title: str = "", ylabel: str | None = None,
                 palette: dict | None = None):
    """One task's methods as points of mean time (log scale) against a cost (lower is better), with the Pareto
    front (:func:`unlearnlib.stats.pareto_front`) drawn as a step line and its methods named in bold.

    ``points`` is indexed by method with columns ``time`` and ``cost``; points at zero time (no unlearning) are
    left out, since they cannot sit on a log axis. A point without a number (NaN: a method diverged on every seed)
    is not drawn and is named under the axes, with the reason from an ``excluded`` column when ``points`` has one."""
    import matplotlib.pyplot as plt

    from .stats import pareto_front

    missing = points[points[[time, cost]].isna().any(axis=1)]
    reasons = missing["excluded"] if "excluded" in missing.columns else {}
    left_out = {m: (reasons.get(m) if len(reasons) and reasons.get(m) else "no value") for m in missing.index}
    points = points[(points[time] > 0) & points[cost].notna()]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    palette = palette or method_palette(list(points.index))
    front = points.iloc[pareto_front(points[time].to_numpy(), points[cost].to_numpy())]
    ax.step(front[time], front[cost], where="post", color="0.6", lw=1, zorder=1)
    for method, row in points.iterrows():
        on_front = method in front.index
        ax.scatter(row[time], row[cost], s=60 if on_front else 35, color=palette.get(method, "0.3"), zorder=2,
                   edgecolor="black" if on_front else "none")
        ax.annotate(method, (row[time], row[cost]), fontsize=8, xytext=(4, 3), textcoords="offset points",
                    fontweight="bold" if on_front else "normal")
    ax.set_xscale("log")
    ax.set(xlabel="unlearning time (s, log scale)", ylabel=ylabel or cost, title=title)
    _note_left_out(ax, left_out)
    return ax
