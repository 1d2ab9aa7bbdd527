"""Training: standard, L2 weight regularisation and CLIP (Algorithm 2), one trainer for all.

The objective per minibatch ``B`` is ``mean loss(f(x), y) + lambda * Lip(f, X_Lip) + mu * sum ||W||^2``
(weights only, no biases). ``lambda`` (CLIP) and ``mu`` (weight regularisation) are either fixed or moved
after every step by the discrepancy principle of Algorithm 2: ``+d`` when the training accuracy estimate is
above the target ``alpha``, else ``-d``, clipped at 0.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import pgd_l2
from .data import ClassificationSplit, noisy_pairs
from .evaluation import accuracy, predict
from .io import save_torch_atomic
from .lipschitz import (MIN_PAIR_DISTANCE, adversarial_update, ascent_step, layerwise_upper_bound,
                        pair_quotients, search_lipschitz_pairs)
from .models import is_spectrally_normalised, set_spectral_scale
from .progress import progress

METHODS = ("standard", "weight_reg", "clip", "spectral_norm", "jacobian")
SELECT = ("last", "pgd")
OPTIMIZERS = ("sgd", "adam")
#: Weight of the probe term ``PROBE * sum_i L_i`` in the fused CLIP step: it makes one backward pass yield
#: every pair's input gradient (divided out afterwards) while adding only ``PROBE * sum grad L_i`` to the
#: parameter gradient, far below float32 noise of the other terms.
PROBE = 1e-6


@dataclass
class TrainConfig:
    """All settings of one training run.

    Methods: ``standard``; ``weight_reg`` (``mu * sum ||W||^2``); ``clip`` (``lam * Lip(f, X_Lip)``);
    ``spectral_norm`` (every layer spectrally normalised and scaled by ``sn_scale``; the model must be
    prepared with :func:`clipbook.models.apply_spectral_norm`); ``jacobian`` (``lam`` times a random-projection
    estimate of the squared Frobenius norm of the input-output Jacobian on the minibatch). Construct with keywords or :meth:`from_dict` (unknown keys raise).

    Discrepancy principle: with ``target_acc`` set (alpha in (0, 1]) the method's parameter (``lam`` for
    CLIP, ``mu`` for weight regularisation) starts at its given value and moves by ``dlam``/``dmu`` after
    every step; with ``target_acc=None`` it stays fixed. The accuracy compared with alpha is an exponential
    moving average (momentum ``acc_momentum``) of the minibatch accuracies, a cheap running estimate of
    the training accuracy A(f; T). No parameter moves during the first ``warmup_epochs`` epochs. For
    ``spectral_norm`` the discrepancy principle moves ``sn_scale`` by ``dsn`` the other way (down when the
    accuracy is above the target: a smaller scale is a stronger constraint), never below ``dsn``.
    """
    method: str = "clip"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    optimizer: str = "sgd"
    seed: int = 0
    target_acc: float | None = None
    lam: float = 0.0
    dlam: float = 0.005
    mu: float = 0.0
    dmu: float = 1e-5
    sn_scale: float = 4.0
    dsn: float = 1e-3
    acc_momentum: float = 0.9
    warmup_epochs: int = 0
    lip_pairs: int = 128
    lip_noise: float = 0.1
    tau: float = 1.0
    tau_factor: float = 1.3
    fused: bool = True
    eval_lip_pairs: int = 128
    eval_lip_steps: int = 10
    select: str = "last"
    val_pgd_steps: int = 10
    val_eps: float = 2.0

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig: {msg}")
        need(self.method in METHODS, f"method must be one of {METHODS}, got {self.method!r}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        need(self.select in SELECT, f"select must be one of {SELECT}, got {self.select!r}")
        need(isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be an int >= 1, got {self.epochs!r}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        need(self.target_acc is None or 0 < self.target_acc <= 1,
             f"target_acc (alpha) must be in (0, 1] or None, got {self.target_acc}")
        for name in ("lam", "dlam", "mu", "dmu", "sn_scale", "dsn"):
            v = getattr(self, name)
            need(v >= 0 and math.isfinite(v), f"{name} must be finite and >= 0, got {v}")
        need(0 <= self.acc_momentum < 1, f"acc_momentum must be in [0, 1), got {self.acc_momentum}")
        need(0 <= self.warmup_epochs, f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        need(self.lip_pairs >= 1 and self.eval_lip_pairs >= 1, "lip_pairs and eval_lip_pairs must be >= 1")
        need(self.lip_noise > 0, f"lip_noise must be > 0, got {self.lip_noise}")
        need(self.tau > 0 and self.tau_factor >= 1, "tau must be > 0 and tau_factor >= 1")
        need(self.eval_lip_steps >= 0 and self.val_pgd_steps >= 0, "eval_lip_steps and val_pgd_steps must be >= 0")
        if self.method == "standard":
            need(self.lam == 0 and self.mu == 0, "standard training takes lam = mu = 0")
        if self.method == "clip":
            need(self.mu == 0 or self.target_acc is None,
                 "CLIP with the discrepancy principle takes mu = 0 (a fixed mu > 0 gives problem (6))")
        if self.method in ("weight_reg", "spectral_norm"):
            need(self.lam == 0, f"{self.method} takes lam = 0")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def discrepancy_step(train_acc: float, target_acc: float, step: float) -> float:
    """Algorithm 2's direction: ``+step`` (regularise more) if ``train_acc > target_acc``, else ``-step``."""
    return step if train_acc > target_acc else -step


