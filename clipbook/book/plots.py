"""Matplotlib figures for the book. Each function takes stored data (or a model) and returns a Figure."""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

FASHION_CLASSES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot")
METHOD_STYLE = {"standard": ("tab:gray", "o"), "weight_reg": ("tab:blue", "s"), "clip": ("tab:red", "^"),
                "spectral_norm": ("tab:green", "D"), "jacobian": ("tab:purple", "v")}


def _style(r):
    """(color, marker, alpha) of a result: colour by method, opacity by target accuracy."""
    color, marker = METHOD_STYLE.get(r["method"], ("tab:purple", "d"))
    alpha = {None: 1.0, 0.95: 0.45, 0.9: 0.7, 0.85: 1.0}[r["target"]]
    return color, marker, alpha


def class_name(dataset: str, k: int) -> str:
    return FASHION_CLASSES[k] if dataset == "fashion" else str(k)


def regression_panel(ax, data: dict[str, Any], stage: dict[str, Any], title: str | None = None) -> None:
    """One Fig. 2 panel: ground truth (red), noisy samples (blue), the network (green)."""
    ax.plot(data["grid"], data["truth"], color="tab:red", lw=1.5, label="ground truth")
    ax.scatter(data["x"], data["y"], s=8, color="tab:blue", label="noisy samples", zorder=3)
    ax.plot(data["grid"], stage["curve"], color="tab:green", lw=2, label="network")
    ax.set_ylim(-0.2, max(0.7, max(stage["curve"]) + 0.05))  # nothing clipped (a sigmoid output stays below 1)
    ax.set_title(title or f"λ = {stage['lam']:g}   (Lip ≈ {stage['lip_grid']:.3f})", fontsize=10)


def fig2(data: dict[str, Any]) -> plt.Figure:
    """Fig. 2: the stages of a warm-start path side by side."""
    stages = data["stages"]
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 2.8), sharey=True)
    for ax, st in zip(axes, stages):
        regression_panel(ax, data, st)
    axes[0].legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    return fig


def _lam_label(lam: float) -> str:
    return "0" if lam == 0 else f"{lam:g}"


def fig2_seed_panels(table: dict[str, Any], seed: int) -> plt.Figure:
    """Fig. 2 for one seed of a ``fig2_seeds.json`` table: one panel per lambda in the order trained (0, then the
    warm-started 10, 1, 1e-10), each titled with its excess variation, local extrema in the gaps and Lipschitz
    constant; the gaps are shaded."""
    rec = next(r for r in table["seeds"] if r["seed"] == seed)
    st = rec["stages"]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.4), sharey=True, sharex=True)
    axes = axes.ravel()
    for ax, s in zip(axes, st):
        for a, b in ((-3.0, -0.3), (0.3, 3.0)):
            ax.axvspan(a, b, color="0.93", lw=0)
        regression_panel(ax, table, s, f"λ = {_lam_label(s['lam'])}\nexcess var. {s['oscillation']:.3f}, "
                                       f"{s['extrema']} extrema, Lip {s['lip']:.2f}")
        ax.set_xlabel("x")
    axes[0].set_ylim(-0.2, max(0.7, max(max(s["curve"]) for s in st) + 0.05))  # shared: fits every panel
    axes[0].set_ylabel("f(x)"); axes[2].set_ylabel("f(x)")
    axes[0].legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    return fig


def fig2_all_seeds(table: dict[str, Any], summary: dict[str, Any]) -> plt.Figure:
    """Every seed's fit per lambda (one panel per lambda): the typical seed bold green, the others thin, the seeds
    whose fit is stuck at a constant dashed grey (shown, not hidden)."""
    lams = table["lambdas"]
    typical = summary["typical_seed"]
    stuck = {p["seed"]: p["stuck"] for p in summary["per_seed"]}
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.4), sharey=True, sharex=True)
    axes = axes.ravel()
    for i, (ax, lam) in enumerate(zip(axes, lams)):
        for a, b in ((-3.0, -0.3), (0.3, 3.0)):
            ax.axvspan(a, b, color="0.93", lw=0)
        ax.plot(table["grid"], table["truth"], color="tab:red", lw=1.5, label="ground truth")
        for r in table["seeds"]:
            if r["seed"] == typical:
                continue
            if stuck[r["seed"]][i]:
                ax.plot(table["grid"], r["stages"][i]["curve"], color="0.4", lw=1, ls="--")
            else:
                ax.plot(table["grid"], r["stages"][i]["curve"], color="tab:green", lw=0.8, alpha=0.45)
        rec = next(r for r in table["seeds"] if r["seed"] == typical)
        ax.plot(table["grid"], rec["stages"][i]["curve"], color="tab:green", lw=2.2, label=f"seed {typical} (typical)")
        n_stuck = sum(v[i] for v in stuck.values())
        ax.set_title(f"λ = {_lam_label(lam)}: {len(table['seeds'])} seeds, {n_stuck} stuck", fontsize=10)
        top = max(max(st["curve"]) for r in table["seeds"] for st in r["stages"])
        ax.set_ylim(-0.2, max(0.8, top + 0.05))  # shared by the panels: fits every curve
        ax.set_xlabel("x")
    axes[0].plot([], [], color="tab:green", lw=0.8, alpha=0.45, label="other seeds")
    axes[0].plot([], [], color="0.4", lw=1, ls="--", label="stuck (constant)")
    axes[0].set_ylabel("f(x)"); axes[2].set_ylabel("f(x)")
    axes[0].legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    return fig


