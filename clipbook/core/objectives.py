"""The terms a training method adds to the minibatch loss, one small object each, behind one interface.

A :class:`Objective` computes the minibatch objective (:meth:`~Objective.objective`), may act after the
backward pass (:meth:`~Objective.after_backward`: CLIP moves its pairs there) and holds the parameter that
Algorithm 2's discrepancy principle moves (:meth:`~Objective.adapt`): lambda for CLIP and the Jacobian
penalty, mu for weight regularisation, the per-layer scale for spectral normalisation.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .clip import CLIP, discrepancy_step, discrepancy_update
from .lipschitz import PairState
from .models import is_spectrally_normalised, set_spectral_scale

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def weight_norm_sq(model: nn.Module) -> torch.Tensor:
    """Sum of squared entries of all weight matrices/kernels (parameters with >= 2 dims)."""
    return sum((p ** 2).sum() for p in model.parameters() if p.ndim >= 2)


def jacobian_penalty(out: torch.Tensor, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``C * mean_i ||J_f(x_i)^T v_i||^2`` with random unit ``v_i`` in the ``C``-dimensional output space: an
    unbiased estimate of the mean squared Frobenius norm of the Jacobian (differentiable; ``x`` must
    require grad and ``out = f(x)``)."""
    v = torch.randn(out.shape, generator=g).to(out.device)
    v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    (jv,) = torch.autograd.grad((out * v).sum(), x, create_graph=True)
    return out.shape[1] * (jv.flatten(1) ** 2).sum(1).mean()


