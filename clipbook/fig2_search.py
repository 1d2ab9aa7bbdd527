"""The search for a Fig. 2 setting: ``python -m clipbook.fig2_search`` (resumable, atomic writes).

Each row of :data:`SEARCH` is a setting of :mod:`clipbook.regression` (optimiser, output layer, scale of the
data term, lambda * Lip or Lip^2, epochs, pairs) and the lambda values to run after the lambda = 0 pretraining,
warm-started in the given order as in the paper. ``lambdas=()`` rows only screen the unregularised network
(does it oscillate in the gaps at all?), which is cheap, so that only promising settings get a full path.
Every stage is stored with :func:`clipbook.regression.curve_metrics` (oscillation in the gaps, distance to
the ground truth, Lipschitz constant) and a coarse copy of its curve; rows with lambda = 0, 10, 1, 1e-10 also
get :func:`clipbook.regression.assess_fig2`. Rows already in the stored JSON are skipped.
"""
from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .io import provenance, read_json, write_json_atomic
from tqdm import tqdm  # the text bar: it honours TQDM_DISABLE (tqdm.notebook ignores it)
from .regression import (DEFAULT_SETTING, PAPER_LAMBDAS, _full, assess_fig2, continue_path, curve_metrics, grid,
                         pretrained, truth_metrics)

DEFAULT_OUT = Path("results") / "regression" / "fig2_search.json"  # relative to the repository root
#: every how many grid points a stored curve keeps (801 -> 201 points)
CURVE_STRIDE = 4
_PRETRAIN_KEYS = ("optimizer", "lr", "momentum", "output_sigmoid", "data_scale", "batch_size", "epochs")

#: (id, why, setting overrides of DEFAULT_SETTING, lambdas after the lambda = 0 pretraining), in the order run.
SEARCH: list[tuple[str, str, dict[str, Any], tuple[float, ...]]] = [
    ("adam-mean", "the setting before the search (Adam lr 1e-3, linear output, mean, lambda*Lip); measured on the "
     "curves of the fig2.json stored before the search (same setting, same code path), not rerun",
     {"from_file": "fig2-before-search.json"}, PAPER_LAMBDAS),
    ("adam-sig", "screen: the paper's sigmoid output layer", {"output_sigmoid": True}, ()),
    ("sgd-sig-mean", "screen: the paper's optimiser (SGD momentum 0.9, lr 0.1) and output, mean data term",
     {"optimizer": "sgd", "lr": 0.1, "output_sigmoid": True}, ()),
    ("sgd-sig-sum", "screen: as before with the sum over the 100 samples (x100: lr x 100 for SGD)",
     {"optimizer": "sgd", "lr": 0.1, "output_sigmoid": True, "data_scale": 100.0}, ()),
    ("sgd-lin-sum", "screen: SGD with the sum and a linear output", {"optimizer": "sgd", "lr": 0.1, "data_scale": 100.0}, ()),
    ("adam-lr1e-2", "screen: a 10x larger Adam step (does faster fitting of the noise oscillate?)", {"lr": 1e-2}, ()),
    ("adam-lr1e-2-sig", "screen: as before with the sigmoid output", {"lr": 1e-2, "output_sigmoid": True}, ()),
    ("sgd-sig-batchsum", "screen: SGD, sigmoid output, data term summed over the minibatch of 10 (x10)",
     {"optimizer": "sgd", "lr": 0.1, "output_sigmoid": True, "data_scale": 10.0}, ()),
    ("sgd-lin-mean", "screen: SGD (lr 0.1) with a linear output, mean", {"optimizer": "sgd", "lr": 0.1}, ()),
    # no screen oscillated at lambda = 0; full paths for the lambda mappings, on the settings that fit at lambda = 0
    ("sgd-sig-sum-lr1e-3", "path: the paper's optimiser and output, data term summed over the 100 samples with "
     "lr 0.1 / 100 (same lambda = 0 updates as sgd-sig-mean; lambda acts as lambda / 100 against the mean)",
     {"optimizer": "sgd", "lr": 1e-3, "output_sigmoid": True, "data_scale": 100.0}, PAPER_LAMBDAS),
    ("sgd-sig-mean-lip2", "path: the paper's optimiser and output, mean, lambda * Lip^2 as the reference code",
     {"optimizer": "sgd", "lr": 0.1, "output_sigmoid": True, "lip_power": 2}, PAPER_LAMBDAS),
]


