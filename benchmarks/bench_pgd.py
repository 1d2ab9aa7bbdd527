"""PGD-100 throughput (images per second) of the paper's L2 PGD on both models, batched, every sample attacked
for all 100 steps. Prints the figures and merges them into results/benchmarks.json.

    python benchmarks/bench_pgd.py [--images 1000]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from clipbook.attacks import pgd_l2
from clipbook.io import provenance, write_json_atomic
from clipbook.models import build_model
from clipbook.runner import DEFAULT_RESULTS

BATCH = {"mnist_mlp": 1000, "fashion_cnn": 250}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=None, help="images per model (default: 2 batches)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", default=str(DEFAULT_RESULTS / "benchmarks.json"))
    args = ap.parse_args()
    res = {}
    for name, batch in BATCH.items():
        model = build_model(name, seed=0).eval()
        n = args.images or 2 * batch
        x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(1))
        pgd_l2(model, x[:8], y[:8], steps=2, early_stop=False)  # warm-up
        t = time.perf_counter()
        for i in range(0, n, batch):
            pgd_l2(model, x[i:i + batch], y[i:i + batch], steps=args.steps, early_stop=False)
        dt = time.perf_counter() - t
        res[name] = {"images_per_s": n / dt, "batch": batch, "images": n, "steps": args.steps, "seconds": dt}
        print(f"{name}: PGD-{args.steps} {n / dt:.0f} images/s ({n} images, batch {batch}, {dt:.1f} s)")
    try:
        old = json.loads(open(args.out).read())
    except (OSError, ValueError):
        old = {}
    old.update(provenance())
    old["pgd"] = res
    write_json_atomic(args.out, old)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
