"""Fig. 1 (Sec. 2): a Fashion-MNIST pair before and after Algorithm 1 on a Table-1 CLIP network,
``python -m clipbook.repro.fig1 [--run fashion-clip90-s0]``.

1. The network: the selected checkpoint of a stored Table-1 run (default ``fashion-clip90-s0``, the CLIP network
   of the paper's Sec. 4.2 setting; its checkpoint must be in ``<results>/checkpoints``).
2. Candidate pairs (the stated rule, :func:`candidate_pairs`): test images classified correctly with confidence
   > ``min_conf`` (the caption's 90 %); ``n_pairs`` of them drawn at random (seeded) as anchors, each paired with
   its nearest (Euclidean, pixel space) eligible test image of another class.
3. Algorithm 1 (:func:`clipbook.core.lipschitz.algorithm1_step`, adaptive step size) on all pairs at once for
   ``steps`` steps, recording per step each image's probabilities of the two original classes, its top class
   and confidence, the pair's difference quotient and distance.
4. The caption's test (:func:`caption_test`): before, each image classified correctly with > 90 %; after, each
   classified as the other's class with < 30 % confidence. Its frequency over the candidate pairs is stored.
5. The pair shown (:func:`choose_pair`): among the pairs that pass the test, the one with the lowest larger end
   confidence; else among the pairs that swapped classes, the same; else among the pairs where at least one
   image left its class, the one with the largest end quotient; else the largest end quotient.

Stored: ``results/fig1.json`` (settings, provenance, the caption test's frequency, the chosen pair's trajectory,
every pair's start and end state) and ``results/fig1.pt`` (the chosen pair's images at a few steps). Images are
not clipped to [0, 1] during the ascent (Algorithm 1 does not), only for display.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..core.data import load_images, split_lipschitz
from ..core.evaluation import accuracy, predict
from ..core.files import read_json, save_torch_atomic, write_json_atomic
from ..core.l2 import flat_norms
from .provenance import provenance
from ..core.lipschitz import PairState, algorithm1_step, difference_quotients
from tqdm import tqdm  # the text bar: it honours TQDM_DISABLE (tqdm.notebook ignores it)

RESULTS = Path("results")  # the book's results folder, relative to the repository root (make reproduce runs there)
#: steps at which the chosen pair's images are kept for the figure
SNAPSHOTS = (0, 1, 3, 10, 30, 100, 300, 1000, 3000)


@torch.no_grad()
def candidate_pairs(model, x: torch.Tensor, y: torch.Tensor, n_pairs: int = 200, min_conf: float = 0.9,
                    seed: int = 0, pool: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(i, j)`` ``[n_pairs]`` into ``x``: anchors ``i`` drawn at random among the first ``pool`` images
    classified correctly with confidence > ``min_conf``; ``j`` the nearest such image of another class."""
    p = predict(model, x).softmax(1)
    conf, pred = p.max(1)
    ok = torch.nonzero((pred == y) & (conf > min_conf)).squeeze(1)[:pool]
    if len(ok) < 2:
        raise ValueError("fewer than two confidently correct images")
    g = torch.Generator().manual_seed(seed)
    anchors = ok[torch.randperm(len(ok), generator=g)[:n_pairs]]
    flat = x[ok].flatten(1)
    d = torch.cdist(x[anchors].flatten(1), flat)
    d[y[anchors][:, None] == y[ok][None, :]] = float("inf")
    return anchors, ok[d.argmin(1)]


