"""Compare two stored runs of the same configuration value by value, timings aside: every number of the result
(Table 1, history, strong attacks, curves, bounds, the final network) must be equal for runs that claim to be
bit-identical. Exit status 1 on any difference.

    python scripts/compare_runs.py A.json B.json [--out RECORD.json]

With the two runs' checkpoints beside them (``checkpoints/<name>.pt`` and ``.final.pt`` next to each JSON) the
weights are compared too (``torch.equal``). ``--out`` stores the outcome (chapter 6 quotes it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clipbook.core.files import write_json_atomic

#: keys that hold wall-clock times (they differ between any two runs) or the provenance
TIMING = {"provenance", "wall_s", "time_s", "eval_time_s", "attacks_wall_s"}
#: the selected network's Table 1 numbers, stored side by side (A, B) in the record
TABLE1 = ("best_epoch", "train", "test", "noise", "noise_normalised", "pgd", "lam", "mu", "lip_estimate", "upper_bound")


def differences(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k in TIMING:
                continue
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'B' if k not in a else 'A'}")
            else:
                out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"[:200]]


def same_weights(pa: Path, pb: Path, name: str) -> dict[str, bool]:
    """``torch.equal`` on every tensor of each checkpoint both runs have on disk."""
    import torch
    out = {}
    for suffix in (".pt", ".final.pt"):
        fa, fb = (p.parent / "checkpoints" / f"{name}{suffix}" for p in (pa, pb))
        if fa.exists() and fb.exists():
            a, b = (torch.load(f, weights_only=True) for f in (fa, fb))
            out[f"{name}{suffix}"] = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python scripts/compare_runs.py", description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, metavar="A.json")
    ap.add_argument("b", type=Path, metavar="B.json")
    ap.add_argument("--out", type=Path, metavar="RECORD.json", help="store the outcome here")
    args = ap.parse_args(argv)
    pa, pb, out_file = args.a, args.b, args.out
    for p in (pa, pb):
        if not p.is_file():
            ap.error(f"no stored run at {p}")
    a, b = (json.loads(p.read_text()) for p in (pa, pb))
    diff = differences(a, b)
    weights = same_weights(pa, pb, a.get("name", ""))
    for d in diff[:20]:
        print(d)
    ca, cb = (r.get("provenance", {}).get("git_commit", "?") for r in (a, b))
    print(f"{a.get('name')}: {'identical' if not diff else f'{len(diff)} differences'} apart from timings "
          f"(A: commit {ca[:7]}, B: commit {cb[:7]}); checkpoints equal: {weights or 'none compared'}")
    if out_file:
        cpu = lambda r: r.get("provenance", {}).get("cpu", "not recorded")  # recorded since fdcac90
        record = {"run": a.get("name"), "a_commit": ca, "b_commit": cb, "a_cpu": cpu(a), "b_cpu": cpu(b),
                  "b_command": b.get("provenance", {}).get("command"), "identical": not diff,
                  "n_differences": len(diff), "differences": diff[:50],
                  "table1": {k: [a["metrics"].get(k), b["metrics"].get(k)] for k in TABLE1 if k in a.get("metrics", {})},
                  "checkpoints_equal": weights, "timing_keys_ignored": sorted(TIMING)}
        write_json_atomic(out_file, record)
    return 1 if diff or not all(weights.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
