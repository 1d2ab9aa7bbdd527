"""One run end to end: train with checkpoint selection, evaluate with the suite, store the result.

A run's files: ``<results>/<name>.json`` (a :class:`~clipbook.repro.schema.RunResult`), ``<name>.artifacts.pt``
(figure tensors), ``checkpoints/<name>.pt`` (the selected weights) and ``checkpoints/<name>.final.pt``
(the weights after the last epoch, evaluated too); resumable state in the cache
(:mod:`clipbook.repro.storage`). Finished runs are skipped unless their configuration or budget changed.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from . import protocol
from . import suite
from ..core.attacks import L2PGD, PaperPGD
from ..core.bounds import layerwise_upper_bound
from ..core.data import load_images, split_lipschitz
from ..core.device import resolve_device
from ..core.evaluation import ValidationAttack
from .experiments import MODEL_FOR, EvalBudget, RunSpec
from ..core.files import read_json, save_torch_atomic, write_json_atomic
from .provenance import provenance
from ..core.models import apply_spectral_norm, build_model
from .schema import RunResult, check_result
from .storage import artifacts_path, checkpoint_path, final_checkpoint_path, result_path, state_path
from ..core.tasks import ClassificationTask
from ..core.training import KeepBest, TrainConfig, train


def build_run_model(dataset: str, method: str, seed: int | None = None, sn_scale: float = 1.0) -> torch.nn.Module:
    """The network of ``dataset``, spectrally normalised for the ``spectral_norm`` method."""
    model = build_model(MODEL_FOR[dataset], seed=seed)
    return apply_spectral_norm(model, sn_scale) if method == "spectral_norm" else model


def load_split(dataset: str, device: torch.device | str = "cpu"):
    """The dataset's three disjoint training parts and the test set, on ``device``."""
    return split_lipschitz(load_images(dataset), seed=0).to(device)


def load_checkpoint(result: RunResult, results_dir: str | Path, device: torch.device | str = "cpu",
                    which: str = "selected") -> torch.nn.Module:
    """The ``which`` model of a stored result, in eval mode: ``"selected"`` (the checkpoint chosen by validation
    PGD) or ``"final"`` (after the last epoch). Raises FileNotFoundError naming the file and the fix."""
    if which not in ("selected", "final"):
        raise ValueError(f"which={which!r}: choose 'selected' or 'final'")
    p = (checkpoint_path if which == "selected" else final_checkpoint_path)(results_dir, result["name"])
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint {p} for {result['name']}: re-run it with "
                                f"`python -m clipbook train ... --results {results_dir} --force`")
    model = build_run_model(result["dataset"], result["method"])
    model.load_state_dict(torch.load(p, map_location="cpu"))
    return model.to(device).eval()


def is_done(spec: RunSpec, results_dir: str | Path) -> bool:
    """True when a stored result for ``spec`` exists with the same config and evaluation budget, in the
    current layout (with the final network). Raises ``ValueError`` when the name holds another
    configuration (a changed default): :func:`run` replaces it only with ``force``."""
    p = result_path(results_dir, spec.name)
    if not p.exists():
        return False
    r = read_json(p)
    try:
        same = TrainConfig.from_dict(r.get("config", {})) == spec.config()
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(f"{p} holds another configuration under the name {spec.name}; pass --force to replace it")
    try:  # budget fields added later take their defaults
        return EvalBudget(**r.get("budget", {})) == spec.budget and "final" in r
    except TypeError:
        return False


def selection_callbacks(split) -> list:
    """Checkpoint selection of every run: eq. (13) PGD with 10 steps on the validation set, best epoch kept."""
    return [ValidationAttack(split.x_val, split.y_val, PaperPGD(steps=protocol.SELECTION_STEPS)), KeepBest("val_pgd")]


def training_attack(cfg: TrainConfig):
    """The attack adversarial training trains on: standard L2 PGD at ``adv_eps`` with ``adv_steps`` steps,
    one random start."""
    return L2PGD(eps=cfg.adv_eps, steps=cfg.adv_steps, restarts=1, seed=cfg.seed) if cfg.method == "adversarial" else None


