"""The search for a Fig. 2 setting: ``python -m clipbook.repro.fig2_search`` (resumable, atomic writes).

Each row of :data:`SEARCH` is a setting of :mod:`clipbook.repro.regression` (optimiser, output layer, scale of the
data term, lambda * Lip or Lip^2, epochs, pairs) and the lambda values to run after the lambda = 0 pretraining,
warm-started in the given order as in the paper. ``lambdas=()`` rows only screen the unregularised network
(does it oscillate in the gaps at all?), which is cheap, so that only promising settings get a full path.
Every stage is stored with :func:`clipbook.repro.regression.curve_metrics` (oscillation in the gaps, distance to
the ground truth, Lipschitz constant) and a coarse copy of its curve; rows with lambda = 0, 10, 1, 1e-10 also
get :func:`clipbook.repro.regression.assess_fig2`. Rows already in the stored JSON are skipped.
"""
from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.files import read_json, write_json_atomic
from .provenance import provenance
from tqdm import tqdm  # the text bar: it honours TQDM_DISABLE (tqdm.notebook ignores it)
from .regression import (CONSTANT, DEFAULT_SETTING, OSCILLATING, PAPER_LAMBDAS, _full, assess_fig2, continue_path, curve_metrics, grid,
                         pretrained, truth_metrics)

DEFAULT_OUT = Path("results") / "regression" / "fig2_search.json"  # relative to the repository root
#: every how many grid points a stored curve keeps (801 -> 201 points)
CURVE_STRIDE = 4
_PRETRAIN_KEYS = ("optimizer", "lr", "momentum", "output_sigmoid", "data_scale", "batch_size", "epochs", "init", "init_std")

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


# ------------------------------------------------------------------------------------------ the init search

INIT_OUT = Path("results") / "regression" / "init_search.json"
#: the initialisations searched (id, setting overrides), on top of the base setting (``INIT_BASE``)
INIT_CANDIDATES: list[tuple[str, dict[str, Any]]] = [
    ("default", {"init": "default"}), ("normal-0.5", {"init": "normal", "init_std": 0.5}),
    ("normal-1", {"init": "normal", "init_std": 1.0}), ("normal-1.5", {"init": "normal", "init_std": 1.5}),
    ("normal-2", {"init": "normal", "init_std": 2.0})]
#: the search's seeds: disjoint from Fig. 2's seeds 0-9, so that the seeds that decide the paper's statements
#: played no part in choosing the setting (see INIT_SEARCH_HISTORY)
INIT_SEEDS = (100, 101, 102, 103, 104)
#: how the search was run, stored with it
INIT_SEARCH_HISTORY = (
    "Run first on seeds 100-102: no admissible candidate oscillated on any seed (a tie between default, 0.5, 1 and "
    "1.5; normal-2 was stuck on 2 of 3), so the choice would have rested on the tie-breaks alone; the search was "
    "extended to seeds 100-104, with the criterion unchanged, before any Fig. 2 seed was trained in the chosen "
    "setting. Before the search, a few trial runs (std 1 and 2, seeds 0-3, 300 and 1000 epochs, lambda = 0 only) "
    "were looked at to size it; seeds 1 and 2 at std 1 oscillated there (excess variation 0.17 and 0.25 at 1000 "
    "epochs). Those seeds are among Fig. 2's, so Fig. 2's seeds were not wholly unseen.")
#: everything but the initialisation: the setting of the earlier search's ``sgd-sig-sum-lr1e-3`` row (the paper's
#: SGD with momentum, sigmoid output, data term summed over the 100 samples, lr 0.1 / 100, 1000 epochs of batch 10)
INIT_BASE: dict[str, Any] = {"optimizer": "sgd", "lr": 1e-3, "output_sigmoid": True, "data_scale": 100.0}
#: the authors' later 1-D scripts draw weights with torch.randn: std 1 (the tie-break's reference)
AUTHORS_STD = 1.0


