"""Figures are legible at the width of the book's text column, and `plotting.show` refuses one that is not."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from unlearnlib import plotting  # noqa: E402

METHODS = ["original", "retrain", "mask_classes", "finetune", "gradient_ascent", "neggrad_plus", "random_labels",
           "ssd (cached I_D)"]
METRICS = ["forget_acc", "retain_acc", "test_acc", "test_forget_acc", "mia_entropy_lr", "mia_loss_lr",
           "mia_efficacy_svc", "activation_distance"]


def _records() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"task": "full class (Sneaker)", "method": m, "seed": s, "seconds": 1.0 + i,
                          **{k: float(rng.uniform()) for k in METRICS}}
                         for i, m in enumerate(METHODS) for s in range(3)])


def test_the_shared_figures_keep_their_text_at_8_pt_or_more_at_the_page_width():
    df = _records()
    for fig in (plotting.metric_bars(df, METRICS, task="full class (Sneaker)"), plotting.time_vs_quality(df)):
        assert plotting.smallest_text_pt(fig) >= plotting.MIN_FONT_PT
        plt.close(fig)
    grid = pd.DataFrame([{"alpha": a, "lam": lam, "gap": a * lam} for a in (1, 2, 5, 10, 20, 50)
                         for lam in (0.01, 0.1, 1)])
    ax = plotting.grid_heatmap(grid, x="alpha", y="lam", value="gap", marks={"paper": (10, 1)})
    assert plotting.smallest_text_pt(ax.figure) >= plotting.MIN_FONT_PT
    plt.close(ax.figure)


def test_show_refuses_a_figure_whose_text_would_shrink_below_8_pt_and_says_how_to_fix_it():
    fig, ax = plt.subplots(figsize=(15, 3))       # twice the column: 8 pt text would be read at 4 pt
    ax.set_title("wide", fontsize=8)
    ax.tick_params(labelsize=8)
    assert plotting.smallest_text_pt(fig) == pytest.approx(8 * plotting.PAGE_WIDTH_IN / 15)
    with pytest.raises(ValueError, match="narrower or its fonts larger"):
        plotting.show(fig, "wide")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.set_title("fits", fontsize=9)
    ax.tick_params(labelsize=8)
    plotting.show(fig, None)                     # no error: it fits the column at its own size
    plt.close(fig)
