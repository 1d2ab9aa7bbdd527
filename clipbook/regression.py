"""The regression experiment of Sec. 4.1 (Fig. 2): warm starts over lambda and the lambda path.

Deviations from the paper, measured and explained in the book: the network's last layer is linear (with
the paper's output sigmoid, lambda = 10 drove the output into the sigmoid's flat zero region, a constant
network stuck away from the label mean) and Adam is used (SGD momentum at lr 0.1 left the sigmoid net
constant after 1,000 epochs). The loss is the mean squared error, so the paper's lambda values need not
mean the same here: the book shows the full path.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .data import regression_data, regression_target
from .io import provenance, write_json_atomic
from .lipschitz import difference_quotients, layerwise_upper_bound
from .models import build_model
from .progress import progress
from .training import RegressionTask, TrainConfig, train

PAPER_LAMBDAS = (10.0, 1.0, 1e-10)
#: lambda values of the slider path, largest first (each stage warm-starts from the one before).
PATH_LAMBDAS = (10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 1e-6, 1e-10)


def regression_config(lam: float, epochs: int = 1000, seed: int = 0, **overrides: Any) -> TrainConfig:
    """Settings of one regression stage: fixed ``lam`` (0 means unregularised), Adam lr 1e-3, batch 10,
    64 Lipschitz pairs ``x ~ U[-4, 4]``, ``x' = x + 0.1 N(0, 1)`` redrawn every epoch."""
    d = dict(method="clip" if lam > 0 else "standard", lam=float(lam), epochs=epochs, seed=seed, lr=1e-3,
             optimizer="adam", batch_size=10, lip_pairs=64, lip_noise=0.1, eval_lip_steps=0, val_pgd_steps=0)
    d.update(overrides)
    return TrainConfig.from_dict(d)


def grid(n: int = 801) -> torch.Tensor:
    """Evaluation grid on [-4, 4], shape ``[n, 1]``."""
    return torch.linspace(-4.0, 4.0, n).unsqueeze(1)


@torch.no_grad()
def grid_lipschitz(model: torch.nn.Module, xs: torch.Tensor | None = None) -> float:
    """Largest slope between neighbouring grid points: a lower bound on Lip(f) on [-4, 4] that is sharp up
    to the grid spacing (1-D networks only)."""
    xs = grid() if xs is None else xs
    return difference_quotients(model, xs[:-1], xs[1:]).max().item()


def _stage(model, task, lam, epochs, seed, xs) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = train(model, task, regression_config(lam, epochs, seed), desc=f"lambda={lam:g}")
    with torch.no_grad():
        curve = model(xs).squeeze(1)
        mse = torch.mean((model(task.x_train) - task.y_train) ** 2).item()
    return {"lam": lam, "curve": [round(v, 6) for v in curve.tolist()], "train_mse": mse,
            "lip_grid": grid_lipschitz(model, xs), "lip_pairs": res.history[-1].get("lip_train_pairs"),
            "upper_bound": layerwise_upper_bound(model), "wall_s": time.perf_counter() - t0,
            "loss_history": [h["loss"] for h in res.history]}


def warm_start_path(lambdas: Sequence[float], epochs: int = 1000, pretrain_epochs: int = 1000, seed: int = 0,
                    data_seed: int = 0, n_grid: int = 801) -> dict[str, Any]:
    """Pretrain with lambda = 0, then train for each lambda in ``lambdas`` (in the given order), each stage
    warm-started from the previous one, as in the paper. Returns data, grid, ground truth and one record
    per stage (curve on the grid, training MSE, Lipschitz values); the first stage is lambda = 0."""
    if any(l < 0 for l in lambdas):
        raise ValueError("lambdas must be >= 0")
    x, y = regression_data(seed=data_seed)
    task = RegressionTask(x, y)
    model = build_model("regression_mlp", seed=seed)
    xs = grid(n_grid)
    stages = [_stage(model, task, 0.0, pretrain_epochs, seed, xs)]
    for lam in progress(lambdas, desc="lambda path", unit="stage"):
        stages.append(_stage(model, task, float(lam), epochs, seed, xs))
    return {"x": x.squeeze(1).tolist(), "y": y.squeeze(1).tolist(), "grid": xs.squeeze(1).tolist(),
            "truth": regression_target(xs.squeeze(1)).tolist(), "label_mean": y.mean().item(),
            "epochs": epochs, "pretrain_epochs": pretrain_epochs, "seed": seed, "data_seed": data_seed,
            "config": regression_config(1.0, epochs, seed).to_dict(), "stages": stages}


def fit_single(lam: float, epochs: int = 300, seed: int = 0, data_seed: int = 0, n_grid: int = 801) -> dict[str, Any]:
    """Train one regression net from scratch at ``lam``; returns a stage record as in :func:`warm_start_path`."""
    x, y = regression_data(seed=data_seed)
    model = build_model("regression_mlp", seed=seed)
    return _stage(model, RegressionTask(x, y), float(lam), epochs, seed, grid(n_grid))


def nearest_stage(path: dict[str, Any], lam: float) -> dict[str, Any]:
    """The stage of a stored path whose lambda is closest to ``lam`` on a log scale (lambda = 0 for lam <= 0)."""
    import math
    if lam <= 0:
        return path["stages"][0]
    pos = [s for s in path["stages"] if s["lam"] > 0]
    return min(pos, key=lambda s: abs(math.log10(s["lam"]) - math.log10(lam)))


def run_regression(out_dir: str | Path, epochs: int = 1000, seed: int = 0, force: bool = False,
                   command: str = "") -> dict[str, Path]:
    """Store Fig. 2 (``fig2.json``: lambda 0, then 10, 1, 1e-10) and the slider path (``lambda_path.json``)."""
    out_dir = Path(out_dir)
    written = {}
    for name, lams in (("fig2", PAPER_LAMBDAS), ("lambda_path", PATH_LAMBDAS)):
        p = out_dir / f"{name}.json"
        if p.exists() and not force:
            written[name] = p
            continue
        t0 = time.perf_counter()
        res = warm_start_path(lams, epochs=epochs, pretrain_epochs=epochs, seed=seed)
        res["provenance"] = {**provenance(), "command": command, "wall_s": time.perf_counter() - t0}
        written[name] = write_json_atomic(p, res)
    return written
