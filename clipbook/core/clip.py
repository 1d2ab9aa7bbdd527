"""CLIP, Algorithm 2 of the paper, for any network: :class:`CLIP` and the pieces it is made of.

CLIP on your own model and training loop (``x_lip``: held-out inputs ``[n, *input_shape]``)::

    clip = CLIP(x_lip, target_acc=0.9, dlam=0.005)       # X_Lip: each held-out input with a noisy copy
    for xb, yb in loader:
        loss = clip.loss(model, xb, yb, F.cross_entropy)   # data loss + lam * max_i L_i
        opt.zero_grad(); loss.backward(); opt.step()
        clip.update(clip.accuracy(yb))                     # Algorithm 1 on the pairs; lambda by the rule

One CLIP step on a minibatch ``B`` with the pairs ``(x_i, x'_i)`` of X_Lip (quotients ``L_i``):

1. ``total = mean loss(f(B)) + lam * max_i L_i``              :func:`clip_objective`
2. one backward pass: parameter gradient, and (fused) every pair's input gradient
3. every pair takes one ascent step on its own ``L_i``            Algorithm 1: :class:`~clipbook.core.lipschitz.PairState`
4. the optimiser step; then ``lam`` moves by the discrepancy rule  :func:`discrepancy_update`

The fused variant evaluates batch and pairs in ONE forward pass and gets the pairs' input gradients from the
same backward pass by adding a tiny probe ``PROBE * sum_i L_i``: the pair gradients come for free, and
Algorithm 1's acceptance test for a pair's proposed move happens at its next evaluation.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .lipschitz import PairState, algorithm1_step, pair_quotients  # noqa: F401  (PairState: old pickles)
from .models import batchnorm_statistics_from, eval_mode

#: Weight of the probe term ``PROBE * sum_i L_i`` in the fused CLIP step: it makes one backward pass yield
#: every pair's input gradient (divided out afterwards) while adding only ``PROBE * sum grad L_i`` to the
#: parameter gradient, far below float32 noise of the other terms.
PROBE = 1e-6

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def discrepancy_step(train_acc: float, target_acc: float, step: float) -> float:
    """Algorithm 2's direction: ``+step`` (regularise more) if ``train_acc > target_acc``, else ``-step``."""
    return step if train_acc > target_acc else -step


def discrepancy_update(value: float, train_acc: float, target_acc: float, step: float) -> float:
    """Algorithm 2's rule: ``value + step`` if ``train_acc > target_acc`` else ``max(value - step, 0)``."""
    if step < 0 or value < 0:
        raise ValueError("value and step must be >= 0")
    return max(value + discrepancy_step(train_acc, target_acc, step), 0.0)


class ClipTerms(NamedTuple):
    """What :func:`clip_objective` returns: the objective, the batch outputs, the pairs' quotients ``[n]``,
    the index of the steepest pair, the pair inputs (leaves whose ``.grad`` the backward pass fills) and the
    ``lam`` and ``lip_power`` the objective was built with."""
    total: torch.Tensor
    outputs: torch.Tensor
    q: torch.Tensor
    imax: int
    px: torch.Tensor
    pxp: torch.Tensor
    lam: float
    lip_power: int


PAIR_MODES = ("batch", "joint", "eval")


