"""What CLIP costs: time per training step of each method relative to standard training, and the breakdown
of an exact CLIP step. Prints ratios; writes them to results/benchmarks.json (atomically, merged).

    python benchmarks/bench_clip_cost.py [--steps 30] [--models mnist_mlp fashion_cnn]

Synthetic inputs of the right shape are used (timing does not depend on pixel values), so no data is needed.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from clipbook.io import provenance, write_json_atomic
from clipbook.lipschitz import adversarial_update
from clipbook.models import build_model
from clipbook.runner import DATASET_DEFAULTS, DEFAULT_RESULTS
from clipbook.training import (ClassificationTask, PairState, TrainConfig, clip_objective, recover_pair_gradients,
                               weight_norm_sq)

EPOCH_IMAGES = 54000
DATASET = {"mnist_mlp": "mnist", "fashion_cnn": "fashion"}


class _SyntheticTask(ClassificationTask):
    def __init__(self, n_lip=512):
        self.split = type("S", (), {"x_lip": torch.rand(n_lip, 1, 28, 28)})()


def _time(fn, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def bench_model(name: str, steps: int) -> dict:
    d = DATASET_DEFAULTS[DATASET[name]]
    torch.manual_seed(0)
    model = build_model(name, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)  # tiny lr: the weights stay put
    task = _SyntheticTask()
    cfg = TrainConfig(lip_pairs=d["lip_pairs"])
    g = torch.Generator().manual_seed(0)
    xb, yb = torch.rand(d["batch_size"], 1, 28, 28), torch.randint(0, 10, (d["batch_size"],))
    state = {"pairs": PairState.fresh(task, cfg, g)}
    lam, mu = 0.5, 1e-3

    def standard():
        opt.zero_grad(); task.loss(model(xb), yb).backward(); opt.step()

    def weight_reg():
        opt.zero_grad(); (task.loss(model(xb), yb) + mu * weight_norm_sq(model)).backward(); opt.step()

    def clip_fused():
        p = state["pairs"]
        total, _, q, imax, px, pxp = clip_objective(model, task, xb, yb, p, lam, True)
        opt.zero_grad(); total.backward()
        p.advance_fused(q.detach(), *recover_pair_gradients(px, pxp, imax, lam), cfg.tau_factor)
        opt.step()

    parts = {"adversarial update": 0.0, "loss + regulariser fwd/bwd": 0.0, "SGD step": 0.0}

    def clip_exact(record=False):
        p = state["pairs"]
        t0 = time.perf_counter()
        s = adversarial_update(model, p.x, p.x_prime, p.tau, cfg.tau_factor)
        state["pairs"] = p = PairState(s.x, s.x_prime, s.tau, s.quotients)
        t1 = time.perf_counter()
        total, *_ = clip_objective(model, task, xb, yb, p, lam, False)
        opt.zero_grad(); total.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if record:
            parts["adversarial update"] += t1 - t0
            parts["loss + regulariser fwd/bwd"] += t2 - t1
            parts["SGD step"] += t3 - t2

    times = {"standard": _time(standard, steps), "weight_reg": _time(weight_reg, steps),
             "clip (fused, default)": _time(clip_fused, steps), "clip (exact Algorithm 1 + 2)": _time(clip_exact, steps)}
    for _ in range(steps):
        clip_exact(record=True)
    per_epoch = EPOCH_IMAGES / d["batch_size"]
    base = times["standard"]
    return {"batch": d["batch_size"], "lip_pairs": d["lip_pairs"], "steps_timed": steps,
            "standard_epoch_s": base * per_epoch,
            "step_ms": {k: 1000 * v for k, v in times.items()},
            "ratios": {k: v / base for k, v in times.items() if k != "standard"},
            "breakdown_ms": {k: 1000 * v / steps for k, v in parts.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--models", nargs="+", default=["mnist_mlp", "fashion_cnn"])
    ap.add_argument("--out", default=str(DEFAULT_RESULTS / "benchmarks.json"))
    args = ap.parse_args()
    res = {}
    for name in args.models:
        r = res[name] = bench_model(name, args.steps)
        print(f"{name}: standard step {r['step_ms']['standard']:.1f} ms (epoch ~{r['standard_epoch_s']:.1f} s)")
        for k, v in r["ratios"].items():
            print(f"  {k:<32} {v:5.2f} x standard")
        print("  exact CLIP breakdown [ms/step]: " + ", ".join(f"{k} {v:.1f}" for k, v in r["breakdown_ms"].items()))
    try:
        old = json.loads(open(args.out).read())
    except (OSError, ValueError):
        old = {}
    old.update(provenance())
    old["clip_cost"] = {**old.get("clip_cost", {}), **res}
    write_json_atomic(args.out, old)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
