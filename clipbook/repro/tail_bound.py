"""A tighter upper bound for the Fashion-MNIST CNNs (chapter 7, section 6): the convolutional part's product
bound times LipSDP-Neuron on the fully connected tail.

The CNN is ``head -> Flatten -> tail`` with ``head`` two convolutions with ReLU and max-pooling and ``tail`` the
3136-1024-10 ReLU MLP. The Lipschitz constant of a composition is at most the product of its parts', so
``L(head) * L(tail)`` is sound for any upper bounds of the two. ``L(head)`` is the product bound (4) of its layers
(the convolutions' factors are upper bounds, :func:`clipbook.core.bounds.conv2d_norm_upper_bound`); ``L(tail)`` is
LipSDP-Neuron's, whose matrix inequality (size 4160, 2048 after the exact input reduction) is beyond the SDP solvers
on this machine, so its multipliers come from first-order descent (:func:`clipbook.core.lipsdp.lipsdp_first_order`)
and the bound is verified in float64 like every LipSDP bound here.

The descent is checked where the SDP is solved: for every stored MNIST MLP of ``beyond.json`` (LipSDP by an
interior-point solver) whose checkpoint is here, the first-order bound beside the SDP's.

    python -m clipbook.repro.tail_bound [--results results] [--steps 300]

writes ``<results>/tail_bound.json``: ``fashion`` (one record per network: the head's and the tail's factors, both
bounds, certified accuracy at :data:`clipbook.repro.suite.CERT_EPS` on all test images under each), ``mnist_check``
and provenance. The Fashion checkpoints are not in git: records of runs whose checkpoints are not here are kept
from the previous file when they measured the same run (:func:`clipbook.repro.noise_study.run_fingerprint`).
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.bounds import layerwise_upper_bound
from ..core.certify import certified_accuracy, certified_radii
from ..core.files import read_json, write_json_atomic
from ..core.lipsdp import lipsdp_first_order
from .certificates import file_sha1
from .noise_study import networks_to_measure, run_fingerprint
from .provenance import provenance
from .runner import load_checkpoint, load_split
from .storage import checkpoint_path, load_results
from .suite import CERT_EPS


def split_at_flatten(model: nn.Module) -> tuple[nn.Sequential, nn.Sequential]:
    """``(head, tail)`` of a sequential CNN: the layers before its ``Flatten`` and the MLP after it."""
    layers = list(model.children())
    flat = [i for i, m in enumerate(layers) if isinstance(m, nn.Flatten)]
    if len(flat) != 1:
        raise ValueError(f"tail_bound: expected one Flatten layer, found {len(flat)}")
    return nn.Sequential(*layers[:flat[0]]), nn.Sequential(*layers[flat[0] + 1:])


def head_tail_bound(model: nn.Module, input_shape: tuple[int, ...], steps: int = 300) -> dict[str, Any]:
    """The product bound and the head-times-LipSDP-tail bound of ``model`` (see the module docstring), with
    the tail's first-order LipSDP result (sizes, descent time [s], verified)."""
    head, tail = split_at_flatten(model)
    with torch.no_grad():
        flat_dim = head(torch.zeros((1, *input_shape))).numel()
    l_head = layerwise_upper_bound(head, input_shape)
    l_tail_product = layerwise_upper_bound(tail, (flat_dim,))
    sdp = lipsdp_first_order(tail, steps=steps)
    return {"head": l_head, "tail_product": l_tail_product, "tail_lipsdp": sdp.bound,
            "product": l_head * l_tail_product, "head_times_tail_lipsdp": l_head * sdp.bound,
            "tail_lmi_size": sdp.lmi_size, "tail_solved_lmi_size": sdp.solved_lmi_size,
            "descent_s": sdp.solve_time_s, "verified": sdp.verified, "status": sdp.status}


