import math

import pytest
import torch
from torch import nn

from clipbook.lipschitz import (adversarial_update, conv2d_operator_norm, difference_quotients,
                                jacobian_norm_lower_bound, layer_lipschitz_constants, layerwise_upper_bound,
                                lipschitz_estimate, random_pairs_lower_bound, search_lipschitz_pairs)
from clipbook.models import abs_network, build_model


def linear_net(d_in=6, d_out=4, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(d_in, d_out))
    net.input_shape = (d_in,)
    return net


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
    assert step.tau.shape == (8,)
    assert set(step.tau.tolist()) <= {1.0, 0.25}
    # accepted steps raised the quotient; rejected ones left the pair where it was
    acc = step.tau == 1.0
    assert torch.all(step.quotients[acc] > q0[acc])
    assert torch.equal(step.x[~acc], x[~acc])
    # per-pair tau tensor accepted
    adversarial_update(net, x, xp, tau=torch.full((8,), 0.1))
    with pytest.raises(ValueError, match="tau"):
        adversarial_update(net, x, xp, tau=torch.ones(3))
    with pytest.raises(ValueError, match="> 0"):
        adversarial_update(net, x, xp, tau=0.0)


def test_quotients_finite_for_coinciding_pairs():
    net = build_model("mnist_mlp", seed=0)
    x = torch.rand(4, 1, 28, 28)
    q = difference_quotients(net, x, x.clone())
    assert torch.isfinite(q).all()
    tiny = difference_quotients(net, x, x + 1e-9)
    assert torch.isfinite(tiny).all()


def test_upper_bound_is_exact_for_one_linear_layer():
    net = linear_net(10, 3)
    assert layerwise_upper_bound(net) == pytest.approx(spectral_norm(net), rel=1e-9)


def test_abs_network_bound_two_true_constant_one():
    net = abs_network()
    assert layerwise_upper_bound(net) == pytest.approx(2.0)
    x = torch.linspace(-3, 3, 201).unsqueeze(1)
    xp = x + torch.randn_like(x)
    est = search_lipschitz_pairs(net, x, xp, steps=20).quotients.max().item()
    assert est == pytest.approx(1.0, abs=1e-4)
    assert random_pairs_lower_bound(net, x, 2000, radius=0.5, generator=torch.Generator().manual_seed(0)) <= 1 + 1e-6


@pytest.mark.parametrize("name", ["mnist_mlp", "fashion_cnn", "regression_mlp"])
def test_upper_bound_dominates_every_estimate(name):
    net = build_model(name, seed=1)
    shape = net.input_shape
    x = torch.rand(16, *shape)
    xp = x + 0.1 * torch.randn_like(x)
    bound = layerwise_upper_bound(net, iters=50)
    found = search_lipschitz_pairs(net, x, xp, steps=10)
    assert found.quotients.max().item() <= bound
    assert jacobian_norm_lower_bound(net, x[:4], iters=10).max().item() <= bound * (1 + 1e-4)


def test_conv_operator_norm_matches_dense_matrix():
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, 3, padding=1, stride=2)
    shape = (2, 6, 6)
    eye = torch.eye(math.prod(shape)).view(-1, *shape)
    with torch.no_grad():
        cols = nn.functional.conv2d(eye, conv.weight, None, conv.stride, conv.padding).flatten(1)
    exact = torch.linalg.matrix_norm(cols.double(), 2).item()
    assert conv2d_operator_norm(conv, shape, iters=500) == pytest.approx(exact, rel=1e-4)


def test_layer_constants_of_the_mlp_include_sigmoid_quarter():
    consts = dict(layer_lipschitz_constants(build_model("mnist_mlp", seed=0)))
    assert [c for n, c in consts.items() if n in ("2", "4")] == [0.25, 0.25]


def test_unknown_layer_raises_clear_error():
    net = nn.Sequential(nn.Linear(2, 2), nn.Softplus(beta=5))
    net.input_shape = (2,)
    with pytest.raises(ValueError, match="Softplus"):
        layerwise_upper_bound(net)


def test_jacobian_norm_on_linear_map_equals_spectral_norm():
    net = linear_net()
    j = jacobian_norm_lower_bound(net, torch.randn(3, 6), iters=50)
    assert torch.allclose(j, torch.full((3,), spectral_norm(net)), rtol=1e-4)
