"""Standard L2 PGD throughput of the package against torchattacks' PGDL2, side by side in one run: both attack
every image for all steps (no early stop), one random start, same model, batch and device; the runs alternate
``--repeats`` times (in turn first) and the median time of each is compared. Stored under ``pgd_vs_torchattacks.cpu`` in
results/benchmarks.json. torchattacks is not a dependency: install it in a
throwaway place (``pip install --no-deps torchattacks==3.5.1 -t /tmp/ta``) and run with ``PYTHONPATH=/tmp/ta``.

    python benchmarks/bench_pgd_vs_torchattacks.py [--steps 100] [--repeats 6]
"""
from __future__ import annotations

import argparse
import statistics
import time

from pathlib import Path

import torch

from clipbook.core.attacks import pgd_l2
from clipbook.core.models import build_model
from clipbook.repro.benchmarks import BENCHMARKS, store_section

BATCH = {"mnist_mlp": 1000, "fashion_cnn": 100}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--out", type=Path, default=BENCHMARKS, help="store the figures in this JSON (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        import torchattacks
    except ImportError:
        raise SystemExit("torchattacks is not importable: see this script's docstring")
    torch.set_num_threads(1)
    out = {}
    for name, batch in BATCH.items():
        model = build_model(name, seed=0).eval()
        x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        y = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(1))
        eps, alpha = 2.0, 2.5 * 2.0 / args.steps
        theirs = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=args.steps, random_start=True)
        g = torch.Generator().manual_seed(0)
        ours = lambda: pgd_l2(model, x, y, eps, alpha, args.steps, variant="normalized", random_start=True,
                              generator=g, early_stop=False)
        times = {"clipbook": [], "torchattacks": []}
        ours(); theirs(x, y)  # warm-up
        pair = [("clipbook", ours), ("torchattacks", lambda: theirs(x, y))]
        for r in range(args.repeats):
            for key, f in (pair if r % 2 == 0 else pair[::-1]):  # ABBA: neither always runs first
                t = time.perf_counter(); f(); times[key].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        out[name] = {"images_per_s": {k: batch / v for k, v in med.items()},
                     "throughput_ratio": med["torchattacks"] / med["clipbook"], "batch": batch, "steps": args.steps,
                     "repeats": args.repeats, "seconds": times}
        print(f"{name}: clipbook {batch / med['clipbook']:.0f} images/s, torchattacks {batch / med['torchattacks']:.0f} "
              f"images/s -> clipbook/torchattacks throughput {out[name]['throughput_ratio']:.2f}x "
              f"(batch {batch}, {args.steps} steps, median of {args.repeats})")
    store_section(args.out, "pgd_vs_torchattacks", torch.device("cpu"), out, torchattacks=torchattacks.__version__)
    print(f"written to {args.out} (pgd_vs_torchattacks.cpu)")
    return out


if __name__ == "__main__":
    main()
