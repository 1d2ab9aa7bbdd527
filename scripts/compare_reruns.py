"""Compare rerun results with the versions stored at a git commit (issue 18: CPU runs are bit-identical, so the
selected checkpoint's numbers must reproduce exactly). Prints one line per run and a summary; exit status 1 if
any Table 1 number or any history value differs; writes the outcome to RESULTS/reruns_check.json (chapter 6
quotes it: a reader's clone may lack the history to recompute it).

    python scripts/compare_reruns.py [COMMIT] [RESULTS]      (defaults: c9ff779, results)
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

KEYS = ("train", "test", "noise", "noise_normalised", "noise_normalised_clipped", "pgd", "lam", "mu",
        "lip_estimate", "upper_bound", "best_epoch")


def main(commit: str = "c9ff779", results: str = "results") -> int:
    bad, checked, runs = 0, 0, []
    for p in sorted(Path(results).glob("mnist-*-s[0-9].json")):
        new = json.loads(p.read_text())
        if "final" not in new:
            continue  # not rerun yet
        try:
            old = json.loads(subprocess.run(["git", "show", f"{commit}:{p}"], capture_output=True, text=True,
                                            check=True).stdout)
        except subprocess.CalledProcessError:
            continue  # no stored version to compare with
        diff = [k for k in KEYS if old["metrics"][k] != new["metrics"][k]]
        timeless = lambda hs: [{k: v for k, v in h.items() if k not in ("time_s", "eval_time_s")} for h in hs]
        hist = timeless(old["history"]) == timeless(new["history"])  # every value but the wall times
        checked += 1
        ok = not diff and hist
        bad += not ok
        runs.append({"run": p.stem, "identical": ok, "metrics_differ": diff, "history_identical": hist})
        print(f"{p.stem}: {'identical' if ok else 'DIFFERENT'}"
              + (f" (metrics: {', '.join(diff)})" if diff else "") + ("" if hist else " (history differs)")
              + f"; selected epoch {new['metrics']['best_epoch']}, PGD {new['metrics']['pgd']}, "
                f"worst {old['robust']['worst'][0]:.1f} -> {new['robust']['worst'][0]:.1f}")
    print(f"{checked} reruns compared with {commit}: {checked - bad} identical, {bad} different")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from clipbook.core.files import write_json_atomic
    from clipbook.repro.provenance import provenance
    full = subprocess.run(["git", "rev-parse", commit], capture_output=True, text=True, check=True).stdout.strip()
    write_json_atomic(Path(results) / "reruns_check.json",
                      {"compared_with": full, "keys": list(KEYS) + ["history (all but wall times)"], "checked": checked,
                       "identical": checked - bad, "runs": runs,
                       "provenance": {**provenance(), "command": "python scripts/compare_reruns.py " + " ".join(sys.argv[1:])}})
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
