"""Command line: ``python -m clipbook {train,reproduce,evaluate,table,regression,data}``.

Heavy modules (torch, torchvision) are imported only by the command that needs them, so ``--help`` is quick.
Every bad input ends in one line ``error: ...`` naming the problem and the fix, and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

DATASETS = ("mnist", "fashion")  # as clipbook.core.data.DATASETS (not imported: it would import torch)
METHODS = ("standard", "weight_reg", "clip", "spectral_norm", "jacobian", "adversarial")
DEVICES = ("auto", "cpu", "cuda", "mps")


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ValueError(f"--set expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _checked(kind: type, ok, need: str):
    """An argparse type: ``kind(text)`` that must satisfy ``ok``; otherwise a one-line error saying ``need``."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}")
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {need}, got {text}")
        return v
    return parse


_positive_int = _checked(int, lambda v: v > 0, "> 0")
_seed = _checked(int, lambda v: v >= 0, ">= 0")
_target = _checked(float, lambda v: 0 < v <= 1, "in (0, 1] (a fraction, e.g. 0.9 for 90 %)")


def _results_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", type=Path, default=None,
                   help="results folder (default: $CLIPBOOK_RESULTS or ./clipbook-results; the book's own is results/)")


def _common(p: argparse.ArgumentParser) -> None:
    _results_arg(p)
    p.add_argument("--epochs", type=_positive_int, help="training epochs (default: the dataset's, 100)")
    p.add_argument("--eval-size", type=_positive_int,
                   help="eq. (13) PGD on the first N test images only (default: all 10,000)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig setting, e.g. --set lip_pairs=64 (repeatable)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where to compute (default: %(default)s: CUDA, MPS, CPU)")
    p.add_argument("--force", action="store_true", help="recompute even if a finished result exists")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m clipbook", description=(
        "CLIP: Cheap Lipschitz Training (Bungert et al. 2021). Train and evaluate Table 1 configurations, "
        "print Table 1, run the regression experiment. Data from $CLIPBOOK_DATA."))
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train + evaluate one Table 1 configuration, store its JSON result")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--target", type=_target, help="target training accuracy alpha in (0, 1], e.g. 0.9 (not for standard)")
    p.add_argument("--seed", type=_seed, default=0)
    _common(p)
    p = sub.add_parser("reproduce", help="all Table 1 rows (resumable: finished runs are skipped)")
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    p.add_argument("--seeds", nargs="+", type=_seed, default=[0])
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether they are done")
    p.add_argument("--baselines", action="store_true",
                   help="the beyond-the-paper rows instead: spectral normalisation, Jacobian penalty, adversarial training")
    p.add_argument("--share", action="store_true",
                   help="share the queue with other `reproduce --share` processes on the same results folder: each "
                        "run is claimed by one of them (start one per core)")
    _common(p)
    p = sub.add_parser("evaluate", help="(re)compute strong attacks, curves, bounds and figure tensors from checkpoints")
    _results_arg(p)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--force", action="store_true", help="also for results that have them")
    p = sub.add_parser("table", help="print Table 1 from stored results beside the paper's numbers")
    _results_arg(p)
    p.add_argument("--reading", choices=("selected", "final"), default="selected",
                   help="which network of each run: the checkpoint selected by validation PGD, or the one after "
                        "the last epoch (default: %(default)s)")
    p = sub.add_parser("regression", help="the Sec. 4.1 experiment: Fig. 2 and the lambda path of the book's slider")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <results>/regression)")
    _results_arg(p)
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs of the lambda = 0 network (default: the Fig. 2 setting's, 1000)")
    p.add_argument("--seed", type=_seed, default=None,
                   help="seed of the slider's lambda path (default: the typical seed of Fig. 2)")
    p.add_argument("--force", action="store_true")
    p = sub.add_parser("data", help="download MNIST and Fashion-MNIST into $CLIPBOOK_DATA (or ~/.cache/clipbook/data)")
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    return ap


def _results_dir(args) -> Path:
    from .storage import default_results_dir  # light: no torch
    return args.results if args.results is not None else default_results_dir()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = "python -m clipbook " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        return _dispatch(args, command)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:  # DataNotFoundError included
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished epochs are saved; run the same command again to resume", file=sys.stderr)
        return 130


def _dispatch(args, command: str) -> int:
    if args.cmd == "data":
        from ..core.data import download
        for name, folder in download(args.datasets).items():
            print(f"{name}: {folder}")
        return 0
    results = _results_dir(args)
    if args.cmd == "table":
        from .reporting import format_table1, table1
        from .storage import load_results
        stored = load_results(results)
        rows = table1(stored, args.reading)
        if stored and not rows:
            raise ValueError(f"no result in {results} keeps its final network (stored by an older clipbook): "
                             f"re-run them with `python -m clipbook reproduce --results {results}`")
        if not rows:
            raise ValueError(f"no results in {results}; run `python -m clipbook train ...` or pass --results results")
        print(format_table1(rows))
        return 0
    if args.cmd == "evaluate":
        from .runner import refresh_evaluation
        for name in refresh_evaluation(results, args.force, args.device):
            print(f"evaluated: {name}")
        return 0
    if args.cmd == "regression":
        from .regression import run_regression
        for name, path in run_regression(args.out or results / "regression", args.epochs, args.seed, args.force,
                                         command).items():
            print(f"{name}: {path}")
        return 0
    from dataclasses import replace

    from .experiments import BASELINES, BUDGETS, RunSpec, table1_specs
    from .runner import is_done, run
    over = _overrides(args.set)
    if args.epochs is not None:
        over["epochs"] = args.epochs
    datasets = [args.dataset] if args.cmd == "train" else args.datasets
    budgets = {d: BUDGETS[d] if args.eval_size is None else replace(BUDGETS[d], pgd=args.eval_size) for d in datasets}
    if args.cmd == "train":
        specs = [RunSpec(args.dataset, args.method, args.target, args.seed, over, budgets[args.dataset])]
    else:
        methods = BASELINES if args.baselines else ("weight_reg", "clip")
        specs = [s for d in datasets for s in table1_specs([d], args.seeds, methods, overrides=over, budget=budgets[d])]
        if args.dry_run:
            for s in specs:
                print(f"{'done' if is_done(s, results) else 'todo'}  {s.name}")
            return 0
    for i, s in enumerate(specs, 1):
        lock = None
        if getattr(args, "share", False):
            from .storage import claim
            try:
                finished = not args.force and is_done(s, results)
            except ValueError as err:  # a name holding another configuration: say so, go on with the queue
                print(f"skipped {s.name}: {err}", file=sys.stderr, flush=True)
                continue
            if finished or (lock := claim(results, s.name)) is None:
                continue  # finished, or another worker has it
        print(f"[{i}/{len(specs)}] {s.name} -> {results}", file=sys.stderr, flush=True)
        try:
            r = run(s, results, force=args.force, command=command, device=args.device)
        finally:
            if lock is not None:
                lock.unlink(missing_ok=True)
        m = r["metrics"]
        worst = r["robust"]["worst"][0]
        print(f"{s.name}: train {m['train']:.1f}  test {m['test']:.1f}  noise {m['noise']:.1f} / normalised "
              f"{m['noise_normalised']:.1f}  PGD {m['pgd']:.1f}  worst {worst:.1f}  lam {m['lam']:.4g}  mu {m['mu']:.4g}  "
              f"Lip est {m['lip_estimate']:.3f}  bound {m['upper_bound']:.3f}", flush=True)
    return 0
