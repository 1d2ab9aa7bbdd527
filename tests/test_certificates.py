"""Beyond the paper: certified radii, lower vs upper bounds, the layer-wise baselines, attack invariants."""
import math
import pytest
import torch
from torch import nn

from clipbook.core.attacks import pgd_l2
from clipbook.core.certify import certified_accuracy, certified_radii, margins
from clipbook.core.bounds import layerwise_upper_bound
from clipbook.repro.experiments import EvalBudget
from clipbook.core.lipschitz import jacobian_norm_lower_bound, search_lipschitz_pairs
from clipbook.core.models import apply_spectral_norm, build_model
from clipbook.core.objectives import jacobian_penalty
from clipbook.repro.suite import lipschitz_bounds


def test_margins_and_certified_accuracy_by_hand():
    net = nn.Sequential(nn.Identity())
    x = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.5]])
    y = torch.tensor([0, 0])
    assert margins(net, x, y).tolist() == [2.0, -2.0]
    r = certified_radii(net, x, y, lipschitz_bound=1.0)
    assert r[0].item() == pytest.approx(2 / math.sqrt(2)) and r[1].item() == 0.0
    assert certified_accuracy(r, [0.0, 1.0, 1.5]) == [50.0, 50.0, 0.0]
    with pytest.raises(ValueError):
        certified_radii(net, x, y, 0.0)


def test_no_attack_succeeds_inside_the_certified_radius(trained_mlp, mnist_split):
    x, y = mnist_split.x_test[:400], mnist_split.y_test[:400]
    bound = layerwise_upper_bound(trained_mlp)
    r = certified_radii(trained_mlp, x, y, bound)
    eps = r[r > 0].median().item()
    sel = r >= eps
    assert sel.sum() > 50
    for variant, kw in (("sign", {}), ("normalized", dict(random_start=True, restarts=3))):
        adv = pgd_l2(trained_mlp, x[sel], y[sel], eps=eps, alpha=eps / 10 if variant == "normalized" else 0.25,
                     steps=100, variant=variant, generator=torch.Generator().manual_seed(0), **kw)
        with torch.no_grad():
            assert (trained_mlp(adv).argmax(1) == y[sel]).all()
    # and an attack at a radius 20x larger does break some of them: the test can fail
    adv = pgd_l2(trained_mlp, x[sel], y[sel], eps=20 * eps, steps=50)
    with torch.no_grad():
        assert (trained_mlp(adv).argmax(1) != y[sel]).any()


def test_lower_bounds_never_exceed_the_upper_bound(trained_mlp, mnist_split):
    b = lipschitz_bounds(trained_mlp, mnist_split, EvalBudget(bound_pairs=100, bound_steps=20, jacobian=250))
    assert 0 < b["pair_search"] <= b["upper"] and 0 < b["jacobian"] <= b["upper"] * (1 + 1e-5)
    assert b["lower"] == max(b["pair_search"], b["jacobian"])


def test_bounds_are_exact_on_a_linear_network():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Linear(5, 3))
    a = net[2].weight @ net[1].weight
    sigma = torch.linalg.matrix_norm(a.detach().double(), 2).item()
    x = torch.randn(16, 12)
    assert jacobian_norm_lower_bound(net, x, iters=100).max().item() == pytest.approx(sigma, rel=1e-4)
    assert search_lipschitz_pairs(net, x, x + 0.1 * torch.randn_like(x), steps=200).quotients.max().item() \
        == pytest.approx(sigma, rel=1e-3)
    # the product of the two layer norms is an upper bound; exact for one merged layer
    merged = nn.Sequential(nn.Linear(12, 3, bias=False))
    with torch.no_grad():
        merged[0].weight.copy_(a)
    assert layerwise_upper_bound(merged) == pytest.approx(sigma, rel=1e-6)
    assert layerwise_upper_bound(net) >= sigma


def test_spectral_norm_model_has_the_scaled_product_bound():
    net = apply_spectral_norm(build_model("mnist_mlp", seed=0), scale=2.0)
    for _ in range(30):  # let the power iteration converge
        net.train(); net(torch.rand(4, 1, 28, 28))
    net.eval()
    # PyTorch's one-step-per-forward power iteration is close to, not at, the true spectral norm
    assert layerwise_upper_bound(net) == pytest.approx(2.0 ** 3 / 16, rel=0.03)


def test_jacobian_penalty_is_exact_in_expectation_on_a_linear_map():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    x = torch.randn(1, 6).repeat(4000, 1).requires_grad_(True)
    est = jacobian_penalty(lin(x), x, torch.Generator().manual_seed(0)).item()
    assert est == pytest.approx((lin.weight ** 2).sum().item(), rel=0.05)
