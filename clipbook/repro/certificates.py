"""Beyond the paper (issue 12): the LipSDP upper bound, certificates under both upper bounds, and per-image
certified against empirical radii, for every stored MNIST model. Chapter 7 reads what this writes.

``python -m clipbook.repro.certificates [--results results] [--n 1000] [--force]`` computes, for every stored MNIST result
(the Fashion CNN is out of LipSDP's reach, see :func:`lipsdp_lmi_size`), from its checkpoint:

* the LipSDP-Neuron bound (:func:`clipbook.core.lipsdp.lipsdp_bound`: bound, solver, time, memory, verified), solved
  in a fresh process (:func:`lipsdp_fresh_process`) so that the memory figure belongs to that one solve;
* certified accuracy [%] on all 10,000 test images at each radius of :data:`clipbook.repro.suite.CERT_EPS`, under the
  product bound (4) stored with the result (``result["beyond"]["bounds"]["upper"]``) and under LipSDP;
* on the first ``n`` test images: the certified radius ``margin / (sqrt(2) L)`` with the better (smaller) of the
  two upper bounds and the empirical radius of :func:`clipbook.core.radii.empirical_radii` (DDN + DeepFool, verified),
  their ratio summary (:func:`clipbook.core.radii.radius_ratio_summary`) and the number of images whose empirical
  radius is below the certified one (must be 0).

Everything goes to ``<results>/beyond.json``: a dict ``name -> record`` (:func:`beyond_record`, plus identity,
provenance and wall time), written atomically after every model. The command is resumable: a model already
stored with the same checkpoint (SHA-1 of the file) is skipped unless ``--force``; models are taken seed 0 of
every row first (:func:`priority`), and runs that finish meanwhile join the queue (``--until HH:MM`` stops
starting new ones). Per-image radii are stored as
lists rounded to 5 decimals *conservatively*: certified radii rounded down, empirical radii rounded up, so the
stored lists keep both bounds valid; an empirical radius the attacks could not find (``inf``) is stored as
``null``. The summaries are computed before rounding.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..core.certify import certified_accuracy, certified_radii
from ..core.files import read_json, write_json_atomic
from .provenance import provenance
from ..core.lipsdp import ACTIVATION_SLOPES, lipsdp_bound
from ..core.models import eval_mode
from ..core.radii import empirical_radii, radius_ratio_summary
from .suite import CERT_EPS

BEYOND_FILE = "beyond.json"
DECIMALS = 5


# ---------------------------------------------------------------- helpers

def _finite_or_none(v: Any) -> Any:
    """JSON-safe: NaN and +-inf become ``None`` (recursively through dicts and lists)."""
    if isinstance(v, dict):
        return {k: _finite_or_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite_or_none(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def round_down(values: torch.Tensor, decimals: int = DECIMALS) -> list[float]:
    """``values`` rounded down to ``decimals`` (a lower bound stays a lower bound)."""
    s = 10.0 ** decimals
    return [math.floor(v * s) / s for v in values.double().tolist()]


def round_up(values: torch.Tensor, decimals: int = DECIMALS) -> list[float | None]:
    """``values`` rounded up to ``decimals`` (an upper bound stays one); ``inf`` becomes ``None``."""
    s = 10.0 ** decimals
    return [math.ceil(v * s) / s if math.isfinite(v) else None for v in values.double().tolist()]


def file_sha1(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def lipsdp_lmi_size(model: nn.Module, input_shape: Sequence[int] | None = None) -> dict[str, float]:
    """Size of the LipSDP-Neuron LMI a network would need: input dimension plus one multiplier per activation
    output (every :data:`clipbook.core.lipsdp.ACTIVATION_SLOPES` module's output counted, whatever the layer before
    it; max-pooling is not even slope-restricted, so this is a lower bound on what a CNN would need).
    Returns ``{"input": n_0, "neurons": N, "lmi_size": n_0 + N, "dense_float64_gb": (n_0 + N)^2 * 8 / 1e9}``."""
    shape = tuple(input_shape) if input_shape is not None else tuple(model.input_shape)
    counts: list[int] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: counts.append(out[0].numel()))
             for m in model.modules() if type(m) in ACTIVATION_SLOPES]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *shape)))
    finally:
        for h in hooks:
            h.remove()
    n0 = math.prod(shape)
    size = n0 + sum(counts)
    return {"input": n0, "neurons": sum(counts), "lmi_size": size, "dense_float64_gb": size * size * 8 / 1e9}


def plain_mlp(model: nn.Module) -> nn.Sequential:
    """The same function as an MLP ``model`` (e.g. spectrally normalised: parametrized layers) as a plain
    ``nn.Sequential`` of ``Linear`` and activation layers with the effective weights (picklable)."""
    layers: list[nn.Module] = []
    for m in model.children():
        if isinstance(m, nn.Linear):
            with eval_mode(m), torch.no_grad():  # read a parametrized weight without a power-iteration update
                lin = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
                lin.weight.copy_(m.weight)
                if m.bias is not None:
                    lin.bias.copy_(m.bias)
            layers.append(lin)
        elif isinstance(m, nn.Flatten) or type(m) in ACTIVATION_SLOPES:
            layers.append(type(m)())
        else:
            raise ValueError(f"plain_mlp: unsupported layer {type(m).__name__}")
    return nn.Sequential(*layers)


def _lipsdp_child(model: nn.Module, solver: str):
    torch.set_num_threads(1)
    return lipsdp_bound(model, solver=solver)


def lipsdp_fresh_process(model: nn.Module, solver: str = "auto"):
    """:func:`clipbook.core.lipsdp.lipsdp_bound` in a fresh (spawned) process, so that its ``peak_memory_mb`` is the
    memory this solve needs and not what an earlier solve left allocated in this process."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(_lipsdp_child, plain_mlp(model), solver).result()


