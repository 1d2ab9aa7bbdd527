"""Figures of the robustness chapters (Table 1 runs): what each run did per epoch, how robust it is under
each attack, and pre-rendered PNG panels for the book's kernel-free widgets. Every function reads stored
results (:class:`~clipbook.repro.schema.RunResult`) or models and returns a Figure or PNG bytes."""
from __future__ import annotations

import io
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .plots import _style, class_name
from ..repro.schema import RunResult

#: widest figure, in inches: at 100 dpi it is shown at its natural size in the room a 1280 px wide page gives an
#: output (960 px, book/_static/clipbook.css), so 7-pt tick labels stay 10 px tall
MAX_WIDTH = 9.6

ATTACK_LABELS = {"pgd-sign": "eq. (13) PGD", "pgd-l2": "L2 PGD (3 restarts)", "apgd-ce": "APGD-CE",
                 "apgd-t": "APGD-T", "worst": "worst case"}


def png(fig: plt.Figure, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes (the figure is closed). 100 dpi: a widget shows the frame at its natural size, so
    8-pt text is 11 px tall (``make check-html`` refuses frames under 90 dpi)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def styled(df, precision: int = 1, formats: dict | None = None, na: str = "–", caption: str | None = None):
    """``df`` as a pandas Styler with every float column formatted: ``precision`` decimals, or the format string
    ``formats[column]`` (e.g. ``"{:.3f}"``), missing values as ``na``; float index levels get ``precision`` too.

    One ``Styler.format`` call: a second call with a dict of formats resets every other column to pandas'
    default (``76.279998``, ``0.000000``), which is how chapter 7's tables once printed."""
    import pandas as pd
    formats = dict(formats or {})
    spec = {}
    for col in df.columns:
        if col in formats:
            spec[col] = formats[col]
        elif pd.api.types.is_float_dtype(df[col]):
            spec[col] = f"{{:.{precision}f}}"
        elif df[col].dtype == object and df[col].map(lambda v: isinstance(v, float)).any():
            spec[col] = lambda v, p=precision: v if not isinstance(v, float) else f"{v:.{p}f}"
    unknown = set(formats) - set(df.columns)
    if unknown and len(df.columns):
        raise KeyError(f"formats for columns the table does not have: {sorted(unknown, key=str)}")
    st = df.style.format(spec, na_rep=na)
    for level in range(df.index.nlevels):
        if pd.api.types.is_float_dtype(df.index.get_level_values(level)):
            st = st.format_index(f"{{:.{precision}f}}", axis=0, level=level)
    return st.set_caption(caption) if caption else st


def label(r: RunResult) -> str:
    """Short row label, e.g. ``clip90`` or ``adversarial-e2``."""
    return r["row"].split("-", 1)[1]


def steepest_pair_vs_estimate(results: Sequence[RunResult]) -> plt.Figure:
    """Per epoch: the quotient of the steepest pair of the persistent X_Lip (solid) beside the independent
    Lipschitz estimate from fresh pairs (dashed), one colour per CLIP run."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for r in results:
        h = r["history"]
        color, _, alpha = _style(r)
        ep = [e["epoch"] for e in h]
        ax.plot(ep, [e["lip_train_pairs"] for e in h], color=color, alpha=alpha, label=f"{label(r)}: steepest pair of X_Lip")
        ax.plot(ep, [e["lip_estimate"] for e in h], color=color, alpha=alpha, ls="--", label=f"{label(r)}: estimate (fresh pairs)")
    ax.set_yscale("log"); ax.set_xlabel("epoch"); ax.set_ylabel("difference quotient")
    ax.set_title("steepest pair of the persistent X_Lip (solid) vs an estimate from fresh pairs (dashed)", fontsize=9)
    ax.legend(fontsize=7, ncol=1); ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def attack_bars(results: Sequence[RunResult], eps: float = 2.0) -> plt.Figure:
    """Accuracy under each attack and the worst case at radius ``eps``, one group of bars per row (mean over
    the runs of the row)."""
    rows: dict[str, list[RunResult]] = {}
    for r in results:
        rows.setdefault(r["row"], []).append(r)
    names = list(ATTACK_LABELS)
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH, max(6.5, 0.9 * len(rows))), 3.6))
    width = 0.8 / len(names)
    for j, a in enumerate(names):
        vals = []
        for rs in rows.values():
            i = rs[0]["robust"]["eps"].index(eps)
            vals.append(np.mean([r["robust"]["worst"][i] if a == "worst" else r["robust"]["attacks"][a][i] for r in rs]))
        ax.bar(np.arange(len(rows)) + j * width, vals, width, label=ATTACK_LABELS[a],
               color="k" if a == "worst" else None, alpha=0.85)
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, [k.split("-", 1)[1] for k in rows], rotation=30, ha="right")
    ax.set_ylabel(f"accuracy at ε = {eps:g} [%]"); ax.set_xlabel("Table 1 row")
    ax.set_title(f"robust accuracy under each attack, first {results[0]['robust']['n']} test images", fontsize=9)
    ax.legend(fontsize=7, ncol=3); ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def run_panel(r: RunResult, art: dict[str, torch.Tensor] | None = None) -> plt.Figure:
    """Everything about one run: its regularisation parameter and training accuracy against the target per
    epoch, the Lipschitz estimate per epoch, its robustness curve, and (with ``art``) a few adversarials."""
    h = r["history"]
    ep = [e["epoch"] for e in h]
    fig = plt.figure(figsize=(12, 5.6))
    gs = fig.add_gridspec(2, 6, height_ratios=[1.25, 1])
    a, b, c = fig.add_subplot(gs[0, :2]), fig.add_subplot(gs[0, 2:4]), fig.add_subplot(gs[0, 4:])
    param = {"clip": "lam", "jacobian": "lam", "weight_reg": "mu", "spectral_norm": "sn_scale"}.get(r["method"])
    if param:
        a.plot(ep, [e[param] for e in h], color="tab:red")
        a.set_ylabel({"lam": "λ", "mu": "μ", "sn_scale": "scale"}[param])
    else:
        a.text(0.5, 0.5, "no parameter\n(standard training)", ha="center", va="center", transform=a.transAxes)
    a2 = a.twinx()
    a2.plot(ep, [e["train_acc"] for e in h], color="tab:gray", lw=0.8)
    if r["target"]:
        a2.axhline(100 * r["target"], color="tab:gray", ls=":", lw=1)
    a2.set_ylabel("training accuracy [%] (grey)")
    a.set_xlabel("epoch"); a.set_title("parameter (red) and training accuracy vs target (dotted)", fontsize=9)
    b.plot(ep, [e["lip_estimate"] for e in h], label="estimate")
    b.plot(ep, [e["upper_bound"] for e in h], ls="--", label="product bound (4)")
    b.axvline(r["metrics"]["best_epoch"], color="k", lw=0.8, ls=":", label="selected epoch")
    b.set_yscale("log"); b.set_xlabel("epoch"); b.set_ylabel("Lipschitz constant"); b.legend(fontsize=7)
    b.set_title("Lipschitz estimate per epoch", fontsize=9)
    cu = r["curves"]
    c.plot(cu["pgd_eps"], cu["pgd_acc"], "o-", label="eq. (13) PGD")
    rob = r["robust"]
    c.plot(rob["eps"], rob["worst"], "ks", label="worst case")
    c.set_xlabel("radius ε"); c.set_ylabel("accuracy [%]"); c.set_ylim(0, 100); c.legend(fontsize=7)
    c.set_title("robustness", fontsize=9); c.grid(alpha=0.3)
    if art is not None:
        for k in range(6):
            ax = fig.add_subplot(gs[1, k])
            img, p = (art["x"], art["p_clean"]) if k < 3 else (art["x_strong"], art["p_strong"])
            i = k % 3
            ax.imshow(img[i].squeeze(0).numpy(), cmap="gray", vmin=0, vmax=1); ax.axis("off")
            cls = int(p[i].argmax())
            ax.set_title(f"{'clean' if k < 3 else 'APGD-CE ε=2'}: {class_name(r['dataset'], cls)} "
                         f"{100 * p[i][cls]:.0f}%{'' if cls == int(art['y'][i]) else ' ✗'}", fontsize=8)
    fig.suptitle(f"{r['name']}: test {r['metrics']['test']:.1f} %, eq. (13) PGD {r['metrics']['pgd']:.1f} %, "
                 f"worst case {rob['worst'][0]:.1f} % at ε = 2", fontsize=10)
    fig.tight_layout()
    return fig


def epsilon_panel(models: dict[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor, advs: dict[str, dict[str, torch.Tensor]],
                  eps: float, dataset: str = "mnist") -> plt.Figure:
    """Rows: the models; columns: each test image clean, under eq. (13) PGD and under APGD-CE at ``eps``,
    titled with the predicted class and its probability (✗: wrong)."""
    n = len(x)
    fig, axes = plt.subplots(len(models), 3 * n, figsize=(1.15 * 3 * n, 1.45 * len(models)), squeeze=False)
    for row, (name, model) in enumerate(models.items()):
        for k in range(n):
            for j, (kind, imgs) in enumerate((("clean", x), ("PGD", advs[name]["pgd"]), ("APGD", advs[name]["apgd"]))):
                ax = axes[row, 3 * k + j]
                with torch.no_grad():
                    p = model(imgs[k:k + 1]).softmax(1)[0]
                cls = int(p.argmax())
                ax.imshow(imgs[k].squeeze(0).numpy(), cmap="gray", vmin=0, vmax=1); ax.set_xticks([]); ax.set_yticks([])
                ax.set_title(f"{kind}: {class_name(dataset, cls)} {100 * p[cls]:.0f}%{'' if cls == int(y[k]) else ' ✗'}", fontsize=6)
                if 3 * k + j == 0:
                    ax.set_ylabel(name, fontsize=8)
    fig.suptitle(f"ε = {eps:g}", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- chapter 7 (clipbook.repro.certificates records)

BEYOND_STYLE = {"standard": "tab:gray", "weight_reg": "tab:blue", "clip": "tab:red", "spectral_norm": "tab:green",
                "jacobian": "tab:purple", "adversarial": "tab:orange"}


def _plain_log(ax: plt.Axes, which: str = "y", decades: float = 2.0) -> None:
    """Log-scale tick labels as plain numbers (2, 5, 10) instead of powers of ten; ticks at 1, 2, 5 times a
    power of ten when the axis spans at most ``decades`` decades, else at the powers of ten only."""
    from matplotlib.ticker import FuncFormatter, LogLocator
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 2 else (1.0,), numticks=30))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def beyond_label(rec: dict) -> str:
    """``clip90 s0``: the row without the dataset, and the seed, of a :mod:`clipbook.repro.certificates` record."""
    return f"{rec['row'].split('-', 1)[1]} s{rec['seed']}"


def bounds_ladder(records: Sequence[dict]) -> plt.Figure:
    """Per model (a :mod:`clipbook.repro.certificates` record): the lower bounds (pair search, Jacobian), the LipSDP bound and
    the product bound (4) on a log scale; the bar spans lower to product, the true constant lies in the dark part
    (lower to LipSDP)."""
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH, max(6.5, 0.5 * len(records))), 4.2))
    for i, r in enumerate(records):
        b, c = r["bounds"], BEYOND_STYLE.get(r["method"], "k")
        ax.plot([i, i], [b["lower"], b["product"]], color=c, lw=6, alpha=0.2, solid_capstyle="butt")
        if b["lipsdp"] is not None:
            ax.plot([i, i], [b["lower"], b["lipsdp"]], color=c, lw=6, alpha=0.7, solid_capstyle="butt")
            ax.scatter([i], [b["lipsdp"]], marker="_", s=200, color="k", zorder=3, label="LipSDP" if i == 0 else None)
        ax.scatter([i], [b["product"]], marker="v", color=c, zorder=3, label="product bound (4)" if i == 0 else None)
        ax.scatter([i], [b["pair_search"]], marker="^", color=c, zorder=3, label="pair search" if i == 0 else None)
        if b.get("jacobian") is not None:
            ax.scatter([i], [b["jacobian"]], marker="x", color="k", s=18, zorder=3,
                       label="Jacobian norm at test images" if i == 0 else None)
    ax.set_xticks(range(len(records)), [beyond_label(r) for r in records], rotation=50, ha="right", fontsize=7)
    ax.set_yscale("log"); _plain_log(ax); ax.set_ylabel("Lipschitz constant (L2 → L2)"); ax.set_xlabel("MNIST model")
    ax.set_title("the true constant lies in the dark bar: lower bound to LipSDP", fontsize=9)
    ax.legend(fontsize=7, ncol=2); ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def certified_both(records: Sequence[dict], eps: float = 0.5) -> plt.Figure:
    """Left: certified accuracy against the radius under LipSDP (solid) and the product bound (dashed), one
    colour per method; right: certified accuracy at ``eps`` under each bound, per model."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(MAX_WIDTH, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
    for r in records:
        c = BEYOND_STYLE.get(r["method"], "k")
        a.plot(r["cert_eps"], r["certified_acc"]["lipsdp"], color=c, alpha=0.7, lw=1)
        a.plot(r["cert_eps"], r["certified_acc"]["product"], color=c, alpha=0.7, lw=1, ls="--")
    for m, c in BEYOND_STYLE.items():
        if any(r["method"] == m for r in records):
            a.plot([], [], color=c, label=m)
    a.plot([], [], color="k", label="LipSDP"); a.plot([], [], color="k", ls="--", label="product bound")
    a.set_xlabel("radius ε (L2, pixels in [0, 1])"); a.set_ylabel("certified accuracy [%]")
    a.set_title("certified accuracy, all 10,000 test images", fontsize=9); a.legend(fontsize=7); a.grid(alpha=0.3)
    i = records[0]["cert_eps"].index(eps) if records else 0
    x = np.arange(len(records))
    b.bar(x - 0.2, [r["certified_acc"]["product"][i] for r in records], 0.4, label="product bound", color="tab:gray")
    b.bar(x + 0.2, [r["certified_acc"]["lipsdp"][i] for r in records], 0.4, label="LipSDP",
          color=[BEYOND_STYLE.get(r["method"], "k") for r in records])
    b.set_xticks(x, [beyond_label(r) for r in records], rotation=50, ha="right", fontsize=7)
    b.set_ylabel(f"certified accuracy at ε = {eps:g} [%]"); b.set_xlabel("MNIST model")
    b.set_title(f"ε = {eps:g}: grey product bound, coloured LipSDP", fontsize=9); b.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def radius_scatter(rec: dict, ax: plt.Axes | None = None) -> plt.Figure:
    """Per test image of one :mod:`clipbook.repro.certificates` record: the empirical radius (DDN + DeepFool) against the
    certified radius (best bound), log-log, with the diagonal (no point may lie below it) and the median ratio."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(4.2, 3.8))
    cert = np.array(rec["radii"]["certified"], dtype=float)
    emp = np.array([np.inf if e is None else e for e in rec["radii"]["empirical"]], dtype=float)
    use = (cert > 0) & np.isfinite(emp)
    ax.scatter(cert[use], emp[use], s=4, alpha=0.4, color=BEYOND_STYLE.get(rec["method"], "k"))
    lo = max(min(cert[use].min(), emp[use].min()) if use.any() else 1e-3, 1e-4)
    hi = max(cert[use].max(), emp[use].max()) if use.any() else 1.0
    t = np.array([lo, hi])
    med = rec["summary"]["median_ratio"]
    ax.plot(t, t, "k-", lw=1, label="empirical = certified")
    if med is not None:
        ax.plot(t, med * t, "k--", lw=1, label=f"median ratio {med:.2f}")
    ax.set_xscale("log"); ax.set_yscale("log")
    _plain_log(ax, "x", np.log10(hi / lo)); _plain_log(ax, "y", np.log10(hi / lo))
    ax.set_xlabel(f"certified radius (L = {rec['bounds']['best']:.3g}, {rec['radii']['bound']})")
    ax.set_ylabel("empirical radius (DDN + DeepFool)")
    ax.set_title(f"{rec['name']}: {int(use.sum())} certified images, {rec['summary']['n_violations']} violations",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left"); ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def radius_ratio_boxes(records: Sequence[dict]) -> plt.Figure:
    """Per model: the distribution of empirical / certified radius over its certified test images (box: quartiles,
    whiskers: 5-95 %), log scale; 1 is the floor no image may go below."""
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH, max(6.5, 0.5 * len(records))), 4.0))
    data = []
    for r in records:
        cert = np.array(r["radii"]["certified"], dtype=float)
        emp = np.array([np.inf if e is None else e for e in r["radii"]["empirical"]], dtype=float)
        use = (cert > 0) & np.isfinite(emp)
        data.append(emp[use] / cert[use] if use.any() else np.array([np.nan]))
    bp = ax.boxplot(data, whis=(5, 95), showfliers=False, patch_artist=True)
    for patch, r in zip(bp["boxes"], records):
        patch.set_facecolor(BEYOND_STYLE.get(r["method"], "k")); patch.set_alpha(0.5)
    ax.axhline(1, color="k", lw=1)
    ax.set_xticks(range(1, len(records) + 1), [beyond_label(r) for r in records], rotation=50, ha="right", fontsize=7)
    ax.set_yscale("log"); _plain_log(ax); ax.set_ylabel("empirical / certified radius"); ax.set_xlabel("MNIST model")
    ax.set_title("how far the certificate is from the attacks, per test image", fontsize=9); ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
