"""APGD (Croce & Hein 2020), L2: feasibility, monotonicity, strength and known answers on linear models."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clipbook.core.apgd import APGD, checkpoints, dlr_loss, project_l2_box
from clipbook.core.attacks import pgd_l2


def _norms(d: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(d.flatten(1), dim=1)


@torch.no_grad()
def _pred(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (_pred(model, x) == y).float().mean().item()


def _blobs(n: int, seed: int, noise: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten noisy smooth prototypes as MNIST-sized images in [0, 1]: ``x`` ``[n, 1, 28, 28]``, ``y`` ``[n]``."""
    g = torch.Generator().manual_seed(0)
    protos = F.avg_pool2d(torch.rand(10, 1, 28, 28, generator=g), 5, 1, 2)
    protos = (protos - protos.mean((1, 2, 3), keepdim=True)) * 6 + 0.5
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    return (protos[y] + noise * torch.randn(n, 1, 28, 28, generator=g)).clamp(0, 1), y


@pytest.fixture(scope="module")
def blob_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 784-32-32-10 sigmoid MLP trained briefly on :func:`_blobs`, with 200 test images."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = _blobs(2000, 1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Sigmoid(), nn.Linear(32, 32), nn.Sigmoid(),
                          nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(15):
        for i in range(0, len(x), 200):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 200]), y[i:i + 200]).backward()
            opt.step()
    model.eval()
    xt, yt = _blobs(200, 2)
    assert _acc(model, xt, yt) > 0.95
    return model, xt, yt


def _linear(k: int, d: int = 20, n: int = 200,
            seed: int = 0) -> tuple[nn.Linear, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random linear classifier with ``k`` classes on ``x`` in ``[0.3, 0.7]^d``, its labels (its own
    predictions) and the exact minimal L2 distance to misclassification ``min_j (z_y - z_j)/||w_y - w_j||``.
    Within distance 0.3 the box never binds, so for eps <= 0.3 that distance is the answer."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, k)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g))
        lin.bias.copy_(torch.randn(k, generator=g))
    x = 0.3 + 0.4 * torch.rand(n, d, generator=g)
    with torch.no_grad():
        z = lin(x)
    y = z.argmax(1)
    w = lin.weight.detach()
    gap = z.gather(1, y[:, None]) - z                      # [n, k]
    dist = (w[y][:, None, :] - w[None]).norm(dim=2)        # [n, k]
    dstar = (gap / dist.clamp_min(1e-12)).masked_fill(F.one_hot(y, k).bool(), float("inf")).min(1).values
    return lin, x, y, dstar


# ------------------------------------------------------------------------------------------ projection


def test_checkpoints_follow_the_paper():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(0) == []
    assert all(0 < w <= s for s in (1, 5, 17, 1000) for w in checkpoints(s))


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3, 1.0, 3.0, 100.0])
def test_project_l2_box_is_the_euclidean_projection(eps):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 30, generator=g)
    x[:, :6], x[:, 6:10] = 0.0, 1.0                         # pixels on the box faces, as in MNIST
    v = torch.randn(64, 30, generator=g) * torch.rand(64, 1, generator=g)
    d = project_l2_box(x, v, eps)
    assert _norms(d).max() <= eps * (1 + 1e-6) + 1e-7
    assert (x + d).min() >= 0 and (x + d).max() <= 1
    # reference: bisection on t in clip(t v) (the KKT form) ...
    lo, hi = -x, 1 - x
    a, b = torch.zeros(64), torch.ones(64)
    for _ in range(60):
        m = (a + b) / 2
        ok = _norms(torch.minimum(torch.maximum(m[:, None] * v, lo), hi)) <= eps
        a, b = torch.where(ok, m, a), torch.where(ok, b, m)
    ref = torch.minimum(torch.maximum(a[:, None] * v, lo), hi)
    assert torch.allclose(d, ref, atol=1e-5)
    # ... and no random feasible point is closer to v
    cand = project_l2_box(x.repeat(20, 1), v.repeat(20, 1) + 0.3 * torch.randn(20 * 64, 30, generator=g), eps)
    assert ((cand - v.repeat(20, 1)).norm(dim=1).view(20, 64) >= (d - v).norm(dim=1) - 1e-5).all()


