"""Accuracy on clean, noisy and adversarial inputs, batched, with progress bars."""
from __future__ import annotations

import torch
from torch import nn

from .attacks import gaussian_noise, pgd_l2
from .progress import progress


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Outputs of ``model`` on ``x`` in batches, in eval mode; ``[N, ...]``."""
    was = model.training
    model.eval()
    try:
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    """Fraction of ``x`` classified as ``y`` (in [0, 1])."""
    if len(x) == 0:
        raise ValueError("accuracy of an empty set")
    return (predict(model, x, batch_size).argmax(1) == y).float().mean().item()


def noise_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, std: float = 1.0, seed: int = 0,
                   batch_size: int = 2000) -> float:
    """Accuracy on ``clip(x + std * N(0, 1), 0, 1)`` with seeded noise."""
    g = torch.Generator().manual_seed(seed)
    return accuracy(model, gaussian_noise(x, std, g), y, batch_size)


def pgd_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 2.0, alpha: float = 0.25,
                 steps: int = 100, batch_size: int = 1000, desc: str = "PGD", seed: int = 0,
                 **pgd_kwargs) -> float:
    """Accuracy under :func:`clipbook.attacks.pgd_l2` (arguments as there), attacked in batches."""
    g = torch.Generator().manual_seed(seed)
    correct = 0
    for i in progress(range(0, len(x), batch_size), desc=desc, unit="batch"):
        adv = pgd_l2(model, x[i:i + batch_size], y[i:i + batch_size], eps, alpha, steps, generator=g, **pgd_kwargs)
        correct += (predict(model, adv).argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise_std: float = 1.0, eps: float = 2.0,
             alpha: float = 0.25, steps: int = 100, seed: int = 0) -> dict[str, float]:
    """Table 1's columns on ``(x, y)``: clean, Gaussian-noise and PGD accuracy, in percent."""
    return {
        "clean": 100 * accuracy(model, x, y),
        "noise": 100 * noise_accuracy(model, x, y, noise_std, seed),
        "pgd": 100 * pgd_accuracy(model, x, y, eps, alpha, steps, seed=seed),
    }