# ---------------------------------------------------------------- the computation for one model

def beyond_record(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, product_bound: float,
                  n: int = 1000, cert_eps: Sequence[float] = CERT_EPS, solver: str = "auto",
                  attacks: Sequence[str] = ("ddn", "deepfool"), steps: int = 100,
                  bounds: tuple[float, float] = (0.0, 1.0), fresh_process: bool = True) -> dict[str, Any]:
    """LipSDP, certificates under both upper bounds and per-image radii of one model (see the module docstring).

    ``x_test, y_test``: every test image (certified accuracy uses all of them; the radii the first ``n``);
    ``product_bound``: the product bound (4) of the model. Returns a JSON-safe dict with keys ``bounds``
    (``product``, ``lipsdp``, ``lipsdp_solver``, ``best``, ``best_name``), ``lipsdp`` (solver, time, memory, LMI
    sizes, verified, status), ``cert_eps``, ``certified_acc`` / ``median_certified_radius`` (``product`` and
    ``lipsdp``, all test images), ``radii`` (``n``, the bound used, ``certified`` and ``empirical`` lists),
    ``summary`` (:func:`clipbook.core.radii.radius_ratio_summary` of the first ``n``) and ``timing`` [s].
    ``fresh_process``: solve the SDP in a spawned process (:func:`lipsdp_fresh_process`; its memory is then
    comparable between models), else in this one."""
    model = model.eval()
    t0 = time.perf_counter()
    sdp = lipsdp_fresh_process(model, solver) if fresh_process else lipsdp_bound(model, solver=solver)
    t_sdp = time.perf_counter() - t0

    t1 = time.perf_counter()
    lip = sdp.bound if sdp.verified and math.isfinite(sdp.bound) else math.inf
    rad = {"product": certified_radii(model, x_test, y_test, product_bound),
           "lipsdp": certified_radii(model, x_test, y_test, lip)}
    cert = {k: certified_accuracy(r, cert_eps) for k, r in rad.items()}
    med = {k: r.median().item() for k, r in rad.items()}
    best_name = "lipsdp" if lip < product_bound else "product"
    best = min(lip, product_bound)
    t_cert = time.perf_counter() - t1

    t2 = time.perf_counter()
    n = min(n, len(x_test))
    x, y = x_test[:n], y_test[:n]
    cert_n = rad[best_name][:n]
    emp_n = empirical_radii(model, x, y, attacks=attacks, steps=steps, bounds=bounds)
    summary = radius_ratio_summary(cert_n, emp_n)
    t_rad = time.perf_counter() - t2

    rec = {
        "bounds": {"product": float(product_bound), "lipsdp": lip, "lipsdp_solver": sdp.solver_bound,
                   "best": best, "best_name": best_name},
        "lipsdp": {"solver": sdp.solver, "solve_time_s": sdp.solve_time_s, "peak_memory_mb": sdp.peak_memory_mb,
                   "lmi_size": sdp.lmi_size, "solved_lmi_size": sdp.solved_lmi_size, "verified": sdp.verified,
                   "status": sdp.status, "fresh_process": fresh_process},
        "cert_eps": list(cert_eps), "n_certified_images": len(x_test),
        "certified_acc": cert, "median_certified_radius": med,
        "radii": {"n": n, "bound": best_name, "lipschitz": best, "attacks": list(attacks), "steps": steps,
                  "certified": round_down(cert_n), "empirical": round_up(emp_n)},
        "summary": summary,
        "timing": {"lipsdp_s": t_sdp, "certify_s": t_cert, "radii_s": t_rad},
    }
    return _finite_or_none(rec)