def fig2_seed_stats(table: dict[str, Any], summary: dict[str, Any], thresholds: dict[str, float] | None = None) -> plt.Figure:
    """The distributions over the seeds, per lambda: excess variation and local extrema in the gaps, rms distance
    to the truth, Lipschitz constant. One dot per seed (crosses: stuck at a constant); dotted lines: the thresholds
    "strong oscillation" and "no instability", and the truth's Lipschitz constant 0.5."""
    th = thresholds or summary["thresholds"]
    lams = table["lambdas"]
    stuck = {p["seed"]: p["stuck"] for p in summary["per_seed"]}
    keys = (("oscillation", "excess variation in the gaps"), ("extrema", "local extrema in the gaps"),
            ("dist_rms", "rms distance to the truth"), ("lip", "Lipschitz constant (grid)"))
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.2))
    axes = axes.ravel()
    rng = np.random.default_rng(0)
    for ax, (key, label) in zip(axes, keys):
        for i, lam in enumerate(lams):
            for r in table["seeds"]:
                v = r["stages"][i][key]
                jit = i + rng.uniform(-0.18, 0.18)
                if stuck[r["seed"]][i]:
                    ax.plot(jit, v, "x", color="0.35", ms=6)
                else:
                    ax.plot(jit, v, "o", color="tab:green", ms=4, alpha=0.7)
            med = float(np.median([r["stages"][i][key] for r in table["seeds"]]))
            ax.plot([i - 0.3, i + 0.3], [med, med], color="k", lw=1.5)
        ax.set_xticks(range(len(lams)))
        ax.set_xticklabels([f"λ={_lam_label(l)}" for l in lams], fontsize=8)
        ax.set_title(label, fontsize=10)
        if key == "oscillation":
            ax.axhline(th["oscillating"], color="tab:red", ls=":", lw=1)
            ax.axhline(th["stable"], color="tab:blue", ls=":", lw=1)
        if key == "lip":
            ax.axhline(0.5, color="tab:red", ls=":", lw=1)
    axes[0].plot([], [], "o", color="tab:green", label="seed")
    axes[0].plot([], [], "x", color="0.35", label="stuck (constant)")
    axes[0].plot([], [], color="k", label="median")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def lambda_path_plot(data: dict[str, Any]) -> plt.Figure:
    """Proposition 2 seen on the lambda path: training loss and Lipschitz constant against lambda."""
    st = [s for s in data["stages"] if s["lam"] > 0]
    lam = [s["lam"] for s in st]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.semilogx(lam, [s["train_mse"] for s in st], "o-")
    a.set_xlabel("λ"); a.set_ylabel("training MSE"); a.set_title("data term: non-decreasing in λ (7)")
    b.semilogx(lam, [s["lip_grid"] for s in st], "o-", color="tab:red", label="Lip on a fine grid")
    b.semilogx(lam, [s["upper_bound"] for s in st], "s--", color="tab:gray", label="product bound (4)")
    b.set_yscale("log"); b.set_xlabel("λ"); b.set_title("Lipschitz constant: non-increasing in λ (8)")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def image_grid(images: torch.Tensor, titles: Sequence[str], rows: int = 1, size: float = 1.6) -> plt.Figure:
    """Grayscale images ``[N, 1, H, W]`` in a grid with a title each."""
    n = len(images)
    cols = int(np.ceil(n / rows))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, (size + 0.35) * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, images, titles):
        ax.imshow(img.squeeze(0).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(t, fontsize=8)
    fig.tight_layout()
    return fig


def adversarial_examples(art: dict[str, torch.Tensor], dataset: str, n: int = 6) -> plt.Figure:
    """Clean test images (top) and their PGD adversarials at eps = 2 (bottom) with predictions."""
    imgs = torch.cat([art["x"][:n], art["x_adv"][:n]])
    titles = []
    for p, y in zip(torch.cat([art["p_clean"][:n], art["p_adv"][:n]]), torch.cat([art["y"][:n], art["y"][:n]])):
        c = int(p.argmax())
        mark = "" if c == int(y) else " ✗"
        titles.append(f"{class_name(dataset, c)} {100 * p[c]:.0f}%{mark}")
    return image_grid(imgs, titles, rows=2)


def robustness_curves(results: list[dict[str, Any]], key: str = "pgd") -> plt.Figure:
    """Accuracy against PGD radius (``key='pgd'``) or noise sigma (``'noise'``), one line per row (seed 0)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for r in results:
        c = r.get("curves")
        if not c:
            continue
        color, marker, alpha = _style(r)
        xs, ys = (c["pgd_eps"], c["pgd_acc"]) if key == "pgd" else (c["noise_sigma"], c["noise_acc"])
        ax.plot(xs, ys, marker=marker, color=color, alpha=alpha, label=r["row"].split("-", 1)[1])
    ax.set_xlabel("PGD radius ε (L2)" if key == "pgd" else "noise σ")
    ax.set_ylabel("accuracy [%]")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def training_curves(results: list[dict[str, Any]]) -> plt.Figure:
    """lambda or mu, training accuracy and Lipschitz estimate (with product bound) over the epochs."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for r in results:
        h = r["history"]
        ep = [e["epoch"] for e in h]
        color, marker, alpha = _style(r)
        lab = r["row"].split("-", 1)[1]
        if r["method"] in ("clip", "jacobian"):
            axes[0].plot(ep, [e["lam"] for e in h], color=color, alpha=alpha, label=f"{lab}: λ")
        elif r["method"] == "weight_reg":
            axes[0].plot(ep, [1000 * e["mu"] for e in h], color=color, alpha=alpha, label=f"{lab}: 1000·μ")
        elif r["method"] == "spectral_norm":
            axes[0].plot(ep, [e["sn_scale"] for e in h], color=color, alpha=alpha, label=f"{lab}: scale s")
        axes[1].plot(ep, [e["train_acc"] for e in h], color=color, alpha=alpha, label=lab)
        axes[2].plot(ep, [e["lip_estimate"] for e in h], color=color, alpha=alpha, label=lab)
        axes[2].plot(ep, [e["upper_bound"] for e in h], color=color, alpha=alpha, ls=":")
    axes[0].set_title("regularisation parameter"); axes[0].legend(fontsize=7); axes[0].set_ylabel("λ, 1000·μ or scale")
    axes[1].set_title("training accuracy (epoch mean)"); axes[1].set_ylabel("accuracy [%]")
    axes[2].set_title("Lipschitz estimate (solid), product bound (dotted)"); axes[2].set_yscale("log")
    axes[2].set_ylabel("Lipschitz constant")
    for ax in axes:
        ax.set_xlabel("epoch"); ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def toy_pairs(model, x: torch.Tensor, y: torch.Tensor, before: tuple, after: tuple, title: str = "") -> plt.Figure:
    """Decision regions of a 2-D classifier with Lipschitz pairs before (grey) and after (black) updates."""
    xs = torch.linspace(-1.6, 2.6, 200)
    ys = torch.linspace(-1.1, 1.6, 150)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        p = model(torch.stack([gx.flatten(), gy.flatten()], 1)).softmax(1)[:, 1].view(gx.shape)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.contourf(gx.numpy(), gy.numpy(), p.numpy(), levels=20, cmap="RdBu_r", alpha=0.6)
    ax.contour(gx.numpy(), gy.numpy(), p.numpy(), levels=[0.5], colors="k", linewidths=1)
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdBu_r", s=6, edgecolors="none")
    for (a, b), col, lab in ((before, "0.5", "before"), (after, "k", "after")):
        for i in range(len(a)):
            ax.plot([a[i, 0], b[i, 0]], [a[i, 1], b[i, 1]], color=col, lw=1, marker=".", ms=5,
                    label=lab if i == 0 else None)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _lam_positions(lams: Sequence[float]) -> tuple[np.ndarray, float]:
    """log10(lambda) for lambda > 0; lambda = 0 is drawn two decades left of the smallest positive lambda."""
    pos = [l for l in lams if l > 0]
    zero_at = np.log10(min(pos)) - 2 if pos else 0.0
    return np.array([np.log10(l) if l > 0 else zero_at for l in lams]), zero_at


def lambda_path_panel(ax, data: dict[str, Any], current: dict[str, Any] | None = None) -> None:
    """Lipschitz estimate (left axis) and training MSE (right axis) against lambda along a stored path, with a
    marker at ``current``'s lambda. lambda = 0 sits at the left end, labelled "0"."""
    st = sorted(data["stages"], key=lambda s: s["lam"])
    lx, zero_at = _lam_positions([s["lam"] for s in st])
    ax.plot(lx, [s["lip_grid"] for s in st], "o-", color="tab:red", ms=3, label="Lipschitz (grid)")
    ax.set_ylabel("Lipschitz estimate", color="tab:red")
    ax.set_xlabel("λ (log scale; 0 at the left end)")
    hi = int(np.ceil(lx.max()))
    step = 1 if hi - zero_at <= 7 else 3
    ticks = [zero_at] + [t for t in range(hi, int(np.floor(zero_at)), -step) if t > zero_at + 1][::-1]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0"] + [f"1e{t}" for t in ticks[1:]], fontsize=7)
    b = ax.twinx()
    b.plot(lx, [s["train_mse"] for s in st], "s--", color="tab:blue", ms=3, label="training MSE")
    b.set_ylabel("training MSE", color="tab:blue")
    if current is not None:
        cx, _ = _lam_positions([current["lam"], *[s["lam"] for s in st]])
        ax.axvline(cx[0], color="k", lw=1, alpha=0.5)
        ax.plot([cx[0]], [current["lip_grid"]], "o", ms=10, mfc="none", mec="k", mew=2)
        b.plot([cx[0]], [current["train_mse"]], "s", ms=10, mfc="none", mec="k", mew=2)
    ax.set_title("along the path", fontsize=10)


def regression_path_png(data: dict[str, Any], stage: dict[str, Any]) -> bytes:
    """The slider's frame: the fit at ``stage`` (left) beside Lipschitz estimate and training MSE against
    lambda over the whole path with a marker at ``stage`` (right), as PNG bytes."""
    import io
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1.1, 1]})
    regression_panel(a, data, stage, f"λ = {_lam_label(stage['lam'])}: Lip {stage['lip_grid']:.3f}, MSE {stage['train_mse']:.4f}")
    a.set_xlabel("x"); a.set_ylabel("f(x)")
    a.legend(fontsize=7, loc="upper center")
    lambda_path_panel(b, data, stage)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def fig1_trajectory(fig1: dict[str, Any], snaps: dict[str, Any], dataset: str = "fashion") -> plt.Figure:
    """Fig. 1 from ``results/fig1.json`` and ``results/fig1.pt``: the chosen pair at a few steps of Algorithm 1
    (top: image a, middle: image b, each titled with its top class and confidence; display clipped to
    [0, 1]) and the probabilities of the two original classes for both images against the step (bottom)."""
    t = fig1["trajectory"]
    steps = [s for s in snaps["steps"] if s < len(t["conf_a"])]
    n = len(steps)
    fig = plt.figure(figsize=(1.5 * n, 6.4))
    gs = fig.add_gridspec(3, n, height_ratios=[1, 1, 1.5])
    for row, (key, top, conf) in enumerate((("a", "top_a", "conf_a"), ("b", "top_b", "conf_b"))):
        for j, s in enumerate(steps):
            ax = fig.add_subplot(gs[row, j])
            ax.imshow(snaps[key][j].squeeze(0).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]); ax.set_yticks([])
            ax.set_title(f"{class_name(dataset, t[top][s])} {100 * t[conf][s]:.0f}%", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"image {key}\nstep {s}", fontsize=7)
            else:
                ax.set_ylabel(f"step {s}", fontsize=7)
    ax = fig.add_subplot(gs[2, :])
    ca, cb = class_name(dataset, fig1["class_a"]), class_name(dataset, fig1["class_b"])
    x = np.arange(len(t["pa_a"]))
    ax.plot(x, t["pa_a"], color="tab:blue", label=f"a: P({ca})")
    ax.plot(x, t["pa_b"], color="tab:blue", ls="--", label=f"a: P({cb})")
    ax.plot(x, t["pb_b"], color="tab:orange", label=f"b: P({cb})")
    ax.plot(x, t["pb_a"], color="tab:orange", ls="--", label=f"b: P({ca})")
    ax.axhline(0.9, color="gray", lw=0.8, ls=":"); ax.axhline(0.3, color="gray", lw=0.8, ls=":")
    ax.set_xscale("symlog", linthresh=1); ax.set_xlim(0, len(x) - 1); ax.set_ylim(0, 1.02)
    ax.set_xlabel("step of Algorithm 1"); ax.set_ylabel("probability")
    ax.legend(fontsize=7, ncol=2, loc="center left")
    fig.tight_layout()
    return fig
