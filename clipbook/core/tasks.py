"""What a model is trained on: the loss, how to count correct answers, and where Lipschitz pairs come from."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .data import ClassificationSplit, noisy_pairs


class ClassificationTask:
    """Cross-entropy on images; Lipschitz pairs from the held-out images and their noisy copies."""
    is_classification = True

    def __init__(self, split: ClassificationSplit):
        self.split = split
        self.x_train, self.y_train = split.x_train, split.y_train

    @classmethod
    def from_tensors(cls, x_train: torch.Tensor, y_train: torch.Tensor, x_lip: torch.Tensor) -> "ClassificationTask":
        """A task from training inputs ``[N, ...]``, labels ``[N]`` and held-out inputs for X_Lip ``[M, ...]``
        (no validation or test set: :func:`clipbook.core.training.train` uses none)."""
        none_x, none_y = x_train[:0], y_train[:0]
        return cls(ClassificationSplit(x_train, y_train, x_lip, none_x, none_y, none_x, none_y))

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y)

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out.argmax(1) == y).float()

    def pairs(self, n: int, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` pairs: held-out images drawn with replacement, each with a noisy copy (``[n, ...]`` twice)."""
        idx = torch.randint(len(self.split.x_lip), (n,), generator=g)
        return noisy_pairs(self.split.x_lip[idx.to(self.split.x_lip.device)], noise, g)

    def pair_pool(self, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole Lipschitz set of the paper: every held-out image with a noisy copy, in a seeded order."""
        order = torch.randperm(len(self.split.x_lip), generator=g).to(self.split.x_lip.device)
        return noisy_pairs(self.split.x_lip[order], noise, g)


class RegressionTask:
    """Mean squared error on ``(x, y)`` ``[n, 1]``; Lipschitz pairs ``x ~ U(domain)``, ``x' = x + noise``,
    drawn afresh every epoch (Sec. 4.1)."""
    is_classification = False

    def __init__(self, x: torch.Tensor, y: torch.Tensor, domain: tuple[float, float] = (-4.0, 4.0)):
        self.x_train, self.y_train, self.domain = x, y, domain

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y)

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> None:
        return None

    def pairs(self, n: int, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.domain
        x = (a + (b - a) * torch.rand((n, 1), generator=g)).to(self.x_train.device)
        return noisy_pairs(x, noise, g)

    def pair_pool(self, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise ValueError("regression draws its pairs afresh every epoch: use pair_refresh='epoch'")
