"""ipywidgets for the book. The sliders and menus work without a kernel (in the static HTML): they select one of
pre-rendered panels client-side through ``jslink`` (:func:`png_switcher`); the retrain button needs a live
kernel and says so."""
from __future__ import annotations

from typing import Any

import ipywidgets as W

from ..repro.regression import fit_single, nearest_stage


def lambda_path_slider(path: dict[str, Any]) -> W.VBox:
    """A lambda slider over a stored warm-start path (:func:`png_switcher`: pre-rendered frames switched
    client-side, so it works in the static HTML), stages by increasing lambda, each frame showing the fit
    beside the Lipschitz estimate and training MSE against lambda with a marker at the selected lambda."""
    from .plots import regression_path_png
    stages = sorted(path["stages"], key=lambda s: s["lam"])
    return png_switcher([f"{s['lam']:.0e}" if s["lam"] else "0" for s in stages],
                        [regression_path_png(path, s) for s in stages], "λ", kind="slider", width="640px")


KERNEL_NOTE = ("<b>Needs a running kernel.</b> In the static HTML book this panel only shows the nearest stored "
               "stage; the button trains nothing. Open the notebook in Jupyter (<code>make lab</code>, or "
               "<code>jupyter lab book/05_regression.ipynb</code>) to retrain.")


def retrain_panel_with_note(path: dict[str, Any], epochs: int = 300) -> W.VBox:
    """A retrain panel (needs a running kernel) under a visible note saying so, which the static HTML keeps.
    The button trains the regression net from scratch at the chosen lambda (:func:`fit_single`) and shows the
    fit beside the stored path's Lipschitz estimate and training MSE, with a ring at the new network."""
    from .plots import regression_path_png
    note = W.HTML(f"<div style='border-left:4px solid #d9534f;padding:4px 8px;background:#fdf2f2'>{KERNEL_NOTE}</div>")
    lam = W.FloatLogSlider(value=0.01, base=10, min=-6, max=1, description="λ", readout_format=".1e")
    button = W.Button(description=f"retrain ({epochs} epochs)")
    out = W.Image(value=regression_path_png(path, nearest_stage(path, lam.value)), format="png")
    status = W.Label("showing the nearest stored stage")

    def on_click(_):
        status.value = "training..."
        stage = fit_single(lam.value, epochs=epochs, n_grid=len(path["grid"]))
        out.value = regression_path_png(path, stage)
        status.value = f"λ = {lam.value:.1e}: Lipschitz estimate {stage['lip_grid']:.3f}, excess variation {stage['oscillation']:.3f}"

    button.on_click(on_click)
    box = W.VBox([note, W.HBox([lam, button, status]), out])
    box.button, box.lam, box.status, box.image = button, lam, status, out
    return box


def png_switcher(labels: list[str], pngs: list[bytes], description: str = "", kind: str = "dropdown",
                 width: str = "560px") -> W.VBox:
    """A Dropdown (``kind="dropdown"``) or SelectionSlider (``"slider"``) over pre-rendered PNG panels, linked
    client-side through ``jslink``: it works in the static HTML, without a kernel."""
    if len(labels) != len(pngs) or not labels:
        raise ValueError("need one label per panel, and at least one panel")
    stack = W.Stack([W.Image(value=p, format="png") for p in pngs], selected_index=0)
    options = [(lab, i) for i, lab in enumerate(labels)]
    if kind == "slider":
        control = W.SelectionSlider(options=options, value=0, description=description, continuous_update=True,
                                    layout=W.Layout(width=width))
    elif kind == "dropdown":
        control = W.Dropdown(options=options, value=0, description=description, layout=W.Layout(width=width))
    else:
        raise ValueError(f"kind must be 'dropdown' or 'slider', got {kind!r}")
    box = W.VBox([control, stack])
    box.link = W.jslink((control, "index"), (stack, "selected_index"))
    return box