# ---------------------------------------------------------------- every stored MNIST model

def _stored_bounds(result: dict[str, Any]) -> dict[str, float]:
    """The product bound and lower bounds stored with a result (older results: the Table 1 metrics)."""
    b = result.get("beyond", {}).get("bounds")
    if b:
        return {"pair_search": b["pair_search"], "jacobian": b["jacobian"], "lower": b["lower"], "upper": b["upper"]}
    m = result["metrics"]
    return {"pair_search": m["lip_estimate"], "jacobian": math.nan, "lower": m["lip_estimate"], "upper": m["upper_bound"]}


#: Row order of the priority queue (then any other row): the paper's rows, then the baselines.
ROW_ORDER = ("standard", "clip90", "weight_reg90", "clip85", "weight_reg85", "clip95", "weight_reg95",
             "adversarial-e2", "adversarial-e0.5", "spectral_norm90", "jacobian90", "spectral_norm85", "jacobian85",
             "spectral_norm95", "jacobian95")


def priority(result: dict[str, Any]) -> tuple:
    """Seed first, then :data:`ROW_ORDER`: every row gets one model before any row gets a second."""
    k = result["row"].split("-", 1)[1]
    return (result["seed"], ROW_ORDER.index(k) if k in ROW_ORDER else len(ROW_ORDER), k)


