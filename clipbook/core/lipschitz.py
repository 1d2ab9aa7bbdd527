"""Lipschitz constants from below: difference quotients, Algorithm 1, the estimate (5), lower bounds.

Algorithm 1 has one implementation, :class:`PairState` (its :meth:`~PairState.propose` and
:meth:`~PairState.judge`, with the acceptance rule :func:`accepted`); :func:`algorithm1_step` /
:func:`adversarial_update` are its exact use, CLIP's fused step (:mod:`clipbook.core.clip`) the other.

The product bound (4), an upper bound, is in :mod:`clipbook.core.bounds`.

All norms are Euclidean (the paper's choice in Sec. 4). A batch of pairs is two tensors ``x, x_prime`` of
the same shape ``[n, *input_shape]``; outputs are flattened per sample.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
from torch import nn

from .l2 import flat_norms as _flat_norm, per_sample as _expand  # per-sample L2 norms [N]; [N] -> [N, 1, ...]

#: Pairs closer than this (Euclidean distance) are not moved closer by Algorithm 1: below it the
#: float32 difference f(x) - f(x') is dominated by rounding and the quotient is meaningless.
MIN_PAIR_DISTANCE = 1e-4


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
    tau = torch.as_tensor(tau, dtype=torch.float32).clone()  # own copy: PairState adapts it in place
    if tau.ndim == 0:
        tau = tau.expand(n).clone()
    if tau.shape != (n,):
        raise ValueError(f"tau must be a float or a tensor of shape [{n}], got shape {tuple(tau.shape)}")
    if not bool((tau > 0).all()):
        raise ValueError("step sizes tau must be > 0")
    return tau


def ascent_step(x: torch.Tensor, x_prime: torch.Tensor, grad_x: torch.Tensor, grad_xp: torch.Tensor,
                quotients: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1's move ``x += tau * L * grad_x L`` (same for ``x'``), per pair."""
    scale = _expand(tau * quotients, x)
    return (scale * grad_x).add_(x), (scale * grad_xp).add_(x_prime)  # = x + scale * grad_x, one buffer fewer


def accepted(q_new: torch.Tensor, q_old: torch.Tensor, strict: bool = True) -> torch.Tensor:
    """Algorithm 1's acceptance rule, per pair (``[n]`` bool): with ``strict`` (the exact step) a proposed
    move is kept iff it raised the quotient (``q_new > q_old`` and ``q_new`` finite); otherwise (the fused
    step) it is undone only when the quotient fell (``q_new < q_old``), so a tie is kept.

    Why two: the fused step compares quotients measured one training step apart, and the stored results were
    made with the rule it has always had; with a saturating network exactly equal float32 quotients are
    common (measured: about one fused proposal in twelve in a 60-epoch lambda = 10 run of the regression net
    with a sigmoid output), so the strict rule would change those results."""
    if strict:
        return (q_new > q_old) & torch.isfinite(q_new)
    return ~(q_new < q_old)


def _put_rows(dst: torch.Tensor, rows: torch.Tensor, src: torch.Tensor) -> None:
    """``dst[i] = src[i]`` in place for the rows where ``rows`` ``[n]`` (bool) holds: the values of
    ``torch.where(rows, src, dst)`` (copies, so bit for bit), without its slow broadcast kernel on the CPU."""
    i = rows.nonzero().squeeze(1)
    if len(i) == len(rows):
        dst.copy_(src)
    elif len(i):
        dst.index_copy_(0, i, src.index_select(0, i))