def run_algorithm1(model, xa: torch.Tensor, xb: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor, steps: int,
                   tau: float = 1.0, factor: float = 1.3, snapshots=SNAPSHOTS) -> dict[str, Any]:
    """Algorithm 1 on the pairs ``(xa, xb)`` for ``steps`` steps. Returns per-step tensors ``[steps + 1, n]``:
    ``pa_a, pa_b`` (probabilities of ``xa`` for the classes ``ya``, ``yb``), ``pb_a, pb_b`` (same for ``xb``),
    ``top_a, conf_a, top_b, conf_b``, ``quotient``, ``distance``; and ``snap`` {step: (xa, xb)}."""
    n = len(xa)
    ar = torch.arange(n)
    rec: dict[str, list] = {k: [] for k in ("pa_a", "pa_b", "pb_a", "pb_b", "top_a", "conf_a", "top_b", "conf_b",
                                            "quotient", "distance")}
    snap = {}

    @torch.no_grad()
    def log(s, a, b):
        pa, pb = model(a).softmax(1), model(b).softmax(1)
        rec["pa_a"].append(pa[ar, ya]); rec["pa_b"].append(pa[ar, yb])
        rec["pb_a"].append(pb[ar, ya]); rec["pb_b"].append(pb[ar, yb])
        c, t = pa.max(1); rec["top_a"].append(t); rec["conf_a"].append(c)
        c, t = pb.max(1); rec["top_b"].append(t); rec["conf_b"].append(c)
        rec["quotient"].append(difference_quotients(model, a, b))
        rec["distance"].append(flat_norms(a - b))
        if s in snapshots:
            snap[s] = (a.clone(), b.clone())

    pairs = PairState.start(xa, xb, tau)
    log(0, pairs.x, pairs.x_prime)
    for s in tqdm(range(1, steps + 1), leave=False, desc="Algorithm 1", unit="step"):
        algorithm1_step(model, pairs, factor)
        log(s, pairs.x, pairs.x_prime)
    a, b = pairs.x, pairs.x_prime
    out = {k: torch.stack(v) for k, v in rec.items()}
    out["snap"] = snap
    out["final"] = (a, b)
    return out


def caption_test(tr: dict[str, Any], ya: torch.Tensor, yb: torch.Tensor, before: float = 0.9,
                 after: float = 0.3) -> torch.Tensor:
    """Fig. 1's caption as a test, per pair ``[n]`` (bool): at the start each image is classified correctly with
    confidence > ``before``; at the end each is classified as the other's class with confidence < ``after``."""
    start = (tr["top_a"][0] == ya) & (tr["top_b"][0] == yb) & (tr["conf_a"][0] > before) & (tr["conf_b"][0] > before)
    end = (tr["top_a"][-1] == yb) & (tr["top_b"][-1] == ya) & (tr["conf_a"][-1] < after) & (tr["conf_b"][-1] < after)
    return start & end


def choose_pair(tr: dict[str, Any], ya: torch.Tensor, yb: torch.Tensor) -> tuple[int, str]:
    """The pair shown in Fig. 1 by the rule of the module docstring; returns ``(index, reason)``."""
    ta, tb = tr["top_a"][-1], tr["top_b"][-1]
    q = tr["quotient"][-1]
    worst = torch.maximum(tr["conf_a"][-1], tr["conf_b"][-1])
    passed = caption_test(tr, ya, yb)
    if passed.any():
        return int(worst.masked_fill(~passed, float("inf")).argmin()), "passes the caption's test"
    swapped = (ta == yb) & (tb == ya)
    if swapped.any():
        return int(worst.masked_fill(~swapped, float("inf")).argmin()), "swapped: each image ends classified as the other's class"
    left = (ta != ya) | (tb != yb)
    if left.any():
        return int(q.masked_fill(~left, -float("inf")).argmax()), "no pair swapped; at least one image left its class"
    return int(q.argmax()), "no image left its class; largest end quotient"


