"""Compare two stored runs of the same configuration value by value, timings aside: every number of the result
(Table 1, history, strong attacks, curves, bounds, the final network) must be equal for runs that claim to be
bit-identical. Exit status 1 on any difference.

    python scripts/compare_runs.py A.json B.json
"""
from __future__ import annotations

import json
import sys

#: keys that hold wall-clock times (they differ between any two runs) or the provenance
TIMING = {"provenance", "wall_s", "time_s", "eval_time_s", "attacks_wall_s"}


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


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    a, b = (json.load(open(p)) for p in argv)
    diff = differences(a, b)
    for d in diff[:20]:
        print(d)
    pa, pb = a.get("provenance", {}), b.get("provenance", {})
    print(f"{a.get('name')}: {'identical' if not diff else f'{len(diff)} differences'} apart from timings "
          f"(A: commit {pa.get('git_commit', '?')[:7]}, B: commit {pb.get('git_commit', '?')[:7]})")
    return 1 if diff else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