def clip_objective(model: nn.Module, loss_fn: Loss, xb: torch.Tensor, yb: torch.Tensor, pairs: PairState,
                   lam: float, fused: bool = True, lip_power: int = 1, pair_mode: str = "batch") -> ClipTerms:
    """CLIP's minibatch objective ``loss(f(xb), yb) + lam * (max_i L_i) ** lip_power`` (the paper:
    ``lip_power = 1``; the reference code squares the quotient).

    ``pair_mode`` (it matters only for BatchNorm): ``"batch"`` one forward pass over batch and pairs, where
    BatchNorm layers in training mode normalise the pairs with the minibatch's statistics
    (:func:`~clipbook.core.models.batchnorm_statistics_from`); ``"joint"`` one pass with statistics over both;
    ``"eval"`` a second pass for the pairs in evaluation mode. Without BatchNorm ``"batch"`` and ``"joint"``
    are the same computation. With ``fused`` the pair inputs require gradients and the probe
    ``PROBE * sum_i L_i`` is added, so the same backward pass also yields every pair's input gradient (see
    :func:`recover_pair_gradients`).
    """
    if pair_mode not in PAIR_MODES:
        raise ValueError(f"pair_mode must be one of {PAIR_MODES}, got {pair_mode!r}")
    if fused and pair_mode == "joint":  # the data loss depends on the pairs through the BatchNorm statistics
        raise ValueError("pair_mode='joint' cannot recover fused pair gradients (the batch's loss depends on the "
                         "pairs through the statistics): use fused=False, or pair_mode='batch'")
    b = len(xb)
    px = pairs.x.detach().requires_grad_(fused)
    pxp = pairs.x_prime.detach().requires_grad_(fused)
    if pair_mode == "eval":
        out_b = model(xb)
        with eval_mode(model):
            q = pair_quotients(model(torch.cat([px, pxp])), px, pxp)
    else:
        with batchnorm_statistics_from(model, b) if pair_mode == "batch" else nullcontext():
            out = model(torch.cat([xb, px, pxp]))
        out_b = out[:b]
        q = pair_quotients(out[b:], px, pxp)
    imax = int(q.argmax())
    lip = q[imax] if lip_power == 1 else q[imax] ** lip_power
    total = loss_fn(out_b, yb) + lam * lip
    if fused:
        total = total + PROBE * q.sum()
    return ClipTerms(total, out_b, q, imax, px, pxp, lam, lip_power)


class _BehindBatch(nn.Module):
    """``z -> model(cat([xb, z]))[len(xb):]`` with BatchNorm normalising by the minibatch ``xb`` (running
    statistics untouched): the network CLIP's ``"batch"`` mode penalises, for the exact Algorithm 1 step."""

    def __init__(self, model: nn.Module, xb: torch.Tensor):
        super().__init__()
        self.model, self.xb = model, xb.detach()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with batchnorm_statistics_from(self.model, len(self.xb), update_running=False):
            return self.model(torch.cat([self.xb, z]))[len(self.xb):]


def recover_pair_gradients(terms: ClipTerms) -> tuple[torch.Tensor, torch.Tensor]:
    """Input gradients ``grad_x L_i, grad_x' L_i`` after ``backward()`` of a fused :func:`clip_objective`:
    pair ``i`` received ``(PROBE + [i = argmax] lam * p * L_i^(p-1)) * grad L_i``; divide that out (with the
    ``lam`` and ``p`` the objective was built with, which ``terms`` carries)."""
    px, pxp, imax, lam, p = terms.px, terms.pxp, terms.imax, terms.lam, terms.lip_power
    if px.grad is None:
        raise RuntimeError("no pair gradients: call backward() on a fused objective first")
    coef = torch.full((len(px),), PROBE, device=px.device)
    coef[imax] += lam if p == 1 else lam * p * terms.q[imax].item() ** (p - 1)
    c = coef.view(-1, *([1] * (px.ndim - 1)))
    return px.grad.div_(c), pxp.grad.div_(c)  # the leaves' own buffers: one copy fewer each


