"""The L2 geometry shared by the attacks, the Lipschitz estimates and the radii (clipbook.core.l2)."""
import pytest
import torch

from clipbook.core.l2 import flat_norms, gaussian, per_sample, shrink_into_ball, uniform_in_ball, uniform_on_sphere


def _batches():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(7, 1, 5, 5, generator=g), torch.randn(6, 30, generator=g)]


def test_flat_norms_are_per_sample_euclidean_norms_and_per_sample_broadcasts():
    for d in _batches():
        n = flat_norms(d)
        assert n.shape == (len(d),)
        assert torch.allclose(n, torch.stack([row.norm() for row in d]))
        v = per_sample(n, d)
        assert v.shape == (len(d),) + (1,) * (d.ndim - 1) and torch.equal((d / v)[2], d[2] / n[2])


@pytest.mark.parametrize("eps", [0.0, 0.5, 3.0, 100.0])
def test_shrink_into_ball_is_the_projection_onto_the_ball(eps):
    for d in _batches():
        d = d.clone()
        d[0] = 0.0  # a zero row stays zero
        p = shrink_into_ball(d, eps)
        n, pn = flat_norms(d), flat_norms(p)
        inside = n <= eps
        assert torch.equal(p[inside], d[inside])  # inside: unchanged
        assert torch.allclose(pn[~inside], torch.full_like(pn[~inside], eps), rtol=1e-6)  # outside: onto the sphere
        if eps > 0:  # the same direction
            out = ~inside
            assert torch.allclose(p[out] / per_sample(pn[out], d[out]), d[out] / per_sample(n[out], d[out]), atol=1e-6)
        q = d.clone()
        assert shrink_into_ball(q, eps, inplace=True) is q and torch.equal(q, p)


def test_random_points_lie_in_the_ball_and_on_the_sphere_and_are_seeded():
    x = torch.rand(400, 1, 4, 4)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    b, s = uniform_in_ball(x, 2.0, g()), uniform_on_sphere(x, 2.0, g())
    assert b.shape == s.shape == x.shape and b.dtype == s.dtype == x.dtype
    assert flat_norms(b).max() <= 2.0 * (1 + 1e-6)
    assert torch.allclose(flat_norms(s), torch.full((400,), 2.0), rtol=1e-5)
    # uniform in a 16-dimensional ball: P(||d|| <= eps * 0.5^(1/16)) = 1/2
    assert abs((flat_norms(b) <= 2.0 * 0.5 ** (1 / 16)).float().mean().item() - 0.5) < 0.1
    assert torch.equal(uniform_in_ball(x, 2.0, g()), b) and torch.equal(uniform_on_sphere(x, 2.0, g()), s)
    torch.manual_seed(5)
    a = gaussian(x)
    torch.manual_seed(5)
    assert torch.equal(a, torch.randn(x.shape))  # without a generator: torch's global one


def test_random_points_are_draw_for_draw_the_attacks_former_random_starts():
    """Stored results were made with these exact draws and this exact arithmetic (L2 PGD's start: CPU generator,
    a direction then a radius; APGD's: the generator on x's device, a direction of length eps)."""
    x, eps = torch.rand(9, 1, 6, 6), 1.5
    g = torch.Generator().manual_seed(1)
    d = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    d = d / torch.linalg.vector_norm(d.flatten(1), dim=1).view(-1, 1, 1, 1).clamp_min(1e-12)
    r = torch.rand((len(x), 1, 1, 1), generator=g, dtype=x.dtype).to(x.device) ** (1.0 / x[0].numel())
    assert torch.equal(uniform_in_ball(x, eps, torch.Generator().manual_seed(1)), d * r * eps)
    g = torch.Generator(device=x.device).manual_seed(2)
    d = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
    d = d * (eps / torch.linalg.vector_norm(d.flatten(1), dim=1).clamp_min(1e-30)).view(-1, 1, 1, 1)
    assert torch.equal(uniform_on_sphere(x, eps, torch.Generator(device=x.device).manual_seed(2)), d)


def test_the_attack_projections_share_the_ball_step():
    """PGD's clip-then-shrink and APGD's exact projection of the box-and-ball intersection agree where the box
    does not bind, and both end by :func:`shrink_into_ball`."""
    from clipbook.core.apgd import project_l2_box
    from clipbook.core.attacks import project
    x = torch.full((5, 1, 3, 3), 0.5)
    d = 0.1 * torch.randn(5, 1, 3, 3, generator=torch.Generator().manual_seed(4))
    for eps in (0.05, 0.2, 1.0):
        assert torch.allclose(project(x, d, eps), shrink_into_ball(d, eps), atol=1e-7)  # (x + d) - x: rounding
        assert torch.allclose(project_l2_box(x, d, eps), shrink_into_ball(d, eps), atol=1e-7)
