"""Auto-PGD (APGD) for the L2 threat model, after Croce & Hein (ICML 2020), "Reliable evaluation of
adversarial robustness with an ensemble of diverse parameter-free attacks", Algorithm 1.

Two losses: cross-entropy (APGD-CE) and the Difference of Logits Ratio (DLR, their eq. (6)); the
targeted version APGD-T maximises the targeted DLR loss (their eq. (7)) once for each of the
``n_target_classes`` classes with the highest clean logits other than the true one.

Per sample the attack runs ``steps`` gradient steps of size ``eta * g / ||g||_2`` with momentum
``alpha = 0.75``; ``eta`` starts at ``2 * eps`` and is halved at the checkpoints ``w_j`` (fractions
0, 0.22, 0.41, 0.57, ... of the budget) when fewer than ``rho`` of the steps since the previous
checkpoint raised the loss (condition 1) or when neither ``eta`` nor the best loss changed between two
checkpoints (condition 2); after a halving the iterate restarts from the best point found so far.

Images are ``[N, C, H, W]`` or ``[N, D]`` tensors in ``[0, 1]``; the model maps them to logits ``[N, K]``.
Distances are Euclidean over all of a sample's pixels. Every iterate lies in the box ``[0, 1]`` and in
the ball ``||x_adv - x||_2 <= eps`` (the exact Euclidean projection onto their intersection, see
:func:`project_l2_box`). A sample counts as broken at the first evaluated iterate that it misclassifies;
that point is kept and the sample is no longer attacked, so success never decreases over iterations,
restarts or target classes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .l2 import flat_norms, per_sample, shrink_into_ball, uniform_on_sphere
from .models import eval_mode

LOSSES = ("ce", "dlr")
MOMENTUM = 0.75

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


# ---------------------------------------------------------------------------------------------- geometry

def _ball_scale(v: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """Largest ``t`` in ``[0, 1]`` with ``||clip(t v, lo, hi)||_2 <= eps`` per row, for rows ``[M, D]`` whose
    ``t = 1`` point lies outside the ball (``lo <= 0 <= hi``); returns ``[M]``.

    Coordinate ``i`` is clipped for ``t > b_i = bound_i / v_i`` (``bound`` = ``hi`` or ``lo`` by the sign
    of ``v_i``), so ``||clip(t v)||^2 = C + t^2 S`` on each interval of ``t`` with a fixed clipped set
    (``C``: squared bounds of the clipped coordinates, ``S``: squared ``v`` of the free ones). Solving
    ``C + t^2 S = eps^2`` with the clipped set frozen at the current ``t`` over-estimates the norm (a
    coordinate counted as free where it is clipped contributes ``t^2 v^2 >= bound^2``, one counted as
    clipped where it is free ``bound^2 >= t^2 v^2``), so the root never overshoots the exact one: from
    ``t = 1`` the first root is a lower bound and later iterates increase monotonically to the exact
    root, reached as soon as the clipped set stops changing (a fixed point). Only coordinates with
    ``0 < b_i < 1`` can change sides, so the iteration runs on that (usually short) list.
    """
    with torch.no_grad():
        r = v.reciprocal()
        bp = torch.maximum(hi * r, lo.mul(r))  # b_i >= 0; NaN where v_i = 0 (never counted: v_i^2 = 0)
        v_sq = v.square()
        free_sq = (v_sq * (bp >= 1)).sum(1)  # never clipped for t <= 1; b_i = 0: always clipped, to 0
        flat = ((bp > 0) & (bp < 1)).view(-1).nonzero().squeeze(1)
        rows = flat.div(v.shape[1], rounding_mode="floor")
        b_act, v_sq = bp.view(-1)[flat], v_sq.view(-1)[flat]
        bound_sq = b_act.square() * v_sq
    t = torch.ones(len(v), dtype=v.dtype, device=v.device)
    for _ in range(iters):
        clipped = b_act < t[rows]
        c = torch.zeros_like(t).index_add_(0, rows, bound_sq * clipped)
        s = free_sq.index_add(0, rows, v_sq * ~clipped)
        t_new = torch.where(s > 0, torch.sqrt((eps * eps - c).clamp_min(0.0) / s.clamp_min(1e-30)), 0.0)
        if torch.equal(t_new, t):
            break
        t = t_new
    return t


def project_l2_box(x: torch.Tensor, delta: torch.Tensor, eps: float, iters: int = 100) -> torch.Tensor:
    """Euclidean projection of ``delta`` onto ``{d : ||d||_2 <= eps, 0 <= x + d <= 1}``, per sample.

    By the KKT conditions the projection is ``clip(t * delta, -x, 1 - x)`` with the largest ``t`` in
    ``[0, 1]`` whose result lies in the ball (``t = 1`` when clipping alone suffices); ``t`` is found by
    :func:`_ball_scale`. Requires ``x`` in ``[0, 1]`` and ``eps >= 0``. Shapes ``[N, ...]``; returns the new
    ``delta`` (same shape), with norms at most ``eps`` up to float rounding (a final rescale ensures it).
    """
    shape = delta.shape
    v, xf = delta.flatten(1), x.flatten(1)
    lo, hi = -xf, 1.0 - xf
    d = torch.minimum(torch.maximum(v, lo), hi)
    outside = flat_norms(d) > eps
    if bool(outside.all()):
        d = torch.minimum(torch.maximum(per_sample(_ball_scale(v, lo, hi, eps, iters), v) * v, lo), hi)
    elif bool(outside.any()):
        idx = outside.nonzero().squeeze(1)
        vi, li, hi_i = v[idx], lo[idx], hi[idx]
        t = _ball_scale(vi, li, hi_i, eps, iters)
        d[idx] = torch.minimum(torch.maximum(per_sample(t, vi) * vi, li), hi_i)
    # guard against rounding: shrinking towards 0 keeps the box (x is in it)
    return shrink_into_ball(d, eps).view(shape)


def _random_start(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` plus a uniformly random direction of length ``eps`` (:func:`~clipbook.core.l2.uniform_on_sphere`,
    drawn on ``generator``'s device: APGD's generators live on ``x``'s device), projected into box and ball;
    ``[N, ...]``."""
    return x + project_l2_box(x, uniform_on_sphere(x, eps, generator), eps)


