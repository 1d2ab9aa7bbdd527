"""Chapter 6's figures of why checkpoint selection picks the epochs it picks: validation accuracy under the
selection attack and training accuracy per epoch, with the selected and the final epoch marked."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt

from ..repro.schema import RunResult

LABELS = {"standard": "standard", "weight_reg": "weight reg.", "clip": "CLIP"}


def _label(r: RunResult) -> str:
    return LABELS.get(r["method"], r["method"]) + (f" {100 * r['target']:.0f} %" if r["target"] else "")


def selection_dynamics(runs: Sequence[RunResult], title: str = "") -> plt.Figure:
    """One panel per run: validation accuracy under the selection attack (eq. (13) PGD, few steps) and
    clean training accuracy per epoch [%]; a dot marks the selected epoch (best validation PGD), a cross the
    final network."""
    fig, axes = plt.subplots(1, len(runs), figsize=(3.6 * len(runs), 3.3), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], runs):
        ep = [h["epoch"] for h in r["history"]]
        val = [h["val_pgd"] for h in r["history"]]
        ax.plot(ep, [h["train_acc"] for h in r["history"]], color="C0", label="training accuracy")
        ax.plot(ep, val, color="C3", label="validation, selection PGD")
        b = r["metrics"]["best_epoch"]
        ax.plot([b], [val[b - 1]], "o", color="C3", ms=8, label=f"selected (epoch {b})")
        ax.plot([ep[-1]], [val[-1]], "x", color="k", ms=8, mew=2, label=f"final (epoch {ep[-1]})")
        ax.set_title(_label(r), fontsize=11)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center right")
    axes[0][0].set_ylabel("accuracy [%]")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig
