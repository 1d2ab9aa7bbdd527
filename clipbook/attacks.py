"""Perturbations: Gaussian noise and L2 PGD (the paper's eq. (13) and the standard variant).

Images are ``[N, C, H, W]`` tensors in ``[0, 1]``; every attack returns images in ``[0, 1]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PGD_VARIANTS = ("sign", "normalized")


def gaussian_noise(x: torch.Tensor, std: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """``clip(x + std * N(0, 1), 0, 1)``: the paper's noise test uses zero mean and unit variance (std 1)."""
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    return (x + std * torch.randn(x.shape, generator=generator, dtype=x.dtype)).clamp_(0.0, 1.0)


def _norms(d: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(d.flatten(1), dim=1).view(-1, *([1] * (d.ndim - 1)))


def project(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Make ``x + delta`` feasible: clip it to the box [0, 1], then scale ``delta`` into the L2 ball of
    radius ``eps``. Scaling towards ``x`` (which is in the box) keeps the point in the box, so the result
    lies in both sets. Returns the new ``delta``."""
    delta = (x + delta).clamp(0.0, 1.0) - x
    return delta * torch.clamp(eps / _norms(delta).clamp_min(1e-12), max=1.0)


def _random_start(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    d = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    d = d / _norms(d).clamp_min(1e-12)
    dim = x[0].numel()
    r = torch.rand((len(x),) + (1,) * (x.ndim - 1), generator=generator, dtype=x.dtype) ** (1.0 / dim)
    return project(x, d * r * eps, eps)


def _pgd_once(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
              variant: str, random_start: bool, generator: torch.Generator | None,
              early_stop: bool = True) -> torch.Tensor:
    delta = _random_start(x, eps, generator) if random_start else torch.zeros_like(x)
    active = torch.ones(len(x), dtype=torch.bool)  # samples still classified correctly
    for _ in range(steps):
        idx = active.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        xa, da = x[idx], delta[idx].clone().requires_grad_(True)
        logits = model(xa + da)
        fooled = logits.argmax(1) != y[idx]
        if not early_stop:
            fooled = torch.zeros_like(fooled)
        loss = F.cross_entropy(logits, y[idx], reduction="sum")
        (g,) = torch.autograd.grad(loss, da)
        with torch.no_grad():
            step = alpha * (g.sign() if variant == "sign" else g / _norms(g).clamp_min(1e-12))
            # samples already fooled at the current iterate are frozen there (never un-fooled)
            step[fooled] = 0.0
            delta[idx] = project(xa, da.detach() + step, eps)
            active[idx[fooled]] = False
    return (x + delta).clamp(0.0, 1.0).detach()


def pgd_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 2.0, alpha: float = 0.25,
           steps: int = 100, variant: str = "sign", random_start: bool = False, restarts: int = 1,
           generator: torch.Generator | None = None, early_stop: bool = True) -> torch.Tensor:
    """L2 projected gradient attack on cross-entropy; returns ``x_adv`` with ``||x_adv - x|| <= eps`` in [0, 1].

    ``variant="sign"`` is the paper's eq. (13): ``x <- P(x + alpha * sign(grad))`` from ``x`` itself
    (alpha = 0.25, 100 steps, eps = 2). ``variant="normalized"`` is the standard L2 PGD step
    ``alpha * grad / ||grad||``; with ``random_start=True`` each restart begins uniformly in the ball.
    ``P`` clips to [0, 1] and rescales into the ball (see :func:`project`). A sample is frozen at the first
    iterate that is misclassified, so the attack's success never decreases with more steps; over
    ``restarts`` the first successful restart per sample is kept (``early_stop=False`` attacks every sample
    for all steps: for throughput benchmarks). Shapes: ``x`` ``[N, ...]``, ``y`` ``[N]``.
    """
    if variant not in PGD_VARIANTS:
        raise ValueError(f"unknown PGD variant {variant!r}; choose one of {PGD_VARIANTS}")
    if eps < 0 or alpha <= 0 or steps < 0 or restarts < 1:
        raise ValueError(f"need eps >= 0, alpha > 0, steps >= 0, restarts >= 1; got {eps}, {alpha}, {steps}, {restarts}")
    was_training = model.training
    model.eval()
    try:
        best = x.clone()
        remaining = torch.ones(len(x), dtype=torch.bool)
        for _ in range(restarts):
            idx = remaining.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            adv = _pgd_once(model, x[idx], y[idx], eps, alpha, steps, variant, random_start, generator, early_stop)
            with torch.no_grad():
                fooled = model(adv).argmax(1) != y[idx]
            take = idx[fooled] if restarts > 1 else idx
            best[take] = adv[fooled] if restarts > 1 else adv
            remaining[idx[fooled]] = False
        return best
    finally:
        model.train(was_training)


def sign_gradient_alignment(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cosine between the loss gradient ``g`` and ``sign(g)`` per sample, ``||g||_1 / (sqrt(d) ||g||_2)``:
    how well the paper's sign step points uphill in the L2 geometry (1 = perfectly). ``[N]``."""
    xr = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    g = g.flatten(1)
    return g.abs().sum(1) / (g.shape[1] ** 0.5 * torch.linalg.vector_norm(g, dim=1).clamp_min(1e-30))
