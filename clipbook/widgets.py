"""ipywidgets for the book. The lambda slider works without a kernel (in the static HTML): it selects one of
pre-rendered panels client-side through ``jslink``; the optional retrain button needs a live kernel."""
from __future__ import annotations

from typing import Any

import ipywidgets as W

from .plots import regression_stage_png
from .regression import fit_single, nearest_stage


def lambda_slider(path: dict[str, Any]) -> W.VBox:
    """A log-scale lambda slider over a stored warm-start path, showing the fit, data, ground truth and the
    Lipschitz estimate of each stage. Stages are ordered by increasing lambda (lambda = 0 first)."""
    stages = sorted(path["stages"], key=lambda s: s["lam"])
    images = [W.Image(value=regression_stage_png(path, s), format="png") for s in stages]
    stack = W.Stack(images, selected_index=0)
    slider = W.SelectionSlider(options=[(f"{s['lam']:.0e}" if s["lam"] else "0", i) for i, s in enumerate(stages)],
                               value=0, description="λ", continuous_update=True,
                               layout=W.Layout(width="520px"))
    box = W.VBox([slider, stack])
    box.link = W.jslink((slider, "index"), (stack, "selected_index"))
    return box


def retrain_panel(path: dict[str, Any], epochs: int = 300) -> W.VBox:
    """A button that trains the regression net from scratch at a chosen lambda (needs a running kernel)."""
    lam = W.FloatLogSlider(value=0.01, base=10, min=-6, max=1, description="λ", readout_format=".1e")
    button = W.Button(description=f"retrain ({epochs} epochs)")
    out = W.Image(value=regression_stage_png(path, nearest_stage(path, lam.value)), format="png")
    status = W.Label("showing the nearest stored stage")

    def on_click(_):
        status.value = "training..."
        stage = fit_single(lam.value, epochs=epochs, n_grid=len(path["grid"]))
        out.value = regression_stage_png(path, stage)
        status.value = f"λ = {lam.value:.1e}: Lipschitz estimate {stage['lip_grid']:.3f}"

    button.on_click(on_click)
    return W.VBox([W.HBox([lam, button, status]), out])