# ---------------------------------------------------------------------------------------------- losses

def ce_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample cross-entropy ``[N]`` to maximise: ``CE(z, y)``, or ``-CE(z, t)`` when ``target`` is given."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of Logits Ratio ``[N]`` to maximise (Croce & Hein eqs. (6) and (7)).

    Untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``; targeted:
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, with ``z_pi1 >= z_pi2 >= ...`` the sorted logits.
    Invariant to shifting and positive scaling of the logits. Needs >= 3 (untargeted) or >= 4 classes.
    """
    k = logits.shape[1]
    need = 3 if target is None else 4
    if k < need:
        raise ValueError(f"the {'targeted ' if target is not None else ''}DLR loss needs >= {need} classes, got {k}")
    zs = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        others = logits.scatter(1, y[:, None], float("-inf"))
        return -(z_y - others.max(1).values) / (zs[:, 0] - zs[:, 2] + 1e-12)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (zs[:, 0] - 0.5 * (zs[:, 2] + zs[:, 3]) + 1e-12)


LOSS_FUNCTIONS: dict[str, Loss] = {"ce": ce_loss, "dlr": dlr_loss}


# ---------------------------------------------------------------------------------------------- schedule

def checkpoints(steps: int) -> list[int]:
    """The step-size checkpoints ``w_j = ceil(p_j * steps)``, ``p_0 = 0``, ``p_1 = 0.22``,
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (Croce & Hein, Sec. 3.2), without ``w_0 = 0``
    and duplicates, all ``<= steps``. E.g. 100 steps: [22, 41, 57, 70, 80, 87, 93, 99]."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    ws = sorted({math.ceil(round(q * steps, 9)) for q in p[1:]})
    return [w for w in ws if 0 < w <= steps]


# ---------------------------------------------------------------------------------------------- one run

