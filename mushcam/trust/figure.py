"""A still figure of the mean deletion and insertion curves (PNG, for documents and reports)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mushcam.trust.report import model_label  # noqa: E402
from mushcam.trust.store import load_trust, mean_curves  # noqa: E402

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def save_curves_figure(store: str | os.PathLike[str], out: str | os.PathLike[str], dpi: int = 100,
                       models: Sequence[str] | None = None) -> int:
    """Deletion (left) and insertion (right) curves of every faithfulness run (or ``models``' runs);
    random maps dotted. Returns the number of runs drawn.
    """
    runs = [r for r in load_trust(store).faithfulness if not models or r.key.model in models]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for i, run in enumerate(runs):
        curves = mean_curves(store, run.frun_id)
        colour = COLOURS[i % len(COLOURS)]
        label = f"{model_label(run.key.model)} · {run.key.method} (n={run.n_images})"
        x = curves.fractions * 100
        axes[0].plot(x, curves.deletion, color=colour, lw=2, label=label)
        axes[0].plot(x, curves.deletion_random, color=colour, lw=1, ls=":")
        axes[1].plot(x, curves.insertion, color=colour, lw=2, label=label)
        axes[1].plot(x, curves.insertion_random, color=colour, lw=1, ls=":")
    axes[0].set_title("Deletion (lower = more faithful)")
    axes[1].set_title("Insertion (higher = more faithful)")
    axes[0].set_xlabel("% of pixels removed, most relevant first")
    axes[1].set_xlabel("% of pixels restored, most relevant first")
    axes[0].set_ylabel("probability of the explained class")
    axes[1].legend(fontsize=8, loc="lower right", title="solid: map · dotted: random map", title_fontsize=8)
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(out, dpi=dpi)
    plt.close(figure)
    return len(runs)