def run(spec: RunSpec, results_dir: str | Path, force: bool = False, command: str | None = None,
        device: str = "auto") -> RunResult:
    """Train, select and evaluate one configuration; store and return its result (skips finished work).

    Interrupted training resumes from the cache's per-epoch state."""
    results_dir = Path(results_dir)
    if not force and is_done(spec, results_dir):  # raises if the name holds another configuration
        return check_result(read_json(result_path(results_dir, spec.name)))
    dev = resolve_device(device)
    cfg = spec.config()
    prov = provenance(dev)
    split = load_split(spec.dataset, dev)
    model = build_run_model(spec.dataset, spec.method, spec.seed, cfg.sn_scale).to(dev)
    state = state_path(results_dir, spec.name)
    if force:
        state.unlink(missing_ok=True)
    t0 = time.perf_counter()
    res = train(model, ClassificationTask(split), cfg, selection_callbacks(split), state_path=state, desc=spec.name,
                attack=training_attack(cfg))
    train_time = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = network_metrics(model, split, spec, cfg)
    metrics.update(lam=res.lam, mu=res.mu, sn_scale=res.final_value if spec.method == "spectral_norm" else None,
                   best_epoch=res.best_epoch)
    eval_time = time.perf_counter() - t1
    result: dict[str, Any] = {
        "name": spec.name, "row": spec.row, "dataset": spec.dataset, "method": spec.method,
        "target": spec.target, "seed": spec.seed, "config": cfg.to_dict(), "budget": spec.budget_dict(),
        "metrics": metrics, "history": res.history,
        "provenance": {**prov, "clipbook": __version__, "command": command or " ".join(sys.argv),
                       "train_wall_s": train_time, "eval_wall_s": eval_time, "resumed_from_epoch": res.resumed_from,
                       "epoch_time_median_s": sorted(h["time_s"] for h in res.history)[len(res.history) // 2]},
    }
    save_torch_atomic(checkpoint_path(results_dir, spec.name), {k: v.cpu() for k, v in model.state_dict().items()})
    add_evaluation(result, model, split, results_dir, write=False)
    final_model = build_run_model(spec.dataset, spec.method, sn_scale=cfg.sn_scale).to(dev)
    final_model.load_state_dict(res.final_state)
    result["final"] = final_evaluation(result, final_model.eval(), split, spec, cfg)
    save_torch_atomic(final_checkpoint_path(results_dir, spec.name), {k: v.cpu() for k, v in res.final_state.items()})
    write_json_atomic(result_path(results_dir, spec.name), result)
    state.unlink(missing_ok=True)
    return check_result(result)


def network_metrics(model: torch.nn.Module, split, spec: RunSpec, cfg: TrainConfig) -> dict[str, Any]:
    """Table 1's columns (:func:`clipbook.repro.suite.table1_metrics`), the pair-search Lipschitz estimate and the
    product bound (4) of one trained network."""
    m: dict[str, Any] = suite.table1_metrics(model, split, spec.dataset, spec.budget, spec.seed)
    m.update(lip_estimate=suite.lipschitz_estimate(model, split, spec.seed, cfg.lip_noise, spec.budget.lip_pairs,
                                                   spec.budget.lip_steps),
             upper_bound=layerwise_upper_bound(model))
    return m


def final_evaluation(result: dict[str, Any], final_model: torch.nn.Module, split, spec: RunSpec,
                     cfg: TrainConfig) -> dict[str, Any]:
    """The network after the last epoch, evaluated like the selected one (Table 1's columns, the strong-attack
    worst case by the cascade; the attacks' independent runs only for the selected network, where they cost
    most of the evaluation); its lambda / mu are those of the last epoch. When the last epoch is the selected one the
    selected network's numbers are reused (``same_as_selected``)."""
    last = result["history"][-1]
    if result["metrics"]["best_epoch"] == cfg.epochs:
        return {"epoch": cfg.epochs, "same_as_selected": True, "metrics": dict(result["metrics"]),
                "robust": result["robust"], "wall_s": 0.0}
    t0 = time.perf_counter()
    m = network_metrics(final_model, split, spec, cfg)
    m.update(lam=last["lam"], mu=last["mu"], sn_scale=last.get("sn_scale"), best_epoch=cfg.epochs)
    # the worst case by the cascade only: the per-attack ladder (each attack alone) is the selected network's
    robust = suite.robustness(final_model, split, min(spec.budget.strong, len(split.x_test)), spec.seed,
                              steps=spec.budget.attack_steps, per_attack=0)
    return {"epoch": cfg.epochs, "same_as_selected": False, "metrics": m, "robust": robust,
            "wall_s": time.perf_counter() - t0}


def add_evaluation(result: dict[str, Any], model: torch.nn.Module, split, results_dir: str | Path,
                   write: bool = True) -> dict[str, Any]:
    """The strong attacks with the worst case, robustness curves, bounds, certificates and figure tensors of
    a result's selected network, stored in its JSON (``write``) and beside it (atomically)."""
    t0 = time.perf_counter()
    budget = EvalBudget(**result["budget"])
    seed = result["seed"]
    result["robust"] = suite.robustness(model, split, min(budget.strong, len(split.x_test)), seed,
                                        steps=budget.attack_steps, per_attack=budget.per_attack)
    result["curves"] = suite.robustness_curves(model, split, budget, seed)
    bounds = suite.lipschitz_bounds(model, split, budget, seed)
    result["beyond"] = {"bounds": bounds, **suite.certificates(model, split, bounds["upper"])}
    if budget.artifacts:
        save_torch_atomic(artifacts_path(results_dir, result["name"]), suite.artifacts(model, split, seed))
    result["provenance"]["evaluation_wall_s"] = time.perf_counter() - t0
    if write:
        write_json_atomic(result_path(results_dir, result["name"]), result)
    return result


def refresh_evaluation(results_dir: str | Path, force: bool = False, device: str = "auto") -> list[str]:
    """Recompute the evaluation of stored results from their checkpoints (those that lack it, or all)."""
    from .storage import load_results
    done, splits = [], {}
    dev = resolve_device(device)
    for r in load_results(results_dir):
        if "robust" in r and "beyond" in r and not force:
            continue
        model = load_checkpoint(r, results_dir, dev)
        if r["dataset"] not in splits:
            splits[r["dataset"]] = load_split(r["dataset"], dev)
        add_evaluation(r, model, splits[r["dataset"]], results_dir)
        done.append(r["name"])
    return done