@dataclass
class _State:
    """Per-sample state of one APGD run over the still-unbroken samples (all tensors indexed alike)."""
    idx: torch.Tensor        # [M] positions in the batch
    x: torch.Tensor          # [M, ...] clean images
    y: torch.Tensor          # [M] labels
    target: torch.Tensor | None  # [M] target classes, or None
    cur: torch.Tensor        # [M, ...] current iterate x^(k)
    prev: torch.Tensor       # [M, ...] previous iterate x^(k-1)
    grad: torch.Tensor       # [M, ...] loss gradient at cur
    loss: torch.Tensor       # [M] loss at cur
    eta: torch.Tensor        # [M] step size (L2 length)
    best: torch.Tensor       # [M, ...] highest-loss iterate so far, x_max
    best_grad: torch.Tensor  # [M, ...] gradient at best
    best_loss: torch.Tensor  # [M] f_max
    n_up: torch.Tensor       # [M] steps since the last checkpoint that raised the loss
    ckpt_eta: torch.Tensor   # [M] eta at the last checkpoint
    ckpt_best: torch.Tensor  # [M] f_max at the last checkpoint

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the samples where ``mask`` is False (they are broken)."""
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value[mask])


def _loss_and_grad(model: nn.Module, loss_fn: Loss, xa: torch.Tensor, y: torch.Tensor,
                   target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss ``[M]``, its input gradient ``[M, ...]`` and the logits ``[M, K]`` at ``xa``."""
    xr = xa.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xr)
        loss = loss_fn(logits, y, target)
        (g,) = torch.autograd.grad(loss.sum(), xr)
    return loss.detach(), g.detach(), logits.detach()


def _broken(logits: torch.Tensor, y: torch.Tensor, goal: torch.Tensor | None) -> torch.Tensor:
    """``[M]`` bool: misclassified (``goal`` None) or classified as ``goal``."""
    pred = logits.argmax(1)
    return pred != y if goal is None else pred == goal


def _step(s: _State, eps: float, first: bool) -> torch.Tensor:
    """Algorithm 1's update: ``z = P(x + eta g/||g||)``, ``x' = P(x + a (z - x) + (1 - a)(x - x_prev))``."""
    g = s.grad * per_sample(s.eta / flat_norms(s.grad).clamp_min(1e-30), s.grad)
    z = s.x + project_l2_box(s.x, s.cur + g - s.x, eps)
    if first:
        return z
    moved = s.cur + MOMENTUM * (z - s.cur) + (1.0 - MOMENTUM) * (s.cur - s.prev)
    return s.x + project_l2_box(s.x, moved - s.x, eps)


def _checkpoint(s: _State, since: int, rho: float) -> None:
    """Halve ``eta`` and restart from ``x_max`` where condition 1 or 2 of Croce & Hein holds."""
    cond1 = s.n_up < rho * since
    cond2 = (s.ckpt_eta == s.eta) & (s.ckpt_best == s.best_loss)
    red = cond1 | cond2
    s.eta = torch.where(red, s.eta / 2, s.eta)
    m = per_sample(red, s.cur)
    s.cur = torch.where(m, s.best, s.cur)
    s.prev = torch.where(m, s.best, s.prev)  # no momentum across the restart
    s.grad = torch.where(m, s.best_grad, s.grad)
    s.loss = torch.where(red, s.best_loss, s.loss)
    s.n_up.zero_()
    s.ckpt_eta, s.ckpt_best = s.eta.clone(), s.best_loss.clone()


