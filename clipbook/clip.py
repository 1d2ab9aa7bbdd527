"""CLIP, Algorithm 2 of the paper: the minibatch objective, the Lipschitz set X_Lip and the lambda rule.

One CLIP step on a minibatch ``B`` with the pairs ``(x_i, x'_i)`` of X_Lip (quotients ``L_i``):

1. ``total = mean loss(f(B)) + lam * max_i L_i``              :func:`clip_objective`
2. one backward pass: parameter gradient, and (fused) every pair's input gradient
3. every pair takes one ascent step on its own ``L_i``            :meth:`PairState.advance` (Algorithm 1)
4. the optimiser step; then ``lam`` moves by the discrepancy rule  :func:`discrepancy_update`

The fused variant evaluates batch and pairs in ONE forward pass and gets the pairs' input gradients from the
same backward pass by adding a tiny probe ``PROBE * sum_i L_i``: the pair gradients come for free, and
Algorithm 1's acceptance test for a pair's proposed move happens at its next evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch

from .lipschitz import MIN_PAIR_DISTANCE, ascent_step, pair_quotients

#: Weight of the probe term ``PROBE * sum_i L_i`` in the fused CLIP step: it makes one backward pass yield
#: every pair's input gradient (divided out afterwards) while adding only ``PROBE * sum grad L_i`` to the
#: parameter gradient, far below float32 noise of the other terms.
PROBE = 1e-6


def discrepancy_step(train_acc: float, target_acc: float, step: float) -> float:
    """Algorithm 2's direction: ``+step`` (regularise more) if ``train_acc > target_acc``, else ``-step``."""
    return step if train_acc > target_acc else -step


def discrepancy_update(value: float, train_acc: float, target_acc: float, step: float) -> float:
    """Algorithm 2's rule: ``value + step`` if ``train_acc > target_acc`` else ``max(value - step, 0)``."""
    if step < 0 or value < 0:
        raise ValueError("value and step must be >= 0")
    return max(value + discrepancy_step(train_acc, target_acc, step), 0.0)


@dataclass
class PairState:
    """Pairs of X_Lip with their Algorithm 1 state, all ``[n, ...]`` tensors.

    ``x, x_prime``: where the next step evaluates the pairs; ``tau``: step sizes; ``q``: quotients at the
    last accepted positions ``anchor_x, anchor_xp``; ``proposed``: whether the current position is an
    untested proposal (the fused step tests it at the next evaluation).
    """
    x: torch.Tensor
    x_prime: torch.Tensor
    tau: torch.Tensor
    q: torch.Tensor
    anchor_x: torch.Tensor
    anchor_xp: torch.Tensor
    proposed: torch.Tensor

    @classmethod
    def start(cls, x: torch.Tensor, x_prime: torch.Tensor, tau: float) -> "PairState":
        """Pairs at their starting positions, step size ``tau``, nothing proposed yet (own copies of the
        positions: :meth:`assign` writes the fields one by one, so none may share storage)."""
        n = len(x)
        return cls(x.clone(), x_prime.clone(), torch.full((n,), float(tau), device=x.device),
                   torch.zeros(n, device=x.device), x.clone(), x_prime.clone(),
                   torch.zeros(n, dtype=torch.bool, device=x.device))

    def __len__(self) -> int:
        return len(self.x)

    def select(self, idx: torch.Tensor) -> "PairState":
        """The pairs ``idx`` (a copy)."""
        return PairState(*(getattr(self, f.name)[idx] for f in fields(self)))

    def assign(self, idx: torch.Tensor, part: "PairState") -> None:
        """Write the pairs ``idx`` back from ``part`` (as returned by :meth:`select`, then advanced)."""
        for f in fields(self):
            getattr(self, f.name)[idx] = getattr(part, f.name)

    def advance(self, q: torch.Tensor, gx: torch.Tensor, gxp: torch.Tensor, factor: float) -> None:
        """Algorithm 1 from the gradients of the training step's own backward pass (the fused variant).

        ``q, gx, gxp`` are the quotients and their input gradients at the current positions. A proposal is
        accepted when its quotient is at least the one at the pair's last accepted position (then
        ``tau *= factor`` and the pair takes its next ascent step), and rejected otherwise (the pair goes
        back, ``tau /= factor``, and is re-evaluated next time). Moves that bring a pair closer than
        :data:`~clipbook.lipschitz.MIN_PAIR_DISTANCE` are skipped.
        """
        reject = self.proposed & (q < self.q)
        accept = self.proposed & ~reject
        self.tau = torch.where(accept, self.tau * factor, torch.where(reject, self.tau / factor, self.tau))
        keep = ~reject
        mk = keep.view(-1, *([1] * (self.x.ndim - 1)))
        self.anchor_x = torch.where(mk, self.x, self.anchor_x)
        self.anchor_xp = torch.where(mk, self.x_prime, self.anchor_xp)
        self.q = torch.where(keep, q, self.q)
        nx, nxp = ascent_step(self.x, self.x_prime, gx, gxp, q, self.tau)
        d = torch.linalg.vector_norm((nx - nxp).flatten(1), dim=1)
        move = keep & (d >= MIN_PAIR_DISTANCE) & torch.isfinite(d)
        mm = move.view_as(mk)
        self.x = torch.where(mm, nx, self.anchor_x)
        self.x_prime = torch.where(mm, nxp, self.anchor_xp)
        self.proposed = move


