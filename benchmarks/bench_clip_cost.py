"""What CLIP costs: time per training step of each method relative to standard training, on any device.
Times the package's own step (:func:`clipbook.core.training.train_step`), so what is measured is what trains.
Prints ratios; merges them into results/benchmarks.json (atomically).

    python benchmarks/bench_clip_cost.py [--steps 30] [--models mnist_mlp fashion_cnn] [--device auto]

Synthetic inputs of the right shape are used (timing does not depend on pixel values), so no data is needed.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from clipbook.core.data import ClassificationSplit
from clipbook.core.device import resolve_device
from clipbook.repro.experiments import DATASET_DEFAULTS
from clipbook.core.files import merge_json_atomic
from clipbook.repro.provenance import provenance
from clipbook.core.models import build_model
from clipbook.core.objectives import make_objective
from clipbook.repro.runner import training_attack
from clipbook.core.tasks import ClassificationTask
from clipbook.core.training import TrainConfig, train_step

EPOCH_IMAGES = 53000
DATASET = {"mnist_mlp": "mnist", "fashion_cnn": "fashion"}
METHODS = {"weight_reg": dict(mu=1e-3), "clip (fused, default)": dict(lam=0.5),
           "clip (exact Algorithm 1 + 2)": dict(lam=0.5, fused=False), "adversarial (L2 PGD-10)": dict(adv_steps=10)}
OUT = Path(__file__).resolve().parent.parent / "results" / "benchmarks.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, steps: int, device: torch.device, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / steps


def bench_model(name: str, steps: int, device: torch.device) -> dict:
    """Seconds per step of every method on synthetic data, and the ratios to standard training."""
    d = DATASET_DEFAULTS[DATASET[name]]
    x = torch.rand(512 + d["batch_size"], 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():  # labels = the untrained net's predictions: every image starts correctly classified, so
        y = build_model(name, seed=0).to(device)(x[:d["batch_size"]]).argmax(1)  # an attack works on all of them
    split = ClassificationSplit(x[:d["batch_size"]], y, x[d["batch_size"]:], x[:0], y[:0], x[:0], y[:0])
    task, xb = ClassificationTask(split), split.x_train
    times = {}
    for label, over in {"standard": {}, **METHODS}.items():
        method = label.split(" ")[0]
        cfg = TrainConfig(method=method, lip_pairs=d["lip_pairs"], pair_refresh=d["pair_refresh"], **over)
        model = build_model(name, seed=0).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)  # tiny lr: the weights stay put
        g = torch.Generator().manual_seed(0)
        reg = make_objective(cfg, training_attack(cfg))
        reg.setup(model, task, g)
        times[label] = _time(lambda: train_step(model, opt, reg, task, xb, y, g), steps, device)
    base = times["standard"]
    return {"batch": d["batch_size"], "lip_pairs": d["lip_pairs"], "steps_timed": steps, "device": str(device),
            "standard_epoch_s": base * EPOCH_IMAGES / d["batch_size"],
            "step_ms": {k: 1000 * v for k, v in times.items()},
            "ratios": {k: v / base for k, v in times.items() if k != "standard"}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--models", nargs="+", default=["mnist_mlp", "fashion_cnn"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    res = {}
    for name in args.models:
        r = res[name] = bench_model(name, args.steps, device)
        print(f"{name} on {device}: standard step {r['step_ms']['standard']:.2f} ms (epoch ~{r['standard_epoch_s']:.1f} s)")
        for k, v in r["ratios"].items():
            print(f"  {k:<30} {v:6.2f} x standard")
    merge_json_atomic(args.out, {**provenance(device), "clip_cost": {device.type: res}})
    print(f"written to {args.out}")
    return res


if __name__ == "__main__":
    main()