def test_project_l2_box_keeps_images_shape_and_feasible_points():
    x = torch.rand(5, 1, 4, 4)
    v = 0.01 * torch.randn(5, 1, 4, 4)
    v = (x + v).clamp(0, 1) - x
    assert torch.equal(project_l2_box(x, v, 1.0), v)
    assert project_l2_box(x, torch.randn(5, 1, 4, 4), 0.5).shape == (5, 1, 4, 4)


# ------------------------------------------------------------------------------------------ feasibility


@pytest.mark.parametrize("make", [lambda e: APGD(e, loss="ce"), lambda e: APGD(e, loss="dlr"),
                                  lambda e: APGD(e, loss="dlr", targeted=True, n_target_classes=3)],
                         ids=["ce", "dlr", "t"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 2.0, 50.0])
def test_outputs_stay_in_box_and_ball(blob_model, make, eps):
    model, x, y = blob_model
    attack = make(eps)
    x = x[:60]
    adv = attack(model, x, y[:60])
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert adv.min() >= 0 and adv.max() <= 1
    assert _norms(adv - x).max() <= eps * (1 + 1e-6) + 1e-6
    if eps == 0:
        assert torch.equal(adv, x)


def test_works_on_flat_inputs_and_restores_training_mode():
    lin, x, y, _ = _linear(4)
    model = nn.Sequential(lin, nn.Dropout(0.5)).train()
    adv = APGD(0.2, loss="ce", steps=10)(model, x[:20], y[:20])
    assert adv.shape == (20, 20) and model.training


# ------------------------------------------------------------------------------------------ monotonicity


def _broken(model, x, y, attack):
    return _pred(model, attack(model, x, y)) != y


def test_success_never_decreases_with_restarts_and_target_classes(blob_model):
    model, x, y = blob_model
    x, y = x[:80], y[:80]
    one = _broken(model, x, y, APGD(1.0, loss="ce", steps=10, restarts=1))
    three = _broken(model, x, y, APGD(1.0, loss="ce", steps=10, restarts=3))
    assert (three >= one).all()
    t1 = _broken(model, x, y, APGD(1.0, loss="dlr", targeted=True, n_target_classes=1, steps=10))
    t3 = _broken(model, x, y, APGD(1.0, loss="dlr", targeted=True, n_target_classes=3, steps=10))
    assert (t3 >= t1).all()


def test_accuracy_never_increases_with_more_steps(blob_model):
    model, x, y = blob_model
    accs = [_acc(model, APGD(1.0, loss="ce", steps=s, random_start=False)(model, x, y), y) for s in (0, 3, 10, 30, 100)]
    assert accs[0] == pytest.approx(_acc(model, x, y))
    assert accs == sorted(accs, reverse=True)
    assert accs[-1] < accs[0] - 0.05


class _Bowl(nn.Module):
    """Two classes, logits ``(0, -||x - c||^2 - 0.1)``: never misclassified; the CE of class 0 peaks at the
    interior point ``c``, which a fixed step of size ``2 eps`` keeps overshooting."""

    def __init__(self, c: torch.Tensor):
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1 = -(x - self.c).flatten(1).square().sum(1) - 0.1
        return torch.stack([torch.zeros_like(z1), z1], 1)


def test_step_size_halving_converges_to_an_interior_maximum():
    g = torch.Generator().manual_seed(0)
    x = 0.5 + 0.1 * torch.rand(8, 10, generator=g)
    c = x + 0.1 * torch.randn(8, 10, generator=g) / 10 ** 0.5           # ||c - x|| ~ 0.1 < eps
    adv = APGD(0.3, loss="ce", steps=100)(_Bowl(c), x, torch.zeros(8, dtype=torch.long))
    assert _norms(adv - c).max() < 2e-3  # eta halved from 0.6 to ~0.002; a fixed eta stays ~0.05 away


# ------------------------------------------------------------------------------------------ strength


@pytest.mark.parametrize("eps", [1.0, 2.0])
def test_apgd_ce_at_least_as_strong_as_sign_pgd(blob_model, eps):
    model, x, y = blob_model
    sign = _acc(model, pgd_l2(model, x, y, eps=eps, alpha=0.25, steps=100, variant="sign"), y)
    apgd = _acc(model, APGD(eps, loss="ce")(model, x, y), y)
    assert apgd <= sign
    if eps == 2.0:
        assert apgd < sign - 0.05  # not just a tie: the sign step is far from the L2 steepest ascent


