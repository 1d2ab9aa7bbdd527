"""Perturbations: Gaussian noise and L2 PGD (the paper's eq. (13) and the standard variant).

Images are ``[N, C, H, W]`` tensors in ``[0, 1]``; every attack returns images in ``[0, 1]``. An *attack* is
any callable ``attack(model, x, y, active=None) -> x_adv`` with a ``name`` (``active`` ``[N]``, bool: attack
only those samples, return the others unchanged): :class:`PaperPGD`, :class:`L2PGD`, and the
APGD attacks of :mod:`clipbook.core.apgd`. The random draws of this module (the noise, :class:`L2PGD`'s random
starts) come from CPU generators and move to ``x``'s device, so a seed gives the same perturbation on every
device; APGD draws on ``x``'s device instead (a seed gives other numbers on a GPU than on the CPU). The L2
geometry (norms, the ball, random points in it) is :mod:`clipbook.core.l2`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .l2 import flat_norms, gaussian, per_sample, shrink_into_ball, uniform_in_ball
from .models import eval_mode


#: eq. (13): L2 radius (in [0, 1] pixel units), sign-step size and number of steps of the paper's attack
EQ13_EPS, EQ13_ALPHA, EQ13_STEPS = 2.0, 0.25, 100
PGD_VARIANTS = ("sign", "normalized")
NOISE_SPACES = ("pixel", "normalised")


def gaussian_noise(x: torch.Tensor, std: float = 1.0, generator: torch.Generator | None = None,
                   space: str = "pixel", data_std: float = 1.0, clip: bool = True) -> torch.Tensor:
    """``x + std * N(0, 1)`` with the noise in ``space``: ``"pixel"`` adds it to the [0, 1] images;
    ``"normalised"`` adds it to ``(x - mean) / data_std``, i.e. ``std * data_std`` in pixels. ``clip`` clips
    the result to [0, 1]. The paper's noise test: zero mean, unit variance (std 1)."""
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    if space not in NOISE_SPACES:
        raise ValueError(f"unknown noise space {space!r}; choose one of {NOISE_SPACES}")
    scale = std if space == "pixel" else std * data_std
    noisy = x + scale * gaussian(x, generator)
    return noisy.clamp_(0.0, 1.0) if clip else noisy


