"""Attack throughput (images per second) of the paper's eq. (13) PGD-100 (sign steps, ``pgd_l2``'s default) on
both models, batched, every sample attacked for all steps (no early stop), on any device. Prints the figures and stores them in
results/benchmarks.json under ``pgd_throughput.<device>`` (schema: :mod:`clipbook.repro.benchmarks`).

    python benchmarks/bench_pgd.py [--images 1000] [--device auto]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from clipbook.core.attacks import pgd_l2
from clipbook.core.device import resolve_device
from clipbook.core.models import build_model
from clipbook.repro.benchmarks import BENCHMARKS, store_section

BATCH = {"mnist_mlp": 1000, "fashion_cnn": 250}


def bench(device: torch.device, images: int | None = None, steps: int = 100) -> dict:
    res = {}
    for name, batch in BATCH.items():
        if device.type == "cuda":
            batch *= 10
        model = build_model(name, seed=0).to(device).eval()
        n = images or 2 * batch
        x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
        y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(1)).to(device)
        pgd_l2(model, x[:8], y[:8], steps=2, early_stop=False)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        for i in range(0, n, batch):
            pgd_l2(model, x[i:i + batch], y[i:i + batch], steps=steps, early_stop=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t
        res[name] = {"images_per_s": n / dt, "batch": batch, "images": n, "steps": steps, "seconds": dt}
        print(f"{name} on {device}: PGD-{steps} {n / dt:.0f} images/s ({n} images, batch {batch}, {dt:.1f} s)")
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=None, help="images per model (default: 2 batches)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=BENCHMARKS)
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    res = bench(device, args.images, args.steps)
    store_section(args.out, "pgd_throughput", device, res)
    print(f"written to {args.out} (pgd_throughput.{device.type})")
    return res


if __name__ == "__main__":
    main()
