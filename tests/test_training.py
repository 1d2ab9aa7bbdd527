from dataclasses import replace

import pytest
import torch

from clipbook import training
from clipbook.data import regression_data
from clipbook.lipschitz import difference_quotients
from clipbook.models import build_model
from clipbook.regression import grid, grid_lipschitz, regression_config
from clipbook.training import (ClassificationTask, PairState, RegressionTask, TrainConfig, clip_objective,
                               discrepancy_update, recover_pair_gradients, train)


def test_discrepancy_rule_moves_the_right_way_and_never_below_zero():
    assert discrepancy_update(1.0, train_acc=0.95, target_acc=0.9, step=0.1) == pytest.approx(1.1)
    assert discrepancy_update(1.0, train_acc=0.85, target_acc=0.9, step=0.1) == pytest.approx(0.9)
    assert discrepancy_update(0.05, train_acc=0.5, target_acc=0.9, step=0.1) == 0.0
    lam = 0.0
    for acc in [0.5, 0.95, 0.5, 0.5, 0.5]:
        lam = discrepancy_update(lam, acc, 0.9, 0.1)
        assert lam >= 0
    with pytest.raises(ValueError):
        discrepancy_update(-1.0, 0.5, 0.9, 0.1)


@pytest.mark.parametrize("kwargs,match", [
    (dict(target_acc=0.0), "target_acc"), (dict(target_acc=1.5), "target_acc"),
    (dict(lam=-1.0), "lam"), (dict(dlam=-0.1), "dlam"), (dict(method="sgd"), "method"),
    (dict(method="standard", lam=1.0), "standard"), (dict(epochs=0), "epochs"), (dict(lr=0), "lr"),
    (dict(method="clip", mu=0.1, target_acc=0.9), "mu"), (dict(select="best"), "select"), (dict(optimizer="lbfgs"), "optimizer"),
])
def test_bad_settings_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_unknown_config_key_is_rejected():  # the reference code's misspelt key silently changed the target
    with pytest.raises(ValueError, match="unknown setting"):
        TrainConfig.from_dict({"method": "clip", "target_accuracy": 0.9})
    assert TrainConfig.from_dict({"method": "clip", "target_acc": 0.9}).target_acc == 0.9


def test_regression_rejects_discrepancy_principle():
    x, y = regression_data(10)
    with pytest.raises(ValueError, match="fixed lam"):
        train(build_model("regression_mlp", 0), RegressionTask(x, y), TrainConfig(target_acc=0.9, epochs=1))


def test_fused_step_gives_the_exact_gradients():
    """One backward of the fused objective = parameter gradient of loss + lam * max L, and each pair's own
    input gradient of L_i."""
    torch.manual_seed(0)
    model = build_model("mnist_mlp", seed=0)
    split = type("S", (), {"x_lip": torch.rand(50, 1, 28, 28)})()
    task = ClassificationTask.__new__(ClassificationTask)
    task.split = split
    cfg = TrainConfig(lip_pairs=6)
    pairs = PairState.fresh(task, cfg, torch.Generator().manual_seed(0))
    xb, yb = torch.rand(5, 1, 28, 28), torch.randint(0, 10, (5,))
    lam = 0.7
    total, _, q, imax, px, pxp = clip_objective(model, task, xb, yb, pairs, lam, fused=True)
    model.zero_grad()
    total.backward()
    fused_grads = [p.grad.clone() for p in model.parameters()]
    gx, gxp = recover_pair_gradients(px, pxp, imax, lam)

    model.zero_grad()
    exact = task.loss(model(xb), yb) + lam * difference_quotients(model, pairs.x, pairs.x_prime).max()
    exact.backward()
    for a, p in zip(fused_grads, model.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-3, atol=1e-6)
    xa, xb2 = pairs.x.clone().requires_grad_(True), pairs.x_prime.clone().requires_grad_(True)
    ex, exp_ = torch.autograd.grad(difference_quotients(model, xa, xb2).sum(), [xa, xb2])
    assert torch.allclose(gx, ex, rtol=1e-3, atol=1e-7)
    assert torch.allclose(gxp, exp_, rtol=1e-3, atol=1e-7)


