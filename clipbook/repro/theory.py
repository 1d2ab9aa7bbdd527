"""Section 3 of the paper, measured: the numbers the theory chapter shows (Propositions 1, 3 and 4).

``python -m clipbook.repro.theory [--out PATH] [--epochs N]`` stores them in ``results/regression/theory.json``.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ..core.data import regression_data
from ..core.files import write_json_atomic
from .provenance import provenance
from .regression import (FIG2_SETTING, PAPER_LAMBDAS, ScaledRegressionTask, _full, build_regression_model,
                         curve_metrics, grid, setting_config, stage_epochs)
from ..core.training import train


class NormPenaltyTask(ScaledRegressionTask):
    """The data term plus ``mu * ||theta||``: the Euclidean norm (not its square) of *all* parameters, biases
    included, exactly the extra term of problem (6) in Proposition 1."""

    def __init__(self, x, y, model: torch.nn.Module, mu: float, scale: float = 1.0):
        super().__init__(x, y, scale)
        self.model, self.mu = model, float(mu)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        base = super().loss(out, y)
        return base + self.mu * param_norm(self.model) if self.mu else base


def param_norm(model: torch.nn.Module) -> torch.Tensor:
    """``||theta||_2`` over all parameters (differentiable)."""
    return torch.sqrt(sum((p ** 2).sum() for p in model.parameters()))


def _curve_record(model, task, xs, lam, extra=None) -> dict[str, Any]:
    with torch.no_grad():
        curve = model(xs).squeeze(1)
        mse = torch.mean((model(task.x_train) - task.y_train) ** 2).item()
    rec = {"lam": lam, "curve": [round(v, 6) for v in curve.tolist()], "train_mse": mse, **curve_metrics(xs.squeeze(1), curve)}
    rec.update(extra or {})
    return rec


def run_theory(out_path: str | Path, setting: dict[str, Any] | None = None, seed: int = 0, prop1_epochs: int = 300,
               lam_prop1: float = 1.0, mus: Sequence[float] = (0.0, 1.0), lam_big: float = 1000.0,
               command: str = "") -> dict[str, Any]:
    """The stored numbers of the book's Section 3 chapter, all with ``setting`` (default :data:`FIG2_SETTING`,
    the setting of chapter 5's Fig. 2: its ``epochs`` for the lambda = 0 pretraining, its :func:`stage_epochs`
    for each warm-started stage) and ``seed`` (the book passes Fig. 2's typical seed):

    - ``prop1``: CLIP at ``lam_prop1`` from the same initialisation with ``mu * ||theta||`` (norm, not squared,
      all parameters) for each ``mu``, ``prop1_epochs`` in six chunks, the parameter norm after each chunk;
    - ``prop3``: for noisy (0.05) and noise-free samples, the warm-started path lambda = 0 -> 10 -> 1 -> 1e-10
      against a network trained at lambda = 0 from scratch for the same total number of epochs;
    - ``prop4``: lambda = ``lam_big`` warm-started from the noisy lambda = 0 network (one stage): its output
      range and value against the label mean (the barycenter) and the realisable constants (sigmoid: (0, 1)).
    """
    s = _full(FIG2_SETTING if setting is None else setting)
    pre, st = s["epochs"], stage_epochs(s)
    xs = grid()
    t0 = time.perf_counter()
    res: dict[str, Any] = {"setting": s, "seed": seed, "pretrain_epochs": pre, "stage_epochs": st,
                           "prop1_epochs": prop1_epochs, "grid": xs.squeeze(1).tolist()}
    # Proposition 1
    x, y = regression_data(seed=0)
    chunk = max(prop1_epochs // 6, 1)
    prop1 = {}
    for mu in mus:
        model = build_regression_model(s, seed)
        task = NormPenaltyTask(x, y, model, mu, s["data_scale"])
        norms = [param_norm(model).item()]
        for k in range(6):
            train(model, task, setting_config(s, lam_prop1, chunk, seed + k), desc=f"prop1 mu={mu:g}")
            norms.append(param_norm(model).item())
        prop1[str(mu)] = {"mu": mu, "epochs": [chunk * k for k in range(7)], "norm": norms,
                          **_curve_record(model, ScaledRegressionTask(x, y), xs, lam_prop1)}
    res["prop1"] = {"lam": lam_prop1, "runs": prop1}
    # Propositions 3 and 4
    res["prop3"] = {}
    total = pre + len(PAPER_LAMBDAS) * st
    for name, noise in (("noisy", 0.05), ("noise_free", 0.0)):
        x, y = regression_data(noise=noise, seed=0)
        task = ScaledRegressionTask(x, y, s["data_scale"])
        model = build_regression_model(s, seed)
        train(model, task, setting_config(s, 0.0, pre, seed), desc="pretrain")
        pre_state = copy.deepcopy(model.state_dict())
        path = [_curve_record(model, task, xs, 0.0)]
        for lam in PAPER_LAMBDAS:
            train(model, task, setting_config(s, lam, st, seed), desc=f"lambda={lam:g}")
            path.append(_curve_record(model, task, xs, lam))
        scratch = build_regression_model(s, seed)
        train(scratch, task, setting_config(s, 0.0, total, seed), desc="scratch")
        res["prop3"][name] = {"noise": noise, "x": x.squeeze(1).tolist(), "y": y.squeeze(1).tolist(),
                              "label_mean": y.mean().item(), "path": path,
                              "scratch": _curve_record(scratch, task, xs, 0.0, {"epochs": total})}
        if name == "noisy":
            model.load_state_dict(pre_state)
            train(model, task, setting_config(s, lam_big, st, seed), desc=f"lambda={lam_big:g}")
            rec = _curve_record(model, task, xs, lam_big)
            with torch.no_grad():
                rec["value"] = model(xs).mean().item()
            res["prop4"] = {**rec, "label_mean": y.mean().item(), "epochs": st,
                            "realisable": "(0, 1)" if s["output_sigmoid"] else "all reals"}
    res["provenance"] = {**provenance(), "command": command, "wall_s": time.perf_counter() - t0}
    write_json_atomic(out_path, res)
    return res


def main(argv: list[str] | None = None) -> int:
    """``python -m clipbook.repro.theory [--out PATH]``: store the Section 3 numbers (:func:`run_theory`).
    (Fig. 2 and the lambda path: ``python -m clipbook regression``.)"""
    import argparse
    import shlex
    import sys
    p = argparse.ArgumentParser(prog="python -m clipbook.repro.theory")
    p.add_argument("--out", type=Path, default=Path("results") / "regression" / "theory.json")
    p.add_argument("--prop1-epochs", type=int, default=300)
    p.add_argument("--seed", type=int, default=None, help="default: the typical seed of results/regression/fig2_seeds.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = "python -m clipbook.repro.theory " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    seed = args.seed
    if seed is None:
        from ..core.files import read_json
        seed = read_json(Path("results") / "regression" / "fig2_seeds.json")["summary"]["typical_seed"]
    run_theory(args.out, seed=seed, prop1_epochs=args.prop1_epochs, command=command.strip())
    print(f"theory: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