@pytest.mark.parametrize("k,make,slack", [
    (2, lambda e: APGD(e, loss="ce"), 0.99),
    # CE can trade the nearest boundary for several farther ones: a known CE weakness
    (5, lambda e: APGD(e, loss="ce"), 0.95),
    (5, lambda e: APGD(e, loss="dlr"), 0.99),
    (5, lambda e: APGD(e, loss="dlr", targeted=True), 0.99),
], ids=["ce-binary", "ce", "dlr", "t"])
def test_linear_model_known_minimal_perturbation(k, make, slack):
    """Success exactly for the samples whose closed-form distance to the decision boundary is < eps."""
    lin, x, y, dstar = _linear(k)
    eps = dstar.median().item()
    assert 0.02 < eps < 0.3
    below, above = dstar < slack * eps, dstar > eps
    assert below.sum() > 50 and above.sum() > 50
    attack = make(eps)
    broken = _pred(lin, attack(lin, x, y)) != y
    assert broken[below].all(), f"{attack.name}: missed {int((~broken[below]).sum())} reachable samples"
    assert not broken[above].any(), f"{attack.name}: broke samples beyond eps"


def _one_hot_linear(n: int = 200, d: int = 10, k: int = 4, scale: float = 10.0, seed: int = 0):
    """Logits ``scale * x[:, :k]`` on ``x`` in ``[0.3, 0.7]^d``, labels, random targets ``!= y`` and the exact
    L2 distance to the target region ``{x_t >= x_j for all j}``: raise ``x_t`` and lower the larger
    ``x_j`` to a common level ``m``, cost ``(m - x_t)^2 + sum_j (x_j - m)_+^2``, minimised over ``m`` (convex:
    a fine grid is exact to ~1e-4)."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, k)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[:, :k] = scale * torch.eye(k)
        lin.bias.zero_()
    x = 0.3 + 0.4 * torch.rand(n, d, generator=g)
    y = x[:, :k].argmax(1)
    target = (y + torch.randint(1, k, (n,), generator=g)) % k
    xt = x.gather(1, target[:, None])                       # [n, 1]
    m = xt + (0.4 * torch.linspace(0, 1, 4001))[None]       # [n, G] candidate levels
    others = x[:, :k].masked_fill(F.one_hot(target, k).bool(), float("-inf"))
    cost = (m - xt).square() + (others[:, :, None] - m[:, None, :]).clamp_min(0).square().sum(1)
    return lin, x, y, target, cost.min(1).values.sqrt()


@pytest.mark.parametrize("loss,slack", [("ce", 0.97), ("dlr", 0.9)])
def test_targeted_attack_reaches_the_target_class_exactly_when_possible(loss, slack):
    """Targeted DLR only weighs ``z_t`` against ``z_y``, so near the limit a third class can win: more slack."""
    lin, x, y, target, dist = _one_hot_linear()
    eps = dist.median().item()
    assert 0.02 < eps < 0.3
    below, above = dist < slack * eps, dist > eps
    assert below.sum() > 50 and above.sum() > 50
    adv = APGD(eps, loss=loss, targeted=True).attack_target(lin, x, y, target)
    hit = _pred(lin, adv) == target
    assert _norms(adv - x).max() <= eps * (1 + 1e-6)
    assert hit[below].all(), f"missed {int((~hit[below]).sum())} reachable targets"
    assert not hit[above].any()


def test_apgd_t_breaks_easy_cases():
    lin, x, y, dstar = _linear(5, n=100, seed=3)
    adv = APGD(0.3, loss="dlr", targeted=True, n_target_classes=4)(lin, x, y)
    assert (_pred(lin, adv) != y)[dstar < 0.25].all()


# ------------------------------------------------------------------------------------------ interface


def test_names_fields_and_validation():
    apgd_t = APGD(1.0, loss="dlr", targeted=True)  # AutoAttack's APGD-T, as the strong attacks configure it
    assert APGD(1.0, loss="ce").name == "apgd-ce" and apgd_t.name == "apgd-t"
    assert APGD(1.0, loss="dlr").name == "apgd-dlr" and APGD(1.0, loss="ce", targeted=True).name == "apgd-t-ce"
    assert apgd_t.n_target_classes == 9 and APGD(1.0).loss == "ce" and not APGD(1.0).targeted
    with pytest.raises(Exception):
        APGD(1.0, loss="ce").eps = 2.0  # frozen
    for bad in (dict(eps=-1.0), dict(eps=1.0, loss="l1"), dict(eps=1.0, restarts=0), dict(eps=1.0, rho=2.0)):
        with pytest.raises(ValueError):
            APGD(**bad)
    lin, x, y, _ = _linear(2)
    with pytest.raises(ValueError, match="classes"):
        APGD(0.1, loss="dlr", targeted=True)(lin, x, y)
    with pytest.raises(ValueError, match="classes"):
        dlr_loss(torch.randn(3, 2), torch.tensor([0, 1, 0]))


def test_dlr_is_shift_and_scale_invariant():
    z, y = torch.randn(8, 10), torch.arange(8)
    assert torch.allclose(dlr_loss(z, y), dlr_loss(3 * z + 1, y), atol=1e-5)
    t = (y + 1) % 10
    assert torch.allclose(dlr_loss(z, y, t), dlr_loss(3 * z - 2, y, t), atol=1e-5)


def test_seeded_and_reproducible(blob_model):
    model, x, y = blob_model
    a = APGD(1.0, loss="ce", steps=5, seed=3)(model, x[:40], y[:40])
    b = APGD(1.0, loss="ce", steps=5, seed=3)(model, x[:40], y[:40])
    assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_inputs_device(blob_model):
    model, x, y = blob_model
    model = model.cuda()
    try:
        adv = APGD(1.0, loss="dlr", targeted=True, n_target_classes=2, steps=10)(model, x.cuda(), y.cuda())
        assert adv.device.type == "cuda"
        assert _norms(adv - x.cuda()).max() <= 1.0 + 1e-5
    finally:
        model.cpu()


# ------------------------------------------------------------------------------------------ libraries


def _usable(build):
    """``build()`` (import a library and construct its attack), or skip with the reason when the installed
    version cannot be used here (e.g. the ``autoattack`` that torchattacks installs imports a function that
    this torch removed): a cross-check against a library we cannot run is skipped, never failed."""
    try:
        return build()
    except ImportError as err:
        pytest.skip(f"library not usable with torch {torch.__version__}: {err}")
    except AttributeError as err:
        pytest.skip(f"library not compatible with torch {torch.__version__}: {err}")


def test_cross_check_with_torchattacks(blob_model):
    """Same model, same eps: our APGD-CE within a few points of torchattacks' APGD (L2, CE)."""
    model, x, y = blob_model

    def build():
        import torchattacks
        return torchattacks.APGD(model, norm="L2", eps=1.0, steps=100, loss="ce", seed=0)

    attack = _usable(build)
    ours = _acc(model, APGD(1.0, loss="ce")(model, x, y), y)
    theirs = _acc(model, attack(x, y), y)
    assert ours <= theirs + 0.03