class CLIP:
    """CLIP (Algorithm 2) for any ``nn.Module``: the Lipschitz set X_Lip with its Algorithm 1 state, lambda
    and the discrepancy rule, in one object. Use :meth:`loss` for the objective, ``backward()`` and the
    optimiser step as usual, then :meth:`update`.

    Args:
        pairs: X_Lip. Either held-out inputs ``[n, *input_shape]`` (each gets a copy ``noise`` times Gaussian
            noise away, in a random order drawn from ``seed``: the paper's "images and their noisy versions"),
            or a tuple ``(x, x_prime)`` of two such tensors, or ``None`` (then :meth:`reset_pairs` before use).
            Kept on their device; moved to the batch's device at the first step if that differs.
        target_acc: the target accuracy alpha in (0, 1] of the discrepancy principle; ``None`` keeps ``lam``
            fixed.
        lam: the starting lambda (>= 0); ``dlam``: its step per :meth:`update` (lambda never goes below 0).
        pairs_per_step: how many pairs each step evaluates and moves: a window that cycles through X_Lip
            (all of them when X_Lip is not larger).
        tau, tau_factor: Algorithm 1's starting step size (input units per unit of ``L * grad L``) and its
            per-pair adaptation factor (accepted step: ``tau *= tau_factor``, rejected: ``/=``).
        fused: take the pairs' input gradients from the training step's own backward pass (cheap; the
            proposal is tested one step later). ``False``: a separate exact Algorithm 1 step before each
            objective (one more forward and backward pass over the pairs). On a CPU, a first convolution with
            few input channels makes the fused step's pair gradients slow in PyTorch's kernel:
            :func:`~clipbook.core.fold_gradient.fold_input_gradients` on the model computes them faster.
        lip_power: 1 for ``lam * Lip`` (the paper), 2 for ``lam * Lip ** 2`` (the reference code).
        acc_momentum: :meth:`update` smooths the minibatch accuracies by an exponential moving average with
            this momentum (0: use each value as given); lambda moves against that estimate.
        warmup_steps: the first ``warmup_steps`` calls of :meth:`update` leave lambda alone.
        pair_mode: how BatchNorm layers treat the pairs (nothing else depends on it). ``"batch"`` (default):
            batch and pairs in ONE forward pass, BatchNorm in training mode normalises the pairs with the
            minibatch's statistics, so the penalty acts on exactly the function that is trained (and whose
            accuracy steers lambda), and the pairs, which Algorithm 1 drives away from the data, never enter
            the statistics. ``"joint"``: one pass with the statistics over batch and pairs (the far-away
            pairs then distort the batch's normalisation). ``"eval"``: the pairs in a second pass in
            evaluation mode (every module's flag restored after). Training-mode BatchNorm is invariant to
            the scale of the weights before it, evaluation-mode BatchNorm is not: the penalty can then shrink
            those weights and flatten the evaluation network while the training accuracy, and so lambda,
            stays high. Chapter 3 (Ex. 3.6) measures both failures on a BatchNorm residual network. Dropout
            draws different masks for ``x`` and ``x'`` in training mode; ``"eval"`` avoids that.
        noise: the noisy copies' standard deviation (input units), when ``pairs`` are inputs only.
        seed: seeds the order and the noise of X_Lip when ``pairs`` are inputs only.

    Attributes: ``lam`` (float), ``acc`` (the smoothed accuracy, ``None`` before the first update),
    ``steps`` (updates so far), :attr:`pairs` (the :class:`~clipbook.core.lipschitz.PairState` of X_Lip).
    """

    def __init__(self, pairs: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None, *,
                 target_acc: float | None = None, lam: float = 0.0, dlam: float = 0.005,
                 pairs_per_step: int = 128, tau: float = 1.0, tau_factor: float = 1.3, fused: bool = True,
                 lip_power: int = 1, acc_momentum: float = 0.9, warmup_steps: int = 0,
                 pair_mode: str = "batch", noise: float = 0.1, seed: int = 0):
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"CLIP: {msg}")
        need(target_acc is None or 0 < target_acc <= 1, f"target_acc must be in (0, 1] or None, got {target_acc!r}")
        need(lam >= 0 and dlam >= 0, f"lam and dlam must be >= 0, got {lam}, {dlam}")
        need(isinstance(pairs_per_step, int) and pairs_per_step >= 1, f"pairs_per_step must be an integer >= 1, got {pairs_per_step!r}")
        need(tau > 0 and tau_factor >= 1, f"tau must be > 0 and tau_factor >= 1, got {tau}, {tau_factor}")
        need(lip_power in (1, 2), f"lip_power must be 1 or 2, got {lip_power!r}")
        need(0 <= acc_momentum < 1, f"acc_momentum must be in [0, 1), got {acc_momentum}")
        need(pair_mode in PAIR_MODES, f"pair_mode must be one of {PAIR_MODES}, got {pair_mode!r}")
        need(not (fused and pair_mode == "joint"), "pair_mode='joint' needs fused=False: with the pairs in the batch "
             "statistics the batch's loss depends on them, so the fused pair gradients would be wrong")
        need(warmup_steps >= 0 and noise > 0, f"warmup_steps must be >= 0 and noise > 0, got {warmup_steps}, {noise}")
        self.target_acc, self.lam, self.dlam = target_acc, float(lam), float(dlam)
        self.pairs_per_step, self.tau, self.tau_factor = pairs_per_step, float(tau), float(tau_factor)
        self.fused, self.lip_power, self.acc_momentum = fused, lip_power, float(acc_momentum)
        self.warmup_steps, self.pair_mode, self.noise = warmup_steps, pair_mode, float(noise)
        self.acc: float | None = None
        self.steps = 0
        self.pool: PairState | None = None
        self.cursor = 0
        self._pending: tuple[torch.Tensor | slice | None, PairState, ClipTerms] | None = None
        if pairs is not None:
            if isinstance(pairs, torch.Tensor):
                from .data import noisy_pairs
                g = torch.Generator().manual_seed(seed)
                x = pairs[torch.randperm(len(pairs), generator=g).to(pairs.device)]
                pairs = noisy_pairs(x, self.noise, g)
            self.reset_pairs(*pairs)

    # X_Lip --------------------------------------------------------------------------------------------------
    @property
    def pairs(self) -> PairState:
        """X_Lip with its Algorithm 1 state: ``x, x_prime`` ``[n, *input_shape]``, ``tau, q`` ``[n]``, ..."""
        if self.pool is None:
            raise RuntimeError("CLIP has no pairs: pass them to CLIP(...) or call reset_pairs(x, x_prime)")
        return self.pool

    def reset_pairs(self, x: torch.Tensor, x_prime: torch.Tensor) -> None:
        """A new X_Lip: the pairs ``(x_i, x'_i)``, ``[n, *input_shape]`` each, at step size ``tau``."""
        if len(x) < 1:
            raise ValueError("CLIP: X_Lip needs at least one pair")
        self.pool = PairState.start(x, x_prime, self.tau)
        self.cursor = 0
        self._pending = None

    def _window(self, device: torch.device) -> tuple[torch.Tensor | slice | None, PairState]:
        pool = self.pairs
        if pool.x.device != device:
            self.pool = pool = pool.to(device)
        n, k = len(pool), min(self.pairs_per_step, len(pool))
        if k == n and self.cursor == 0:
            return None, pool
        c = self.cursor
        # a contiguous window is a slice (views, written back by copy); one that wraps around is gathered
        idx = slice(c, c + k) if c + k <= n else (torch.arange(c, c + k) % n).to(device)
        self.cursor = (c + k) % n
        return idx, pool.select(idx)

    def steepest_quotient(self) -> float:
        """The largest quotient over X_Lip at the pairs' last accepted positions (0 for pairs not yet used)."""
        return self.pairs.q.max().item()

    # one step -----------------------------------------------------------------------------------------------
    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, data_loss: Loss = F.cross_entropy,
             return_outputs: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The CLIP objective ``data_loss(model(x), y) + lam * Lip(model, window of X_Lip) ** lip_power``, a
        scalar to call ``backward()`` on; with ``return_outputs`` also the batch outputs ``model(x)``.

        ``x``: a minibatch ``[b, *input_shape]`` on the model's device; ``data_loss(outputs, y)``: any
        differentiable loss returning a scalar. The model runs in whatever mode it is in (``model.train()``
        for training); the pairs as ``pair_mode`` says. Call :meth:`update`
        (or :meth:`advance_pairs`) after ``backward()``.
        """
        if self._pending is not None:
            raise RuntimeError("CLIP.loss called twice without update(): call backward() and update() after each loss")
        idx, window = self._window(x.device)
        if not self.fused:
            if self.pair_mode == "eval":
                with eval_mode(model):
                    algorithm1_step(model, window, self.tau_factor)
            else:
                behind = self.pair_mode == "batch" and any(
                    isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())
                algorithm1_step(_BehindBatch(model, x) if behind else model, window, self.tau_factor)
        terms = clip_objective(model, data_loss, x, y, window, self.lam, self.fused, self.lip_power, self.pair_mode)
        self._pending = (idx, window, terms)
        return (terms.total, terms.outputs) if return_outputs else terms.total

    @property
    def outputs(self) -> torch.Tensor:
        """The batch outputs of the last :meth:`loss` (detached)."""
        if self._pending is None:
            raise RuntimeError("no pending CLIP step: outputs are there between loss() and update()")
        return self._pending[2].outputs.detach()

    def accuracy(self, y: torch.Tensor) -> float:
        """Fraction of the last :meth:`loss` batch whose largest output is the label ``y`` ``[b]`` (class
        outputs ``[b, C]``), in [0, 1]."""
        return (self.outputs.argmax(1) == y).float().mean().item()

    def advance_pairs(self) -> None:
        """Algorithm 1 on the window of the last :meth:`loss`, after its ``backward()`` (fused: with the pair
        gradients of that backward pass; exact: the pairs moved already, their quotients are recorded). Does
        nothing when there is no pending step. Independent of the parameters: before or after ``opt.step()``."""
        if self._pending is None:
            return
        idx, window, terms = self._pending
        if self.fused:
            gx, gxp = recover_pair_gradients(terms)
            window.advance(terms.q.detach(), gx, gxp, self.tau_factor)
        else:
            window.q.copy_(terms.q.detach())
        if idx is None:
            self.pool = window
        elif isinstance(idx, torch.Tensor):  # a gathered window; a slice's views were written in place
            self.pool.assign(idx, window)
        self._pending = None

    def adapt(self, acc: float) -> float:
        """Algorithm 2's discrepancy rule once against the accuracy estimate ``acc`` in [0, 1]: ``lam + dlam``
        if ``acc > target_acc``, else ``max(lam - dlam, 0)`` (nothing without a target). Returns ``lam``."""
        if self.target_acc is not None:
            self.lam = discrepancy_update(self.lam, acc, self.target_acc, self.dlam)
        return self.lam

    def update(self, batch_acc: float | None = None) -> float:
        """After ``backward()`` (and the optimiser step): :meth:`advance_pairs`, then, given the minibatch
        accuracy ``batch_acc`` in [0, 1], the smoothed estimate ``acc`` and (after ``warmup_steps`` updates)
        one discrepancy step of lambda. Returns ``lam``."""
        self.advance_pairs()
        if batch_acc is not None:
            m = self.acc_momentum
            self.acc = batch_acc if self.acc is None else m * self.acc + (1 - m) * batch_acc
            self.steps += 1
            if self.steps > self.warmup_steps:
                self.adapt(self.acc)
        return self.lam

    # saving -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything that changes during training: lambda, the accuracy estimate, X_Lip's state, the window."""
        return {"lam": self.lam, "acc": self.acc, "steps": self.steps, "pool": self.pool, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.lam, self.acc, self.steps = state["lam"], state["acc"], state["steps"]
        self.pool, self.cursor, self._pending = state["pool"], state["cursor"], None

    def __repr__(self) -> str:
        n = 0 if self.pool is None else len(self.pool)
        return (f"CLIP(pairs={n}, target_acc={self.target_acc}, lam={self.lam:.4g}, dlam={self.dlam:g}, "
                f"pairs_per_step={self.pairs_per_step}, fused={self.fused}, lip_power={self.lip_power})")