def run_fig1(run: str = "fashion-clip90-s0", results_dir: str | Path = RESULTS, out_dir: str | Path | None = None,
             steps: int = 1000, n_pairs: int = 200, seed: int = 0, command: str = "") -> dict[str, Any]:
    """Fig. 1 on the stored run ``run``'s selected network; writes ``fig1.json`` and ``fig1.pt`` into ``out_dir``
    (default: ``results_dir``) and returns the record."""
    from .runner import load_checkpoint
    from .schema import reg_parameter
    from .storage import result_path
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results_dir = Path(results_dir)
    if not result_path(results_dir, run).exists():
        raise FileNotFoundError(f"no stored run {run} in {results_dir}: train it first "
                                f"(python -m clipbook reproduce --datasets fashion --results {results_dir})")
    stored = read_json(result_path(results_dir, run))
    if stored["dataset"] != "fashion" or stored["method"] != "clip":
        raise ValueError(f"{run} is a {stored['dataset']} {stored['method']} run; Fig. 1 needs a Fashion-MNIST CLIP run")
    model = load_checkpoint(stored, results_dir)
    for p in model.parameters():
        p.requires_grad_(False)
    sp = split_lipschitz(load_images("fashion"), seed=stored["config"]["seed"])
    test_acc = accuracy(model, sp.x_test, sp.y_test)
    ia, ib = candidate_pairs(model, sp.x_test, sp.y_test, n_pairs, seed=seed)
    ya, yb = sp.y_test[ia], sp.y_test[ib]
    tr = run_algorithm1(model, sp.x_test[ia], sp.x_test[ib], ya, yb, steps)
    k, reason = choose_pair(tr, ya, yb)
    ta, tb = tr["top_a"][-1], tr["top_b"][-1]
    keys = ("pa_a", "pa_b", "pb_a", "pb_b", "conf_a", "conf_b", "quotient", "distance")
    traj = {key: [round(v, 6) for v in tr[key][:, k].tolist()] for key in keys}
    traj.update(top_a=tr["top_a"][:, k].tolist(), top_b=tr["top_b"][:, k].tolist())

    def state(i, s):
        return {"top_a": int(tr["top_a"][s, i]), "conf_a": float(tr["conf_a"][s, i]), "top_b": int(tr["top_b"][s, i]),
                "conf_b": float(tr["conf_b"][s, i]), "quotient": float(tr["quotient"][s, i]),
                "distance": float(tr["distance"][s, i])}
    passed = caption_test(tr, ya, yb)
    pairs = [{"test_index_a": int(ia[i]), "test_index_b": int(ib[i]), "class_a": int(ya[i]), "class_b": int(yb[i]),
              "start": state(i, 0), "end": state(i, -1), "caption_test": bool(passed[i])} for i in range(len(ia))]
    summary = {"n_pairs": len(ia), "caption_test": int(passed.sum()), "swapped": int(((ta == yb) & (tb == ya)).sum()),
               "left_class": int(((ta != ya) | (tb != yb)).sum()), "both_left": int(((ta != ya) & (tb != yb)).sum())}
    result = {"run": run, "selected_epoch": stored["metrics"]["best_epoch"], "lam": reg_parameter(stored),
              "chosen": k, "reason": reason, "class_a": int(ya[k]), "class_b": int(yb[k]), "trajectory": traj,
              "pairs": pairs, "summary": summary, "steps": steps, "tau": 1.0, "tau_factor": 1.3, "min_conf": 0.9,
              "caption": {"before": 0.9, "after": 0.3}, "seed": seed, "test_accuracy": test_acc,
              "provenance": {**provenance(), "command": command, "wall_s": time.perf_counter() - t0}}
    out_dir = Path(out_dir or results_dir)
    write_json_atomic(out_dir / "fig1.json", result)
    save_torch_atomic(out_dir / "fig1.pt", {"steps": sorted(tr["snap"]),
                                            "a": torch.stack([tr["snap"][s][0][k] for s in sorted(tr["snap"])]),
                                            "b": torch.stack([tr["snap"][s][1][k] for s in sorted(tr["snap"])])})
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clipbook.repro.fig1", description=__doc__.splitlines()[0])
    p.add_argument("--run", default="fashion-clip90-s0", help="a stored Fashion-MNIST CLIP run (default: %(default)s)")
    p.add_argument("--results", type=Path, default=RESULTS, help="where the run and its checkpoint are stored")
    p.add_argument("--out", type=Path, default=None, help="where fig1.json goes (default: --results)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    command = "python -m clipbook.repro.fig1 " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        r = run_fig1(args.run, args.results, args.out, args.steps, args.pairs, args.seed, command.strip())
    except (FileNotFoundError, ValueError) as e:
        print(f"fig1: {e}", file=sys.stderr)
        return 2
    s, t = r["summary"], r["trajectory"]
    print(f"{r['run']} (epoch {r['selected_epoch']}, test accuracy {100 * r['test_accuracy']:.1f}%): the caption's test "
          f"holds for {s['caption_test']} of {s['n_pairs']} pairs; {s}; chosen pair {r['chosen']} ({r['reason']})")
    print(f"start: a {t['top_a'][0]} {t['conf_a'][0]:.3f}, b {t['top_b'][0]} {t['conf_b'][0]:.3f}; "
          f"end: a {t['top_a'][-1]} {t['conf_a'][-1]:.3f}, b {t['top_b'][-1]} {t['conf_b'][-1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
