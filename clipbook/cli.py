"""Command line: ``python -m clipbook {train,reproduce,table,regression}``."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .data import DATASETS
from .runner import BASELINES, DEFAULT_RESULTS, RunSpec, format_table1, is_done, load_results, run, table1, table1_specs
from .training import METHODS


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"--set expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: %(default)s)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the dataset's, 100)")
    p.add_argument("--eval-size", type=int, help="attack only the first N test images with PGD (default: all 10,000)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig setting, e.g. --set lip_pairs=64 (repeatable)")
    p.add_argument("--force", action="store_true", help="recompute even if a finished result exists")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipbook", description=(
        "CLIP: Cheap Lipschitz Training (Bungert et al. 2021). Train and evaluate Table 1 configurations, "
        "print Table 1, run the regression experiment. Data from $CLIPBOOK_DATA."))
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train + evaluate one Table 1 configuration, store its JSON result")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--target", type=float, help="target training accuracy alpha in (0, 1], e.g. 0.9 (not for standard)")
    p.add_argument("--seed", type=int, default=0)
    _common(p)

    p = sub.add_parser("reproduce", help="all Table 1 rows (resumable: finished runs are skipped)")
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether they are done")
    p.add_argument("--baselines", action="store_true",
                   help="the beyond-the-paper rows instead: spectral normalisation and Jacobian penalty at 95/90/85 %%")
    _common(p)

    p = sub.add_parser("extras", help="(re)compute robustness curves and figure artifacts from cached checkpoints")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    p.add_argument("--force", action="store_true", help="also for results that have them")

    p = sub.add_parser("table", help="print Table 1 from stored results beside the paper's numbers")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)

    p = sub.add_parser("regression", help="the Sec. 4.1 experiment: Fig. 2 and the lambda path of the book's slider")
    p.add_argument("--out", type=Path, default=DEFAULT_RESULTS / "regression")
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true")

    args = parser.parse_args(argv)
    command = "python -m clipbook " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        if args.cmd == "table":
            rows = table1(load_results(args.results))
            if not rows:
                print(f"no results in {args.results}; run `python -m clipbook reproduce` first", file=sys.stderr)
                return 1
            print(format_table1(rows))
            return 0
        if args.cmd == "extras":
            from .runner import refresh_extras
            for name in refresh_extras(args.results, args.force):
                print(f"extras: {name}")
            return 0
        if args.cmd == "regression":
            from .regression import run_regression
            for name, path in run_regression(args.out, args.epochs, args.seed, args.force, command).items():
                print(f"{name}: {path}")
            return 0
        over = _overrides(args.set)
        if args.epochs is not None:
            over["epochs"] = args.epochs
        if args.cmd == "train":
            specs = [RunSpec(args.dataset, args.method, args.target, args.seed, over, args.eval_size)]
        else:
            methods = BASELINES if args.baselines else ("weight_reg", "clip")
            specs = table1_specs(args.datasets, args.seeds, methods, overrides=over, eval_size=args.eval_size)
            if args.dry_run:
                for s in specs:
                    print(f"{'done' if is_done(s, args.results) else 'todo'}  {s.name}")
                return 0
        for i, s in enumerate(specs, 1):
            print(f"[{i}/{len(specs)}] {s.name}", file=sys.stderr, flush=True)
            r = run(s, args.results, force=args.force, command=command)
            m = r["metrics"]
            print(f"{s.name}: train {m['train']:.1f}  test {m['test']:.1f}  noise {m['noise']:.1f}  "
                  f"PGD {m['pgd']:.1f}  lam/mu {m['lam_or_mu']:.4g}  Lip est {m['lip_estimate']:.3f}  "
                  f"bound {m['upper_bound']:.3f}", flush=True)
        return 0
    except (ValueError, FileNotFoundError) as err:  # DataNotFoundError included
        print(f"error: {err}", file=sys.stderr)
        return 2