class Objective:
    """Standard training: the plain loss, nothing to adapt. Subclasses add a term.

    ``value`` is the parameter the discrepancy principle moves (``None`` when there is none); ``mu > 0``
    in the config adds ``mu * sum ||W||^2`` to any method (problem (6) of the paper with CLIP).
    """
    value_name: str | None = None

    def __init__(self, cfg):
        self.cfg = cfg
        self.value = 0.0
        self.mu = float(cfg.mu)

    def setup(self, model: nn.Module, task, g: torch.Generator) -> None:
        """Called once before training."""

    def start_epoch(self, task, g: torch.Generator) -> None:
        """Called before each epoch."""

    def penalised(self, model: nn.Module, task, xb: torch.Tensor, yb: torch.Tensor,
                  g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss + the method's term, batch outputs)`` before any weight penalty."""
        out = model(xb)
        return task.loss(out, yb), out

    def objective(self, model: nn.Module, task, xb: torch.Tensor, yb: torch.Tensor,
                  g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch objective and the batch outputs."""
        total, out = self.penalised(model, task, xb, yb, g)
        if self.mu > 0:
            total = total + self.mu * weight_norm_sq(model)
        return total, out

    def after_backward(self) -> None:
        """Called between ``backward()`` and the optimiser step."""

    def adapt(self, train_acc: float, model: nn.Module) -> None:
        """One discrepancy-principle move of :attr:`value` against the target ``cfg.target_acc``."""

    def record(self) -> dict[str, float]:
        """Per-epoch values for the training history."""
        return {"lam": 0.0, "mu": self.mu}

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "mu": self.mu}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.mu = state["value"], state["mu"]


class WeightPenalty(Objective):
    """``mu * sum ||W||^2`` (weights only, no biases); mu moves by the discrepancy principle."""
    value_name = "mu"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.value = self.mu

    def objective(self, model, task, xb, yb, g):
        total, out = self.penalised(model, task, xb, yb, g)
        return total + self.value * weight_norm_sq(model), out

    def adapt(self, train_acc, model):
        self.value = discrepancy_update(self.value, train_acc, self.cfg.target_acc, self.cfg.dmu)

    def record(self):
        return {"lam": 0.0, "mu": self.value}


class LipschitzPenalty(Objective):
    """CLIP in the trainer: a :class:`clipbook.core.clip.CLIP` built from the config (``lam * Lip(f, X_Lip) **
    lip_power`` over pairs that climb by Algorithm 1), its pairs drawn from the task with the trainer's
    generator, lambda moved against the trainer's accuracy estimate.

    Pair refresh policies (``cfg.pair_refresh``):

    - ``"rotate"`` (the paper's persistent X_Lip): every held-out image with a noisy copy forms one pair,
      once; each step evaluates and moves a window of ``lip_pairs`` of them, and the window moves on to the
      next pairs, cycling through the whole set. Positions and step sizes persist for all of training.
    - ``"epoch"``: ``lip_pairs`` pairs drawn afresh at every epoch (regression, Sec. 4.1).
    """
    value_name = "lam"

    def __init__(self, cfg):
        self.clip = CLIP(None, target_acc=cfg.target_acc, lam=cfg.lam, dlam=cfg.dlam, pairs_per_step=cfg.lip_pairs,
                         tau=cfg.tau, tau_factor=cfg.tau_factor, fused=cfg.fused, lip_power=cfg.lip_power,
                         noise=cfg.lip_noise)
        super().__init__(cfg)
        self.value = float(cfg.lam)

    @property
    def value(self) -> float:
        return self.clip.lam

    @value.setter
    def value(self, v: float) -> None:
        self.clip.lam = v

    @property
    def pool(self) -> PairState:
        return self.clip.pairs

    def setup(self, model, task, g):
        if self.cfg.pair_refresh == "rotate":
            self.clip.reset_pairs(*task.pair_pool(self.cfg.lip_noise, g))

    def start_epoch(self, task, g):
        if self.cfg.pair_refresh == "epoch":
            self.clip.reset_pairs(*task.pairs(self.cfg.lip_pairs, self.cfg.lip_noise, g))

    def penalised(self, model, task, xb, yb, g):
        return self.clip.loss(model, xb, yb, task.loss, return_outputs=True)

    def after_backward(self):
        self.clip.advance_pairs()

    def adapt(self, train_acc, model):
        self.clip.adapt(train_acc)

    def steepest_pair(self) -> float:
        """The largest quotient over X_Lip at the pairs' last accepted positions."""
        return self.clip.steepest_quotient()

    def record(self):
        return {"lam": self.value, "mu": self.mu, "lip_train_pairs": self.steepest_pair()}

    def state_dict(self):
        return {**super().state_dict(), "pool": self.clip.pool, "cursor": self.clip.cursor}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.clip.pool, self.clip.cursor = state["pool"], state["cursor"]


class JacobianPenalty(Objective):
    """``lam`` times a random-projection estimate of the mean squared Frobenius norm of the input-output
    Jacobian on the minibatch (Hoffman et al. 2019); lam moves by the discrepancy principle."""
    value_name = "lam"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.value = float(cfg.lam)

    def penalised(self, model, task, xb, yb, g):
        xr = xb.clone().requires_grad_(True)
        out = model(xr)
        return task.loss(out, yb) + self.value * jacobian_penalty(out, xr, g), out

    def adapt(self, train_acc, model):
        self.value = discrepancy_update(self.value, train_acc, self.cfg.target_acc, self.cfg.dlam)

    def record(self):
        return {"lam": self.value, "mu": self.mu}


class SpectralScale(Objective):
    """Spectral normalisation: every layer's weight has spectral norm ``sn_scale`` (the model must be
    prepared by :func:`clipbook.core.models.apply_spectral_norm`). The discrepancy principle moves the scale the
    other way (a smaller scale is a stronger constraint), never below ``dsn``."""
    value_name = "sn_scale"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.value = float(cfg.sn_scale)

    def setup(self, model, task, g):
        if not is_spectrally_normalised(model):
            raise ValueError("method 'spectral_norm' needs a model prepared with clipbook.core.models.apply_spectral_norm")
        set_spectral_scale(model, self.value)

    def adapt(self, train_acc, model):
        self.value = max(self.value - discrepancy_step(train_acc, self.cfg.target_acc, self.cfg.dsn), self.cfg.dsn)
        set_spectral_scale(model, self.value)

    def record(self):
        return {"lam": 0.0, "mu": self.mu, "sn_scale": self.value}


class AdversarialTraining(Objective):
    """Adversarial training (Madry et al. 2018): the loss on ``attack(model, x, y)`` instead of ``x``.
    ``attack`` is any ``(model, x, y) -> x_adv`` (e.g. L2 PGD); nothing to adapt."""

    def __init__(self, cfg, attack: Attack):
        super().__init__(cfg)
        self.attack = attack

    def penalised(self, model, task, xb, yb, g):
        x_adv = self.attack(model, xb, yb)
        model.train()
        out = model(x_adv)
        return task.loss(out, yb), out


def make_objective(cfg, attack: Attack | None = None) -> Objective:
    """The regulariser of ``cfg.method`` (``adversarial`` needs ``attack``)."""
    simple = {"standard": Objective, "weight_reg": WeightPenalty, "clip": LipschitzPenalty,
              "jacobian": JacobianPenalty, "spectral_norm": SpectralScale}
    if cfg.method == "adversarial":
        if attack is None:
            raise ValueError("method 'adversarial' needs an attack")
        return AdversarialTraining(cfg, attack)
    return simple[cfg.method](cfg)