@pytest.fixture(scope="module")
def small_split(mnist_split):
    return replace(mnist_split, x_train=mnist_split.x_train[:3000], y_train=mnist_split.y_train[:3000],
                   x_val=mnist_split.x_val[:200], y_val=mnist_split.y_val[:200])


def _clip_cfg(**kw):
    d = dict(method="clip", target_acc=0.8, epochs=2, dlam=0.01, lip_pairs=16, eval_lip_pairs=16,
             eval_lip_steps=3, val_pgd_steps=2, select="pgd")
    d.update(kw)
    return TrainConfig(**d)


def test_same_seed_gives_identical_runs(small_split):
    runs = []
    for _ in range(2):
        model = build_model("mnist_mlp", seed=0)
        res = train(model, ClassificationTask(small_split), _clip_cfg())
        runs.append(([{k: v for k, v in h.items() if not k.endswith("time_s")} for h in res.history],
                     [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_interrupted_training_resumes_to_the_same_result(small_split, tmp_path, monkeypatch):
    cfg = _clip_cfg(epochs=3, fused=False)
    ref = build_model("mnist_mlp", seed=0)
    ref_hist = train(ref, ClassificationTask(small_split), cfg).history

    calls = {"n": 0}
    real = training._epoch_metrics

    def crash_on_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(training, "_epoch_metrics", crash_on_second)
    state = tmp_path / "run.state.pt"
    with pytest.raises(KeyboardInterrupt):
        train(build_model("mnist_mlp", seed=0), ClassificationTask(small_split), cfg, state_path=state)
    assert state.exists() and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(training, "_epoch_metrics", real)
    model = build_model("mnist_mlp", seed=5)  # different init: the state must overwrite it
    res = train(model, ClassificationTask(small_split), cfg, state_path=state)
    assert res.resumed_from == 1
    strip = lambda hs: [{k: v for k, v in h.items() if not k.endswith("time_s")} for h in hs]
    assert strip(res.history) == strip(ref_hist)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))


def test_clip_raises_lambda_when_above_target_and_lowers_lipschitz(small_split):
    std = build_model("mnist_mlp", seed=0)
    train(std, ClassificationTask(small_split), TrainConfig(method="standard", epochs=6, eval_lip_steps=0, val_pgd_steps=0))
    clip = build_model("mnist_mlp", seed=0)
    res = train(clip, ClassificationTask(small_split), _clip_cfg(epochs=6, target_acc=0.3, dlam=0.02, select="last"))
    lams = [h["lam"] for h in res.history]
    assert lams[-1] > 0.5  # training accuracy soon exceeds 30 %: lambda is pushed up
    assert lams == sorted(lams)
    x = small_split.x_lip[:64]
    xp = x + 0.1 * torch.randn_like(x)
    from clipbook.lipschitz import search_lipschitz_pairs
    assert (search_lipschitz_pairs(clip, x, xp, 30).quotients.max()
            < 0.7 * search_lipschitz_pairs(std, x, xp, 30).quotients.max())


def test_huge_lambda_gives_the_constant_network_at_the_label_mean():  # Proposition 4 / Remark 2
    x, y = regression_data(seed=0)
    model = build_model("regression_mlp", seed=0)
    train(model, RegressionTask(x, y), regression_config(10.0, epochs=60))
    with torch.no_grad():
        f = model(grid()).squeeze(1)
    assert f.max() - f.min() < 0.01
    assert f.mean().item() == pytest.approx(y.mean().item(), abs=0.02)
    assert grid_lipschitz(model) < 0.01


def test_larger_lambda_gives_smaller_lipschitz_constant():  # Proposition 2
    x, y = regression_data(seed=0)
    lips = []
    for lam in (1e-3, 3e-2):
        model = build_model("regression_mlp", seed=0)
        train(model, RegressionTask(x, y), regression_config(lam, epochs=60))
        lips.append(grid_lipschitz(model))
    assert lips[1] < lips[0]