def fashion_records(results_dir: Path, steps: int, before: dict[str, list[dict]]) -> tuple[list, list, list]:
    """One record per Fashion-MNIST network with a checkpoint here; earlier records of the same runs otherwise."""
    runs = [r for r in load_results(results_dir) if r["dataset"] == "fashion"]
    todo, records, kept, skipped = networks_to_measure(results_dir, runs, before)
    split = load_split("fashion") if todo else None
    for r, which in todo:
        for w in which:
            t0 = time.perf_counter()
            model = load_checkpoint(r, results_dir, which=w).eval()
            b = head_tail_bound(model, tuple(model.input_shape), steps)
            cert = {}
            for key in ("product", "head_times_tail_lipsdp"):
                radii = certified_radii(model, split.x_test, split.y_test, b[key])
                cert[key] = {"certified_acc": certified_accuracy(radii, CERT_EPS),
                             "median_certified_radius": radii.median().item()}
            records.append({"run": r["name"], "row": r["row"], "method": r["method"], "seed": r["seed"], "network": w,
                            **b, "cert_eps": list(CERT_EPS), "certificates": cert,
                            "wall_s": time.perf_counter() - t0, "run_fingerprint": run_fingerprint(r)})
            print(f"{r['name']} ({w}): product {b['product']:.4g}, head x LipSDP tail {b['head_times_tail_lipsdp']:.4g} "
                  f"(tail {b['tail_product']:.4g} -> {b['tail_lipsdp']:.4g}, {b['descent_s']:.0f} s)", flush=True)
    return records, kept, skipped


def mnist_check(results_dir: Path, steps: int) -> list[dict[str, Any]]:
    """First-order LipSDP beside the interior-point solver's for every MNIST MLP of ``beyond.json`` whose
    checkpoint (the one LipSDP was solved on: same SHA-1) is here."""
    beyond_file = results_dir / "beyond.json"
    beyond = read_json(beyond_file) if beyond_file.exists() else {}
    runs = {r["name"]: r for r in load_results(results_dir)}
    out = []
    for name, rec in beyond.items():
        sdp = (rec.get("bounds") or {}).get("lipsdp")
        ckpt = checkpoint_path(results_dir, name)
        if name not in runs or sdp is None or not math.isfinite(sdp) or not ckpt.exists() \
                or file_sha1(ckpt) != rec.get("checkpoint_sha1"):
            continue
        fo = lipsdp_first_order(load_checkpoint(runs[name], results_dir).eval(), steps=steps)
        out.append({"run": name, "method": rec.get("method"), "sdp": sdp, "sdp_solver": rec["lipsdp"]["solver"],
                    "first_order": fo.bound, "ratio": fo.bound / sdp, "verified": fo.verified,
                    "descent_s": fo.solve_time_s})
    return out


def tail_bound(results_dir: str | Path = "results", steps: int = 300, command: str = "") -> dict[str, Any]:
    """Compute and write ``<results>/tail_bound.json`` (see the module docstring); returns the record."""
    torch.set_num_threads(1)
    t0, results_dir = time.perf_counter(), Path(results_dir)
    out_path = results_dir / "tail_bound.json"
    old = read_json(out_path) if out_path.exists() else {}
    before: dict[str, list[dict]] = {}
    if old.get("steps") == steps:
        for rec in old.get("fashion", []):
            before.setdefault(rec["run"], []).append(rec)
    check = mnist_check(results_dir, steps)
    records, kept, skipped = fashion_records(results_dir, steps, before)
    out = {"steps": steps, "fashion": records, "kept_from_before": kept, "skipped": skipped, "mnist_check": check,
           "provenance": {**provenance(), "command": command, "wall_s": time.perf_counter() - t0}}
    write_json_atomic(out_path, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clipbook.repro.tail_bound", description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results", help="folder of stored runs (default: results)")
    ap.add_argument("--steps", type=int, default=300, help="descent steps for the multipliers (default: 300)")
    args = ap.parse_args(argv)
    if not Path(args.results).is_dir():
        ap.error(f"no results folder {args.results}; pass --results with the folder of stored runs")
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    out = tail_bound(args.results, args.steps, "python -m clipbook.repro.tail_bound " + shlex.join(sys.argv[1:]))
    worst = max((c["ratio"] for c in out["mnist_check"]), default=math.nan)
    print(f"{len(out['fashion'])} Fashion-MNIST networks ({len(out['kept_from_before'])} runs kept from before, "
          f"{len(out['skipped'])} without checkpoints skipped); {len(out['mnist_check'])} MNIST MLPs checked against "
          f"the SDP (first-order / SDP at most {worst:.4f}) -> {Path(args.results) / 'tail_bound.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