class ClipTerms(NamedTuple):
    """What :func:`clip_objective` returns: the objective, the batch outputs, the pairs' quotients ``[n]``,
    the index of the steepest pair and the pair inputs (leaves whose ``.grad`` the backward pass fills)."""
    total: torch.Tensor
    outputs: torch.Tensor
    q: torch.Tensor
    imax: int
    px: torch.Tensor
    pxp: torch.Tensor


def clip_objective(model: torch.nn.Module, loss_fn, xb: torch.Tensor, yb: torch.Tensor, pairs: PairState,
                   lam: float, fused: bool = True, lip_power: int = 1) -> ClipTerms:
    """CLIP's minibatch objective ``loss(f(xb), yb) + lam * (max_i L_i) ** lip_power`` from ONE forward pass
    over batch and pairs (the paper: ``lip_power = 1``; the reference code squares the quotient).

    With ``fused`` the pair inputs require gradients and the probe ``PROBE * sum_i L_i`` is added, so the
    same backward pass also yields every pair's input gradient (see :func:`recover_pair_gradients`).
    """
    b = len(xb)
    px = pairs.x.detach().requires_grad_(fused)
    pxp = pairs.x_prime.detach().requires_grad_(fused)
    out = model(torch.cat([xb, px, pxp]))
    q = pair_quotients(out[b:], px, pxp)
    imax = int(q.argmax())
    lip = q[imax] if lip_power == 1 else q[imax] ** lip_power
    total = loss_fn(out[:b], yb) + lam * lip
    if fused:
        total = total + PROBE * q.sum()
    return ClipTerms(total, out[:b], q, imax, px, pxp)


def recover_pair_gradients(terms: ClipTerms, lam: float, lip_power: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Input gradients ``grad_x L_i, grad_x' L_i`` after ``backward()`` of a fused :func:`clip_objective`:
    pair ``i`` received ``(PROBE + [i = argmax] lam * p * L_i^(p-1)) * grad L_i``; divide that out."""
    px, pxp, imax = terms.px, terms.pxp, terms.imax
    coef = torch.full((len(px),), PROBE, device=px.device)
    coef[imax] += lam if lip_power == 1 else lam * lip_power * terms.q[imax].item() ** (lip_power - 1)
    c = coef.view(-1, *([1] * (px.ndim - 1)))
    return px.grad / c, pxp.grad / c
