"""What CLIP costs: time per training step of each method relative to standard training, side by side in ONE run,
on any device, with a breakdown of where the fused CLIP step's extra time goes.

    python benchmarks/bench_clip_cost.py [--rounds 7] [--steps 10] [--models mnist_mlp fashion_cnn] [--device auto]

Every method (and every stage of the breakdown) has its own model and optimiser, built once; the timing then goes
round-robin: in each of ``--rounds`` rounds every entry runs ``--steps`` steps in turn, and an entry's figure is the
median over rounds of its mean step time. A background load that comes and goes therefore hits every entry alike,
and the ratios, not the absolute times, are what this benchmark is for. Methods are timed through the package's own
step (:func:`clipbook.core.training.train_step`), so what is measured is what trains the Table 1 runs.

The breakdown builds the fused CLIP step up from a standard step, each stage with its optimiser step:

1. ``standard``: one forward and backward pass over the minibatch (``b`` rows);
2. ``+ pair rows``: :func:`clipbook.core.clip.clip_objective` without pair gradients: one pass over the minibatch
   and the ``k`` pairs (``b + 2k`` rows), the penalty ``lam * max_i L_i`` in the loss;
3. ``+ pair input gradients``: the same objective fused (the probe term makes the backward pass also return every
   pair's input gradient);
4. ``clip (fused, default)``: the package's step, i.e. stage 3 plus Algorithm 1's bookkeeping on the pairs and
   the discrepancy rule.

Synthetic inputs of the right shape are used (timing does not depend on pixel values), so no data is needed.
Stored in ``results/benchmarks.json`` under ``step_cost.<device>`` (schema: :mod:`clipbook.repro.benchmarks`).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from clipbook.core.clip import clip_objective
from clipbook.core.data import ClassificationSplit
from clipbook.core.device import resolve_device
from clipbook.core.lipschitz import PairState
from clipbook.core.models import build_model
from clipbook.core.objectives import make_objective
from clipbook.core.tasks import ClassificationTask
from clipbook.core.training import TrainConfig, train_step
from clipbook.repro.benchmarks import BENCHMARKS, store_section
from clipbook.repro.experiments import DATASET_DEFAULTS
from clipbook.repro.runner import training_attack

EPOCH_IMAGES = 53000
DATASET = {"mnist_mlp": "mnist", "fashion_cnn": "fashion"}
METHODS = {"weight_reg": dict(mu=1e-3), "clip (fused, default)": dict(lam=0.5),
           "clip (exact Algorithm 1 + 2)": dict(lam=0.5, fused=False), "adversarial (L2 PGD-10)": dict(adv_steps=10)}
STAGES = ("+ pair rows", "+ pair input gradients")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _round_robin(entries: dict[str, Callable[[], object]], rounds: int, steps: int,
                 device: torch.device) -> dict[str, list[float]]:
    """Seconds per step of every entry in every round, the entries taking turns (after one warm-up round)."""
    per_round: dict[str, list[float]] = {k: [] for k in entries}
    for r in range(rounds + 1):
        for k, fn in entries.items():
            _sync(device)
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            if r:  # round 0 warms up
                per_round[k].append((time.perf_counter() - t) / steps)
    return per_round


def _stage(model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor, pairs: PairState, fused: bool):
    """A CLIP objective without Algorithm 1's bookkeeping: objective, backward pass, optimiser step."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step() -> None:
        terms = clip_objective(model, F.cross_entropy, xb, yb, pairs, 0.5, fused=fused)
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        opt.step()
    return step


def bench_model(name: str, rounds: int, steps: int, device: torch.device) -> dict:
    """Seconds per step of every method and breakdown stage on synthetic data, and the ratios to standard."""
    d = DATASET_DEFAULTS[DATASET[name]]
    b, k = d["batch_size"], d["lip_pairs"]
    x = torch.rand(512 + b, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():  # labels = the untrained net's predictions: every image starts correctly classified, so
        y = build_model(name, seed=0).to(device)(x[:b]).argmax(1)  # an attack works on all of them
    split = ClassificationSplit(x[:b], y, x[b:], x[:0], y[:0], x[:0], y[:0])
    task, xb = ClassificationTask(split), split.x_train
    entries: dict[str, Callable[[], object]] = {}
    for label, over in {"standard": {}, **METHODS}.items():
        cfg = TrainConfig(method=label.split(" ")[0], lip_pairs=k, pair_refresh=d["pair_refresh"], **over)
        model = build_model(name, seed=0).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)  # tiny lr: the weights stay put
        g = torch.Generator().manual_seed(0)
        reg = make_objective(cfg, training_attack(cfg))
        reg.setup(model, task, g)
        entries[label] = (lambda model=model, opt=opt, reg=reg, g=g: train_step(model, opt, reg, task, xb, y, g))
    xp = x[b:b + k]
    pairs = PairState.start(xp, xp + 0.1 * torch.randn(xp.shape, generator=torch.Generator().manual_seed(1)).to(device))
    for label, fused in zip(STAGES, (False, True)):
        entries[label] = _stage(build_model(name, seed=0).to(device).train(), xb, y, pairs, fused)
    per_round = _round_robin(entries, rounds, steps, device)
    times = {key: statistics.median(v) for key, v in per_round.items()}
    base = times["standard"]
    spread = {key: [min(v) / base, max(v) / base] for key, v in per_round.items() if key != "standard"}
    fused = times["clip (fused, default)"]
    return {"batch": b, "lip_pairs": k, "rows_per_pass": (b + 2 * k) / b, "rounds": rounds, "steps_per_round": steps,
            "device": str(device), "standard_epoch_s": base * EPOCH_IMAGES / b,
            "step_ms": {key: 1000 * times[key] for key in ("standard", *METHODS)},
            "ratios": {key: times[key] / base for key in METHODS},
            "ratio_range_over_rounds": {key: spread[key] for key in METHODS},
            "breakdown_ms": {"standard step": 1000 * base,
                             "pair rows (b + 2k rows in one pass)": 1000 * (times[STAGES[0]] - base),
                             "pair input gradients": 1000 * (times[STAGES[1]] - times[STAGES[0]]),
                             "Algorithm 1 bookkeeping + discrepancy rule": 1000 * (fused - times[STAGES[1]])},
            "breakdown_ratios": {"standard": 1.0, **{s: times[s] / base for s in STAGES},
                                 "clip (fused, default)": fused / base}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="rounds of the round-robin (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=10, help="steps of each entry per round (default: %(default)s)")
    ap.add_argument("--models", nargs="+", choices=sorted(DATASET), default=["mnist_mlp", "fashion_cnn"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=BENCHMARKS)
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        ap.error("--rounds and --steps must be at least 1")
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    res = {}
    for name in args.models:
        r = res[name] = bench_model(name, args.rounds, args.steps, device)
        print(f"{name} on {device}: standard step {r['step_ms']['standard']:.2f} ms (epoch ~{r['standard_epoch_s']:.1f} s); "
              f"{args.rounds} rounds x {args.steps} steps, round-robin")
        for key, v in r["ratios"].items():
            lo, hi = r["ratio_range_over_rounds"][key]
            print(f"  {key:<32} {v:6.2f} x standard   (rounds {lo:.2f}-{hi:.2f})")
        print(f"  breakdown of the fused CLIP step ({r['rows_per_pass']:.2f}x the rows per pass):")
        for key, v in r["breakdown_ratios"].items():
            print(f"    {key:<30} {v:6.2f} x standard")
    store_section(args.out, "step_cost", device, res)
    print(f"written to {args.out} (step_cost.{device.type})")
    return res


if __name__ == "__main__":
    main()