def test_cross_check_with_autoattack(blob_model):
    model, x, y = blob_model

    def build():
        import autoattack
        return autoattack.AutoAttack(model, norm="L2", eps=1.0, version="custom", attacks_to_run=["apgd-ce"],
                                     device="cpu", verbose=False)

    adversary = _usable(build)
    theirs = _acc(model, adversary.run_standard_evaluation(x, y, bs=len(x)), y)
    ours = _acc(model, APGD(1.0, loss="ce")(model, x, y), y)
    assert ours <= theirs + 0.03


def test_an_unusable_library_is_skipped_not_failed():
    def broken():
        raise AttributeError("module 'torch' has no attribute 'removed_function'")
    with pytest.raises(pytest.skip.Exception, match="not compatible"):
        _usable(broken)


def test_a_subset_over_several_chunks_gets_the_starts_of_a_full_call(blob_model):
    """Each chunk draws from its own generator, so which images of an earlier chunk are attacked does not move the
    random starts of a later one (found in review with batch_size=4)."""
    model, x, y = blob_model
    x, y = x[:8], y[:8]
    attack = APGD(1.0, steps=5, batch_size=4, seed=3)
    active = torch.tensor([False] * 4 + [True] * 4)
    assert torch.equal(attack(model, x, y)[4:], attack(model, x, y, active=active)[4:])
