"""One trainer for every method: the settings (:class:`TrainConfig`) and the loop (:func:`train`).

The objective per minibatch comes from the method's :class:`~clipbook.core.objectives.Objective`; after every
step its parameter (lambda, mu or the spectral scale) moves by Algorithm 2's discrepancy principle against
the target accuracy ``alpha``, compared with an exponential moving average of the minibatch accuracies.
What happens after each epoch (validation, checkpoint selection) is up to the callbacks passed in.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch
from torch import nn
from tqdm import tqdm  # the text bar: it honours TQDM_DISABLE (tqdm.notebook ignores it)

from .bounds import layerwise_upper_bound
from .files import save_torch_atomic
from .lipschitz import search_lipschitz_pairs
from .objectives import Attack, make_objective, weight_norm_sq  # noqa: F401  (weight_norm_sq: for readers)
from .tasks import ClassificationTask, RegressionTask  # noqa: F401  (the tasks train() accepts)

METHODS = ("standard", "weight_reg", "clip", "spectral_norm", "jacobian", "adversarial")
OPTIMIZERS = ("sgd", "adam")
PAIR_REFRESH = ("rotate", "epoch")


@dataclass
class TrainConfig:
    """All settings of one training run. Construct with keywords or :meth:`from_dict` (unknown keys raise).

    Methods: ``standard``; ``weight_reg`` (``mu * sum ||W||^2``); ``clip`` (``lam * Lip(f, X_Lip) **
    lip_power``); ``spectral_norm`` (every layer normalised to spectral norm ``sn_scale``; prepare the model
    with :func:`clipbook.core.models.apply_spectral_norm`); ``jacobian`` (``lam`` times a Jacobian-norm
    estimate); ``adversarial`` (the loss on L2 PGD adversarials of radius ``adv_eps``, ``adv_steps`` steps).

    With ``target_acc`` (alpha in (0, 1]) the method's parameter starts at its given value and moves by
    ``dlam`` / ``dmu`` / ``dsn`` after every step once ``warmup_epochs`` are done; with ``None`` it stays fixed.
    CLIP's pairs: ``lip_pairs`` per step, the second image of a pair ``lip_noise`` times Gaussian noise away,
    Algorithm 1 step size ``tau`` adapted by ``tau_factor``, refreshed by ``pair_refresh`` (see
    :class:`clipbook.core.objectives.LipschitzPenalty`); ``fused`` gets the pairs' gradients from the training
    step's own backward pass. ``eval_lip_pairs`` / ``eval_lip_steps``: the per-epoch Lipschitz estimate.
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
    lip_power: int = 1
    mu: float = 0.0
    dmu: float = 1e-5
    sn_scale: float = 4.0
    dsn: float = 1e-3
    adv_eps: float = 2.0
    adv_steps: int = 10
    acc_momentum: float = 0.9
    warmup_epochs: int = 0
    lip_pairs: int = 128
    lip_noise: float = 0.1
    pair_refresh: str = "epoch"
    tau: float = 1.0
    tau_factor: float = 1.3
    fused: bool = True
    eval_lip_pairs: int = 128
    eval_lip_steps: int = 10

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig: {msg}")

        def number(name: str, kind: type = float) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) if kind is float else \
                isinstance(v, int) and not isinstance(v, bool)
            need(ok, f"{name} must be {'an integer' if kind is int else 'a number'}, got {v!r}")

        for name in ("epochs", "batch_size", "seed", "lip_power", "adv_steps", "warmup_epochs", "lip_pairs",
                     "eval_lip_pairs", "eval_lip_steps"):
            number(name, int)
        for name in ("lr", "momentum", "lam", "dlam", "mu", "dmu", "sn_scale", "dsn", "adv_eps", "acc_momentum",
                     "lip_noise", "tau", "tau_factor"):
            number(name)
        need(isinstance(self.fused, bool), f"fused must be true or false, got {self.fused!r}")
        need(self.method in METHODS, f"method must be one of {METHODS}, got {self.method!r}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        need(self.pair_refresh in PAIR_REFRESH, f"pair_refresh must be one of {PAIR_REFRESH}, got {self.pair_refresh!r}")
        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        need(self.target_acc is None or (isinstance(self.target_acc, (int, float)) and 0 < self.target_acc <= 1),
             f"target_acc (alpha) must be in (0, 1] or None, got {self.target_acc!r}")
        for name in ("lam", "dlam", "mu", "dmu", "sn_scale", "dsn", "adv_eps"):
            v = getattr(self, name)
            need(v >= 0 and math.isfinite(v), f"{name} must be finite and >= 0, got {v}")
        need(self.lip_power in (1, 2), f"lip_power must be 1 (lambda*Lip) or 2 (lambda*Lip^2), got {self.lip_power}")
        need(0 <= self.acc_momentum < 1, f"acc_momentum must be in [0, 1), got {self.acc_momentum}")
        need(0 <= self.warmup_epochs, f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        need(self.lip_pairs >= 1 and self.eval_lip_pairs >= 1, "lip_pairs and eval_lip_pairs must be >= 1")
        need(self.lip_noise > 0, f"lip_noise must be > 0, got {self.lip_noise}")
        need(self.tau > 0 and self.tau_factor >= 1, "tau must be > 0 and tau_factor >= 1")
        need(self.eval_lip_steps >= 0 and self.adv_steps >= 0, "eval_lip_steps and adv_steps must be >= 0")
        if self.method == "standard":
            need(self.lam == 0 and self.mu == 0, "standard training takes lam = mu = 0")
        if self.method == "clip":
            need(self.mu == 0 or self.target_acc is None,
                 "CLIP with the discrepancy principle takes mu = 0 (a fixed mu > 0 gives problem (6))")
        if self.method in ("weight_reg", "spectral_norm", "adversarial"):
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


class Callback(Protocol):
    """Called after every epoch with the model in eval mode; may add entries to the epoch's record."""

    def on_epoch_end(self, model: nn.Module, record: dict[str, float]) -> None: ...


@dataclass
class KeepBest:
    """Checkpoint selection: keep the weights of the epoch with the largest ``record[key]`` (ties: the later
    epoch) and restore them when training ends. Put it after the callback that computes ``key``."""
    key: str
    best_score: float = -math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, model: nn.Module, record: dict[str, float]) -> None:
        if record[self.key] >= self.best_score:
            self.best_score, self.best_epoch = record[self.key], record["epoch"]
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_train_end(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


@dataclass
class TrainResult:
    """What :func:`train` returns: the model (selected weights if a :class:`KeepBest` was passed), one
    record per epoch, the selected epoch, the method's final parameters and the final weights
    (``final_state``, after the last epoch, whichever epoch was selected)."""
    model: nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    lam: float
    mu: float
    final_value: float
    resumed_from: int = 0
    final_state: dict[str, torch.Tensor] | None = None


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's SGDM), or Adam (``momentum`` then is beta1)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, reg, task, xb: torch.Tensor, yb: torch.Tensor,
               g: torch.Generator) -> tuple[float, torch.Tensor]:
    """One optimisation step of any method: the regulariser's objective, one backward pass, the regulariser's
    after-backward work (CLIP: Algorithm 1 on its pairs), the optimiser step. Returns the minibatch loss
    (without the regulariser) and the batch outputs."""
    total, out = reg.objective(model, task, xb, yb, g)
    loss_value = task.loss(out.detach(), yb).item()
    opt.zero_grad(set_to_none=True)
    total.backward()
    reg.after_backward()
    opt.step()
    return loss_value, out


def lipschitz_monitor(model: nn.Module, task, cfg: TrainConfig) -> dict[str, float]:
    """The per-epoch Lipschitz estimate (pair search from fixed seeded starts) and the product bound (4)
    (``None`` where it does not apply: a model that is not a plain chain of known layers)."""
    g = torch.Generator().manual_seed(cfg.seed + 10_000)
    x, xp = task.pairs(cfg.eval_lip_pairs, cfg.lip_noise, g)
    found = search_lipschitz_pairs(model, x, xp, steps=cfg.eval_lip_steps, tau=cfg.tau)
    try:
        upper = layerwise_upper_bound(model)
    except ValueError:  # a residual block, BatchNorm, an unknown input shape: no product bound
        upper = None
    return {"lip_estimate": found.quotients.max().item(), "upper_bound": upper}


def train(model: nn.Module, task, cfg: TrainConfig, callbacks: Sequence[Callback] = (),
          state_path: str | Path | None = None, desc: str = "train", attack: Attack | None = None) -> TrainResult:
    """Train ``model`` in place with ``cfg`` on ``task`` (:class:`~clipbook.core.tasks.ClassificationTask` or
    :class:`~clipbook.core.tasks.RegressionTask`); the data and the model must be on the same device.

    Warm start: pass a trained model (and ``cfg.lam`` as the starting lambda). With ``state_path`` the whole
    state is saved atomically after every epoch and an interrupted run resumes from it (same config).
    Shuffling and pairs come from a CPU generator seeded from ``cfg.seed``: the same call gives the same
    numbers on the same machine. ``attack`` is used by ``method='adversarial'`` only.
    """
    if cfg.target_acc is not None and not task.is_classification:
        raise ValueError("the discrepancy principle needs an accuracy: use a fixed lam (target_acc=None) for regression")
    g = torch.Generator().manual_seed(cfg.seed + 1)
    opt, reg = _optimizer(model, cfg), make_objective(cfg, attack)
    reg.setup(model, task, g)
    state = {"epoch": 0, "acc_ema": None, "history": []}
    state_path = Path(state_path) if state_path else None
    if state_path and state_path.exists():
        state = _resume(state_path, cfg, model, opt, reg, callbacks, g)
    start = state["epoch"]
    n = len(task.x_train)
    for epoch in (bar := tqdm(range(start, cfg.epochs), desc=desc, unit="epoch", initial=start, total=cfg.epochs, leave=False)):
        model.train()
        t0 = time.perf_counter()
        adapt = cfg.target_acc is not None and epoch >= cfg.warmup_epochs
        perm = torch.randperm(n, generator=g).to(task.x_train.device)
        reg.start_epoch(task, g)
        sums = {"loss": 0.0, "correct": 0.0, "seen": 0}
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb, yb = task.x_train[idx], task.y_train[idx]
            loss_value, out = train_step(model, opt, reg, task, xb, yb, g)
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {loss_value}); lower lr or dlam")
            sums["loss"] += loss_value * len(idx)
            sums["seen"] += len(idx)
            correct = task.correct(out.detach(), yb)
            if correct is not None:
                acc = correct.mean().item()
                sums["correct"] += acc * len(idx)
                ema = state["acc_ema"]
                state["acc_ema"] = acc if ema is None else cfg.acc_momentum * ema + (1 - cfg.acc_momentum) * acc
                if adapt:
                    reg.adapt(state["acc_ema"], model)
        rec = _epoch_record(model, task, cfg, reg, callbacks, epoch, sums, time.perf_counter() - t0)
        state["history"].append(rec)
        state["epoch"] = epoch + 1
        bar.set_postfix({k: round(rec[k], 3) for k in ("loss", "train_acc", "lam", "mu", "lip_estimate") if k in rec})
        if state_path:
            _save(state_path, cfg, model, opt, reg, callbacks, g, state)
    model.eval()
    final_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best = [c for c in callbacks if isinstance(c, KeepBest)]
    for c in best:
        c.on_train_end(model)
    return TrainResult(model, state["history"], best[-1].best_epoch if best else cfg.epochs, reg.record()["lam"],
                       reg.record()["mu"], reg.value, resumed_from=start, final_state=final_state)


