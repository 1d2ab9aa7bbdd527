"""On whatever device this machine has (CUDA, then Apple MPS, then the CPU): CLIP / standard step-time ratios
and PGD throughput, printed and merged into results/benchmarks.json.

    python benchmarks/bench_device.py [--device auto]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_clip_cost  # noqa: E402
import bench_pgd  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    bench_clip_cost.main(["--device", args.device, "--steps", str(args.steps)])
    bench_pgd.main(["--device", args.device])
