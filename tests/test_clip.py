"""CLIP's step (Algorithm 2): the fused gradients, fused vs exact Algorithm 1 + 2, the lambda rule, and the
persistent Lipschitz set."""
from dataclasses import replace

import pytest
import torch

from clipbook.core.clip import PairState, clip_objective, discrepancy_update, recover_pair_gradients
from clipbook.core.data import noisy_pairs, toy_split
from clipbook.core.lipschitz import difference_quotients
from clipbook.core.models import build_model
from clipbook.core.objectives import LipschitzPenalty
from clipbook.core.tasks import ClassificationTask
from clipbook.core.training import TrainConfig, train


def test_discrepancy_rule_moves_the_right_way_and_never_below_zero():
    assert discrepancy_update(1.0, train_acc=0.95, target_acc=0.9, step=0.1) == pytest.approx(1.1)
    assert discrepancy_update(1.0, train_acc=0.85, target_acc=0.9, step=0.1) == pytest.approx(0.9)
    assert discrepancy_update(0.05, train_acc=0.5, target_acc=0.9, step=0.1) == 0.0
    with pytest.raises(ValueError):
        discrepancy_update(-1.0, 0.5, 0.9, 0.1)


@pytest.mark.parametrize("lip_power", [1, 2])
def test_fused_step_gives_the_exact_gradients(lip_power):
    """One backward of the fused objective = parameter gradient of loss + lam * (max L)^p, and each pair's
    own input gradient of L_i."""
    model = build_model("mnist_mlp", seed=0)
    x, xp = noisy_pairs(torch.rand(6, 1, 28, 28), 0.1, torch.Generator().manual_seed(0))
    pairs = PairState.start(x, xp, 1.0)
    xb, yb = torch.rand(5, 1, 28, 28), torch.randint(0, 10, (5,))
    lam, loss = 0.7, torch.nn.functional.cross_entropy
    terms = clip_objective(model, loss, xb, yb, pairs, lam, fused=True, lip_power=lip_power)
    model.zero_grad()
    terms.total.backward()
    fused_grads = [p.grad.clone() for p in model.parameters()]
    gx, gxp = recover_pair_gradients(terms)
    model.zero_grad()
    exact = loss(model(xb), yb) + lam * difference_quotients(model, x, xp).max() ** lip_power
    exact.backward()
    for a, p in zip(fused_grads, model.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-3, atol=1e-6)
    xa, xb2 = x.clone().requires_grad_(True), xp.clone().requires_grad_(True)
    ex, exp_ = torch.autograd.grad(difference_quotients(model, xa, xb2).sum(), [xa, xb2])
    assert torch.allclose(gx, ex, rtol=1e-3, atol=1e-7) and torch.allclose(gxp, exp_, rtol=1e-3, atol=1e-7)


@pytest.fixture(scope="module")
def small_split(mnist_split):
    return replace(mnist_split, x_train=mnist_split.x_train[:3000], y_train=mnist_split.y_train[:3000],
                   x_lip=mnist_split.x_lip[:256], x_val=mnist_split.x_val[:200], y_val=mnist_split.y_val[:200])


def test_fused_step_follows_exact_algorithms_1_and_2():
    """The fused variant (pairs move from the training step's own gradients, proposals tested one step
    later) and the exact one (a separate Algorithm 1 update before every step) give nearly the same lambda
    trajectory and training accuracy over 40 epochs (~500 steps) of CLIP on two moons."""
    runs = {}
    for fused in (True, False):
        cfg = TrainConfig(method="clip", target_acc=0.85, dlam=0.002, epochs=40, batch_size=32, lr=0.5, lip_pairs=32,
                          tau=0.5, fused=fused, pair_refresh="rotate", eval_lip_steps=0, eval_lip_pairs=8)
        runs[fused] = train(build_model("toy_mlp", seed=0), ClassificationTask(toy_split()), cfg).history
    def mean_gap(key, last=40):
        return sum(abs(a[key] - b[key]) for a, b in zip(runs[True][-last:], runs[False][-last:])) / last

    assert mean_gap("lam") < 0.05 and mean_gap("lam", last=10) < 0.06
    assert mean_gap("train_acc") < 2.5
    assert min(runs[True][-1]["lam"], runs[False][-1]["lam"]) > 0.1  # lambda moved: not two zeros compared


