"""One Table 1 configuration end to end (train, select, evaluate, store), and Table 1 from stored results.

A result is ``<results>/<name>.json`` (metrics, per-epoch history, config, provenance) plus
``<results>/<name>.artifacts.pt`` (a few test images with their PGD adversarials, and the steepest pair of
the final Lipschitz set, for the book's figures). Checkpoints and resumable training state go to the cache
folder ``$CLIPBOOK_CACHE`` (default ``~/.cache/clipbook``), outside git. Everything is written atomically.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .attacks import pgd_l2
from .data import DATASETS, load_images, split_lipschitz
from .evaluation import accuracy, evaluate, noise_accuracy, pgd_accuracy, predict
from .io import provenance, read_json, save_torch_atomic, write_json_atomic
from .lipschitz import difference_quotients, layerwise_upper_bound, search_lipschitz_pairs
from .models import apply_spectral_norm, build_model
from .training import ClassificationTask, TrainConfig, train

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO_ROOT / "results"
MODEL_FOR = {"mnist": "mnist_mlp", "fashion": "fashion_cnn"}
TARGETS = (0.95, 0.90, 0.85)

#: Per-dataset training defaults. MNIST follows the paper's (reference code's) full setting; Fashion-MNIST's
#: CNN uses a smaller learning rate (ReLU CNN with SGD momentum) and fewer Lipschitz pairs per step.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": dict(epochs=100, lr=0.1, momentum=0.9, batch_size=128, dlam=0.005, dmu=1e-5, warmup_epochs=1,
                  lip_pairs=128, select="pgd", val_pgd_steps=10),
    "fashion": dict(epochs=100, lr=0.05, momentum=0.9, batch_size=128, dlam=0.005, dmu=1e-5, warmup_epochs=1,
                    lip_pairs=32, select="pgd", val_pgd_steps=10),
}

#: The paper's Table 1, for side-by-side comparison: (train, test, noise, PGD, mu or lambda).
PAPER_TABLE1: dict[str, tuple[float, float, float, float, float]] = {
    "mnist-standard": (95.6, 89.8, 71.8, 25.3, 0.0),
    "mnist-weight_reg95": (93.1, 89.0, 71.4, 25.4, 0.0003),
    "mnist-weight_reg90": (89.8, 89.7, 71.9, 24.8, 0.0015),
    "mnist-weight_reg85": (84.8, 87.2, 72.3, 24.9, 0.0031),
    "mnist-clip95": (95.3, 90.7, 70.3, 24.4, 0.01),
    "mnist-clip90": (91.8, 91.6, 78.0, 36.2, 3.91),
    "mnist-clip85": (87.6, 87.2, 74.5, 37.7, 9.82),
    "fashion-standard": (98.5, 92.0, 25.7, 1.9, 0.0),
    "fashion-weight_reg95": (94.8, 91.2, 26.9, 3.5, 0.0011),
    "fashion-weight_reg90": (89.8, 89.6, 28.1, 6.0, 0.0023),
    "fashion-weight_reg85": (85.3, 85.4, 34.2, 10.2, 0.0091),
    "fashion-clip95": (94.6, 91.9, 19.8, 9.1, 0.18),
    "fashion-clip90": (90.6, 88.9, 23.3, 13.0, 0.74),
    "fashion-clip85": (85.9, 83.1, 31.9, 14.9, 4.18),
}


def cache_dir() -> Path:
    """``$CLIPBOOK_CACHE`` or ``~/.cache/clipbook``: checkpoints and resumable state, never committed."""
    env = os.environ.get("CLIPBOOK_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clipbook"


@dataclass
class RunSpec:
    """One Table 1 row: ``dataset`` (mnist|fashion), ``method`` (standard|weight_reg|clip), ``target``
    (alpha, None for standard), ``seed``; ``overrides`` change :data:`DATASET_DEFAULTS` (e.g. ``epochs``);
    ``eval_size`` limits the PGD test to the first N test images (None: all 10,000)."""
    dataset: str
    method: str
    target: float | None = None
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    eval_size: int | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {DATASETS}")
        if self.method == "standard" and self.target is not None:
            raise ValueError("standard training has no target accuracy")
        if self.method != "standard" and self.target is None:
            raise ValueError(f"method {self.method!r} needs a target accuracy (e.g. 0.9)")
        if self.eval_size is not None and self.eval_size < 1:
            raise ValueError(f"eval_size must be >= 1, got {self.eval_size}")
        self.config()  # validate now

    @property
    def row(self) -> str:
        """Table 1 row key, e.g. ``mnist-clip90``."""
        t = "" if self.target is None else f"{round(100 * self.target)}"
        return f"{self.dataset}-{self.method}{t}"

    @property
    def name(self) -> str:
        return f"{self.row}-s{self.seed}"

    def config(self) -> TrainConfig:
        d = dict(DATASET_DEFAULTS[self.dataset])
        d.update(method=self.method, seed=self.seed, target_acc=self.target)
        d.update(self.overrides)
        return TrainConfig.from_dict(d)


#: Evaluation grids stored with every result (for the book's curves).
CURVE_EPS = (0.5, 1.0, 2.0, 3.0)
CURVE_SIGMA = (0.1, 0.25, 0.5, 0.75, 1.0)
CURVE_PGD = {"mnist": dict(n=1000, steps=50), "fashion": dict(n=250, steps=50)}


def fig1_pair(model, x: torch.Tensor, y: torch.Tensor, steps: int = 200, tau: float = 1.0) -> dict[str, torch.Tensor]:
    """Fig. 1: the two most confidently and correctly classified images of different classes, before and after
    ``steps`` adversarial updates (Algorithm 1) of the pair. ``x`` ``[N, ...]`` candidates, ``y`` labels."""
    p = predict(model, x).softmax(1)
    conf = torch.where(p.argmax(1) == y, p.max(1).values, torch.full((len(y),), -1.0))
    i = int(conf.argmax())
    other = torch.where(y != y[i], conf, torch.full_like(conf, -1.0))
    j = int(other.argmax())
    if conf[i] < 0 or other[j] < 0:
        raise ValueError("fig1_pair: need two correctly classified candidates of different classes")
    a, b = x[i:i + 1], x[j:j + 1]
    found = search_lipschitz_pairs(model, a, b, steps=steps, tau=tau)
    return {"fig1_before": torch.cat([a, b]), "fig1_after": torch.cat([found.x, found.x_prime]),
            "fig1_labels": torch.stack([y[i], y[j]]),
            "fig1_p_before": predict(model, torch.cat([a, b])).softmax(1),
            "fig1_p_after": predict(model, torch.cat([found.x, found.x_prime])).softmax(1),
            "fig1_quotient_before": difference_quotients(model, a, b).detach(),
            "fig1_quotient_after": found.quotients}


def _artifacts(model, split, n_examples: int = 8) -> dict[str, torch.Tensor]:
    """Small tensors for the book's figures: test images, their PGD-100 adversarials (eps = 2) and class
    probabilities of both; and the Fig. 1 pair."""
    x, y = split.x_test[:n_examples], split.y_test[:n_examples]
    adv = pgd_l2(model, x, y, eps=2.0, alpha=0.25, steps=100)
    out = {"x": x, "y": y, "x_adv": adv,
           "p_clean": predict(model, x).softmax(1), "p_adv": predict(model, adv).softmax(1)}
    out.update(fig1_pair(model, split.x_test[:200], split.y_test[:200]))
    # clone: a saved slice would otherwise carry the whole test set's storage (31 MB) with it
    return {k: v.detach().clone() for k, v in out.items()}


def robustness_curves(model, split, dataset: str, seed: int = 0) -> dict[str, Any]:
    """Accuracy [%] against PGD radius (paper's PGD, alpha 0.25, on the first n test images) and against
    the noise level sigma (full test set)."""
    c = CURVE_PGD[dataset]
    x, y = split.x_test[:c["n"]], split.y_test[:c["n"]]
    return {
        "pgd_eps": list(CURVE_EPS), "pgd_n": c["n"], "pgd_steps": c["steps"],
        "pgd_acc": [100 * pgd_accuracy(model, x, y, eps=e, alpha=0.25, steps=c["steps"], seed=seed,
                                        desc=f"PGD eps={e}") for e in CURVE_EPS],
        "noise_sigma": list(CURVE_SIGMA),
        "noise_acc": [100 * noise_accuracy(model, split.x_test, split.y_test, s, seed) for s in CURVE_SIGMA],
    }


#: Radii at which certified accuracy is reported, and the attack cross-check settings.
CERT_EPS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
CROSS_CHECK = {"mnist": dict(n=500, eps=(0.5, 2.0)), "fashion": dict(n=100, eps=(0.5, 2.0))}
#: Lipschitz lower-bound budgets (the CNN is ~100x costlier per image than the MLP on a CPU).
BOUNDS = {"mnist": dict(n_pairs=1000, steps=100, n_jacobian=1000), "fashion": dict(n_pairs=200, steps=50, n_jacobian=250)}


def lipschitz_bounds(model, split, seed: int = 0, n_pairs: int = 1000, steps: int = 100,
                     n_jacobian: int = 1000) -> dict[str, float]:
    """Upper bound (4) and lower bounds: adversarial pair search from ``n_pairs`` random held-out starts,
    the largest Jacobian spectral norm over ``n_jacobian`` test images, and the better of the two."""
    from .data import noisy_pairs
    from .lipschitz import jacobian_norm_lower_bound
    g = torch.Generator().manual_seed(seed + 7)
    idx = torch.randint(len(split.x_lip), (n_pairs,), generator=g)
    px, pxp = noisy_pairs(split.x_lip[idx], 0.1, g)
    search = search_lipschitz_pairs(model, px, pxp, steps=steps).quotients.max().item()
    jac = max(jacobian_norm_lower_bound(model, split.x_test[i:i + 250]).max().item()
              for i in range(0, n_jacobian, 250))
    return {"pair_search": search, "jacobian": jac, "lower": max(search, jac), "upper": layerwise_upper_bound(model)}


def beyond_metrics(model, split, dataset: str, seed: int = 0) -> dict[str, Any]:
    """Beyond the paper: Lipschitz bounds, certified accuracy curve, and paper-PGD vs standard L2 PGD."""
    from .certify import certified_accuracy, certified_radii
    bounds = lipschitz_bounds(model, split, seed, **BOUNDS[dataset])
    radii = certified_radii(model, split.x_test, split.y_test, bounds["upper"])
    cc = CROSS_CHECK[dataset]
    x, y = split.x_test[:cc["n"]], split.y_test[:cc["n"]]
    cross = {"n": cc["n"], "eps": list(cc["eps"]), "paper_sign_100": [], "standard_l2_100x3": []}
    for e in cc["eps"]:
        cross["paper_sign_100"].append(100 * pgd_accuracy(model, x, y, eps=e, alpha=0.25, steps=100, seed=seed))
        cross["standard_l2_100x3"].append(100 * pgd_accuracy(
            model, x, y, eps=e, alpha=2.5 * e / 100, steps=100, seed=seed, variant="normalized",
            random_start=True, restarts=3))
    return {"bounds": bounds, "cert_eps": list(CERT_EPS), "certified_acc": certified_accuracy(radii, CERT_EPS),
            "median_certified_radius": radii.median().item(), "attack_cross_check": cross}


def add_extras(result: dict[str, Any], model, split, results_dir: Path) -> dict[str, Any]:
    """Store the robustness curves and beyond-the-paper metrics in the result JSON and the figure artifacts
    beside it (atomically)."""
    t0 = time.perf_counter()
    result["curves"] = robustness_curves(model, split, result["dataset"], result["seed"])
    result["beyond"] = beyond_metrics(model, split, result["dataset"], result["seed"])
    save_torch_atomic(Path(results_dir) / f"{result['name']}.artifacts.pt", _artifacts(model, split))
    result["provenance"]["extras_wall_s"] = time.perf_counter() - t0
    write_json_atomic(Path(results_dir) / f"{result['name']}.json", result)
    return result


def _model(dataset: str, method: str, seed: int | None = None, sn_scale: float = 1.0):
    """The network of ``dataset``, spectrally normalised for the ``spectral_norm`` method."""
    model = build_model(MODEL_FOR[dataset], seed=seed)
    return apply_spectral_norm(model, sn_scale) if method == "spectral_norm" else model


def checkpoint_path(name: str) -> Path:
    return cache_dir() / "runs" / f"{name}.model.pt"


def load_checkpoint(result: dict[str, Any]):
    """The selected model of a stored result, from the cache (raises FileNotFoundError with the fix)."""
    p = checkpoint_path(result["name"])
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint {p} for {result['name']}: re-run it with "
                                f"`python -m clipbook train ... --force` (checkpoints live in $CLIPBOOK_CACHE)")
    model = _model(result["dataset"], result["method"])
    model.load_state_dict(torch.load(p))
    return model.eval()


def refresh_extras(results_dir: str | Path = DEFAULT_RESULTS, force: bool = False) -> list[str]:
    """Recompute curves and artifacts from cached checkpoints for results that lack them."""
    done = []
    splits: dict[str, Any] = {}
    for r in load_results(results_dir):
        if "curves" in r and "beyond" in r and not force:
            continue
        model = load_checkpoint(r)
        if r["dataset"] not in splits:
            splits[r["dataset"]] = split_lipschitz(load_images(r["dataset"]), seed=0)
        add_extras(r, model, splits[r["dataset"]], Path(results_dir))
        done.append(r["name"])
    return done


def result_path(spec: RunSpec, results_dir: Path) -> Path:
    return Path(results_dir) / f"{spec.name}.json"


def is_done(spec: RunSpec, results_dir: Path) -> bool:
    """True when a stored result for ``spec`` exists with the same config and evaluation size."""
    p = result_path(spec, results_dir)
    if not p.exists():
        return False
    r = read_json(p)
    try:  # settings added to TrainConfig later take their defaults
        same = TrainConfig.from_dict(r.get("config", {})) == spec.config()
    except (TypeError, ValueError):
        same = False
    return same and r.get("eval_size") == spec.eval_size


def run(spec: RunSpec, results_dir: str | Path = DEFAULT_RESULTS, force: bool = False,
        command: str | None = None) -> dict[str, Any]:
    """Train, select and evaluate one configuration; store and return its result (skips finished work).

    Interrupted training resumes from the cache's per-epoch state.
    """
    results_dir = Path(results_dir)
    out = result_path(spec, results_dir)
    if not force and is_done(spec, results_dir):
        return read_json(out)
    cfg = spec.config()
    t0 = time.perf_counter()
    prov = provenance()  # fixes the commit of the code this process runs
    data = load_images(spec.dataset)
    split = split_lipschitz(data, seed=0)
    model = _model(spec.dataset, spec.method, spec.seed, cfg.sn_scale)
    cache = cache_dir() / "runs"
    state_path = cache / f"{spec.name}.state.pt"
    if force:
        state_path.unlink(missing_ok=True)
    res = train(model, ClassificationTask(split), cfg, state_path=state_path, desc=spec.name)
    train_time = time.perf_counter() - t0

    t1 = time.perf_counter()
    n_eval = spec.eval_size or len(split.x_test)
    metrics: dict[str, Any] = {
        "train": 100 * accuracy(model, split.x_train, split.y_train),
        "test": 100 * accuracy(model, split.x_test, split.y_test),
    }
    ev = evaluate(model, split.x_test[:n_eval], split.y_test[:n_eval], noise_std=1.0, eps=2.0, alpha=0.25,
                  steps=100, seed=spec.seed)
    metrics.update(noise=ev["noise"], pgd=ev["pgd"], clean_eval_subset=ev["clean"])
    if spec.eval_size is not None:  # noise is cheap: always report it on the full test set too
        metrics["noise"] = 100 * noise_accuracy(model, split.x_test, split.y_test, 1.0, spec.seed)
    g = torch.Generator().manual_seed(spec.seed)
    idx = torch.randint(len(split.x_lip), (1000,), generator=g)
    from .data import noisy_pairs
    px, pxp = noisy_pairs(split.x_lip[idx], cfg.lip_noise, g)
    found = search_lipschitz_pairs(model, px, pxp, steps=50, tau=cfg.tau)
    metrics.update(lam=res.lam, mu=res.mu, lip_estimate=found.quotients.max().item(),
                   upper_bound=layerwise_upper_bound(model), best_epoch=res.best_epoch,
                   lam_or_mu={"clip": res.lam, "jacobian": res.lam, "weight_reg": res.mu, "standard": 0.0,
                              "spectral_norm": res.extra.get("sn_scale", 0.0)}[spec.method])
    eval_time = time.perf_counter() - t1

    result = {
        "name": spec.name, "row": spec.row, "dataset": spec.dataset, "method": spec.method,
        "target": spec.target, "seed": spec.seed, "eval_size": spec.eval_size, "n_pgd_test": n_eval,
        "config": cfg.to_dict(), "metrics": metrics, "history": res.history,
        "provenance": {**prov, "clipbook": __version__, "command": command or " ".join(sys.argv),
                       "train_wall_s": train_time, "eval_wall_s": eval_time,
                       "resumed_from_epoch": res.resumed_from,
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }
    save_torch_atomic(checkpoint_path(spec.name), model.state_dict())
    add_extras(result, model, split, results_dir)
    state_path.unlink(missing_ok=True)
    return result


BASELINES = ("spectral_norm", "jacobian")


def table1_specs(datasets=DATASETS, seeds=(0,), methods=("weight_reg", "clip"), **kw) -> list[RunSpec]:
    """The 7 rows per dataset (standard; weight_reg and CLIP at 95/90/85 %) for each seed; other
    ``methods`` (e.g. :data:`BASELINES`) give 3 rows each, without the standard row unless listed."""
    specs = []
    for ds in datasets:
        for seed in seeds:
            if "standard" in methods or set(methods) & {"weight_reg", "clip"}:
                specs.append(RunSpec(ds, "standard", None, seed, **kw))
            for method in [m for m in methods if m != "standard"]:
                for t in TARGETS:
                    specs.append(RunSpec(ds, method, t, seed, **kw))
    return specs


def load_results(results_dir: str | Path = DEFAULT_RESULTS) -> list[dict[str, Any]]:
    """All stored results (sorted by name)."""
    return [read_json(p) for p in sorted(Path(results_dir).glob("*.json")) if not p.name.startswith(".")
            and "row" in read_json(p)]


COLUMNS = ("train", "test", "noise", "pgd", "lam_or_mu")


def table1(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of Table 1 from results: per row key, the mean and std over seeds of each column, the seeds,
    and the paper's values. Order: the paper's."""
    by_row: dict[str, list[dict]] = {}
    for r in results:
        by_row.setdefault(r["row"], []).append(r)
    rows = []
    extra = sorted(k for k in by_row if k not in PAPER_TABLE1)
    for key in [k for k in PAPER_TABLE1 if k in by_row] + extra:
        rs = by_row[key]
        row: dict[str, Any] = {"row": key, "seeds": sorted(r["seed"] for r in rs),
                               "epochs": sorted({r["config"]["epochs"] for r in rs}),
                               "n_pgd_test": sorted({r["n_pgd_test"] for r in rs})}
        for c in COLUMNS:
            vals = [r["metrics"][c] for r in rs]
            row[c] = statistics.fmean(vals)
            row[c + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        row["paper"] = dict(zip(COLUMNS, PAPER_TABLE1[key])) if key in PAPER_TABLE1 else None
        rows.append(row)
    return rows


def format_table1(rows: list[dict[str, Any]]) -> str:
    """Table 1 as text: ours (mean ± std over seeds) beside the paper's numbers."""
    head = f"{'row':<22}{'seeds':>6}{'train':>14}{'test':>14}{'noise':>14}{'PGD':>14}{'lam/mu':>22}   paper: train/test/noise/PGD/param"
    lines = [head, "-" * len(head)]
    for r in rows:
        def cell(c, w=14, fmt=".1f"):
            s = f"{r[c]:{fmt}}" + (f"±{r[c + '_std']:{fmt}}" if len(r["seeds"]) > 1 else "")
            return f"{s:>{w}}"
        p = r["paper"]
        paper = "/".join(str(p[c]) for c in COLUMNS) if p else "(not in the paper)"
        lines.append(f"{r['row']:<22}{len(r['seeds']):>6}{cell('train')}{cell('test')}{cell('noise')}{cell('pgd')}"
                     f"{cell('lam_or_mu', 22, '.3g')}   {paper}")
    return "\n".join(lines)


def differences_to_paper(rows: list[dict[str, Any]], threshold: float = 3.0) -> list[tuple[str, str, float, float]]:
    """``(row, column, ours, paper)`` for every accuracy column that differs by more than ``threshold`` points."""
    out = []
    for r in rows:
        if r["paper"] is None:
            continue
        for c in ("train", "test", "noise", "pgd"):
            if abs(r[c] - r["paper"][c]) > threshold:
                out.append((r["row"], c, r[c], r["paper"][c]))
    return out


def qualitative_claims(rows: list[dict[str, Any]], dataset: str, clean_gap: float = 3.0) -> list[dict[str, Any]]:
    """The paper's qualitative claims, evaluated on our rows of one dataset (whichever way they come out).

    1. CLIP at 90 % and at 85 % is more robust to PGD than the standard and every weight-regularised net
       whose clean test accuracy is within ``clean_gap`` points of it.
    2. lambda is larger for lower targets: lambda(95) < lambda(90) < lambda(85).
    Each claim: ``{"claim", "holds" (bool or None when rows are missing), "detail"}``.
    """
    by = {r["row"].split("-", 1)[1]: r for r in rows if r["row"].startswith(dataset + "-")}
    claims = []
    for t in ("90", "85"):
        clip = by.get(f"clip{t}")
        others = [by[k] for k in ("standard", "weight_reg95", "weight_reg90", "weight_reg85") if k in by]
        similar = [o for o in others if clip and abs(o["test"] - clip["test"]) <= clean_gap]
        holds = None if clip is None else all(clip["pgd"] > o["pgd"] for o in similar)
        detail = "no CLIP row" if clip is None else (
            f"CLIP{t}: PGD {clip['pgd']:.1f} (test {clip['test']:.1f}); similar-accuracy baselines: " +
            (", ".join(f"{o['row'].split('-', 1)[1]} PGD {o['pgd']:.1f} (test {o['test']:.1f})" for o in similar)
             or "none within the gap"))
        claims.append({"claim": f"CLIP{t} more robust to PGD than standard/weight-reg nets of similar clean accuracy",
                       "holds": holds, "detail": detail})
    lams = [by[f"clip{t}"]["lam_or_mu"] if f"clip{t}" in by else None for t in ("95", "90", "85")]
    holds = None if None in lams else lams[0] < lams[1] < lams[2]
    claims.append({"claim": "lambda larger for lower targets (95 < 90 < 85)", "holds": holds,
                   "detail": "lambda at 95/90/85: " + " / ".join("-" if l is None else f"{l:.3g}" for l in lams)})
    return claims


def table1_markdown(rows: list[dict[str, Any]]) -> str:
    """Table 1 as a Markdown table: ours (mean ± std over seeds) with the paper's value in brackets.
    The last column is lambda (CLIP, Jacobian penalty), mu (weight regularisation) or the per-layer scale
    (spectral normalisation)."""
    head = "| row | seeds | epochs | train | test | noise (σ=1) | PGD (ε=2) | λ or μ |\n|---|---|---|---|---|---|---|---|"
    lines = [head]
    for r in rows:
        def cell(c, fmt=".1f"):
            v = f"{r[c]:{fmt}}" + (f" ± {r[c + '_std']:{fmt}}" if len(r["seeds"]) > 1 else "")
            return v + (f" ({r['paper'][c]:{fmt if c != 'lam_or_mu' else '.3g'}})" if r["paper"] else "")
        lines.append(f"| {r['row']} | {len(r['seeds'])} | {','.join(map(str, r['epochs']))} | {cell('train')} | "
                     f"{cell('test')} | {cell('noise')} | {cell('pgd')} | {cell('lam_or_mu', '.3g')} |")
    return "\n".join(lines)
