import pytest
import torch
from torch import nn

from clipbook.core.lipschitz import (adversarial_update, difference_quotients, jacobian_norm_lower_bound,
                                lipschitz_estimate, random_pairs_lower_bound, search_lipschitz_pairs)
from clipbook.core.models import abs_network, build_model


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


# Algorithm 1, its one implementation (PairState) and its two uses -------------------------------------------

from clipbook.core.lipschitz import PairState, accepted, algorithm1_step, ascent_step, quotients_and_gradients  # noqa: E402


def test_acceptance_rule_accepts_only_a_rise_and_the_fused_rule_undoes_only_a_fall():
    q_old = torch.tensor([1.0, 1.0, 1.0, 1.0])
    q_new = torch.tensor([1.5, 1.0, 0.5, float("nan")])
    assert accepted(q_new, q_old).tolist() == [True, False, False, False]  # exact: a tie or a NaN is no rise
    assert accepted(q_new, q_old, strict=False).tolist() == [True, True, False, True]  # fused: only a fall


def test_judge_with_the_fused_rule_keeps_a_tie():
    s = PairState.start(torch.zeros(2, 3), torch.ones(2, 3), tau=0.5)
    s.q = torch.tensor([1.0, 1.0])
    s.x = s.x + 0.1
    s.proposed = torch.tensor([True, True])
    s.judge(torch.tensor([1.0, 0.9]), factor=2.0, strict=False)
    assert s.tau.tolist() == [1.0, 0.25] and torch.equal(s.anchor_x[0], torch.full((3,), 0.1))


def test_judge_multiplies_tau_on_a_rise_and_divides_it_and_goes_back_otherwise():
    """PairState.judge on two proposed pairs: the one whose quotient rose is accepted (it becomes the anchor,
    tau * factor), the other is rejected (back to the anchor, tau / factor)."""
    x, xp = torch.zeros(2, 3), torch.ones(2, 3)
    s = PairState.start(x, xp, tau=0.5)
    s.q = torch.tensor([1.0, 1.0])
    s.x, s.x_prime = x + 0.1, xp + 0.2  # two proposed moves
    s.proposed = torch.tensor([True, True])
    reject = s.judge(torch.tensor([2.0, 0.5]), factor=2.0)
    assert reject.tolist() == [False, True]
    assert s.tau.tolist() == [1.0, 0.25]
    assert s.q.tolist() == [2.0, 1.0]
    assert torch.equal(s.anchor_x[0], x[0] + 0.1) and torch.equal(s.x[0], x[0] + 0.1)  # accepted: kept
    assert torch.equal(s.x[1], x[1]) and torch.equal(s.x_prime[1], xp[1])  # rejected: back at its anchor
    assert not s.proposed.any()


def test_propose_refuses_moves_that_bring_a_pair_too_close():
    x = torch.zeros(2, 2)
    xp = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    s = PairState.start(x, xp, tau=1.0)
    gx = torch.tensor([[0.0, 0.0], [1.0, 0.0]])  # pair 1 would land on its partner
    s.propose(torch.ones(2), gx, torch.zeros(2, 2), factor=2.0)
    assert s.proposed.tolist() == [True, False]
    assert s.tau.tolist() == [1.0, 0.5] and torch.equal(s.x[1], x[1])  # exact: a refused move is a rejection
    s = PairState.start(x, xp, tau=1.0)
    s.propose(torch.ones(2), gx, torch.zeros(2, 2), factor=2.0, strict=False)
    assert s.proposed.tolist() == [True, False] and s.tau.tolist() == [1.0, 1.0]  # fused: tau stays


def test_exact_step_is_propose_evaluate_judge_by_hand():
    """algorithm1_step (the exact use) = quotients and gradients, the ascent step, the quotients there, the
    acceptance rule: rebuilt here from the pieces, bit for bit."""
    net = linear_net(6, 3)
    torch.manual_seed(1)
    x, xp = torch.randn(10, 6), torch.randn(10, 6)
    tau = torch.rand(10) + 0.1
    q, gx, gxp = quotients_and_gradients(net, x, xp)
    cx, cxp = ascent_step(x, xp, gx, gxp, q, tau)
    with torch.no_grad():
        q_new = difference_quotients(net, cx, cxp)
    ok = accepted(q_new, q)
    step = adversarial_update(net, x, xp, tau, factor=1.3)
    assert torch.equal(step.tau, torch.where(ok, tau * 1.3, tau / 1.3))
    assert torch.equal(step.x, torch.where(ok[:, None], cx, x)) and torch.equal(step.quotients, torch.where(ok, q_new, q))
    s = algorithm1_step(net, PairState.start(x, xp, tau))
    assert torch.equal(s.x, step.x) and torch.equal(s.tau, step.tau) and not s.proposed.any()


def test_fused_use_tests_each_proposal_one_evaluation_later():
    """PairState.advance (the fused use, as in CLIP's step) with the gradients at each evaluation: the first
    evaluation proposes, the second judges; on a fixed network its anchors, step sizes and quotients are then
    those of one exact step, bit for bit."""
    net = build_model("toy_mlp", seed=0)
    torch.manual_seed(2)
    x, xp = torch.randn(16, 2), torch.randn(16, 2)
    exact = algorithm1_step(net, PairState.start(x, xp, 0.5), 1.3)
    fused = PairState.start(x, xp, 0.5)
    for _ in range(2):
        fused.advance(*quotients_and_gradients(net, fused.x, fused.x_prime), 1.3)
    assert torch.equal(fused.anchor_x, exact.x) and torch.equal(fused.anchor_xp, exact.x_prime)
    assert torch.equal(fused.tau, exact.tau) and torch.equal(fused.q, exact.q)
    rejected = exact.tau < 0.5
    assert rejected.any() and (~rejected).any()  # both branches of the rule were taken
    assert not fused.proposed[rejected].any() and fused.proposed[~rejected].all()  # accepted ones moved on