def test_rotating_pairs_persist_across_epochs_and_keep_climbing():
    """pair_refresh='rotate': X_Lip is every held-out point with a noisy copy, built once; the pairs keep
    their positions and step sizes from epoch to epoch (never redrawn) and their quotients grow."""
    split = toy_split()
    task = ClassificationTask(split)
    model = build_model("toy_mlp", seed=0)
    train(model, task, TrainConfig(method="standard", epochs=30, batch_size=32, lr=0.5, eval_lip_steps=0))
    cfg = TrainConfig(method="clip", lam=0.0, lip_pairs=16, tau=0.002, pair_refresh="rotate")
    reg = LipschitzPenalty(cfg)
    reg.setup(model, task, torch.Generator().manual_seed(1))
    start = reg.pool.x.clone()
    assert len(reg.pool) == len(split.x_lip)  # the whole Lipschitz set, each held-out point once
    assert sorted(start[:, 0].tolist()) == pytest.approx(sorted(split.x_lip[:, 0].tolist()))
    q_before = difference_quotients(model, reg.pool.x, reg.pool.x_prime).detach()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # a frozen model: only the pairs move
    g = torch.Generator().manual_seed(2)
    for step in range(10 * len(reg.pool) // 16):  # every pair is visited ten times
        if step % 4 == 0:
            reg.start_epoch(task, g)  # a new epoch does not redraw the pairs
        total, _ = reg.objective(model, task, split.x_train[:32], split.y_train[:32], g)
        opt.zero_grad()
        total.backward()
        reg.after_backward()
    moved = (reg.pool.anchor_x - start).norm(dim=1)
    assert (moved > 0).float().mean() > 0.6 and moved.max() < 3.0  # moved by ascent steps, not replaced
    assert (reg.pool.tau != cfg.tau).any()
    q_after = difference_quotients(model, reg.pool.anchor_x, reg.pool.anchor_xp).detach()
    assert q_after.mean() > 1.2 * q_before.mean() and torch.all(q_after >= q_before * 0.999)
    assert reg.steepest_pair() == pytest.approx(reg.pool.q.max().item())


def test_training_history_shows_the_steepest_pair(small_split):
    cfg = TrainConfig(method="clip", target_acc=0.8, epochs=2, lip_pairs=16, pair_refresh="rotate",
                      eval_lip_pairs=16, eval_lip_steps=3)
    h = train(build_model("mnist_mlp", seed=0), ClassificationTask(small_split), cfg).history
    assert all(rec["lip_train_pairs"] > 0 and rec["lip_estimate"] > 0 for rec in h)


def test_the_trainers_clip_is_the_clip_object_in_a_plain_loop():
    """training.train with method='clip' is clipbook.CLIP in an ordinary loop: the same draws, the same
    lambda after every step, bit-identical weights (one implementation)."""
    import clipbook
    split = toy_split()
    task = ClassificationTask(split)
    cfg = TrainConfig(method="clip", target_acc=0.6, dlam=0.01, epochs=5, batch_size=32, lr=0.5, lip_pairs=16,
                      tau=0.5, pair_refresh="rotate", warmup_epochs=1, eval_lip_steps=0, eval_lip_pairs=8)
    trained = build_model("toy_mlp", seed=0)
    res = train(trained, task, cfg)

    model = build_model("toy_mlp", seed=0)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    clip = clipbook.CLIP(task.pair_pool(cfg.lip_noise, g), target_acc=cfg.target_acc, dlam=cfg.dlam,
                         pairs_per_step=cfg.lip_pairs, tau=cfg.tau, acc_momentum=cfg.acc_momentum,
                         warmup_steps=cfg.warmup_epochs * -(-len(split.x_train) // cfg.batch_size))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    lams = []
    for epoch in range(cfg.epochs):
        for idx in torch.randperm(len(split.x_train), generator=g).split(cfg.batch_size):
            loss = clip.loss(model, split.x_train[idx], split.y_train[idx], task.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            clip.update(clip.accuracy(split.y_train[idx]))
        lams.append(clip.lam)
    assert lams == [h["lam"] for h in res.history] and lams[-1] > 0
    for a, b in zip(trained.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
