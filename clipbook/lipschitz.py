"""Lipschitz constants from below: difference quotients, Algorithm 1, the estimate (5), lower bounds.

The product bound (4), an upper bound, is in :mod:`clipbook.bounds`.

All norms are Euclidean (the paper's choice in Sec. 4). A batch of pairs is two tensors ``x, x_prime`` of
the same shape ``[n, *input_shape]``; outputs are flattened per sample.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

#: Pairs closer than this (Euclidean distance) are not moved closer by Algorithm 1: below it the
#: float32 difference f(x) - f(x') is dominated by rounding and the quotient is meaningless.
MIN_PAIR_DISTANCE = 1e-4


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(t.flatten(1), dim=1)


def difference_quotients(model: nn.Module, x: torch.Tensor, x_prime: torch.Tensor,
                         eps: float = 1e-12) -> torch.Tensor:
    """``||f(x_i) - f(x'_i)||_2 / ||x_i - x'_i||_2`` for each pair; shape ``[n]``.

    The denominator is clamped at ``eps`` so the result stays finite (0 for coinciding points).
    Differentiable in the model's parameters and in both inputs.
    """
    if x.shape != x_prime.shape:
        raise ValueError(f"x and x_prime must have the same shape, got {tuple(x.shape)} and {tuple(x_prime.shape)}")
    out = model(torch.cat([x, x_prime]))
    return pair_quotients(out, x, x_prime, eps)


def pair_quotients(out: torch.Tensor, x: torch.Tensor, x_prime: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Quotients from precomputed outputs ``out = f(cat([x, x_prime]))`` (shape ``[2n, ...]``)."""
    n = len(x)
    num = _flat_norm(out[:n] - out[n:])
    den = _flat_norm(x - x_prime).clamp_min(eps)
    return num / den


def lipschitz_estimate(model: nn.Module, x: torch.Tensor, x_prime: torch.Tensor) -> torch.Tensor:
    """Lip(f, X_Lip) of eq. (5): the largest difference quotient over the pairs (a scalar tensor)."""
    return difference_quotients(model, x, x_prime).max()


class AdversarialStep(NamedTuple):
    """Result of :func:`adversarial_update`: the moved pairs, the adapted step sizes ``[n]`` and quotients ``[n]``."""
    x: torch.Tensor
    x_prime: torch.Tensor
    tau: torch.Tensor
    quotients: torch.Tensor


def _as_step_sizes(tau: float | torch.Tensor, n: int) -> torch.Tensor:
    tau = torch.as_tensor(tau, dtype=torch.float32)
    if tau.ndim == 0:
        tau = tau.expand(n).clone()
    if tau.shape != (n,):
        raise ValueError(f"tau must be a float or a tensor of shape [{n}], got shape {tuple(tau.shape)}")
    if not bool((tau > 0).all()):
        raise ValueError("step sizes tau must be > 0")
    return tau


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def ascent_step(x: torch.Tensor, x_prime: torch.Tensor, grad_x: torch.Tensor, grad_xp: torch.Tensor,
                quotients: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1's move ``x += tau * L * grad_x L`` (same for ``x'``), per pair."""
    scale = _expand(tau * quotients, x)
    return x + scale * grad_x, x_prime + scale * grad_xp


def adversarial_update(model: nn.Module, x: torch.Tensor, x_prime: torch.Tensor,
                       tau: float | torch.Tensor = 1.0, factor: float = 1.3) -> AdversarialStep:
    """One step of Algorithm 1 (AdversarialUpdate_tau) with a per-pair adaptive step size.

    Each pair moves by gradient ascent on its own quotient L: ``x <- x + tau L grad_x L`` and
    ``x' <- x' + tau L grad_x' L``. Adaptation (per pair): the step is accepted and ``tau`` multiplied by
    ``factor`` when it raised that pair's quotient; otherwise the pair stays where it was and ``tau`` is
    divided by ``factor``. Steps that would bring a pair closer than :data:`MIN_PAIR_DISTANCE` are rejected.

    Args: ``x, x_prime`` ``[n, ...]``; ``tau`` a float or ``[n]`` tensor (> 0). Costs one forward and
    backward pass plus one forward pass on the ``2n`` points. The model's parameter gradients are untouched.
    Returns :class:`AdversarialStep` ``(x, x_prime, tau, quotients)`` with the quotients at the returned pairs.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    n = len(x)
    tau = _as_step_sizes(tau, n).to(x.device)
    xa = x.detach().requires_grad_(True)
    xb = x_prime.detach().requires_grad_(True)
    q = difference_quotients(model, xa, xb)
    gx, gxp = torch.autograd.grad(q.sum(), [xa, xb])
    with torch.no_grad():
        q = q.detach()
        cx, cxp = ascent_step(xa.detach(), xb.detach(), gx, gxp, q, tau)
        q_new = difference_quotients(model, cx, cxp)
        ok = (q_new > q) & (_flat_norm(cx - cxp) >= MIN_PAIR_DISTANCE) & torch.isfinite(q_new)
        m = _expand(ok, x)
        x_out = torch.where(m, cx, xa.detach())
        xp_out = torch.where(m, cxp, xb.detach())
        tau_out = torch.where(ok, tau * factor, tau / factor)
        q_out = torch.where(ok, q_new, q)
    return AdversarialStep(x_out, xp_out, tau_out, q_out)


def search_lipschitz_pairs(model: nn.Module, x: torch.Tensor, x_prime: torch.Tensor, steps: int = 50,
                           tau: float = 1.0) -> AdversarialStep:
    """Run :func:`adversarial_update` ``steps`` times; the max of the returned quotients is a lower bound
    on Lip(f) found by adversarial pair search."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    state = AdversarialStep(x, x_prime, _as_step_sizes(tau, len(x)), None)
    for _ in range(steps):
        state = adversarial_update(model, state.x, state.x_prime, state.tau)
    if state.quotients is None:
        with torch.no_grad():
            state = state._replace(quotients=difference_quotients(model, x, x_prime))
    return state


def random_pairs_lower_bound(model: nn.Module, x: torch.Tensor, n_pairs: int = 10000, radius: float = 0.5,
                             generator: torch.Generator | None = None, batch_size: int = 4096) -> float:
    """Lower bound on Lip(f): the largest quotient over ``n_pairs`` random pairs ``(x_i, x_i + r u)``,
    ``x_i`` drawn from ``x`` and ``u`` a random unit direction, ``r = radius``."""
    if n_pairs < 1 or radius <= 0:
        raise ValueError("n_pairs must be >= 1 and radius > 0")
    best = 0.0
    with torch.no_grad():
        for start in range(0, n_pairs, batch_size):
            m = min(batch_size, n_pairs - start)
            idx = torch.randint(len(x), (m,), generator=generator)
            base = x[idx]
            d = torch.randn(base.shape, generator=generator)
            d = d / _expand(_flat_norm(d), d) * radius
            best = max(best, difference_quotients(model, base, base + d).max().item())
    return best


def jacobian_norm_lower_bound(model: nn.Module, x: torch.Tensor, iters: int = 20) -> torch.Tensor:
    """Spectral norm of the Jacobian of ``f`` at each point of ``x`` (power iteration on J^T J); ``[n]``.

    Every value is a lower bound on Lip(f). Uses forward- and reverse-mode products, no full Jacobian.
    """
    import warnings

    from torch.func import jvp, vjp

    warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)
    x = x.detach()
    def f(inp: torch.Tensor) -> torch.Tensor:
        return model(inp).flatten(1)

    v = torch.randn_like(x)
    v = v / _expand(_flat_norm(v), v)
    _, pullback = vjp(f, x)
    for _ in range(iters):
        _, jv = jvp(f, (x,), (v,))
        (jtjv,) = pullback(jv)
        norm = _flat_norm(jtjv).clamp_min(1e-30)
        v = jtjv / _expand(norm, jtjv)
    _, jv = jvp(f, (x,), (v,))
    return _flat_norm(jv).detach()
