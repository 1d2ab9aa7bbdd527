"""The regression experiment of Sec. 4.1 (Fig. 2): warm starts over lambda, the lambda path, and the numbers
that say whether a fit oscillates in the data gaps and how far it is from the ground truth.

A *setting* (a dict, see :data:`DEFAULT_SETTING`) fixes everything the paper leaves open: optimiser and step
size, the output layer (linear or the paper's sigmoid), the scale of the data term (``data_scale``: 1 is the
paper's mean over the minibatch, 100 the sum over the 100 samples, i.e. lambda / 100 against the mean),
``lip_power`` (1: lambda * Lip as the paper writes; 2: lambda * Lip^2 as the reference code does), the pair
sampling, the number of epochs (``epochs`` at lambda = 0, ``stage_epochs`` per warm-started stage) and the
initialisation (``init``, ``init_std``: see :data:`INITS`). ``python -m clipbook.repro.fig2_search`` measured several
settings with PyTorch's default initialisation (results/regression/fig2_search.json), ``python -m
clipbook.repro.fig2_search --init`` the initialisations (results/regression/init_search.json); :data:`FIG2_SETTING` is
the one the book's Fig. 2 (over seeds: :mod:`clipbook.repro.fig2_seeds`), slider and Section 3 numbers use.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm  # the text bar: it honours TQDM_DISABLE (tqdm.notebook ignores it)

from ..core.data import regression_data, regression_target
from ..core.files import write_json_atomic
from .provenance import provenance
from ..core.lipschitz import difference_quotients

from ..core.bounds import layerwise_upper_bound
from ..core.models import regression_mlp
from ..core.training import RegressionTask, TrainConfig, train

PAPER_LAMBDAS = (10.0, 1.0, 1e-10)
#: lambda values of the slider path, largest first (each stage warm-starts from the one before).
PATH_LAMBDAS = (10.0, 3.0, 1.0, 0.3, 0.1, 0.01, 1e-3, 1e-4, 1e-10)
#: the data gaps of Sec. 4.1 (no training samples there; the ground truth is 0 on them).
GAPS = ((-3.0, -0.3), (0.3, 3.0))
#: where the fit is compared with the truth "at the domain's boundary".
BOUNDARY = 3.5

#: how the weights of the regression net are drawn (``init`` of a setting): ``"default"`` is PyTorch's
#: ``nn.Linear`` initialisation (uniform, scale 1 / sqrt(fan_in)); ``"normal"`` draws every weight matrix from
#: N(0, ``init_std``^2) (``init_std`` 1 is ``torch.randn``, as in the authors' later 1-D scripts). Biases keep
#: PyTorch's default in both cases.
INITS = ("default", "normal")

#: the settings before the search (Adam, linear output, mean data term, lambda * Lip, 1000 epochs, PyTorch's init).
DEFAULT_SETTING: dict[str, Any] = dict(optimizer="adam", lr=1e-3, momentum=0.9, output_sigmoid=False, data_scale=1.0,
                                       lip_power=1, batch_size=10, lip_pairs=64, lip_noise=0.1, epochs=1000,
                                       stage_epochs=None, init="default", init_std=1.0)
#: the setting of the book's Fig. 2 and lambda slider. From the first search (row ``sgd-sig-sum-lr1e-3`` of
#: results/regression/fig2_search.json): the paper's SGD with momentum and sigmoid output, the data term summed
#: over the 100 samples (so the paper's lambda acts as lambda / 100 against the mean) with lr 0.1 / 100. The
#: initialisation is the one the init search chose by its stated criterion (``chosen`` of
#: results/regression/init_search.json: normal-1.5). The lambda = 0 pretraining runs 1000 epochs, each
#: warm-started stage 200 (a budget choice, not searched).
FIG2_SETTING: dict[str, Any] = dict(DEFAULT_SETTING, optimizer="sgd", lr=1e-3, output_sigmoid=True, data_scale=100.0,
                                    stage_epochs=200, init='normal', init_std=1.5)

#: thresholds of :func:`assess_fig2` (fractions of the truth's range 0.5 on [-4, 4]).
OSCILLATING = 0.1   # "strong oscillations": excess total variation in the gaps at least this
STABLE = 0.02       # "no instabilities": excess total variation in the gaps at most this
CONSTANT = 0.01     # "constant network": range of the fit on [-4, 4] below this


def _full(setting: dict[str, Any] | None) -> dict[str, Any]:
    s = dict(DEFAULT_SETTING)
    s.update(setting or {})
    unknown = sorted(set(s) - set(DEFAULT_SETTING))
    if unknown:
        raise ValueError(f"unknown regression setting(s) {unknown}; known: {sorted(DEFAULT_SETTING)}")
    if s["init"] not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {s['init']!r}")
    se = s["stage_epochs"]
    if se is not None and (isinstance(se, bool) or not isinstance(se, int) or se < 1):
        raise ValueError(f"stage_epochs must be None (= epochs) or an integer >= 1, got {se!r}")
    std = s["init_std"]
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std <= 0:
        raise ValueError(f"init_std must be a finite number > 0, got {std!r}")
    return s


def regression_config(lam: float, epochs: int = 1000, seed: int = 0, **overrides: Any) -> TrainConfig:
    """Settings of one regression stage: fixed ``lam`` (0 means unregularised), Adam lr 1e-3, batch 10,
    64 Lipschitz pairs ``x ~ U[-4, 4]``, ``x' = x + 0.1 N(0, 1)`` redrawn every epoch; ``overrides`` replace
    any of these."""
    d = dict(method="clip" if lam > 0 else "standard", lam=float(lam), epochs=epochs, seed=seed, lr=1e-3,
             optimizer="adam", batch_size=10, lip_pairs=64, lip_noise=0.1, eval_lip_steps=0)
    d.update(overrides)
    return TrainConfig.from_dict(d)


def stage_epochs(setting: dict[str, Any] | None) -> int:
    """Epochs of each warm-started lambda > 0 stage of ``setting`` (``stage_epochs``, or ``epochs`` if None);
    the lambda = 0 pretraining and networks trained from scratch get ``epochs``."""
    s = _full(setting)
    return s["epochs"] if s["stage_epochs"] is None else s["stage_epochs"]


def setting_config(setting: dict[str, Any] | None, lam: float, epochs: int | None = None, seed: int = 0) -> TrainConfig:
    """The :class:`TrainConfig` of one stage of ``setting`` (the TrainConfig part of it; ``epochs`` None: the
    setting's ``epochs``)."""
    s = _full(setting)
    keys = ("optimizer", "lr", "momentum", "batch_size", "lip_pairs", "lip_noise", "lip_power")
    return regression_config(lam, s["epochs"] if epochs is None else epochs, seed, **{k: s[k] for k in keys})


class ScaledRegressionTask(RegressionTask):
    """:class:`RegressionTask` with the data term multiplied by ``scale`` (100 = the sum over 100 samples,
    estimated from a minibatch mean). Against the mean this is lambda / scale; with SGD also lr * scale."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0, domain=(-4.0, 4.0)):
        super().__init__(x, y, domain)
        self.scale = float(scale)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.scale * super().loss(out, y)


def build_regression_model(setting: dict[str, Any] | None = None, seed: int = 0) -> torch.nn.Sequential:
    """The 1-500-200-100-1 sigmoid net of Sec. 4.1 with the output layer and initialisation (``init``,
    ``init_std``, see :data:`INITS`) of ``setting``, seeded: the same ``seed`` gives the same biases under
    both inits, and with ``init="normal"`` weights ``init_std`` times the same standard normal draws."""
    s = _full(setting)
    torch.manual_seed(seed)
    model = regression_mlp(output_sigmoid=s["output_sigmoid"])
    model.input_shape = (1,)
    if s["init"] == "normal":
        g = torch.Generator().manual_seed(seed + 7919)  # its own stream: the biases stay those of "default"
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.copy_(s["init_std"] * torch.randn(m.weight.shape, generator=g))
    return model


def grid(n: int = 801) -> torch.Tensor:
    """Evaluation grid on [-4, 4], shape ``[n, 1]``."""
    return torch.linspace(-4.0, 4.0, n).unsqueeze(1)


@torch.no_grad()
def grid_lipschitz(model: torch.nn.Module, xs: torch.Tensor | None = None) -> float:
    """Largest slope between neighbouring grid points: a lower bound on Lip(f) on [-4, 4] that is sharp up
    to the grid spacing (1-D networks only)."""
    xs = grid() if xs is None else xs
    return difference_quotients(model, xs[:-1], xs[1:]).max().item()


# ------------------------------------------------------------------------------------------ metrics

def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64).reshape(-1)


def gap_oscillation(xs, f, gaps: Sequence[tuple[float, float]] = GAPS) -> dict[str, float]:
    """How much a 1-D curve ``f`` (sampled at increasing ``xs``) oscillates on the data gaps.

    Per gap ``[a, b]`` (grid points with ``a <= x <= b``): the total variation ``TV = sum |f_{i+1} - f_i|``,
    the net change ``|f(b) - f(a)|`` and their difference, the *excess* variation ``TV - |f(b) - f(a)|``:
    0 for a monotone curve (a smooth ramp between the data is no oscillation), twice the height of every
    extra up-and-down otherwise. Returns the sums over the gaps, ``tv`` and ``oscillation`` (the excess),
    and ``max_slope``, the largest ``|f_{i+1} - f_i| / (x_{i+1} - x_i)`` on the gaps. The ground truth of
    Sec. 4.1 is 0 on both gaps: all three are 0 for it.
    """
    x, y = _np(xs), _np(f)
    if x.shape != y.shape or len(x) < 2:
        raise ValueError("xs and f must be 1-D of the same length >= 2")
    if np.any(np.diff(x) <= 0):
        raise ValueError("xs must be strictly increasing")
    tv = osc = slope = 0.0
    for a, b in gaps:
        m = (x >= a - 1e-9) & (x <= b + 1e-9)
        if m.sum() < 2:
            raise ValueError(f"fewer than two grid points in the gap [{a}, {b}]")
        xg, yg = x[m], y[m]
        d = np.diff(yg)
        t = float(np.abs(d).sum())
        tv += t
        osc += t - abs(float(yg[-1] - yg[0]))
        slope = max(slope, float(np.max(np.abs(d) / np.diff(xg))))
    return {"tv": tv, "oscillation": max(osc, 0.0), "max_slope": slope}


#: a turning point of :func:`gap_extrema` must be followed by a swing of at least this (2 % of the truth's range)
EXTREMUM_SWING = 0.01


def count_turns(y, swing: float = EXTREMUM_SWING) -> int:
    """Number of interior local extrema of the sequence ``y`` that are followed by a reversal of at least
    ``swing`` (a zigzag filter: wiggles smaller than ``swing`` are not counted, the endpoints never are).
    A monotone sequence has 0, one bump 1, ``k`` full periods of a sine (starting at a zero) ``2 k``."""
    y = _np(y)
    if swing <= 0:
        raise ValueError(f"swing must be > 0, got {swing}")
    turns, direction, ext = 0, 0, y[0]
    lo = hi = y[0]
    for v in y[1:]:
        if direction == 0:  # no direction yet: the first move of at least `swing` sets it (no turn)
            lo, hi = min(lo, v), max(hi, v)
            if v - lo >= swing:
                direction, ext = 1, v
            elif hi - v >= swing:
                direction, ext = -1, v
        elif direction > 0:
            if v > ext:
                ext = v
            elif ext - v >= swing:
                turns, direction, ext = turns + 1, -1, v
        else:
            if v < ext:
                ext = v
            elif v - ext >= swing:
                turns, direction, ext = turns + 1, 1, v
    return turns


def gap_extrema(xs, f, gaps: Sequence[tuple[float, float]] = GAPS, swing: float = EXTREMUM_SWING) -> int:
    """Local extrema of a 1-D curve ``f`` (on increasing ``xs``) inside the data gaps, summed over the gaps
    (:func:`count_turns` on each gap's grid points): 0 for the truth and for any monotone fit."""
    x, y = _np(xs), _np(f)
    if x.shape != y.shape or len(x) < 2:
        raise ValueError("xs and f must be 1-D of the same length >= 2")
    total = 0
    for a, b in gaps:
        m = (x >= a - 1e-9) & (x <= b + 1e-9)
        if m.sum() < 2:
            raise ValueError(f"fewer than two grid points in the gap [{a}, {b}]")
        total += count_turns(y[m], swing)
    return total


def distance_to_truth(xs, f, boundary: float = BOUNDARY) -> dict[str, float]:
    """Distances of a curve ``f`` on ``xs`` from the ground truth ``0.5 max(|x| - 3, 0)``: ``rms`` over all
    grid points and ``boundary``, the mean absolute error where ``|x| >= boundary`` (the domain's ends)."""
    x, y = _np(xs), _np(f)
    err = y - regression_target(torch.from_numpy(x)).numpy()
    edge = np.abs(x) >= boundary
    return {"rms": float(np.sqrt(np.mean(err ** 2))), "boundary": float(np.mean(np.abs(err[edge])))}


def curve_metrics(xs, f) -> dict[str, float]:
    """:func:`gap_oscillation`, :func:`distance_to_truth`, the range ``max f - min f`` and the largest
    grid slope ``lip`` (a lower bound on Lip(f)) of one curve."""
    x, y = _np(xs), _np(f)
    out = {**gap_oscillation(x, y), **{f"dist_{k}": v for k, v in distance_to_truth(x, y).items()}}
    out["range"] = float(y.max() - y.min())
    out["lip"] = float(np.max(np.abs(np.diff(y)) / np.diff(x)))
    out["extrema"] = gap_extrema(x, y)
    return out


def truth_metrics(n_grid: int = 801) -> dict[str, float]:
    """:func:`curve_metrics` of the ground truth itself (oscillation 0, distance 0, Lip 0.5)."""
    xs = grid(n_grid).squeeze(1)
    return curve_metrics(xs, regression_target(xs))


def assess_fig2(stages: Sequence[dict[str, Any]]) -> dict[str, bool]:
    """Which of the paper's Fig. 2 statements a path with stages lambda = 0, 10, 1, 1e-10 (in this order,
    each with the keys of :func:`curve_metrics`) shows:

    - ``zero_oscillates``: lambda = 0 oscillates strongly in the gaps (excess variation >= :data:`OSCILLATING`);
    - ``ten_smooth_not_constant``: lambda = 10 is not constant (range >= :data:`CONSTANT`), has a smaller
      Lipschitz constant than lambda = 0, and is worse at the boundary than lambda = 1e-10;
    - ``steady_approach``: the rms distance to the truth decreases 10 -> 1 -> 1e-10;
    - ``no_instabilities``: every lambda > 0 stage has excess variation <= :data:`STABLE`;
    - ``reproduced``: all four.
    """
    lams = [s["lam"] for s in stages]
    if lams[:4] != [0.0, 10.0, 1.0, 1e-10]:
        raise ValueError(f"need the stages lambda = 0, 10, 1, 1e-10, got {lams}")
    z, ten, one, tiny = stages[:4]
    out = {
        "zero_oscillates": z["oscillation"] >= OSCILLATING,
        "ten_smooth_not_constant": ten["range"] >= CONSTANT and ten["lip"] < z["lip"]
        and ten["dist_boundary"] > tiny["dist_boundary"],
        "steady_approach": ten["dist_rms"] > one["dist_rms"] > tiny["dist_rms"],
        "no_instabilities": all(s["oscillation"] <= STABLE for s in (ten, one, tiny)),
    }
    out["reproduced"] = all(out.values())
    return {k: bool(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------ stages

def _stage(model, task, lam, cfg: TrainConfig, xs) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        res = train(model, task, cfg, desc=f"lambda={lam:g}")
        diverged = None
    except FloatingPointError as e:  # recorded, not hidden: the search shows which settings blow up
        res, diverged = None, str(e)
    with torch.no_grad():
        curve = model(xs).squeeze(1)
        mse = torch.mean((model(task.x_train) - task.y_train) ** 2).item()
    curve = torch.nan_to_num(curve, nan=0.0)
    rec = {"lam": lam, "curve": [round(v, 6) for v in curve.tolist()], "train_mse": mse,
           "lip_grid": grid_lipschitz(model, xs),
           "lip_pairs": res.history[-1].get("lip_train_pairs") if res else None,
           "upper_bound": layerwise_upper_bound(model), "wall_s": time.perf_counter() - t0,
           "loss_history": [h["loss"] for h in res.history] if res else []}
    if diverged:
        rec["diverged"] = diverged
    rec.update(curve_metrics(xs.squeeze(1), curve))
    return rec


def pretrained(setting: dict[str, Any] | None = None, seed: int = 0, data_seed: int = 0, n_grid: int = 801,
               pretrain_epochs: int | None = None):
    """The lambda = 0 stage of ``setting``: returns ``(model, task, stage record)``."""
    s = _full(setting)
    x, y = regression_data(seed=data_seed)
    task = ScaledRegressionTask(x, y, s["data_scale"])
    model = build_regression_model(s, seed)
    xs = grid(n_grid)
    stage = _stage(model, task, 0.0, setting_config(s, 0.0, pretrain_epochs, seed), xs)
    return model, task, stage


def continue_path(model, task, lambdas: Sequence[float], setting: dict[str, Any] | None = None, epochs: int | None = None,
                  seed: int = 0, n_grid: int = 801) -> list[dict[str, Any]]:
    """Train ``model`` (in place) for each lambda in order, each stage warm-started from the one before, for
    ``epochs`` each (None: :func:`stage_epochs` of the setting)."""
    if any(l < 0 for l in lambdas):
        raise ValueError("lambdas must be >= 0")
    epochs = stage_epochs(setting) if epochs is None else epochs
    xs = grid(n_grid)
    return [_stage(model, task, float(lam), setting_config(setting, float(lam), epochs, seed), xs)
            for lam in tqdm(lambdas, leave=False, desc="lambda path", unit="stage")]


def warm_start_path(lambdas: Sequence[float], epochs: int | None = None, pretrain_epochs: int | None = None,
                    seed: int = 0, data_seed: int = 0, n_grid: int = 801,
                    setting: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pretrain with lambda = 0, then train for each lambda in ``lambdas`` (in the given order), each stage
    warm-started from the previous one, as in the paper. ``setting`` defaults to :data:`FIG2_SETTING`;
    ``epochs`` (each lambda > 0 stage) defaults to its :func:`stage_epochs`, ``pretrain_epochs`` to its
    ``epochs``. Returns data, grid, ground truth and one record per stage (curve on the grid, training MSE,
    Lipschitz values, :func:`curve_metrics`); the first stage is lambda = 0."""
    s = _full(FIG2_SETTING if setting is None else setting)
    epochs = stage_epochs(s) if epochs is None else epochs
    pretrain_epochs = s["epochs"] if pretrain_epochs is None else pretrain_epochs
    model, task, first = pretrained(s, seed, data_seed, n_grid, pretrain_epochs)
    stages = [first] + continue_path(model, task, lambdas, s, epochs, seed, n_grid)
    xs = grid(n_grid).squeeze(1)
    x, y = task.x_train, task.y_train
    return {"x": x.squeeze(1).tolist(), "y": y.squeeze(1).tolist(), "grid": xs.tolist(),
            "truth": regression_target(xs).tolist(), "label_mean": y.mean().item(),
            "epochs": epochs, "pretrain_epochs": pretrain_epochs, "seed": seed, "data_seed": data_seed,
            "setting": s, "config": setting_config(s, 1.0, epochs, seed).to_dict(),
            "truth_metrics": truth_metrics(n_grid), "stages": stages}


def fit_single(lam: float, epochs: int = 300, seed: int = 0, data_seed: int = 0, n_grid: int = 801,
               setting: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one regression net from scratch at ``lam`` (``setting`` defaults to :data:`FIG2_SETTING`);
    returns a stage record as in :func:`warm_start_path`."""
    s = _full(FIG2_SETTING if setting is None else setting)
    x, y = regression_data(seed=data_seed)
    model = build_regression_model(s, seed)
    task = ScaledRegressionTask(x, y, s["data_scale"])
    return _stage(model, task, float(lam), setting_config(s, float(lam), epochs, seed), grid(n_grid))


def nearest_stage(path: dict[str, Any], lam: float) -> dict[str, Any]:
    """The stage of a stored path whose lambda is closest to ``lam`` on a log scale (lambda = 0 for lam <= 0)."""
    if lam <= 0:
        return path["stages"][0]
    pos = [s for s in path["stages"] if s["lam"] > 0]
    return min(pos, key=lambda s: abs(math.log10(s["lam"]) - math.log10(lam)))


def run_lambda_path(out: str | Path, seed: int, setting: dict[str, Any] | None = None, command: str = "") -> Path:
    """Store the slider's path (``lambda_path.json``): lambda = 0, then :data:`PATH_LAMBDAS` warm-started in turn."""
    t0 = time.perf_counter()
    res = warm_start_path(PATH_LAMBDAS, seed=seed, setting=setting)
    res["provenance"] = {**provenance(), "command": command, "wall_s": time.perf_counter() - t0}
    return write_json_atomic(Path(out), res)


def run_regression(out_dir: str | Path, epochs: int | None = None, seed: int | None = None, force: bool = False,
                   command: str = "", setting: dict[str, Any] | None = None) -> dict[str, Path]:
    """Store Fig. 2 over the seeds (``fig2_seeds.json``, :mod:`clipbook.repro.fig2_seeds`; resumable) and the slider
    path (``lambda_path.json``) for ``setting`` (default :data:`FIG2_SETTING`; ``epochs`` given: its pretraining
    epochs), the path for ``seed`` (None: the typical seed of Fig. 2). ``force`` re-runs both."""
    from .fig2_seeds import run_seeds, summarise
    s = _full(FIG2_SETTING if setting is None else setting)
    if epochs is not None:
        s["epochs"] = epochs
    out_dir = Path(out_dir)
    seeds_path, path_path = out_dir / "fig2_seeds.json", out_dir / "lambda_path.json"
    if force:
        for p in (seeds_path, path_path):
            p.unlink(missing_ok=True)
    table = run_seeds(seeds_path, setting=s, command=command)
    table["summary"] = summarise(table)
    write_json_atomic(seeds_path, table)
    if not path_path.exists():
        run_lambda_path(path_path, table["summary"]["typical_seed"] if seed is None else seed, s, command)
    return {"fig2_seeds": seeds_path, "lambda_path": path_path}