def project(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Make ``x + delta`` feasible: clip it to the box [0, 1], then scale ``delta`` into the L2 ball of
    radius ``eps``. Scaling towards ``x`` (which is in the box) keeps the point in the box, so the result
    lies in both sets (not the nearest such point in general: that is :func:`clipbook.core.apgd.project_l2_box`).
    Shapes ``[N, ...]``; returns the new ``delta``."""
    d = (x + delta).clamp_(0.0, 1.0).sub_(x)  # in place on a fresh tensor: the same arithmetic, fewer buffers
    return shrink_into_ball(d, eps, inplace=True)


def _random_start(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """A start ``delta`` ``[N, ...]``: uniform in the ball of radius ``eps`` (drawn on ``generator``'s device), made
    feasible by :func:`project`."""
    return project(x, uniform_in_ball(x, eps, generator), eps)


def pgd_step(x: torch.Tensor, delta: torch.Tensor, grad: torch.Tensor, eps: float, alpha: float,
             variant: str = "sign") -> torch.Tensor:
    """One step of eq. (13): ``delta <- P(delta + alpha * sign(grad))`` (``variant="sign"``), or the standard
    L2 step ``alpha * grad / ||grad||`` (``"normalized"``); ``P`` is :func:`project`. Returns the new delta."""
    step = grad.sign() if variant == "sign" else grad / per_sample(flat_norms(grad).clamp_min(1e-12), grad)
    return project(x, step.mul_(alpha).add_(delta), eps)  # alpha * step + delta, without extra buffers


def _pgd_once(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
              variant: str, random_start: bool, generator: torch.Generator | None,
              early_stop: bool, active: torch.Tensor) -> torch.Tensor:
    """One PGD run on the samples where ``active`` ``[N]`` holds; returns ``x + delta`` ``[N, ...]``, valid in
    the active rows only. The random start is drawn for all ``N`` samples, so a sample's draws never depend
    on which others are attacked. The attacked samples are kept in a compact working set, shrunk only when
    some are fooled (they are frozen at that iterate), so a step costs one forward and backward pass of the
    samples still standing and no gathering or scattering."""
    delta = _random_start(x, eps, generator) if random_start else torch.zeros_like(x)
    ids = active.nonzero().squeeze(1)
    xa, ya, da = x[ids], y[ids], delta[ids]
    for _ in range(steps):
        if len(ids) == 0:
            break
        da.requires_grad_(True)
        logits = model(xa + da)
        loss = F.cross_entropy(logits, ya, reduction="sum")
        (g,) = torch.autograd.grad(loss, da)
        da = da.detach()
        with torch.no_grad():
            new = pgd_step(xa, da, g, eps, alpha, variant)
            if early_stop:
                fooled = logits.argmax(1) != ya
                if fooled.any():  # frozen at the current iterate (never un-fooled)
                    delta[ids[fooled]] = project(xa[fooled], da[fooled], eps)
                    keep = ~fooled
                    ids, xa, ya, new = ids[keep], xa[keep], ya[keep], new[keep]
            da = new
    delta[ids] = da
    return (x + delta).clamp(0.0, 1.0).detach()


def pgd_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = EQ13_EPS,
           alpha: float = EQ13_ALPHA, steps: int = EQ13_STEPS, variant: str = "sign",
           random_start: bool = False, restarts: int = 1, generator: torch.Generator | None = None,
           early_stop: bool = True, active: torch.Tensor | None = None) -> torch.Tensor:
    """L2 projected gradient attack on cross-entropy; returns ``x_adv`` with ``||x_adv - x|| <= eps`` in [0, 1].

    ``variant="sign"`` is the paper's eq. (13): ``x <- P(x + alpha * sign(grad))`` from ``x`` itself
    (alpha = 0.25, 100 steps, eps = 2). ``variant="normalized"`` is the standard L2 PGD step
    ``alpha * grad / ||grad||``; with ``random_start=True`` each restart begins uniformly in the ball.
    A sample is frozen at the first iterate that is misclassified, so the attack's success never decreases
    with more steps; over ``restarts`` the first successful restart per sample is kept, and a sample no restart
    fools comes back as ``x`` itself (with one restart: as that restart's last iterate) (``early_stop=False``
    attacks every sample for all steps: for throughput benchmarks). ``active`` ``[N]`` (bool) attacks only
    those samples and returns the others unchanged; every restart draws its random start for all ``N``
    samples, so a sample's result does not depend on which others are attacked (the cascade of
    :func:`clipbook.repro.suite.robustness` relies on it). Shapes: ``x`` ``[N, ...]``, ``y`` ``[N]``.
    """
    if variant not in PGD_VARIANTS:
        raise ValueError(f"unknown PGD variant {variant!r}; choose one of {PGD_VARIANTS}")
    if eps < 0 or alpha <= 0 or steps < 0 or restarts < 1:
        raise ValueError(f"need eps >= 0, alpha > 0, steps >= 0, restarts >= 1; got {eps}, {alpha}, {steps}, {restarts}")
    with eval_mode(model):
        best = x.clone()
        remaining = torch.ones(len(x), dtype=torch.bool, device=x.device) if active is None else active.to(x.device, copy=True)
        for _ in range(restarts):
            idx = remaining.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            adv = _pgd_once(model, x, y, eps, alpha, steps, variant, random_start, generator, early_stop,
                            remaining)[idx]
            if restarts == 1:  # nothing to choose between: no verification pass
                best[idx] = adv
                break
            with torch.no_grad():
                fooled = model(adv).argmax(1) != y[idx]
            best[idx[fooled]] = adv[fooled]
            remaining[idx[fooled]] = False
        return best


@dataclass(frozen=True)
class PaperPGD:
    """The paper's attack, eq. (13): sign steps of size ``alpha`` from the image itself, L2 ball ``eps``."""
    eps: float = EQ13_EPS
    alpha: float = EQ13_ALPHA
    steps: int = EQ13_STEPS

    @property
    def name(self) -> str:
        return "pgd-sign"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 active: torch.Tensor | None = None) -> torch.Tensor:
        return pgd_l2(model, x, y, self.eps, self.alpha, self.steps, variant="sign", active=active)


@dataclass(frozen=True)
class L2PGD:
    """Standard L2 PGD (Madry et al.): normalised gradient steps of ``2.5 * eps / steps``, a random start in
    the ball and ``restarts`` restarts; the draws come from a generator seeded with ``seed`` at each call."""
    eps: float = EQ13_EPS
    steps: int = EQ13_STEPS
    restarts: int = 3
    seed: int = 0

    @property
    def name(self) -> str:
        return "pgd-l2"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 active: torch.Tensor | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        return pgd_l2(model, x, y, self.eps, 2.5 * self.eps / max(self.steps, 1), self.steps, variant="normalized",
                      random_start=True, restarts=self.restarts, generator=g, active=active)


def sign_gradient_alignment(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cosine between the loss gradient ``g`` and ``sign(g)`` per sample, ``||g||_1 / (sqrt(d) ||g||_2)``:
    how well the paper's sign step points uphill in the L2 geometry (1 = perfectly). ``[N]``."""
    xr = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    g = g.flatten(1)
    return g.abs().sum(1) / (g.shape[1] ** 0.5 * torch.linalg.vector_norm(g, dim=1).clamp_min(1e-30))