def run_beyond(results_dir: str | Path = "results", n: int = 1000, force: bool = False,
               names: Sequence[str] | None = None, out: str | Path | None = None,
               command: str | None = None, until: float | None = None, **kw) -> dict[str, Any]:
    """:func:`beyond_record` for every stored MNIST result in ``results_dir`` (or only ``names``), each stored
    in ``out`` (default ``<results_dir>/beyond.json``) as soon as it is done, seed 0 of every row first
    (:func:`priority`); results that appear meanwhile join the queue. ``until``: a ``time.time()`` after which no
    further model is started. Returns the whole dict."""
    from tqdm import tqdm
    from .runner import load_checkpoint, load_split
    from .storage import checkpoint_path, load_results

    results_dir = Path(results_dir)
    out = Path(out) if out is not None else results_dir / BEYOND_FILE
    store: dict[str, Any] = read_json(out) if out.exists() else {}
    done: set[str] = set()  # computed (or skipped) by this call

    def pending() -> list[dict[str, Any]]:
        """Stored MNIST results not yet done, re-read each time (runs still being produced join the queue),
        in priority order: seed 0 of every row first, then seed 1, ...; last, records whose SDP was solved in a
        process that had solved one before (their memory figure is not comparable: recomputed when time allows)."""
        todo, redo = [], []
        for r in load_results(results_dir):
            if r["dataset"] != "mnist" or r["name"] in done or (names is not None and r["name"] not in names):
                continue
            ckpt = checkpoint_path(results_dir, r["name"])
            if not ckpt.exists():
                print(f"beyond: {r['name']}: no checkpoint {ckpt}, skipped", file=sys.stderr)
                done.add(r["name"])
            elif not force and store.get(r["name"], {}).get("checkpoint_sha1") == file_sha1(ckpt):
                if store[r["name"]]["lipsdp"].get("fresh_process", False) or not kw.get("fresh_process", True):
                    done.add(r["name"])
                else:
                    redo.append(r)
            else:
                todo.append(r)
        return sorted(todo, key=priority) + sorted(redo, key=priority)

    split = None
    bar = tqdm(total=len(pending()), desc="beyond", unit="model", leave=False, dynamic_ncols=True)
    while todo := pending():
        if until is not None and time.time() > until:
            print(f"beyond: stopped at the deadline, {len(todo)} models left: {', '.join(t['name'] for t in todo)}",
                  file=sys.stderr)
            break
        r = todo[0]
        done.add(r["name"])
        sha = file_sha1(checkpoint_path(results_dir, r["name"]))
        bar.total = max(bar.total or 0, bar.n + len(todo))
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(r["name"])
        if split is None:
            split = load_split("mnist")
        t0 = time.perf_counter()
        model = load_checkpoint(r, results_dir)
        stored = _stored_bounds(r)
        rec = beyond_record(model, split.x_test, split.y_test, stored["upper"], n=n, **kw)
        rec["bounds"].update(pair_search=stored["pair_search"], jacobian=stored["jacobian"], lower=stored["lower"])
        stored_cert = r.get("beyond", {}).get("certified_acc")
        rec["product_cert_max_abs_diff_to_stored"] = (
            max(abs(a - b) for a, b in zip(rec["certified_acc"]["product"], stored_cert)) if stored_cert else None)
        store[r["name"]] = _finite_or_none({
            "name": r["name"], "row": r["row"], "method": r["method"], "target": r["target"], "seed": r["seed"],
            "checkpoint_sha1": sha, **rec,
            "provenance": {**provenance(), "command": command or "python -m clipbook.repro.certificates",
                           "wall_s": time.perf_counter() - t0},
        })
        write_json_atomic(out, store)
        bar.update(1)
    bar.close()
    return store


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clipbook.repro.certificates", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--n", type=int, default=1000, help="test images with per-image radii (default: 1000)")
    p.add_argument("--force", action="store_true", help="recompute models already stored")
    p.add_argument("--only", nargs="*", default=None, help="only these result names")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--until", default=None, help="start no further model after this local time (HH:MM)")
    a = p.parse_args(argv)
    if a.n < 1:
        p.error(f"--n must be >= 1, got {a.n}")
    if not Path(a.results).is_dir():
        p.error(f"no results folder {a.results}")
    until = None
    if a.until:
        import datetime as dt
        try:
            hh, mm = map(int, a.until.split(":"))
            until = dt.datetime.now().replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
        except ValueError:
            p.error(f"--until expects HH:MM, got {a.until!r}")
    torch.set_num_threads(a.threads)
    cmd = "python -m clipbook.repro.certificates " + " ".join(shlex.quote(s) for s in (argv if argv is not None else sys.argv[1:]))
    store = run_beyond(a.results, a.n, a.force, a.only, command=cmd.strip(), until=until)
    print(f"beyond: {len(store)} models in {Path(a.results) / BEYOND_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
