import pytest
import torch
from torch import nn

from clipbook.lipschitz import (adversarial_update, difference_quotients, jacobian_norm_lower_bound,
                                lipschitz_estimate, random_pairs_lower_bound, search_lipschitz_pairs)
from clipbook.models import abs_network, build_model


def linear_net(d_in=6, d_out=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, d_out))


def spectral_norm(net):
    return torch.linalg.matrix_norm(net[0].weight.detach().double(), 2).item()


def test_quotients_on_linear_map_never_exceed_spectral_norm():
    net = linear_net()
    x, xp = torch.randn(500, 6), torch.randn(500, 6)
    q = difference_quotients(net, x, xp)
    assert q.shape == (500,)
    assert q.max().item() <= spectral_norm(net) + 1e-5


def test_adversarial_updates_approach_the_spectral_norm_of_a_linear_map():
    net = linear_net(50, 3)
    x = torch.randn(8, 50)
    xp = x + 0.1 * torch.randn(8, 50)
    before = lipschitz_estimate(net, x, xp).item()
    found = search_lipschitz_pairs(net, x, xp, steps=100)
    sigma = spectral_norm(net)
    assert before < 0.95 * sigma  # random pairs start clearly below
    assert found.quotients.max().item() <= sigma + 1e-4
    assert found.quotients.max().item() >= 0.99 * sigma


def test_adversarial_update_returns_adapted_per_pair_step_sizes():
    net = linear_net()
    x, xp = torch.randn(8, 6), torch.randn(8, 6)
    step = adversarial_update(net, x, xp, tau=0.5, factor=2.0)
    q0 = difference_quotients(net, x, xp)
    assert torch.equal(step.tau, torch.full((8,), 1.0))  # every step raised its quotient: tau * 2
    assert torch.all(step.quotients > q0) and not torch.equal(step.x, x)
    # a constant network: no step can raise a quotient, so every step is rejected (tau / 2, pair unmoved)
    flat = nn.Sequential(nn.Linear(6, 4))
    nn.init.zeros_(flat[0].weight)
    step = adversarial_update(flat, x, xp, tau=0.5, factor=2.0)
    assert torch.equal(step.tau, torch.full((8,), 0.25))
    assert torch.equal(step.x, x) and torch.equal(step.x_prime, xp)
    adversarial_update(net, x, xp, tau=torch.full((8,), 0.1))  # per-pair tau tensor accepted
    with pytest.raises(ValueError, match="tau"):
        adversarial_update(net, x, xp, tau=torch.ones(3))
    with pytest.raises(ValueError, match="> 0"):
        adversarial_update(net, x, xp, tau=0.0)


def test_quotients_are_zero_for_coinciding_pairs():
    net = build_model("mnist_mlp", seed=0)
    x = torch.rand(4, 1, 28, 28)
    q = difference_quotients(net, x, x.clone())
    assert torch.equal(q, torch.zeros(4))
    tiny = difference_quotients(net, x, x + 1e-9)
    assert torch.isfinite(tiny).all()


def test_abs_network_pair_search_finds_the_true_constant_one():
    net = abs_network()
    x = torch.linspace(-3, 3, 201).unsqueeze(1)
    xp = x + torch.randn_like(x)
    est = search_lipschitz_pairs(net, x, xp, steps=20).quotients.max().item()
    assert est == pytest.approx(1.0, abs=1e-4)
    assert random_pairs_lower_bound(net, x, 2000, radius=0.5, generator=torch.Generator().manual_seed(0)) <= 1 + 1e-6


def test_jacobian_norm_on_linear_map_equals_spectral_norm():
    net = linear_net()
    j = jacobian_norm_lower_bound(net, torch.randn(3, 6), iters=50)
    assert torch.allclose(j, torch.full((3,), spectral_norm(net)), rtol=1e-4)