@dataclass
class PairState:
    """Pairs of X_Lip with their Algorithm 1 state, all ``[n, ...]`` tensors: the ONE implementation of
    Algorithm 1 (per-pair adaptive step sizes), used by the exact update (:func:`algorithm1_step`,
    :func:`adversarial_update`) and by CLIP's fused step (:meth:`advance` with the training step's gradients).

    ``x, x_prime``: where the pairs are evaluated next; ``anchor_x, anchor_xp``: their last accepted positions,
    ``q``: the quotients there; ``tau``: step sizes (input units per unit of ``L * grad L``); ``proposed``:
    whether ``x, x_prime`` is an untested move (then it differs from the anchor).

    The rule (:meth:`propose`, :meth:`judge`): from its accepted position a pair proposes the ascent step
    ``x + tau L grad_x L``; the proposal is accepted when its quotient rose (:func:`accepted`): then
    ``tau *= factor``; otherwise the pair goes back and ``tau /= factor``. A move that would bring a pair
    closer than :data:`MIN_PAIR_DISTANCE` (or is not finite) is not proposed: the pair stays, and with
    ``strict`` that counts as a rejection (``tau /= factor``). ``strict=False`` is the fused step's rule
    (see :func:`accepted`).
    """
    x: torch.Tensor
    x_prime: torch.Tensor
    tau: torch.Tensor
    q: torch.Tensor
    anchor_x: torch.Tensor
    anchor_xp: torch.Tensor
    proposed: torch.Tensor

    @classmethod
    def start(cls, x: torch.Tensor, x_prime: torch.Tensor, tau: float | torch.Tensor = 1.0) -> "PairState":
        """Pairs at their starting positions, step size ``tau`` (a float or ``[n]``, > 0), nothing proposed
        (own copies of everything: :meth:`judge`, :meth:`propose` and :meth:`assign` write the fields in place, so none
        may share storage with another or with the caller's tensors)."""
        if x.shape != x_prime.shape:
            raise ValueError(f"x and x_prime must have the same shape, got {tuple(x.shape)} and {tuple(x_prime.shape)}")
        n = len(x)
        x, x_prime = x.detach(), x_prime.detach()
        return cls(x.clone(), x_prime.clone(), _as_step_sizes(tau, n).to(x.device),
                   torch.zeros(n, device=x.device), x.clone(), x_prime.clone(),
                   torch.zeros(n, dtype=torch.bool, device=x.device))

    def __len__(self) -> int:
        return len(self.x)

    def select(self, idx: torch.Tensor | slice) -> "PairState":
        """The pairs ``idx`` (an index tensor: a copy, which :meth:`assign` writes back; a slice: views, and as
        :meth:`judge` and :meth:`propose` write every field in place, what they do lands in this state)."""
        return PairState(*(getattr(self, f.name)[idx] for f in fields(self)))

    def assign(self, idx: torch.Tensor | slice, part: "PairState") -> None:
        """Write the pairs ``idx`` back from ``part`` (as returned by :meth:`select`, then advanced)."""
        for f in fields(self):
            getattr(self, f.name)[idx] = getattr(part, f.name)

    def to(self, device: torch.device | str) -> "PairState":
        """The same state on ``device`` (a copy unless it is there already)."""
        return PairState(*(getattr(self, f.name).to(device) for f in fields(self)))

    def judge(self, q: torch.Tensor, factor: float, strict: bool = True) -> torch.Tensor:
        """Test the pending proposals with their quotients ``q`` ``[n]`` (at ``x, x_prime``) by
        :func:`accepted`: accepted ones become the anchors (``tau *= factor``), rejected ones go back
        (``tau /= factor``). Pairs without a proposal are untouched. Returns the rejected pairs ``[n]`` bool.
        Writes the fields in place (see :meth:`select`)."""
        accept = self.proposed & accepted(q, self.q, strict)
        reject = self.proposed & ~accept
        self.tau.copy_(torch.where(accept, self.tau * factor, torch.where(reject, self.tau / factor, self.tau)))
        _put_rows(self.anchor_x, accept, self.x)
        _put_rows(self.anchor_xp, accept, self.x_prime)
        self.q.copy_(torch.where(accept, q, self.q))
        _put_rows(self.x, reject, self.anchor_x)
        _put_rows(self.x_prime, reject, self.anchor_xp)
        self.proposed.zero_()
        return reject

    def propose(self, q: torch.Tensor, gx: torch.Tensor, gxp: torch.Tensor, factor: float,
                which: torch.Tensor | None = None, strict: bool = True) -> None:
        """Pairs ``which`` (all: ``None``), at their accepted positions with quotients ``q`` and input gradients
        ``gx, gxp``, record ``q`` and propose Algorithm 1's ascent step; moves closer than
        :data:`MIN_PAIR_DISTANCE` or not finite are not proposed (the pair stays; with ``strict``,
        ``tau /= factor``)."""
        which = ~self.proposed if which is None else which & ~self.proposed
        self.q.copy_(torch.where(which, q, self.q))
        nx, nxp = ascent_step(self.x, self.x_prime, gx, gxp, q, self.tau)
        d = _flat_norm(nx - nxp)
        valid = (d >= MIN_PAIR_DISTANCE) & torch.isfinite(d)
        move, refused = which & valid, which & ~valid
        if strict:
            self.tau.copy_(torch.where(refused, self.tau / factor, self.tau))
        _put_rows(self.x, move, nx)
        _put_rows(self.x_prime, move, nxp)
        self.proposed.copy_(move)

    def advance(self, q: torch.Tensor, gx: torch.Tensor, gxp: torch.Tensor, factor: float,
                strict: bool = False) -> None:
        """Algorithm 1 from the quotients ``q`` and input gradients ``gx, gxp`` at the current positions (CLIP's
        fused step: they come from the training step's own backward pass): :meth:`judge` the pending
        proposals, then every pair that did not just go back :meth:`propose` s its next step. A rejected
        pair is re-evaluated at its anchor next time (its gradient there is not known yet). ``strict``: the
        acceptance rule (:func:`accepted`); the fused step's is ``False``."""
        reject = self.judge(q, factor, strict)
        self.propose(q, gx, gxp, factor, which=~reject, strict=strict)