def _epoch_record(model, task, cfg, reg, callbacks, epoch, sums, train_time) -> dict[str, float]:
    """The epoch's history record: loss, accuracy, the regulariser's values, the monitor and callbacks."""
    model.eval()
    rec = {"epoch": epoch + 1, "loss": sums["loss"] / sums["seen"], "time_s": train_time, **reg.record()}
    if task.is_classification:
        rec["train_acc"] = 100 * sums["correct"] / sums["seen"]
    t1 = time.perf_counter()
    rec.update(lipschitz_monitor(model, task, cfg))
    for c in callbacks:
        c.on_epoch_end(model, rec)
    rec["eval_time_s"] = time.perf_counter() - t1
    return rec


def _save(path, cfg, model, opt, reg, callbacks, g, state) -> None:
    save_torch_atomic(path, {"config": cfg.to_dict(), "model": model.state_dict(), "optimizer": opt.state_dict(),
                             "regulariser": reg.state_dict(), "callbacks": [dataclasses.asdict(c) if
                             dataclasses.is_dataclass(c) else None for c in callbacks],
                             "generator": g.get_state(), **state})


def _resume(path, cfg, model, opt, reg, callbacks, g) -> dict[str, Any]:
    st = torch.load(path, weights_only=False, map_location=next(model.parameters()).device)
    if st["config"] != cfg.to_dict():
        raise ValueError(f"{path} holds a run with another config; delete it to start afresh")
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["optimizer"])
    reg.load_state_dict(st["regulariser"])
    for c, saved in zip(callbacks, st["callbacks"]):
        if saved is not None:
            for k, v in saved.items():
                setattr(c, k, v)
    g.set_state(st["generator"])
    return {"epoch": st["epoch"], "acc_ema": st["acc_ema"], "history": st["history"]}
