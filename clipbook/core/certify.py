"""Certified robustness from a global Lipschitz bound (Tsuzuku et al., 2018).

If the logit map is ``L``-Lipschitz in the Euclidean norm, a prediction with margin ``m`` (top logit minus the
runner-up) cannot change within the radius ``m / (sqrt(2) L)``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .evaluation import predict


def margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logit margin of the true class: ``f_y(x) - max_{k != y} f_k(x)``; negative when misclassified. ``[N]``."""
    logits = predict(model, x)
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    other = logits.scatter(1, y.view(-1, 1), -math.inf).max(1).values
    return true - other


def certified_radii(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lipschitz_bound: float) -> torch.Tensor:
    """Radius ``m / (sqrt(2) L)`` within which each correct prediction provably stays; 0 when misclassified."""
    if not lipschitz_bound > 0:
        raise ValueError(f"lipschitz_bound must be > 0, got {lipschitz_bound}")
    return (margins(model, x, y) / (math.sqrt(2) * lipschitz_bound)).clamp_min(0.0)


def certified_accuracy(radii: torch.Tensor, eps: Sequence[float]) -> list[float]:
    """Fraction [%] of samples certified at each radius in ``eps`` (radius > eps; correct at eps = 0)."""
    return [100 * ((radii > e) if e > 0 else (radii > 0)).float().mean().item() for e in eps]