def apgd_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, loss: str = "ce",
             target: torch.Tensor | None = None, steps: int = 100, rho: float = 0.75,
             start: torch.Tensor | None = None, stop_at_target: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run (Algorithm 1) from ``start`` (default ``x``); the model must already be in eval mode.

    Shapes: ``x``/``start`` ``[N, ...]`` in [0, 1], ``y``/``target`` ``[N]``. A sample is broken when
    misclassified (or, with ``stop_at_target``, classified as ``target``); it is then frozen at that iterate.
    Returns ``(x_adv, broken, best_loss)``: the first breaking iterate, else the highest-loss one
    ``[N, ...]``; ``[N]`` bool; ``[N]`` the highest loss reached (``-inf`` where broken).
    """
    loss_fn = LOSS_FUNCTIONS[loss]
    goal = target if stop_at_target else None
    cur = x.clone() if start is None else start.clone()
    out, out_loss = cur.clone(), torch.full((len(x),), float("-inf"), device=x.device, dtype=x.dtype)
    broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    f, g, logits = _loss_and_grad(model, loss_fn, cur, y, target)
    n = len(x)
    s = _State(torch.arange(n, device=x.device), x, y, target, cur, cur, g, f,
               torch.full((n,), 2.0 * eps, device=x.device, dtype=x.dtype), cur, g, f,
               torch.zeros(n, device=x.device), torch.full((n,), 2.0 * eps, device=x.device, dtype=x.dtype), f)
    _record(s, logits, goal, out, broken)
    ws, last_w = set(checkpoints(steps)), 0
    for k in range(steps):
        if len(s.idx) == 0:
            break
        new = _step(s, eps, first=(k == 0))
        f_new, g_new, logits = _loss_and_grad(model, loss_fn, new, s.y, s.target)
        s.n_up += (f_new > s.loss).to(s.n_up.dtype)
        s.prev, s.cur, s.grad, s.loss = s.cur, new, g_new, f_new
        up = f_new > s.best_loss
        s.best = torch.where(per_sample(up, new), new, s.best)
        s.best_grad = torch.where(per_sample(up, new), g_new, s.best_grad)
        s.best_loss = torch.where(up, f_new, s.best_loss)
        _record(s, logits, goal, out, broken)
        if k + 1 in ws:
            _checkpoint(s, k + 1 - last_w, rho)
            last_w = k + 1
    out[s.idx], out_loss[s.idx] = s.best, s.best_loss
    return out, broken, out_loss


def _record(s: _State, logits: torch.Tensor, goal: torch.Tensor | None, out: torch.Tensor,
            broken: torch.Tensor) -> None:
    """Store the iterates ``s.cur`` (where ``logits`` ``[M, K]`` were computed) that break their sample
    into ``out`` ``[N, ...]``, mark them in ``broken`` ``[N]`` and stop attacking those samples."""
    hit = _broken(logits, s.y, None if goal is None else s.target)
    if hit.any():
        out[s.idx[hit]] = s.cur[hit]
        broken[s.idx[hit]] = True
        s.keep(~hit)


# ---------------------------------------------------------------------------------------------- attack

@dataclass(frozen=True)
class APGD:
    """Auto-PGD, L2 threat model: ``APGD(eps)(model, x, y) -> x_adv`` (the project's attack interface).

    ``loss``: ``"ce"`` (APGD-CE) or ``"dlr"``; ``targeted=True`` gives APGD-T: for each of the
    ``n_target_classes`` classes with the highest clean logits other than ``y`` (at most ``K - 1``), a run
    of ``restarts`` restarts on the targeted loss (targeted DLR, or ``-CE`` to the target for ``"ce"``).
    ``steps`` gradient steps per run (one forward and backward pass each, plus one at the start), ``rho``
    the checkpoint threshold of condition 1, ``random_start`` starts each run at a random point of the
    sphere of radius ``eps`` (projected into the box), drawn on ``x.device`` (not a CPU generator: the same
    ``seed`` gives other starts on a GPU than on the CPU). Samples are attacked in chunks of ``batch_size``,
    chunk ``k`` with its own generator seeded ``seed + k``, each start drawn for the whole chunk. Runs after
    the first attack only the samples still classified correctly; a sample broken once stays broken (its
    first misclassified iterate is returned), otherwise its highest-loss iterate is returned.
    """

    eps: float
    loss: str = "ce"
    targeted: bool = False
    n_target_classes: int = 9
    steps: int = 100
    restarts: int = 1
    seed: int = 0
    rho: float = 0.75
    random_start: bool = True
    batch_size: int = 1000

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown APGD loss {self.loss!r}; choose one of {LOSSES}")
        if self.eps < 0 or self.steps < 0 or self.restarts < 1 or self.n_target_classes < 1:
            raise ValueError(f"need eps >= 0, steps >= 0, restarts >= 1, n_target_classes >= 1; got "
                             f"{self.eps}, {self.steps}, {self.restarts}, {self.n_target_classes}")
        if not 0.0 <= self.rho <= 1.0 or self.batch_size < 1:
            raise ValueError(f"need 0 <= rho <= 1 and batch_size >= 1; got {self.rho}, {self.batch_size}")

    @property
    def name(self) -> str:
        """``"apgd-ce"``, ``"apgd-dlr"``, ``"apgd-t"`` (targeted DLR) or ``"apgd-t-ce"``."""
        if self.targeted:
            return "apgd-t" if self.loss == "dlr" else "apgd-t-ce"
        return f"apgd-{self.loss}"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 active: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial images ``[N, ...]`` in [0, 1] with ``||x_adv - x||_2 <= eps`` for ``x`` ``[N, ...]``,
        labels ``y`` ``[N]``; misclassified wherever the attack succeeded. ``active`` ``[N]`` (bool): attack
        only those samples, return the others unchanged (random starts are drawn for every sample, so a
        sample's result does not depend on which others are attacked)."""
        return self._attack(model, x, y, None, active)

    def attack_target(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      target: torch.Tensor) -> torch.Tensor:
        """Targeted attack towards given classes ``target`` ``[N]`` (``!= y``), with this attack's loss
        (targeted DLR or ``-CE``) and budget: a sample is done only once it is classified as its target."""
        if target.shape != y.shape or bool((target == y).any()):
            raise ValueError("target must have y's shape and differ from y everywhere")
        return self._attack(model, x, y, target, None)

    # -- internals

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                target: torch.Tensor | None, active: torch.Tensor | None) -> torch.Tensor:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        if self.eps == 0 or len(x) == 0:
            return x.detach().clone()
        with eval_mode(model):
            chunks = []
            for k, i in enumerate(range(0, len(x), self.batch_size)):
                sl = slice(i, i + self.batch_size)
                # a generator per chunk: a chunk's draws do not depend on what earlier chunks attacked
                gen = torch.Generator(device=x.device).manual_seed(self.seed + k)
                chunks.append(self._attack_batch(model, x[sl].detach(), y[sl], None if target is None
                                                 else target[sl], gen, None if active is None else active[sl]))
            return torch.cat(chunks).clamp_(0.0, 1.0)  # only rounding-level changes: iterates are feasible

    def _targets(self, logits: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor | None]:
        """The target classes of each run, ``[N]`` each: the top non-true classes, or ``[None]``."""
        if not self.targeted:
            return [None]
        k = logits.shape[1]
        if self.loss == "dlr" and k < 4:
            raise ValueError(f"APGD-T with the targeted DLR loss needs >= 4 classes, got {k}")
        order = logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
        return [order[:, r] for r in range(min(self.n_target_classes, k - 1))]

    @torch.no_grad()
    def _attack_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      goal: torch.Tensor | None, gen: torch.Generator, active: torch.Tensor | None) -> torch.Tensor:
        """Attack one chunk ``x`` ``[B, ...]``; ``goal`` ``[B]`` forces targets and success = reaching them;
        only where ``active`` ``[B]`` holds (all if None)."""
        logits = model(x)
        out = x.clone()
        remaining = logits.argmax(1) != goal if goal is not None else logits.argmax(1) == y
        if active is not None:
            remaining &= active.to(remaining.device)
        best_loss = torch.full((len(x),), float("-inf"), device=x.device, dtype=x.dtype)
        targets = [goal] if goal is not None else self._targets(logits, y)
        for t in targets:
            for _ in range(self.restarts):
                idx = remaining.nonzero().squeeze(1)
                if len(idx) == 0:
                    return out
                xs = x[idx]
                # drawn for the whole chunk: a sample's start does not depend on which others remain
                start = _random_start(x, self.eps, gen)[idx] if self.random_start else xs
                adv, hit, f = apgd_run(model, xs, y[idx], self.eps, self.loss, None if t is None else t[idx],
                                       self.steps, self.rho, start, stop_at_target=goal is not None)
                better = ~hit & (f > best_loss[idx])
                out[idx[hit | better]] = adv[hit | better]
                best_loss[idx[better]] = f[better]
                remaining[idx[hit]] = False
        return out