def quotients_and_gradients(model: nn.Module, x: torch.Tensor, x_prime: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The quotients ``[n]`` and each pair's input gradients ``grad_x L_i, grad_x' L_i`` (shapes of ``x``),
    from one forward and one backward pass; the model's parameter gradients are untouched."""
    xa = x.detach().requires_grad_(True)
    xb = x_prime.detach().requires_grad_(True)
    q = difference_quotients(model, xa, xb)
    gx, gxp = torch.autograd.grad(q.sum(), [xa, xb])
    return q.detach(), gx, gxp


def algorithm1_step(model: nn.Module, pairs: PairState, factor: float = 1.3) -> PairState:
    """One exact step of Algorithm 1 on ``pairs`` (in place, returned for chaining; none may hold a pending
    proposal): quotients and gradients at the accepted positions, the proposals (:meth:`PairState.propose`),
    their quotients, the acceptance rule (:meth:`PairState.judge`). Costs one forward and backward pass plus
    one forward pass on the ``2n`` points; the model's parameter gradients are untouched."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    q, gx, gxp = quotients_and_gradients(model, pairs.x, pairs.x_prime)
    pairs.propose(q, gx, gxp, factor)
    with torch.no_grad():
        q_new = difference_quotients(model, pairs.x, pairs.x_prime)
    pairs.judge(q_new, factor)
    return pairs


def adversarial_update(model: nn.Module, x: torch.Tensor, x_prime: torch.Tensor,
                       tau: float | torch.Tensor = 1.0, factor: float = 1.3) -> AdversarialStep:
    """One step of Algorithm 1 (AdversarialUpdate_tau) with a per-pair adaptive step size.

    Each pair moves by gradient ascent on its own quotient L: ``x <- x + tau L grad_x L`` and
    ``x' <- x' + tau L grad_x' L``. Adaptation (per pair, :class:`PairState`): the step is accepted and
    ``tau`` multiplied by ``factor`` when it raised that pair's quotient; otherwise the pair stays where it was
    and ``tau`` is divided by ``factor``. Steps that would bring a pair closer than :data:`MIN_PAIR_DISTANCE`
    are rejected.

    Args: ``x, x_prime`` ``[n, ...]``; ``tau`` a float or ``[n]`` tensor (> 0). Costs one forward and
    backward pass plus one forward pass on the ``2n`` points. The model's parameter gradients are untouched.
    Returns :class:`AdversarialStep` ``(x, x_prime, tau, quotients)`` with the quotients at the returned pairs.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    s = algorithm1_step(model, PairState.start(x, x_prime, tau), factor)
    return AdversarialStep(s.x, s.x_prime, s.tau, s.q)


def search_lipschitz_pairs(model: nn.Module, x: torch.Tensor, x_prime: torch.Tensor, steps: int = 50,
                           tau: float = 1.0, factor: float = 1.3) -> AdversarialStep:
    """``steps`` exact steps of Algorithm 1 (:func:`algorithm1_step`) from the pairs ``x, x_prime``
    ``[n, ...]``; the max of the returned quotients is a lower bound on Lip(f) found by adversarial pair search."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    pairs = PairState.start(x, x_prime, tau)
    for _ in range(steps):
        algorithm1_step(model, pairs, factor)
    if steps == 0:
        with torch.no_grad():
            pairs.q = difference_quotients(model, x, x_prime)
    return AdversarialStep(pairs.x, pairs.x_prime, pairs.tau, pairs.q)


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