def _key(s: dict[str, Any]) -> tuple:
    return tuple(s[k] for k in _PRETRAIN_KEYS)


def _slim(stage: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in stage.items() if k not in ("curve", "loss_history")}
    out["curve"] = stage["curve"][::CURVE_STRIDE]
    return out


def _row_from_file(rid: str, why: str, path: Path, lams) -> dict[str, Any]:
    """A row measured on the curves of a stored warm-start path (``warm_start_path`` output)."""
    d = read_json(path)
    xs = torch.tensor(d["grid"])
    stages = []
    for st in d["stages"]:
        st = {**st, **curve_metrics(xs, torch.tensor(st["curve"]))}
        stages.append(st)
    if [s["lam"] for s in stages] != [0.0, *lams]:
        raise ValueError(f"{path} holds lambdas {[s['lam'] for s in stages]}, expected {[0.0, *lams]}")
    setting = d.get("setting") or {**DEFAULT_SETTING, "epochs": d["epochs"]}
    return {"id": rid, "why": why, "setting": setting, "lambdas": [0.0, *lams], "source": str(path.name),
            "source_provenance": d.get("provenance"), "stages": [_slim(st) for st in stages],
            "wall_s": sum(st["wall_s"] for st in stages), "assessment": assess_fig2(stages)}


def run_search(out: str | Path = DEFAULT_OUT, only: list[str] | None = None, seed: int = 0,
               command: str = "") -> dict[str, Any]:
    """Run the rows of :data:`SEARCH` not yet in ``out`` (or only the ids in ``only``); returns the table."""
    torch.set_num_threads(1)
    out = Path(out)
    table = read_json(out) if out.exists() else {}
    table.setdefault("rows", [])
    table["grid"] = grid()[::CURVE_STRIDE].squeeze(1).tolist()
    table["truth_metrics"] = truth_metrics()
    table["default_setting"] = DEFAULT_SETTING
    done = {r["id"] for r in table["rows"]}
    todo = [r for r in SEARCH if r[0] not in done and (not only or r[0] in only)]
    cache: dict[tuple, tuple] = {}
    for rid, why, over, lams in tqdm(todo, leave=False, desc="fig2 search", unit="setting"):
        t0 = time.perf_counter()
        if "from_file" in over:
            table["rows"].append(_row_from_file(rid, why, out.parent / over["from_file"], lams))
            write_json_atomic(out, table)
            continue
        s = _full(over)
        if _key(s) in cache:
            state, task, first = cache[_key(s)]
            from .regression import build_regression_model
            model = build_regression_model(s, seed)
            model.load_state_dict(state)
        else:
            model, task, first = pretrained(s, seed)
            cache[_key(s)] = (copy.deepcopy(model.state_dict()), task, first)
        stages = [first] + continue_path(model, task, lams, s, seed=seed)
        row = {"id": rid, "why": why, "setting": s, "lambdas": [0.0, *lams],
               "stages": [_slim(st) for st in stages], "wall_s": time.perf_counter() - t0,
               "provenance": {**provenance(), "command": command}}
        if tuple(lams[:3]) == PAPER_LAMBDAS:
            row["assessment"] = assess_fig2(stages)
        table["rows"].append(row)
        table["provenance"] = {**provenance(), "command": command}
        write_json_atomic(out, table)
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clipbook.fig2_search", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--only", nargs="*", help="row ids to run (default: every row not yet stored)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    command = "python -m clipbook.fig2_search " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    table = run_search(args.out, args.only, args.seed, command.strip())
    for r in table["rows"]:
        z = r["stages"]
        print(r["id"], " | ".join(f"λ={s['lam']:g}: osc {s['oscillation']:.3f} rms {s['dist_rms']:.3f} "
                                  f"Lip {s['lip']:.3f}" for s in z), r.get("assessment", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
