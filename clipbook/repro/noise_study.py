"""How the stored Table 1 networks answer the paper's noise test, beyond their accuracy:
``python -m clipbook.repro.noise_study [--results results] [--n 1000]``.

For every stored run whose checkpoints are on disk, both networks (the selected checkpoint and the final one) get
:func:`clipbook.core.evaluation.noise_response` on the first ``n`` test images under the noise of Table 1's
normalised protocol (σ = 1 in the normalised space, not clipped, seed 0, as :func:`clipbook.repro.suite` measures
it): the share of noisy images given the most frequent class, that class, and the mean logit range on clean and
noisy images. A network that is flat around the data gives every noisy image one class with a small logit range.

Stored: ``<results>/noise_response.json`` (one record per run and network, the settings and provenance), written
atomically. Each record names the commit that measured it and the run it measured (its training commit and wall
time). A run whose checkpoints are not on disk (a clone carries the MNIST ones only; the Fashion-MNIST ones stay
out of git) keeps its records from the previous file if they measured this same run with the same settings
(:func:`earlier_records`); otherwise it is listed as skipped.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..core.evaluation import accuracy, noise_response
from ..core.files import read_json, write_json_atomic
from . import protocol
from .provenance import provenance
from .runner import load_checkpoint, load_split
from .storage import checkpoint_path, final_checkpoint_path, load_results


def run_fingerprint(run: dict[str, Any]) -> str:
    """What identifies one stored run: its training commit and training wall time (a rerun changes both)."""
    p = run.get("provenance", {})
    return f"{p.get('git_commit', '?')}/{p.get('train_wall_s', '?')}"


def fingerprint_at(results_dir: Path, commit: str, name: str) -> str | None:
    """The fingerprint of run ``name`` as ``results_dir`` held it at ``commit`` (from git), or ``None`` when git,
    the commit or the file is not there."""
    try:
        text = subprocess.run(["git", "show", f"{commit.removesuffix('-dirty')}:./{name}.json"], cwd=results_dir,
                              capture_output=True, text=True, timeout=30, check=True).stdout
        return run_fingerprint(json.loads(text))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def earlier_records(path: Path, settings: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The records of a previous ``noise_response.json`` by run name, each with the commit that measured it and
    the fingerprint of the run it measured; empty if there is no such file or it was measured with other
    ``settings``. Records of older files carry no fingerprint: theirs is read from git, the run's JSON as it
    was at the commit that measured them (a record whose run cannot be found there gets none)."""
    if not path.exists():
        return {}
    old = read_json(path)
    if any(old.get(k) != v for k, v in settings.items()):
        return {}
    commit = old.get("provenance", {}).get("git_commit", "?")
    by_run: dict[str, list[dict[str, Any]]] = {}
    from_git: dict[tuple[str, str], str | None] = {}  # one git lookup per run, not per network
    for rec in old.get("records", []):
        rec = {"measured_by": commit, **rec}
        if "run_fingerprint" not in rec:
            key = (rec["measured_by"], rec["run"])
            if key not in from_git:
                from_git[key] = fingerprint_at(path.parent, *key)
            rec["run_fingerprint"] = from_git[key]
        by_run.setdefault(rec["run"], []).append(rec)
    return by_run


def networks_to_measure(results_dir: Path, runs: list[dict[str, Any]], before: dict[str, list[dict[str, Any]]]):
    """Split stored ``runs`` by what is on disk: ``(todo, records, kept, skipped)`` with ``todo`` the pairs
    ``(run, ["selected", "final"] or a part)`` whose checkpoints are here, ``records`` the earlier records
    (``before``: run name -> records, each with its ``run_fingerprint``) of the runs without checkpoints that
    measured this same run, ``kept`` those runs' names and ``skipped`` the names of runs with neither."""
    todo, records, kept, skipped = [], [], [], []
    for r in runs:
        which = [w for w, path in (("selected", checkpoint_path), ("final", final_checkpoint_path))
                 if path(results_dir, r["name"]).exists()]
        if which:
            todo.append((r, which))
            continue
        old = [x for x in before.get(r["name"], []) if x["run_fingerprint"] == run_fingerprint(r)]
        records.extend(old)  # measured earlier on this same run, its checkpoints no longer here
        (kept if old else skipped).append(r["name"])
    return todo, records, kept, skipped


def noise_study(results_dir: str | Path = "results", n: int = 1000, command: str = "") -> dict[str, Any]:
    """Measure every stored run's networks (see the module docstring); writes and returns the record."""
    torch.set_num_threads(1)
    t0, results_dir = time.perf_counter(), Path(results_dir)
    out_path = results_dir / "noise_response.json"
    settings = {"n": n, "sigma": protocol.SIGMA, "space": "normalised", "clip": False, "noise_seed": 0}
    before = earlier_records(out_path, settings)
    here = provenance()["git_commit"]
    splits = {}
    todo, records, kept, skipped = networks_to_measure(results_dir, load_results(results_dir), before)
    for r, which in todo:
        ds = r["dataset"]
        if ds not in splits:
            splits[ds] = load_split(ds)
        x, y = splits[ds].x_test[:n], splits[ds].y_test[:n]
        for w in which:
            model = load_checkpoint(r, results_dir, which=w)
            resp = noise_response(model, x, protocol.SIGMA, seed=0, space="normalised",
                                  data_std=protocol.NORMALISATION[ds][1], clip=False)
            records.append({"run": r["name"], "row": r["row"], "dataset": ds, "method": r["method"], "seed": r["seed"],
                            "network": w, "clean_accuracy": 100 * accuracy(model, x, y), **resp,
                            "measured_by": here, "run_fingerprint": run_fingerprint(r)})
    out = {**settings, "records": records, "kept_from_before": kept, "skipped": skipped,
           "provenance": {**provenance(), "command": command, "wall_s": time.perf_counter() - t0}}
    write_json_atomic(out_path, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clipbook.repro.noise_study", description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=Path("results"), help="the stored runs (default: %(default)s)")
    p.add_argument("--n", type=int, default=1000, help="test images per network (default: %(default)s)")
    args = p.parse_args(argv)
    if args.n < 1:
        print(f"noise_study: --n must be at least 1, got {args.n}", file=sys.stderr)
        return 2
    if not args.results.is_dir():
        print(f"noise_study: no results folder {args.results}: pass --results", file=sys.stderr)
        return 2
    command = "python -m clipbook.repro.noise_study " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    out = noise_study(args.results, args.n, command.strip())
    print(f"{len(out['records'])} networks ({len(out['kept_from_before'])} runs kept from the previous file: checkpoints "
          f"not here), {len(out['skipped'])} runs without checkpoints or an earlier record skipped "
          f"({out['provenance']['wall_s']:.0f} s) -> {args.results / 'noise_response.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
