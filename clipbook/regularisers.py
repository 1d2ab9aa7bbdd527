"""The terms a training method adds to the minibatch loss, one small object each, behind one interface.

A :class:`Regulariser` computes the minibatch objective (:meth:`~Regulariser.objective`), may act after the
backward pass (:meth:`~Regulariser.after_backward`: CLIP moves its pairs there) and holds the parameter that
Algorithm 2's discrepancy principle moves (:meth:`~Regulariser.adapt`): lambda for CLIP and the Jacobian
penalty, mu for weight regularisation, the per-layer scale for spectral normalisation.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .clip import PairState, clip_objective, discrepancy_step, discrepancy_update, recover_pair_gradients
from .lipschitz import adversarial_update
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


class Regulariser:
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


class WeightDecay(Regulariser):
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


class LipschitzPenalty(Regulariser):
    """CLIP: ``lam * Lip(f, X_Lip) ** lip_power`` over the pairs of X_Lip, which climb by Algorithm 1.

    Pair refresh policies (``cfg.pair_refresh``):

    - ``"rotate"`` (the paper's persistent X_Lip): every held-out image with a noisy copy forms one pair,
      once; each step evaluates and moves a window of ``lip_pairs`` of them, and the window moves on to the
      next pairs, cycling through the whole set. Positions and step sizes persist for all of training.
    - ``"epoch"``: ``lip_pairs`` pairs drawn afresh at every epoch (regression, Sec. 4.1).
    """
    value_name = "lam"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.value = float(cfg.lam)
        self.pool: PairState | None = None
        self.cursor = 0
        self._window: tuple[torch.Tensor, PairState] | None = None
        self._terms = None

    def _fresh(self, task, g) -> PairState:
        x, xp = task.pairs(self.cfg.lip_pairs, self.cfg.lip_noise, g)
        return PairState.start(x, xp, self.cfg.tau)

    def setup(self, model, task, g):
        if self.cfg.pair_refresh == "rotate":
            x, xp = task.pair_pool(self.cfg.lip_noise, g)
            self.pool = PairState.start(x, xp, self.cfg.tau)

    def start_epoch(self, task, g):
        if self.cfg.pair_refresh == "epoch":
            self.pool = self._fresh(task, g)

    def _take_window(self) -> tuple[torch.Tensor | None, PairState]:
        if self.cfg.pair_refresh == "epoch":
            return None, self.pool
        n, k = len(self.pool), min(self.cfg.lip_pairs, len(self.pool))
        idx = (torch.arange(self.cursor, self.cursor + k) % n).to(self.pool.x.device)
        self.cursor = (self.cursor + k) % n
        return idx, self.pool.select(idx)

    def penalised(self, model, task, xb, yb, g):
        idx, pairs = self._take_window()
        if not self.cfg.fused:
            step = adversarial_update(model, pairs.x, pairs.x_prime, pairs.tau, self.cfg.tau_factor)
            pairs = PairState.start(step.x, step.x_prime, 1.0)
            pairs.tau, pairs.q = step.tau, step.quotients
        self._window = (idx, pairs)
        self._terms = clip_objective(model, task.loss, xb, yb, pairs, self.value, self.cfg.fused, self.cfg.lip_power)
        return self._terms.total, self._terms.outputs

    def after_backward(self):
        idx, pairs = self._window
        terms = self._terms
        if self.cfg.fused:
            gx, gxp = recover_pair_gradients(terms, self.value, self.cfg.lip_power)
            pairs.advance(terms.q.detach(), gx, gxp, self.cfg.tau_factor)
        else:
            pairs.q = terms.q.detach()
        if idx is None:
            self.pool = pairs
        else:
            self.pool.assign(idx, pairs)
        self._window = self._terms = None

    def adapt(self, train_acc, model):
        self.value = discrepancy_update(self.value, train_acc, self.cfg.target_acc, self.cfg.dlam)

    def steepest_pair(self) -> float:
        """The largest quotient over X_Lip at the pairs' last accepted positions."""
        return self.pool.q.max().item()

    def record(self):
        return {"lam": self.value, "mu": self.mu, "lip_train_pairs": self.steepest_pair()}

    def state_dict(self):
        return {**super().state_dict(), "pool": self.pool, "cursor": self.cursor}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.pool, self.cursor = state["pool"], state["cursor"]


class JacobianPenalty(Regulariser):
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


class SpectralScale(Regulariser):
    """Spectral normalisation: every layer's weight has spectral norm ``sn_scale`` (the model must be
    prepared by :func:`clipbook.models.apply_spectral_norm`). The discrepancy principle moves the scale the
    other way (a smaller scale is a stronger constraint), never below ``dsn``."""
    value_name = "sn_scale"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.value = float(cfg.sn_scale)

    def setup(self, model, task, g):
        if not is_spectrally_normalised(model):
            raise ValueError("method 'spectral_norm' needs a model prepared with clipbook.models.apply_spectral_norm")
        set_spectral_scale(model, self.value)

    def adapt(self, train_acc, model):
        self.value = max(self.value - discrepancy_step(train_acc, self.cfg.target_acc, self.cfg.dsn), self.cfg.dsn)
        set_spectral_scale(model, self.value)

    def record(self):
        return {"lam": 0.0, "mu": self.mu, "sn_scale": self.value}


class AdversarialTraining(Regulariser):
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


def make_regulariser(cfg, attack: Attack | None = None) -> Regulariser:
    """The regulariser of ``cfg.method`` (``adversarial`` needs ``attack``)."""
    simple = {"standard": Regulariser, "weight_reg": WeightDecay, "clip": LipschitzPenalty,
              "jacobian": JacobianPenalty, "spectral_norm": SpectralScale}
    if cfg.method == "adversarial":
        if attack is None:
            raise ValueError("method 'adversarial' needs an attack")
        return AdversarialTraining(cfg, attack)
    return simple[cfg.method](cfg)
