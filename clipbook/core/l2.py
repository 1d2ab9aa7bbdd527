"""Euclidean (L2) geometry of a batch: per-sample norms, the projection onto the L2 ball, random points in it.

A batch is a tensor ``[N, ...]`` (images ``[N, C, H, W]`` or vectors ``[N, D]``); a sample's norm is taken over
all its entries, in the tensor's own units (for images: [0, 1] pixel values). One place for what the attacks
(:mod:`.attacks`, :mod:`.apgd`), the Lipschitz estimates (:mod:`.lipschitz`) and the radii (:mod:`.radii`) share.

Random draws come from the generator given, on that generator's device (a CPU generator draws on the CPU; see
:func:`gaussian`), and are moved to the batch's device.
"""
from __future__ import annotations

import torch


def flat_norms(d: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms ``||d_i||_2`` of ``d`` ``[N, ...]`` over all of a sample's entries; shape ``[N]``."""
    return torch.linalg.vector_norm(d.flatten(1), dim=1)


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample ``[N]`` tensor viewed as ``[N, 1, ..., 1]`` so that it broadcasts against ``like`` ``[N, ...]``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def shrink_into_ball(d: torch.Tensor, eps: float, inplace: bool = False) -> torch.Tensor:
    """Euclidean projection onto the L2 ball of radius ``eps >= 0`` around 0, per sample:
    ``d_i * min(1, eps / ||d_i||_2)`` for ``d`` ``[N, ...]`` (a point inside the ball is unchanged); same shape.
    ``inplace`` scales ``d`` itself (one buffer fewer; then not differentiable in ``d``) and returns it.

    Scaling towards 0 keeps a point in any box that contains 0, so applied to ``clip(x + d, 0, 1) - x`` it
    yields a point of both the box and the ball (:func:`clipbook.core.attacks.project`, and the final
    rounding guard of :func:`clipbook.core.apgd.project_l2_box`). The norm is floored at ``1e-30`` (a zero row
    stays zero)."""
    scale = per_sample((eps / flat_norms(d).clamp_min(1e-30)).clamp_(max=1.0), d)
    return d.mul_(scale) if inplace else d * scale


def gaussian(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal draws of ``like``'s shape ``[N, ...]`` and dtype, on ``like``'s device.

    They are drawn on the generator's device (with a CPU generator: on the CPU, so a seed gives the same draws
    whatever device ``like`` is on; with a generator on ``like``'s device: there, with no copy) and then moved to
    ``like``'s device; without a generator from torch's global generator of the default device."""
    device = None if generator is None else generator.device
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def uniform_in_ball(like: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A point drawn uniformly from the L2 ball of radius ``eps`` per sample, shape and dtype of ``like``
    ``[N, ...]``, on its device: a :func:`gaussian` direction, normalised, times ``eps * u^(1/D)`` with
    ``u ~ U(0, 1)`` ``[N]`` (``D`` the entries of a sample). Two draws from ``generator``, in this order: the
    directions ``[N, ...]``, then ``u`` (on the generator's device, as for :func:`gaussian`)."""
    d = gaussian(like, generator)
    d = d / per_sample(flat_norms(d).clamp_min(1e-12), d)
    device = None if generator is None else generator.device
    u = torch.rand((len(like),) + (1,) * (like.ndim - 1), generator=generator, device=device, dtype=like.dtype)
    return d * u.to(like.device) ** (1.0 / like[0].numel()) * eps


def uniform_on_sphere(like: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A point drawn uniformly from the L2 sphere of radius ``eps`` per sample (``||d_i||_2 = eps``), shape and
    dtype of ``like`` ``[N, ...]``, on its device: a :func:`gaussian` direction scaled to length ``eps``. One
    draw from ``generator``."""
    d = gaussian(like, generator)
    return d * per_sample(eps / flat_norms(d).clamp_min(1e-30), d)