def init_score(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The counts the choice is made on, for one candidate's lambda = 0 runs (one per seed)."""
    stuck = sum(r["range"] < CONSTANT for r in runs)
    osc = sum(r["oscillation"] >= OSCILLATING and r["range"] >= CONSTANT for r in runs)
    return {"n": len(runs), "oscillating": osc, "stuck": stuck, "admissible": stuck <= len(runs) / 2,
            "with_extrema": sum(r["extrema"] > 0 for r in runs),
            "median_oscillation": float(np.median([r["oscillation"] for r in runs])),
            "median_dist_rms": float(np.median([r["dist_rms"] for r in runs])),
            "median_lip": float(np.median([r["lip"] for r in runs])),
            "median_train_mse": float(np.median([r["train_mse"] for r in runs]))}


def choose_init(scores: dict[str, dict[str, Any]], settings: dict[str, dict[str, Any]]) -> str:
    """The criterion, fixed before the search ran: among the admissible candidates (at most half the seeds stuck
    at a constant), the one whose unregularised fit oscillates in the gaps (excess variation >= OSCILLATING, not
    stuck) on the most seeds, the statement of Fig. 2 that the initialisation decides; ties go to fewer stuck
    seeds, then to the std closest to the authors' torch.randn (std 1; PyTorch's default counts as farthest)."""
    def dist(cid):
        s = settings[cid]
        return abs(s.get("init_std", 1.0) - AUTHORS_STD) if s.get("init") == "normal" else float("inf")
    ok = [c for c in scores if scores[c]["admissible"]]
    if not ok:
        raise ValueError("no admissible candidate (every one stuck on more than half its seeds)")
    return min(ok, key=lambda c: (-scores[c]["oscillating"], scores[c]["stuck"], dist(c)))


def run_init_search(out: str | Path = INIT_OUT, seeds=INIT_SEEDS, candidates=None, base=None,
                    command: str = "") -> dict[str, Any]:
    """Train the lambda = 0 network of every (candidate, seed) not yet in ``out``; then score and choose."""
    torch.set_num_threads(1)
    out = Path(out)
    candidates = INIT_CANDIDATES if candidates is None else candidates
    base = INIT_BASE if base is None else base
    table = read_json(out) if out.exists() else {}
    table.setdefault("runs", [])
    table.update({"grid": grid()[::CURVE_STRIDE].squeeze(1).tolist(), "truth_metrics": truth_metrics(),
                  "base": _full(base), "seeds": list(seeds), "history": INIT_SEARCH_HISTORY, "criterion": " ".join(choose_init.__doc__.split(": ", 1)[1].split())})
    done = {(r["id"], r["seed"]) for r in table["runs"]}
    for cid, over in tqdm(candidates, leave=False, desc="init search", unit="candidate"):
        s = _full({**base, **over})
        for seed in seeds:
            if (cid, seed) in done:
                continue
            t0 = time.perf_counter()
            _, _, first = pretrained(s, seed)
            table["runs"].append({"id": cid, "seed": seed, "setting": s, **_slim(first),
                                  "wall_s": time.perf_counter() - t0})
            table["provenance"] = {**provenance(), "command": command}
            write_json_atomic(out, table)
    ids = [c for c, _ in candidates]
    settings = {c: _full({**base, **o}) for c, o in candidates}
    table["scores"] = {c: init_score([r for r in table["runs"] if r["id"] == c]) for c in ids}
    table["chosen"] = choose_init(table["scores"], settings)
    table["chosen_setting"] = settings[table["chosen"]]
    write_json_atomic(out, table)
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clipbook.repro.fig2_search", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--only", nargs="*", help="row ids to run (default: every row not yet stored)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", action="store_true", help="the initialisation search (results/regression/init_search.json)")
    args = p.parse_args(argv)
    command = "python -m clipbook.repro.fig2_search " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.init:
        t = run_init_search(args.out or INIT_OUT, command=command.strip())
        for c, sc in t["scores"].items():
            print(c, sc)
        print("chosen:", t["chosen"])
        return 0
    args.out = args.out or DEFAULT_OUT
    table = run_search(args.out, args.only, args.seed, command.strip())
    for r in table["rows"]:
        z = r["stages"]
        print(r["id"], " | ".join(f"λ={s['lam']:g}: osc {s['oscillation']:.3f} rms {s['dist_rms']:.3f} "
                                  f"Lip {s['lip']:.3f}" for s in z), r.get("assessment", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
