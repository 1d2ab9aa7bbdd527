"""Accuracy on clean, noisy and attacked inputs, batched, on the model's device, with progress bars."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm import tqdm  # the text bar: it honours TQDM_DISABLE (tqdm.notebook ignores it)

from .attacks import gaussian_noise
from .models import eval_mode

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Outputs of ``model`` on ``x`` in batches, in eval mode; ``[N, ...]``."""
    with eval_mode(model):
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Per-sample correctness ``[N]`` (bool)."""
    return predict(model, x, batch_size).argmax(1) == y


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    """Fraction of ``x`` classified as ``y`` (in [0, 1])."""
    if len(x) == 0:
        raise ValueError("accuracy of an empty set")
    return correct(model, x, y, batch_size).float().mean().item()


def noise_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, std: float = 1.0, seed: int = 0,
                   batch_size: int = 2000, **noise) -> float:
    """Accuracy on :func:`~clipbook.core.attacks.gaussian_noise` images (seeded; ``noise``: its space options)."""
    g = torch.Generator().manual_seed(seed)
    return accuracy(model, gaussian_noise(x, std, g, **noise), y, batch_size)


@torch.no_grad()
def noise_response(model: nn.Module, x: torch.Tensor, std: float = 1.0, seed: int = 0, batch_size: int = 2000,
                   **noise) -> dict[str, float]:
    """How a classifier answers Gaussian noise (:func:`~clipbook.core.attacks.gaussian_noise`, seeded; ``noise``:
    its space options), beyond its accuracy: ``top_class_share``, the fraction [0, 1] of noisy images given the
    most frequent class (1: every noisy image gets one class); ``top_class``, that class; and the mean logit
    range (largest minus smallest logit per image) on the clean and on the noisy images (0: a constant output).
    ``x``: ``[N, ...]`` images in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    clean, noisy = predict(model, x, batch_size), predict(model, gaussian_noise(x, std, g, **noise), batch_size)
    counts = torch.bincount(noisy.argmax(1), minlength=noisy.shape[1])
    spread = lambda z: (z.max(1).values - z.min(1).values).mean().item()
    return {"top_class_share": counts.max().item() / len(x), "top_class": int(counts.argmax()),
            "logit_range_clean": spread(clean), "logit_range_noisy": spread(noisy)}


def robust_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, batch_size: int = 1000,
                desc: str | None = None, active: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample ``[N]`` (bool): still classified correctly after ``attack(model, x, y)``, in batches.
    With ``active`` ``[N]`` only those samples are attacked (the attack's own ``active`` argument) and the
    others count as broken (False): the cascade of :func:`clipbook.repro.suite.robustness`."""
    out = []
    for i in tqdm(range(0, len(x), batch_size), desc=desc or getattr(attack, "name", "attack"), unit="batch", leave=False):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        if active is None:
            out.append(correct(model, attack(model, xb, yb), yb))
            continue
        ab = active[i:i + batch_size]
        out.append(correct(model, attack(model, xb, yb, active=ab), yb) & ab if ab.any() else ab.clone())
    return torch.cat(out)


def attack_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack, batch_size: int = 1000) -> float:
    """Accuracy [0, 1] under ``attack`` (the exact ratio of counts)."""
    return robust_mask(model, x, y, attack, batch_size).sum().item() / len(x)


class ValidationAttack:
    """Callback for :func:`clipbook.core.training.train`: validation accuracy, clean (``val_clean``) and under
    ``attack`` (``val_pgd``), in percent, after every epoch. With :class:`clipbook.core.training.KeepBest`
    (``key="val_pgd"``) it selects the checkpoint."""

    def __init__(self, x_val: torch.Tensor, y_val: torch.Tensor, attack: Attack):
        self.x_val, self.y_val, self.attack = x_val, y_val, attack

    def on_epoch_end(self, model: nn.Module, record: dict[str, float]) -> None:
        record["val_clean"] = 100 * accuracy(model, self.x_val, self.y_val)
        record["val_pgd"] = 100 * correct(model, self.attack(model, self.x_val, self.y_val), self.y_val).float().mean().item()
