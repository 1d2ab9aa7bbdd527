"""Fig. 1 (Sec. 2): a Fashion-MNIST pair before and after Algorithm 1, ``python -m clipbook.repro.fig1``.

1. Train the Fashion-MNIST CNN briefly with CLIP (fixed lambda, :func:`fig1_config`).
2. Candidate pairs (the stated rule): test images classified correctly with confidence >= ``min_conf``;
   ``n_pairs`` of them drawn at random (seeded) as anchors, each paired with its nearest (Euclidean, pixel
   space) eligible test image of another class.
3. Run Algorithm 1 (:func:`clipbook.core.lipschitz.algorithm1_step`, adaptive step size) on all pairs at once
   for ``steps`` steps, recording per step each image's probabilities of the two original classes, its top
   class and confidence, the pair's difference quotient and distance.
4. The shown pair (the stated rule): among the pairs that end in the paper's state (each image classified as
   the other's original class), the one with the lowest larger end confidence; if there is none, among the
   pairs where at least one image left its class, the one with the largest end quotient; else the pair
   with the largest end quotient.

Stored: ``results/fig1.json`` (settings, provenance, the chosen pair's trajectory, every pair's start and
end state) and ``results/fig1.pt`` (the chosen pair's images at a few steps). Images are not clipped to
[0, 1] during the ascent (Algorithm 1 does not), only for display.
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
from ..core.files import save_torch_atomic, write_json_atomic
from .provenance import provenance
from ..core.lipschitz import PairState, algorithm1_step, difference_quotients
from ..core.models import build_model
from tqdm import tqdm  # the text bar: it honours TQDM_DISABLE (tqdm.notebook ignores it)
from ..core.training import ClassificationTask, TrainConfig, train

RESULTS = Path("results")  # the book's results folder, relative to the repository root (make reproduce runs there)
#: steps at which the chosen pair's images are kept for the figure
SNAPSHOTS = (0, 1, 3, 10, 30, 100, 300, 1000, 3000)


def fig1_config(epochs: int = 2, lam: float = 0.1, seed: int = 0) -> TrainConfig:
    """A short CLIP run of the Fashion-MNIST CNN: SGD momentum 0.9, lr 0.05, batch 128, 32 pairs, fixed lambda
    (the paper's Fashion-MNIST CLIP95 ended at lambda = 0.18)."""
    return TrainConfig(method="clip", lam=lam, epochs=epochs, seed=seed, lr=0.05, momentum=0.9, batch_size=128,
                       lip_pairs=32, eval_lip_pairs=32, eval_lip_steps=0)


@torch.no_grad()
def candidate_pairs(model, x: torch.Tensor, y: torch.Tensor, n_pairs: int = 32, min_conf: float = 0.9,
                    seed: int = 0, pool: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(i, j)`` ``[n_pairs]`` into ``x``: anchors ``i`` drawn at random among the first ``pool`` images
    classified correctly with confidence >= ``min_conf``; ``j`` the nearest such image of another class."""
    p = predict(model, x).softmax(1)
    conf, pred = p.max(1)
    ok = torch.nonzero((pred == y) & (conf >= min_conf)).squeeze(1)[:pool]
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
        rec["distance"].append((a - b).flatten(1).norm(dim=1))
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


def choose_pair(tr: dict[str, Any], ya: torch.Tensor, yb: torch.Tensor) -> tuple[int, str]:
    """The pair shown in Fig. 1 by the rule of the module docstring; returns ``(index, reason)``."""
    ta, tb = tr["top_a"][-1], tr["top_b"][-1]
    q = tr["quotient"][-1]
    swapped = (ta == yb) & (tb == ya)
    if swapped.any():
        worst = torch.maximum(tr["conf_a"][-1], tr["conf_b"][-1]).masked_fill(~swapped, float("inf"))
        return int(worst.argmin()), "swapped: each image ends classified as the other's class"
    left = (ta != ya) | (tb != yb)
    if left.any():
        return int(q.masked_fill(~left, -float("inf")).argmax()), "no pair swapped; at least one image left its class"
    return int(q.argmax()), "no image left its class; largest end quotient"


def run_fig1(out_dir: str | Path = RESULTS, epochs: int = 2, lam: float = 0.1, steps: int = 1000, n_pairs: int = 32,
             seed: int = 0, model_cache: str | Path | None = None, command: str = "") -> dict[str, Any]:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sp = split_lipschitz(load_images("fashion"))
    cfg = fig1_config(epochs, lam, seed)
    model = build_model("fashion_cnn", seed=seed)
    cache = Path(model_cache) if model_cache else None
    if cache and cache.exists() and torch.load(cache, weights_only=False)["config"] == cfg.to_dict():
        st = torch.load(cache, weights_only=False)
        model.load_state_dict(st["model"]); history = st["history"]; train_s = st["train_s"]
    else:
        res = train(model, ClassificationTask(sp), cfg, desc="fig1 CNN")
        history, train_s = res.history, time.perf_counter() - t0
        if cache:
            save_torch_atomic(cache, {"config": cfg.to_dict(), "model": model.state_dict(), "history": history,
                                      "train_s": train_s})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    test_acc = accuracy(model, sp.x_test, sp.y_test)
    t1 = time.perf_counter()
    ia, ib = candidate_pairs(model, sp.x_test, sp.y_test, n_pairs, seed=seed)
    ya, yb = sp.y_test[ia], sp.y_test[ib]
    tr = run_algorithm1(model, sp.x_test[ia], sp.x_test[ib], ya, yb, steps)
    k, reason = choose_pair(tr, ya, yb)
    search_s = time.perf_counter() - t1
    ta, tb = tr["top_a"][-1], tr["top_b"][-1]
    keys = ("pa_a", "pa_b", "pb_a", "pb_b", "conf_a", "conf_b", "quotient", "distance")
    traj = {key: [round(v, 6) for v in tr[key][:, k].tolist()] for key in keys}
    traj.update(top_a=tr["top_a"][:, k].tolist(), top_b=tr["top_b"][:, k].tolist())

    def state(i, s):
        return {"top_a": int(tr["top_a"][s, i]), "conf_a": float(tr["conf_a"][s, i]), "top_b": int(tr["top_b"][s, i]),
                "conf_b": float(tr["conf_b"][s, i]), "quotient": float(tr["quotient"][s, i]),
                "distance": float(tr["distance"][s, i])}
    pairs = [{"test_index_a": int(ia[i]), "test_index_b": int(ib[i]), "class_a": int(ya[i]), "class_b": int(yb[i]),
              "start": state(i, 0), "end": state(i, -1)} for i in range(len(ia))]
    summary = {"n_pairs": len(ia), "swapped": int(((ta == yb) & (tb == ya)).sum()),
               "left_class": int(((ta != ya) | (tb != yb)).sum()),
               "both_left": int(((ta != ya) & (tb != yb)).sum())}
    result = {"chosen": k, "reason": reason, "class_a": int(ya[k]), "class_b": int(yb[k]), "trajectory": traj,
              "pairs": pairs, "summary": summary, "steps": steps, "tau": 1.0, "tau_factor": 1.3,
              "min_conf": 0.9, "seed": seed, "epochs": epochs, "lam": lam, "config": cfg.to_dict(),
              "test_accuracy": test_acc, "train_history": [{k2: h[k2] for k2 in ("epoch", "loss", "train_acc", "lam")
                                                             if k2 in h} for h in history],
              "provenance": {**provenance(), "command": command, "train_s": train_s, "search_s": search_s,
                             "wall_s": time.perf_counter() - t0}}
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / "fig1.json", result)
    save_torch_atomic(out_dir / "fig1.pt", {"steps": sorted(tr["snap"]),
                                            "a": torch.stack([tr["snap"][s][0][k] for s in sorted(tr["snap"])]),
                                            "b": torch.stack([tr["snap"][s][1][k] for s in sorted(tr["snap"])])})
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clipbook.repro.fig1", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lam", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-cache", type=Path, default=None, help="reuse/store the trained CNN here")
    args = p.parse_args(argv)
    command = "python -m clipbook.repro.fig1 " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    r = run_fig1(args.out, args.epochs, args.lam, args.steps, args.pairs, args.seed, args.model_cache, command.strip())
    t = r["trajectory"]
    print(f"test accuracy {100 * r['test_accuracy']:.1f}%; {r['summary']}; chosen pair {r['chosen']} ({r['reason']})")
    print(f"start: a {t['top_a'][0]} {t['conf_a'][0]:.3f}, b {t['top_b'][0]} {t['conf_b'][0]:.3f}; "
          f"end: a {t['top_a'][-1]} {t['conf_a'][-1]:.3f}, b {t['top_b'][-1]} {t['conf_b'][-1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
