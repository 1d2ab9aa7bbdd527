"""The product bound (4): known answers, shape inference, and a sound (never too small) conv factor."""
import math

import pytest
import torch
from torch import nn

from clipbook.core.bounds import (conv2d_norm_upper_bound, conv2d_operator_norm, layer_lipschitz_constants,
                             layerwise_upper_bound)
from clipbook.core.lipschitz import jacobian_norm_lower_bound, search_lipschitz_pairs
from clipbook.core.models import abs_network, build_model


def _set(layer, w):
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
    return layer


def test_known_spectral_norms_of_linear_layers():
    # diag(3, -2, 0.5) has norm 3; the rank-one u v^T has norm |u| |v| = 5 * 2
    diag = nn.Sequential(_set(nn.Linear(3, 3, bias=False), torch.diag(torch.tensor([3.0, -2.0, 0.5]))))
    assert layerwise_upper_bound(diag) == pytest.approx(3.0, rel=1e-7)
    u, v = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 2.0, 0.0])
    rank1 = nn.Sequential(nn.Flatten(), _set(nn.Linear(3, 2, bias=False), torch.outer(u, v)), nn.Sigmoid())
    assert layerwise_upper_bound(rank1) == pytest.approx(10.0 * 0.25, rel=1e-7)


def test_input_shape_is_inferred_for_a_plain_sequential_and_required_for_a_conv():
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))  # no input_shape attribute
    assert len(layer_lipschitz_constants(net)) == 3
    with pytest.raises(ValueError, match="input_shape"):
        layerwise_upper_bound(nn.Sequential(nn.Conv2d(1, 2, 3)))
    assert layerwise_upper_bound(nn.Sequential(nn.Conv2d(1, 2, 3)), input_shape=(1, 8, 8)) > 0


def test_abs_network_bound_two_true_constant_one():
    assert layerwise_upper_bound(abs_network()) == pytest.approx(2.0)


def _dense_conv_norm(conv, shape):
    eye = torch.eye(math.prod(shape)).view(-1, *shape)
    with torch.no_grad():
        cols = nn.functional.conv2d(eye, conv.weight, None, conv.stride, conv.padding, conv.dilation).flatten(1)
    return torch.linalg.matrix_norm(cols.double(), 2).item()


@pytest.mark.parametrize("kw,shape", [(dict(kernel_size=3, padding=1, stride=2), (2, 6, 6)),
                                      (dict(kernel_size=5, padding=2), (2, 7, 7)),
                                      (dict(kernel_size=3, padding=0, dilation=2), (2, 9, 9))])
def test_conv_factor_is_an_upper_bound_and_power_iteration_a_lower_one(kw, shape):
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, **kw)
    exact = _dense_conv_norm(conv, shape)
    upper = conv2d_norm_upper_bound(conv, shape)
    assert exact <= upper * (1 + 1e-9)
    assert upper <= 2.5 * exact  # and not absurdly loose on these small grids
    assert conv2d_operator_norm(conv, shape, iters=500) == pytest.approx(exact, rel=1e-4)


def test_conv_factor_is_exact_for_a_one_by_one_convolution():
    conv = _set(nn.Conv2d(2, 2, 1, bias=False), torch.tensor([[3.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1))
    assert conv2d_norm_upper_bound(conv, (2, 5, 5)) == pytest.approx(3.0, rel=1e-9)


@pytest.mark.parametrize("name", ["mnist_mlp", "fashion_cnn", "regression_mlp"])
def test_upper_bound_dominates_every_estimate(name):
    net = build_model(name, seed=1)
    x = torch.rand(16, *net.input_shape)
    xp = x + 0.1 * torch.randn_like(x)
    bound = layerwise_upper_bound(net)
    assert search_lipschitz_pairs(net, x, xp, steps=10).quotients.max().item() <= bound
    assert jacobian_norm_lower_bound(net, x[:4], iters=10).max().item() <= bound


def test_unknown_layer_raises_clear_error():
    with pytest.raises(ValueError, match="Softplus"):
        layerwise_upper_bound(nn.Sequential(nn.Linear(2, 2), nn.Softplus(beta=5)))


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, x):
        return x + self.inner(x)


def test_the_product_bound_refuses_a_network_that_is_not_a_chain():
    """A residual block's forward is not the product of its layers: the registration-order product can be
    below the true constant, so every bound a certificate uses must refuse it."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), _Residual(8), nn.Linear(8, 2))
    with torch.no_grad():
        net[1].inner[0].weight.mul_(0.1)
        net[1].inner[2].weight.mul_(0.1)
    x = torch.randn(64, 4)
    lower = jacobian_norm_lower_bound(net, x).max().item()
    # the naive product over registered layers is below the Jacobian lower bound here
    naive = math.prod(torch.linalg.matrix_norm(m.weight.double(), ord=2).item() for m in net.modules()
                      if isinstance(m, nn.Linear))
    assert naive < lower
    with pytest.raises(ValueError, match="plain chain.*_Residual"):
        layerwise_upper_bound(net)
    with pytest.raises(ValueError, match="plain chain"):
        layer_lipschitz_constants(net)


def test_a_custom_forward_is_refused_and_nested_chains_are_bounded():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x))) * 2  # not the product of a and b alone

    with pytest.raises(ValueError, match="own forward"):
        layerwise_upper_bound(Custom(), input_shape=(3,))
    torch.manual_seed(1)
    flat = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    nested = nn.Sequential(nn.Sequential(flat[0], flat[1]), nn.Sequential(flat[2]))
    assert layerwise_upper_bound(nested) == pytest.approx(layerwise_upper_bound(flat))


def test_a_layer_used_twice_or_a_hook_is_refused():
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(3 * torch.eye(2))
    with pytest.raises(ValueError, match="used twice"):  # the product over registered layers would say 3, not 9
        layerwise_upper_bound(nn.Sequential(lin, nn.ReLU(), lin))
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    net[0].register_forward_hook(lambda mod, inp, out: 100 * out)
    with pytest.raises(ValueError, match="hooks"):
        layerwise_upper_bound(net)

    class Doubled(nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(ValueError, match="own forward"):
        layerwise_upper_bound(Doubled(nn.Linear(2, 2)))