def discrepancy_update(value: float, train_acc: float, target_acc: float, step: float) -> float:
    """Algorithm 2's rule: ``value + step`` if ``train_acc > target_acc`` else ``max(value - step, 0)``."""
    if step < 0 or value < 0:
        raise ValueError("value and step must be >= 0")
    return max(value + discrepancy_step(train_acc, target_acc, step), 0.0)


def weight_norm_sq(model: nn.Module) -> torch.Tensor:
    """Sum of squared entries of all weight matrices/kernels (parameters with >= 2 dims)."""
    return sum((p ** 2).sum() for p in model.parameters() if p.ndim >= 2)


# ------------------------------------------------------------------------------------------- tasks

class ClassificationTask:
    """Cross-entropy on images; Lipschitz pairs from the held-out images and their noisy copies."""
    is_classification = True

    def __init__(self, split: ClassificationSplit):
        self.split = split
        self.x_train, self.y_train = split.x_train, split.y_train

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y)

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out.argmax(1) == y).float()

    def pairs(self, n: int, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.split.x_lip), (n,), generator=g)
        return noisy_pairs(self.split.x_lip[idx], noise, g)


class RegressionTask:
    """Mean squared error on ``(x, y)`` ``[n, 1]``; Lipschitz pairs ``x ~ U(domain)``, ``x' = x + noise``,
    drawn afresh every epoch (Sec. 4.1)."""
    is_classification = False

    def __init__(self, x: torch.Tensor, y: torch.Tensor, domain: tuple[float, float] = (-4.0, 4.0)):
        self.x_train, self.y_train, self.domain = x, y, domain

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y)

    def correct(self, out, y):
        return None

    def pairs(self, n: int, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.domain
        x = a + (b - a) * torch.rand((n, 1), generator=g)
        return noisy_pairs(x, noise, g)


# ----------------------------------------------------------------------------------- pair state

@dataclass
class PairState:
    """The active Lipschitz set X_Lip: pairs ``x, x_prime`` ``[n, ...]`` (where the next step evaluates them),
    step sizes ``tau`` ``[n]`` and the quotients ``q`` ``[n]`` measured at the last accepted positions.

    The fused variant also keeps each pair's last accepted position (``anchor_x``, ``anchor_xp``) and
    whether its current position is an untested proposal (``proposed``).
    """
    x: torch.Tensor
    x_prime: torch.Tensor
    tau: torch.Tensor
    q: torch.Tensor | None = None
    anchor_x: torch.Tensor | None = None
    anchor_xp: torch.Tensor | None = None
    proposed: torch.Tensor | None = None

    @classmethod
    def fresh(cls, task, cfg: TrainConfig, g: torch.Generator) -> "PairState":
        x, xp = task.pairs(cfg.lip_pairs, cfg.lip_noise, g)
        return cls(x, xp, torch.full((len(x),), float(cfg.tau)))

    def advance_fused(self, q: torch.Tensor, gx: torch.Tensor, gxp: torch.Tensor, factor: float) -> None:
        """Algorithm 1 from the gradients of the training step's own backward pass (the cheap variant).

        ``q, gx, gxp`` are the quotients and their input gradients at the current positions. A position
        that was a proposal is accepted when its quotient is at least the quotient at the pair's last
        accepted position (then ``tau *= factor`` and the pair takes its next ascent step), and rejected
        otherwise (the pair goes back to that position, ``tau /= factor``, and is re-evaluated next step).
        Moves that bring a pair closer than :data:`MIN_PAIR_DISTANCE` are skipped.
        """
        n = len(q)
        if self.proposed is None:
            self.proposed = torch.zeros(n, dtype=torch.bool)
            self.anchor_x, self.anchor_xp, self.q = self.x, self.x_prime, q
        reject = self.proposed & (q < self.q)
        accept_proposal = self.proposed & ~reject
        self.tau = torch.where(accept_proposal, self.tau * factor, torch.where(reject, self.tau / factor, self.tau))
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


# --------------------------------------------------------------------------------------- result

@dataclass
class TrainResult:
    """What :func:`train` returns. ``model`` holds the selected weights (best validation PGD accuracy when
    ``select='pgd'``, else the last); ``history`` one dict per epoch."""
    model: nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    lam: float
    mu: float
    pairs: PairState
    resumed_from: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's SGDM), or Adam (``momentum`` then is beta1)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)


def _epoch_metrics(model: nn.Module, task, cfg: TrainConfig, g_eval_seed: int) -> dict[str, float]:
    """Monitoring after an epoch: Lipschitz estimate by pair search, product bound, validation accuracies."""
    out: dict[str, float] = {}
    g = torch.Generator().manual_seed(g_eval_seed)
    x, xp = task.pairs(cfg.eval_lip_pairs, cfg.lip_noise, g)
    found = search_lipschitz_pairs(model, x, xp, steps=cfg.eval_lip_steps, tau=cfg.tau)
    out["lip_estimate"] = found.quotients.max().item()
    out["upper_bound"] = layerwise_upper_bound(model)
    if task.is_classification and len(task.split.x_val):
        sp = task.split
        out["val_clean"] = 100 * accuracy(model, sp.x_val, sp.y_val)
        if cfg.select == "pgd" or cfg.val_pgd_steps:
            adv = pgd_l2(model, sp.x_val, sp.y_val, eps=cfg.val_eps, alpha=0.25, steps=cfg.val_pgd_steps)
            out["val_pgd"] = 100 * (predict(model, adv).argmax(1) == sp.y_val).float().mean().item()
    return out


def jacobian_penalty(out: torch.Tensor, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``C * mean_i ||J_f(x_i)^T v_i||^2`` with random unit ``v_i`` in the ``C``-dimensional output space: an
    unbiased estimate of the mean squared Frobenius norm of the Jacobian (differentiable; ``x`` must
    require grad and ``out = f(x)``)."""
    v = torch.randn(out.shape, generator=g)
    v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    (jv,) = torch.autograd.grad((out * v).sum(), x, create_graph=True)
    return out.shape[1] * (jv.flatten(1) ** 2).sum(1).mean()


def clip_objective(model: nn.Module, task, xb: torch.Tensor, yb: torch.Tensor, pairs: "PairState", lam: float,
                   fused: bool):
    """CLIP's minibatch objective ``loss + lam * max_i L_i`` from ONE forward pass over batch and pairs.

    With ``fused`` the pair inputs require gradients and the probe ``PROBE * sum_i L_i`` is added, so the
    same backward pass also yields every pair's input gradient (see :func:`recover_pair_gradients`).
    Returns ``(total, batch_outputs, quotients [n], argmax index, pair x, pair x')``.
    """
    b = len(xb)
    px = pairs.x.detach().requires_grad_(fused)
    pxp = pairs.x_prime.detach().requires_grad_(fused)
    out = model(torch.cat([xb, px, pxp]))
    q = pair_quotients(out[b:], px, pxp)
    imax = int(q.argmax())
    total = task.loss(out[:b], yb) + lam * q[imax]
    if fused:
        total = total + PROBE * q.sum()
    return total, out[:b], q, imax, px, pxp


def recover_pair_gradients(px: torch.Tensor, pxp: torch.Tensor, imax: int, lam: float):
    """Input gradients ``grad_x L_i, grad_x' L_i`` after ``backward()`` of a fused :func:`clip_objective`:
    pair ``i`` received ``(PROBE + lam [i = argmax]) * grad L_i``; divide that coefficient out."""
    coef = torch.full((len(px),), PROBE)
    coef[imax] += lam
    c = coef.view(-1, *([1] * (px.ndim - 1)))
    return px.grad / c, pxp.grad / c


def train(model: nn.Module, task, cfg: TrainConfig, state_path: str | Path | None = None,
          desc: str = "train") -> TrainResult:
    """Train ``model`` in place with ``cfg`` on ``task`` (:class:`ClassificationTask` or :class:`RegressionTask`).

    Warm start: pass an already trained model (and ``cfg.lam`` as the starting lambda). With
    ``state_path`` the full training state is saved atomically after every epoch and an interrupted run
    resumes from it (same config required). Shuffling and pair sampling use a generator seeded from
    ``cfg.seed``, so the same call gives the same numbers on the same machine.
    """
    if cfg.target_acc is not None and not task.is_classification:
        raise ValueError("the discrepancy principle needs an accuracy: use a fixed lam (target_acc=None) for regression")
    if cfg.select == "pgd" and not task.is_classification:
        raise ValueError("select='pgd' needs a classification task")
    g = torch.Generator().manual_seed(cfg.seed + 1)
    opt = _optimizer(model, cfg)
    lam, mu, sn = float(cfg.lam), float(cfg.mu), float(cfg.sn_scale)
    if cfg.method == "spectral_norm":
        if not is_spectrally_normalised(model):
            raise ValueError("method 'spectral_norm' needs a model prepared with clipbook.models.apply_spectral_norm")
        set_spectral_scale(model, sn)
    acc_ema: float | None = None
    history: list[dict[str, float]] = []
    best_state, best_score, best_epoch = None, -math.inf, 0
    pairs = PairState.fresh(task, cfg, g) if cfg.method == "clip" else None
    start_epoch = 0
    state_path = Path(state_path) if state_path else None
    if state_path and state_path.exists():
        st = torch.load(state_path, weights_only=False)
        if st["config"] != cfg.to_dict():
            raise ValueError(f"{state_path} holds a run with another config; delete it to start afresh")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        lam, mu, acc_ema, history = st["lam"], st["mu"], st["acc_ema"], st["history"]
        sn = st.get("sn", sn)
        best_state, best_score, best_epoch = st["best_state"], st["best_score"], st["best_epoch"]
        pairs = st["pairs"]
        g.set_state(st["generator"])
        start_epoch = st["epoch"]

    n = len(task.x_train)
    model.train()
    epochs = progress(range(start_epoch, cfg.epochs), desc=desc, unit="epoch", initial=start_epoch, total=cfg.epochs)
    for epoch in epochs:
        t0 = time.perf_counter()
        adapt = cfg.target_acc is not None and epoch >= cfg.warmup_epochs
        perm = torch.randperm(n, generator=g)
        if pairs is not None:
            pairs = PairState.fresh(task, cfg, g)
        sum_loss, sum_correct, n_seen, steps = 0.0, 0.0, 0, 0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb, yb = task.x_train[idx], task.y_train[idx]
            b = len(idx)
            if pairs is not None and not cfg.fused:
                step = adversarial_update(model, pairs.x, pairs.x_prime, pairs.tau, cfg.tau_factor)
                pairs = PairState(step.x, step.x_prime, step.tau, step.quotients)
            if pairs is not None:
                total, ob, q, imax, px, pxp = clip_objective(model, task, xb, yb, pairs, lam, cfg.fused)
            elif cfg.method == "jacobian":
                xr = xb.clone().requires_grad_(True)
                ob = model(xr)
                total = task.loss(ob, yb) + lam * jacobian_penalty(ob, xr, g)
            else:
                ob = model(xb)
                total = task.loss(ob, yb)
            loss_value = task.loss(ob.detach(), yb).item()
            if cfg.method == "weight_reg" or mu > 0:
                total = total + mu * weight_norm_sq(model)
            opt.zero_grad(set_to_none=True)
            total.backward()
            if pairs is not None and cfg.fused:
                gx, gxp = recover_pair_gradients(px, pxp, imax, lam)
                pairs.advance_fused(q.detach(), gx, gxp, cfg.tau_factor)
            elif pairs is not None:
                pairs.q = q.detach()
            opt.step()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {loss_value}); lower lr or dlam")
            sum_loss += loss_value * b
            n_seen += b
            steps += 1
            corr = task.correct(ob.detach(), yb)
            if corr is not None:
                batch_acc = corr.mean().item()
                sum_correct += batch_acc * b
                acc_ema = batch_acc if acc_ema is None else cfg.acc_momentum * acc_ema + (1 - cfg.acc_momentum) * batch_acc
                if adapt and cfg.method in ("clip", "jacobian"):
                    lam = discrepancy_update(lam, acc_ema, cfg.target_acc, cfg.dlam)
                elif adapt and cfg.method == "spectral_norm":
                    # a smaller scale is a stronger constraint: the scale moves against the step
                    sn = max(sn - discrepancy_step(acc_ema, cfg.target_acc, cfg.dsn), cfg.dsn)
                    set_spectral_scale(model, sn)
                elif adapt and cfg.method == "weight_reg":
                    mu = discrepancy_update(mu, acc_ema, cfg.target_acc, cfg.dmu)
        train_time = time.perf_counter() - t0
        model.eval()
        rec = {"epoch": epoch + 1, "loss": sum_loss / n_seen, "lam": lam, "mu": mu, "time_s": train_time}
        if cfg.method == "spectral_norm":
            rec["sn_scale"] = sn
        if task.is_classification:
            rec["train_acc"] = 100 * sum_correct / n_seen
        if pairs is not None and pairs.q is not None:
            rec["lip_train_pairs"] = pairs.q.max().item()
        t1 = time.perf_counter()
        rec.update(_epoch_metrics(model, task, cfg, cfg.seed + 10_000))
        rec["eval_time_s"] = time.perf_counter() - t1
        model.train()
        history.append(rec)
        score = rec.get("val_pgd", -math.inf) if cfg.select == "pgd" else epoch
        if cfg.select == "last" or score >= best_score:
            best_score, best_epoch = score, epoch + 1
            best_state = copy.deepcopy(model.state_dict()) if cfg.select == "pgd" else None
        epochs.set_postfix({k: round(rec[k], 3) for k in ("loss", "train_acc", "lam", "mu", "lip_estimate") if k in rec})
        if state_path:
            save_torch_atomic(state_path, {
                "config": cfg.to_dict(), "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "lam": lam, "mu": mu, "sn": sn, "acc_ema": acc_ema, "history": history,
                "best_state": best_state, "best_score": best_score, "best_epoch": best_epoch,
                "pairs": pairs, "generator": g.get_state()})
    if cfg.select == "pgd" and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, history, best_epoch, lam, mu, pairs, resumed_from=start_epoch,
                       extra={"sn_scale": sn} if cfg.method == "spectral_norm" else {})
