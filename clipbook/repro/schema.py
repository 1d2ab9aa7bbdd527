"""The stored result of one run: its JSON layout, typed once here and checked when read.

Written by :mod:`clipbook.repro.runner`, read by :mod:`clipbook.repro.reporting`, the plots, the notebooks and the tests.
Accuracies are percentages; radii are L2 norms in [0, 1] pixel units.
"""
from __future__ import annotations

from typing import Any, TypedDict


class Metrics(TypedDict):
    """Table 1's columns and the run's Lipschitz numbers."""
    train: float                     # clean accuracy on the training images
    test: float                      # clean accuracy on the test images (all 10,000)
    noise: float                     # Gaussian noise, sigma = 1 in pixel space, clipped to [0, 1]
    noise_normalised: float          # sigma = 1 in the normalised space (sigma * std in pixels), unclipped
    noise_normalised_clipped: float  # the same, clipped to [0, 1]
    pgd: float                       # eq. (13) PGD, eps = 2, alpha = 0.25, 100 steps
    lam: float                       # final lambda (CLIP, Jacobian penalty), else 0
    mu: float                        # final mu (weight regularisation), else 0
    sn_scale: float | None           # final per-layer scale (spectral normalisation), else None
    lip_estimate: float              # largest quotient found by pair search (1,000 pairs x 50 steps)
    upper_bound: float               # product bound (4)
    best_epoch: int                  # the epoch selected by validation PGD


class Robustness(TypedDict, total=False):
    """Accuracy under each attack and under the worst case per image, at each radius in ``eps``."""
    n: int                            # test images attacked (the first n)
    eps: list[float]
    attacks: dict[str, list[float]]   # attack name -> accuracy at each eps
    worst: list[float]                # correct only if every attack failed, at each eps (the cascade)
    cascade: list[list[dict[str, Any]]]  # per eps: each stage's images attacked, accuracy after it, wall time
    attacks_n: int                    # the per-attack accuracies are on the first attacks_n images
    attacks_wall_s: dict[str, list[float]]  # wall time of each independent attack, at each eps
    worst_independent: list[float]    # conjunction of the independent attacks on the first attacks_n images
    worst_cascade_subset: list[float]  # the cascade's worst case on the same images (equal by construction)


class RunResult(TypedDict, total=False):
    """One run. ``curves``, ``beyond`` and ``robust`` come from the evaluation after training."""
    name: str
    row: str
    dataset: str
    method: str
    target: float | None
    seed: int
    config: dict[str, Any]
    budget: dict[str, Any]
    metrics: Metrics
    robust: Robustness
    history: list[dict[str, float]]
    provenance: dict[str, Any]
    curves: dict[str, Any]
    beyond: dict[str, Any]


REQUIRED = ("name", "row", "dataset", "method", "target", "seed", "config", "budget", "metrics", "history", "provenance")


def check_result(d: dict[str, Any], source: str = "result") -> RunResult:
    """``d`` as a :class:`RunResult`, or ``ValueError`` naming what is missing (e.g. a result file written
    by an older clipbook: re-run it)."""
    missing = [k for k in REQUIRED if k not in d] + [f"metrics.{k}" for k in Metrics.__annotations__
                                                      if k not in d.get("metrics", {})]
    if missing:
        raise ValueError(f"{source}: not a clipbook result of this version (missing {', '.join(missing)}); re-run it")
    return d  # type: ignore[return-value]


READINGS = ("selected", "final")


def reg_parameter(r: RunResult) -> float:
    """The method's regularisation parameter of the network ``r["metrics"]`` describes, i.e. at the epoch
    ``metrics.best_epoch`` (the selected one; the last for :func:`reading` ``"final"``): lambda (CLIP,
    Jacobian), mu (weight regularisation), the per-layer scale (spectral normalisation), 0 otherwise. Read
    from the per-epoch history, so the parameter and the accuracies always belong to the same network."""
    key = {"clip": "lam", "jacobian": "lam", "weight_reg": "mu", "spectral_norm": "sn_scale"}.get(r["method"])
    if key is None:
        return 0.0
    return r["history"][r["metrics"]["best_epoch"] - 1].get(key) or 0.0


def reading(r: RunResult, which: str = "selected") -> RunResult | None:
    """One network of a run: ``"selected"`` (the checkpoint chosen by validation PGD: ``r`` itself) or
    ``"final"`` (after the last epoch: its metrics and worst case in place of the selected ones; None for a
    result stored before final networks were kept). The final network's ``robust`` holds the cascade's worst
    case; its per-attack ``attacks`` are empty unless it is the selected network (``same_as_selected``)."""
    if which not in READINGS:
        raise ValueError(f"unknown reading {which!r}; choose one of {READINGS}")
    if which == "selected":
        return r
    final = r.get("final")
    if final is None:
        return None
    return {**r, "metrics": final["metrics"], "robust": final["robust"]}  # type: ignore[return-value]
