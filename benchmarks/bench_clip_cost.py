"""What CLIP costs: time per training step of each method relative to standard training, side by side in ONE run,
on any device, with a breakdown of where the fused CLIP step's extra time goes.

    python benchmarks/bench_clip_cost.py [--rounds 9] [--steps N] [--models mnist_mlp fashion_cnn] [--device auto]

Every method (and every stage of the breakdown) has its own model and optimiser, built once; the timing then goes
round-robin: in each of ``--rounds`` rounds every entry runs ``--steps`` steps in turn (the order reversed every
other round, so no entry always follows the same one). A ratio is taken within each round, an entry's time over
the standard step's time in that round, and the median over rounds is stored: a background load that comes and
goes hits both sides of a ratio alike. The ratios, not the absolute times, are what this benchmark is for. Methods are timed through the package's own
step (:func:`clipbook.core.training.train_step`), so what is measured is what trains the Table 1 runs.

The breakdown builds the fused CLIP step up from a standard step, each stage a step as
:func:`~clipbook.core.training.train_step` takes it (objective, the minibatch loss read out, backward pass,
optimiser step):

1. ``standard``: one forward and backward pass over the minibatch (``b`` rows);
2. ``+ pair rows``: :func:`clipbook.core.clip.clip_objective` without pair gradients: one pass over the minibatch
   and the ``k`` pairs (``b + 2k`` rows), the penalty ``lam * max_i L_i`` in the loss;
3. ``+ pair input gradients``: the same objective fused (the probe term makes the backward pass also return every
   pair's input gradient);
4. ``clip (fused, default)``: the package's step, i.e. stage 3 plus Algorithm 1's bookkeeping on the pairs (the
   window of X_Lip, recovering the pair gradients, testing and proposing the moves). The discrepancy rule runs
   once per step in the trainer's loop, outside ``train_step``, in no entry here: it is a few scalar operations.

Beside the times, every entry's arithmetic: the floating-point operations of one step in matrix products and
convolutions (``torch.utils.flop_counter.FlopCounterMode``, forward and backward; elementwise work is not counted),
as a ratio to the standard step's. A step ratio near its arithmetic ratio has no overhead left to remove.

Networks with convolutions get one more entry, ``clip (fused) + fold input gradients``: the default fused step on
the same network after :func:`clipbook.core.fold_gradient.fold_input_gradients` (the first layer's input gradient
as one matrix product and a fold instead of PyTorch's CPU kernel). It is stored apart (``option_ratios``), since
the Table 1 runs do not use it.

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
from torch.utils.flop_counter import FlopCounterMode

from clipbook.core.clip import clip_objective
from clipbook.core.data import ClassificationSplit
from clipbook.core.device import resolve_device
from clipbook.core.fold_gradient import fold_input_gradients
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
#: steps per entry and round unless --steps says otherwise: about a tenth of a second to a second per entry
STEPS = {"mnist_mlp": 100, "fashion_cnn": 10}
METHODS = {"weight_reg": dict(mu=1e-3), "clip (fused, default)": dict(lam=0.5),
           "clip (exact Algorithm 1 + 2)": dict(lam=0.5, fused=False), "adversarial (L2 PGD-10)": dict(adv_steps=10)}
STAGES = ("+ pair rows", "+ pair input gradients")
FOLD = "clip (fused) + fold input gradients"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _round_robin(entries: dict[str, Callable[[], object]], rounds: int, steps: int,
                 device: torch.device) -> dict[str, list[float]]:
    """Seconds per step of every entry in every round, the entries taking turns, in reverse order every other
    round (after one warm-up round)."""
    per_round: dict[str, list[float]] = {k: [] for k in entries}
    order = list(entries.items())
    for r in range(rounds + 1):
        for k, fn in (order if r % 2 == 0 else order[::-1]):
            _sync(device)
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            if r:  # round 0 warms up
                per_round[k].append((time.perf_counter() - t) / steps)
    return per_round


def _stage(model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor, pairs: PairState, fused: bool):
    """A CLIP objective without Algorithm 1's bookkeeping, stepped as ``train_step`` steps: objective, the
    minibatch loss read out, backward pass, optimiser step. Returns the step (it returns the objective's terms)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step():
        terms = clip_objective(model, F.cross_entropy, xb, yb, pairs, 0.5, fused=fused)
        F.cross_entropy(terms.outputs.detach(), yb).item()  # train_step's loss value
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        opt.step()
        return terms
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
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in build_model(name).modules())
    for label, over in {"standard": {}, **METHODS, **({FOLD: METHODS["clip (fused, default)"]} if has_conv else {})}.items():
        cfg = TrainConfig(method=label.split(" ")[0], lip_pairs=k, pair_refresh=d["pair_refresh"], **over)
        model = build_model(name, seed=0).to(device)
        if label == FOLD:
            fold_input_gradients(model)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)  # tiny lr: the weights stay put
        g = torch.Generator().manual_seed(0)
        reg = make_objective(cfg, training_attack(cfg))
        reg.setup(model, task, g)
        entries[label] = (lambda model=model, opt=opt, reg=reg, g=g: train_step(model, opt, reg, task, xb, y, g))
    xp = x[b:b + k]
    pairs = PairState.start(xp, xp + 0.1 * torch.randn(xp.shape, generator=torch.Generator().manual_seed(1)).to(device))
    for label, fused in zip(STAGES, (False, True)):
        entries[label] = _stage(build_model(name, seed=0).to(device).train(), xb, y, pairs, fused)
    flops = {}
    for key, fn in entries.items():  # one step each, counted (not timed)
        with FlopCounterMode(display=False) as counter:
            fn()
        flops[key] = counter.get_total_flops()
    per_round = _round_robin(entries, rounds, steps, device)
    times = {key: statistics.median(v) for key, v in per_round.items()}
    base = times["standard"]
    ratio_rounds = {key: [t / s for t, s in zip(v, per_round["standard"])] for key, v in per_round.items()}
    ratio = {key: statistics.median(v) for key, v in ratio_rounds.items()}
    options = [FOLD] if has_conv else []
    return {"batch": b, "lip_pairs": k, "rows_per_pass": (b + 2 * k) / b, "rounds": rounds, "steps_per_round": steps,
            "device": str(device), "standard_epoch_s": base * EPOCH_IMAGES / b,
            "step_ms": {key: 1000 * times[key] for key in ("standard", *METHODS)},
            "step_ms_rounds": {key: [1000 * t for t in v] for key, v in per_round.items()},
            "ratios": {key: ratio[key] for key in METHODS},
            "ratio_range_over_rounds": {key: [min(ratio_rounds[key]), max(ratio_rounds[key])] for key in METHODS},
            "breakdown_ratios": {"standard": 1.0, **{s: ratio[s] for s in STAGES},
                                 "clip (fused, default)": ratio["clip (fused, default)"]},
            "flops_per_step": flops,
            "arithmetic_ratios": {key: flops[key] / flops["standard"] for key in flops},
            "option_ratios": {key: ratio[key] for key in options},
            "option_ratio_range_over_rounds": {key: [min(ratio_rounds[key]), max(ratio_rounds[key])] for key in options}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9, help="rounds of the round-robin (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=None,
                    help=f"steps of each entry per round (default: {', '.join(f'{k} {v}' for k, v in STEPS.items())})")
    ap.add_argument("--models", nargs="+", choices=sorted(DATASET), default=["mnist_mlp", "fashion_cnn"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=BENCHMARKS)
    args = ap.parse_args(argv)
    if args.rounds < 1 or (args.steps is not None and args.steps < 1):
        ap.error("--rounds and --steps must be at least 1")
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    res = {}
    for name in args.models:
        steps = args.steps or STEPS[name]
        r = res[name] = bench_model(name, args.rounds, steps, device)
        print(f"{name} on {device}: standard step {r['step_ms']['standard']:.2f} ms (epoch ~{r['standard_epoch_s']:.1f} s); "
              f"{args.rounds} rounds x {steps} steps, round-robin")
        for key, v in r["ratios"].items():
            lo, hi = r["ratio_range_over_rounds"][key]
            print(f"  {key:<32} {v:6.2f} x standard   (rounds {lo:.2f}-{hi:.2f}; arithmetic {r['arithmetic_ratios'][key]:.2f} x)")
        for key, v in r["option_ratios"].items():
            lo, hi = r["option_ratio_range_over_rounds"][key]
            print(f"  {key:<32} {v:6.2f} x standard   (rounds {lo:.2f}-{hi:.2f}; arithmetic {r['arithmetic_ratios'][key]:.2f} x)")
        print(f"  breakdown of the fused CLIP step ({r['rows_per_pass']:.2f}x the rows per pass):")
        for key, v in r["breakdown_ratios"].items():
            print(f"    {key:<30} {v:6.2f} x standard   (arithmetic {r['arithmetic_ratios'][key]:.2f} x)")
    store_section(args.out, "step_cost", device, res)
    print(f"written to {args.out} (step_cost.{device.type})")
    return res


if __name__ == "__main__":
    main()
