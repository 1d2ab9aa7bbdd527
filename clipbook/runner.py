"""One Table 1 configuration end to end (train, select, evaluate, store), and Table 1 from stored results.

A result is ``<results>/<name>.json`` (metrics, per-epoch history, config, provenance) plus
``<results>/<name>.artifacts.pt`` (a few test images with their PGD adversarials, and the steepest pair of
the final Lipschitz set, for the book's figures). Checkpoints and resumable training state go to the cache
folder ``$CLIPBOOK_CACHE`` (default ``~/.cache/clipbook``), outside git. Everything is written atomically.
"""
from __future__ import annotations

import math
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
from .evaluation import accuracy, evaluate, predict
from .io import provenance, read_json, save_torch_atomic, write_json_atomic
from .lipschitz import layerwise_upper_bound, search_lipschitz_pairs
from .models import build_model
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


def _artifacts(model, split, final_pairs, n_examples: int = 8) -> dict[str, torch.Tensor]:
    """Small tensors for the book's figures: test images, their PGD-100 adversarials, both predictions'
    class probabilities; and the steepest pair of the final Lipschitz set (CLIP only)."""
    x, y = split.x_test[:n_examples], split.y_test[:n_examples]
    adv = pgd_l2(model, x, y, eps=2.0, alpha=0.25, steps=100)
    out = {"x": x, "y": y, "x_adv": adv,
           "p_clean": predict(model, x).softmax(1), "p_adv": predict(model, adv).softmax(1)}
    if final_pairs is not None and final_pairs.q is not None:
        i = int(final_pairs.q.argmax())
        px, pxp = final_pairs.x[i:i + 1], final_pairs.x_prime[i:i + 1]
        out.update(pair_x=px, pair_x_prime=pxp, pair_p=predict(model, px).softmax(1),
                   pair_p_prime=predict(model, pxp).softmax(1))
    return out


def result_path(spec: RunSpec, results_dir: Path) -> Path:
    return Path(results_dir) / f"{spec.name}.json"


def is_done(spec: RunSpec, results_dir: Path) -> bool:
    """True when a stored result for ``spec`` exists with the same config and evaluation size."""
    p = result_path(spec, results_dir)
    if not p.exists():
        return False
    r = read_json(p)
    return r.get("config") == spec.config().to_dict() and r.get("eval_size") == spec.eval_size


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
    data = load_images(spec.dataset)
    split = split_lipschitz(data, seed=0)
    model = build_model(MODEL_FOR[spec.dataset], seed=spec.seed)
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
        from .evaluation import noise_accuracy
        metrics["noise"] = 100 * noise_accuracy(model, split.x_test, split.y_test, 1.0, spec.seed)
    g = torch.Generator().manual_seed(spec.seed)
    idx = torch.randint(len(split.x_lip), (1000,), generator=g)
    from .data import noisy_pairs
    px, pxp = noisy_pairs(split.x_lip[idx], cfg.lip_noise, g)
    found = search_lipschitz_pairs(model, px, pxp, steps=50, tau=cfg.tau)
    metrics.update(lam=res.lam, mu=res.mu, lip_estimate=found.quotients.max().item(),
                   upper_bound=layerwise_upper_bound(model), best_epoch=res.best_epoch,
                   lam_or_mu=res.lam if spec.method == "clip" else res.mu)
    eval_time = time.perf_counter() - t1

    result = {
        "name": spec.name, "row": spec.row, "dataset": spec.dataset, "method": spec.method,
        "target": spec.target, "seed": spec.seed, "eval_size": spec.eval_size, "n_pgd_test": n_eval,
        "config": cfg.to_dict(), "metrics": metrics, "history": res.history,
        "provenance": {**provenance(), "clipbook": __version__, "command": command or " ".join(sys.argv),
                       "train_wall_s": train_time, "eval_wall_s": eval_time,
                       "resumed_from_epoch": res.resumed_from,
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }
    save_torch_atomic(cache / f"{spec.name}.model.pt", model.state_dict())
    save_torch_atomic(results_dir / f"{spec.name}.artifacts.pt", _artifacts(model, split, res.pairs))
    write_json_atomic(out, result)
    state_path.unlink(missing_ok=True)
    return result


def table1_specs(datasets=DATASETS, seeds=(0,), **kw) -> list[RunSpec]:
    """The 7 rows per dataset (standard; weight_reg and CLIP at 95/90/85 %) for each seed."""
    specs = []
    for ds in datasets:
        for seed in seeds:
            specs.append(RunSpec(ds, "standard", None, seed, **kw))
            for method in ("weight_reg", "clip"):
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
    for key in PAPER_TABLE1:
        if key not in by_row:
            continue
        rs = by_row[key]
        row: dict[str, Any] = {"row": key, "seeds": sorted(r["seed"] for r in rs),
                               "epochs": sorted({r["config"]["epochs"] for r in rs}),
                               "n_pgd_test": sorted({r["n_pgd_test"] for r in rs})}
        for c in COLUMNS:
            vals = [r["metrics"][c] for r in rs]
            row[c] = statistics.fmean(vals)
            row[c + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        row["paper"] = dict(zip(COLUMNS, PAPER_TABLE1[key]))
        rows.append(row)
    return rows


def format_table1(rows: list[dict[str, Any]]) -> str:
    """Table 1 as text: ours (mean ± std over seeds) beside the paper's numbers."""
    head = f"{'row':<22}{'seeds':>6}{'train':>14}{'test':>14}{'noise':>14}{'PGD':>14}{'lam/mu':>16}   paper: train/test/noise/PGD/param"
    lines = [head, "-" * len(head)]
    for r in rows:
        def cell(c, w=14, fmt=".1f"):
            s = f"{r[c]:{fmt}}" + (f"±{r[c + '_std']:{fmt}}" if len(r["seeds"]) > 1 else "")
            return f"{s:>{w}}"
        p = r["paper"]
        lines.append(f"{r['row']:<22}{len(r['seeds']):>6}{cell('train')}{cell('test')}{cell('noise')}{cell('pgd')}"
                     f"{cell('lam_or_mu', 16, '.4g')}   {p['train']}/{p['test']}/{p['noise']}/{p['pgd']}/{p['lam_or_mu']}")
    return "\n".join(lines)
