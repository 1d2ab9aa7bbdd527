import pytest
import torch

from clipbook.attacks import gaussian_noise, pgd_l2, project
from clipbook.evaluation import accuracy, pgd_accuracy


def _norms(d):
    return torch.linalg.vector_norm(d.flatten(1), dim=1)


@pytest.mark.parametrize("variant,random_start,restarts", [("sign", False, 1), ("normalized", True, 2)])
def test_pgd_stays_in_ball_and_box_and_lowers_accuracy(trained_mlp, mnist_split, variant, random_start, restarts):
    x, y = mnist_split.x_test[:300], mnist_split.y_test[:300]
    eps = 1.0
    adv = pgd_l2(trained_mlp, x, y, eps=eps, alpha=0.25, steps=20, variant=variant,
                 random_start=random_start, restarts=restarts, generator=torch.Generator().manual_seed(0))
    assert adv.shape == x.shape
    assert _norms(adv - x).max().item() <= eps + 1e-5
    assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0
    clean, attacked = accuracy(trained_mlp, x, y), accuracy(trained_mlp, adv, y)
    assert clean > 0.8
    assert attacked < clean - 0.2


def test_pgd_accuracy_never_increases_with_more_steps_or_larger_eps(trained_mlp, mnist_split):
    x, y = mnist_split.x_test[:200], mnist_split.y_test[:200]
    by_steps = [pgd_accuracy(trained_mlp, x, y, eps=1.0, steps=s) for s in (0, 2, 5, 20)]
    assert by_steps == sorted(by_steps, reverse=True)
    assert by_steps[0] == pytest.approx(accuracy(trained_mlp, x, y))


def test_project_clips_to_box_then_ball():
    x = torch.full((2, 1, 2, 2), 0.5)
    d = torch.tensor([[[[10.0, 0.0], [0.0, 0.0]]], [[[0.1, 0.0], [0.0, 0.0]]]])
    p = project(x, d, eps=0.3)
    assert torch.allclose(p[0, 0, 0, 0], torch.tensor(0.3))  # clipped to 0.5, then scaled into the ball
    assert torch.allclose(p[1], d[1])  # already feasible: unchanged


def test_gaussian_noise_is_clipped_and_seeded():
    x = torch.rand(10, 1, 28, 28)
    a = gaussian_noise(x, 1.0, torch.Generator().manual_seed(1))
    b = gaussian_noise(x, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(gaussian_noise(x, 0.0), x)
    with pytest.raises(ValueError):
        gaussian_noise(x, -1.0)


def test_pgd_rejects_bad_arguments(trained_mlp):
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="variant"):
        pgd_l2(trained_mlp, x, y, variant="linf")
    with pytest.raises(ValueError, match="eps"):
        pgd_l2(trained_mlp, x, y, eps=-1)
