"""Known answers for the LipSDP-Neuron bound (clipbook.core.lipsdp)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("cvxpy")

from clipbook.core.lipschitz import jacobian_norm_lower_bound, search_lipschitz_pairs  # noqa: E402
from clipbook.core.lipsdp import (lipsdp_bound, lmi_matrix, mlp_spec, reduce_input,  # noqa: E402
                             verify_bound)
from clipbook.core.models import abs_network, build_model  # noqa: E402

from clipbook.core.bounds import layerwise_upper_bound  # noqa: E402

TOL = 1e-6  # relative tolerance of the interior-point solve


def _mlp(act: type, sizes: tuple[int, ...], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    net = nn.Sequential(*layers)
    net.input_shape = (sizes[0],)
    return net


def _best_lower_bound(net: nn.Module, dim: int, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, dim, generator=g)
    xp = x + 0.1 * torch.randn(64, dim, generator=g)
    pairs = search_lipschitz_pairs(net, x, xp, steps=30).quotients.max().item()
    jac = jacobian_norm_lower_bound(net, 2 * torch.randn(64, dim, generator=g)).max().item()
    return max(pairs, jac)


@pytest.mark.parametrize("shape", [(5, 3), (3, 9), (20, 7)])
def test_single_linear_layer_is_its_spectral_norm(shape):
    torch.manual_seed(sum(shape))
    net = nn.Sequential(nn.Flatten(), nn.Linear(*shape))
    res = lipsdp_bound(net)
    sigma = torch.linalg.matrix_norm(net[1].weight.detach().double(), ord=2).item()
    assert res.verified
    assert res.bound >= sigma
    assert res.bound <= sigma * (1 + TOL)


def test_abs_network_is_tight():
    res = lipsdp_bound(abs_network())
    product = layerwise_upper_bound(abs_network())
    print(f"|x| net: LipSDP {res.bound:.6f}, true 1, product bound {product:.6f}")
    assert math.isclose(product, 2.0, rel_tol=1e-6)
    assert res.verified and 1.0 <= res.bound <= 2.0 + 1e-6
    assert res.bound <= 1.0 + 1e-4  # T = I, rho = 1 is feasible (M = -v v^T, v = (1, -1, 1)): LipSDP is exact here


@pytest.mark.parametrize("act", [nn.Sigmoid, nn.ReLU, nn.Tanh])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_mlp_between_lower_and_product_bound(act, seed):
    net = _mlp(act, (5, 8, 8, 3), seed)
    res = lipsdp_bound(net)
    lower = _best_lower_bound(net, 5, seed)
    product = layerwise_upper_bound(net)
    assert res.verified
    assert lower <= res.bound <= product * (1 + TOL)
    assert res.lmi_size == 5 + 16


def test_bound_is_verified_on_the_full_lmi():
    net = _mlp(nn.Sigmoid, (6, 10, 7, 4), 3)
    res = lipsdp_bound(net)
    spec = mlp_spec(net)
    m = lmi_matrix(spec, res.bound ** 2, res.multipliers)
    assert np.linalg.eigvalsh(m)[-1] <= 0
    # a slightly smaller rho with the same multipliers is infeasible: the bound is tight for its T
    m_low = lmi_matrix(spec, (res.bound * (1 - 1e-4)) ** 2, res.multipliers)
    assert np.linalg.eigvalsh(m_low)[-1] > 0


def test_verification_never_goes_below_the_sdp_optimum():
    net = _mlp(nn.ReLU, (4, 6, 3), 0)
    res = lipsdp_bound(net)
    spec = mlp_spec(net)
    rho, ok = verify_bound(spec, res.multipliers)
    assert ok and math.isclose(rho, res.bound ** 2, rel_tol=1e-8)
    # other multipliers give valid but larger bounds: the verified rho is computed, not taken from the solver
    for scale in (0.7, 1.5):
        rho_t, ok_t = verify_bound(spec, scale * res.multipliers)
        assert ok_t and rho_t >= res.bound ** 2 * (1 - 1e-6)
        assert np.linalg.eigvalsh(lmi_matrix(spec, rho_t, scale * res.multipliers))[-1] <= 0
    # multipliers that leave the hidden block indefinite cannot be verified by any rho
    assert verify_bound(spec, np.zeros_like(res.multipliers)) == (math.inf, False)


def test_lmi_matrix_matches_the_paper_formula():
    """M = [A; B]^T [[-2ab T, (a+b) T], [(a+b) T, -2T]] [A; B] + diag(-rho I, 0, W_l^T W_l), built literally."""
    net = _mlp(nn.Sigmoid, (3, 4, 5, 2), 1)
    spec = mlp_spec(net)
    w = spec.weights
    n0, hs = 3, [4, 5]
    t = np.random.default_rng(0).uniform(0.5, 2.0, sum(hs))
    big_a = np.zeros((9, 12))
    big_a[:4, :3], big_a[4:, 3:7] = w[0], w[1]
    big_b = np.hstack([np.zeros((9, 3)), np.eye(9)])
    tm, al, be = np.diag(t), np.diag(np.concatenate(spec.alphas)), np.diag(np.concatenate(spec.betas))
    q = np.block([[-2 * al @ be @ tm, (al + be) @ tm], [(al + be) @ tm, -2 * tm]])
    ab = np.vstack([big_a, big_b])
    extra = np.zeros((12, 12))
    extra[:n0, :n0] = -2.5 * np.eye(n0)
    extra[7:, 7:] = w[2].T @ w[2]
    np.testing.assert_allclose(lmi_matrix(spec, 2.5, t), ab.T @ q @ ab + extra, atol=1e-12)


def test_input_reduction_is_exact():
    net = _mlp(nn.Sigmoid, (12, 6, 5, 3), 4)  # rank(W_0) = 6 < 12 inputs
    full = lipsdp_bound(net, reduce=False)
    red = lipsdp_bound(net, reduce=True)
    assert reduce_input(mlp_spec(net)).lmi_size == 6 + 11 and full.lmi_size == red.lmi_size == 12 + 11
    assert red.solved_lmi_size == 17 and full.solved_lmi_size == 23
    assert math.isclose(full.bound, red.bound, rel_tol=1e-5)


def test_reports_time_memory_and_solver():
    res = lipsdp_bound(_mlp(nn.Tanh, (3, 4, 2), 0), solver="SCS")
    assert res.solver == "SCS" and res.solve_time_s > 0 and res.peak_memory_mb >= 0 and res.verified


@pytest.mark.parametrize("bad, word", [(build_model("fashion_cnn"), "Conv2d"),
                                       (nn.Sequential(nn.Linear(3, 3), nn.Dropout(), nn.Linear(3, 2)), "Dropout"),
                                       (nn.Sequential(nn.Linear(3, 3), nn.LeakyReLU(), nn.Linear(3, 2)), "LeakyReLU"),
                                       (nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2)), "without an activation"),
                                       (nn.Sequential(nn.Linear(3, 3), nn.Sigmoid()), "end with a Linear")])
def test_unsupported_layers_raise(bad, word):
    with pytest.raises(ValueError, match=word):
        lipsdp_bound(bad)


@pytest.mark.parametrize("act,sizes,seed", [(nn.ReLU, (12, 10, 6), 0), (nn.Sigmoid, (10, 8, 8, 4), 1),
                                            (nn.Tanh, (8, 16, 3), 2), (nn.ReLU, (30, 20, 16, 5), 3)])
def test_first_order_multipliers_reach_the_sdp_optimum_and_stay_sound(act, sizes, seed, monkeypatch):
    from clipbook.core.lipsdp import lipsdp_first_order
    net = _mlp(act, sizes, seed)
    sdp = lipsdp_bound(net)
    import sys
    monkeypatch.setitem(sys.modules, "cvxpy", None)  # the first-order bound needs no SDP solver
    fo = lipsdp_first_order(net, steps=300)
    assert fo.verified and sdp.verified
    assert fo.bound >= sdp.bound * (1 - TOL)  # the SDP's optimum is the smallest bound over all multipliers
    assert fo.bound <= sdp.bound * 1.01       # and descent gets within 1 % of it on these networks
    assert _best_lower_bound(net, sizes[0], seed) <= fo.bound <= layerwise_upper_bound(net)
    rho, ok = verify_bound(mlp_spec(net), fo.multipliers)  # the returned multipliers certify the returned bound
    assert ok and math.sqrt(rho) <= fo.bound * (1 + 1e-9)
