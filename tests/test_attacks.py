import pytest
import torch

from clipbook.core.attacks import L2PGD, PaperPGD, gaussian_noise, pgd_l2, pgd_step, project
from clipbook.core.evaluation import accuracy, attack_accuracy


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


def test_pgd_accuracy_never_increases_with_more_steps(trained_mlp, mnist_split):
    x, y = mnist_split.x_test[:200], mnist_split.y_test[:200]
    by_steps = [attack_accuracy(trained_mlp, x, y, PaperPGD(eps=1.0, steps=s)) for s in (0, 2, 5, 20)]
    assert by_steps == sorted(by_steps, reverse=True)
    assert by_steps[0] == pytest.approx(accuracy(trained_mlp, x, y))
    assert by_steps[-1] < by_steps[0]


@pytest.mark.parametrize("attack", [PaperPGD, L2PGD])
def test_attack_accuracy_never_increases_with_larger_eps(trained_mlp, mnist_split, attack):
    x, y = mnist_split.x_test[:200], mnist_split.y_test[:200]
    accs = [attack_accuracy(trained_mlp, x, y, attack(eps=e, steps=30)) for e in (0.25, 0.5, 1.0, 2.0)]
    assert accs == sorted(accs, reverse=True) and accs[-1] < accs[0]


def test_one_step_of_eq_13_by_hand():
    """x = (0.5, 0.5, 0.9), gradient (2, -1, 3), alpha 0.25: the sign step gives (0.75, 0.25, 1.15); the box
    clips the last coordinate to 1.0, so delta = (0.25, -0.25, 0.1) with norm 0.3674; eps = 0.3 scales
    delta by 0.3 / 0.3674."""
    x = torch.tensor([[0.5, 0.5, 0.9]])
    d = pgd_step(x, torch.zeros_like(x), torch.tensor([[2.0, -1.0, 3.0]]), eps=0.3, alpha=0.25)
    raw = torch.tensor([[0.25, -0.25, 0.1]])
    assert torch.allclose(d, raw * 0.3 / raw.norm(), atol=1e-6)
    d_big = pgd_step(x, torch.zeros_like(x), torch.tensor([[2.0, -1.0, 3.0]]), eps=1.0, alpha=0.25)
    assert torch.allclose(d_big, raw, atol=1e-6)  # inside the ball: only the box acts


def test_worst_case_counts_an_image_only_if_every_attack_failed():
    """The cascade with attacks that break known images: an image stands only if it is clean-correct and no
    attack broke it, and each attack sees only the images still standing."""
    from clipbook.repro.suite import attack_cascade

    class Breaks:
        def __init__(self, name, broken):
            self.name, self.broken, self.seen = name, torch.tensor(broken), []

        def __call__(self, model, x, y, active=None):
            self.seen.append(active.clone())
            return torch.where((self.broken & active)[:, None], -x, x)

    class Sign(torch.nn.Module):
        def forward(self, x):
            return torch.cat([x, -x], 1)  # class 0 iff x > 0

    model = Sign()
    x, y = torch.tensor([[1.0], [1.0], [1.0], [1.0], [-1.0]]), torch.zeros(5, dtype=torch.long)
    a = Breaks("a", [False, True, False, False, False])
    b = Breaks("b", [False, True, True, False, True])
    standing, stages = attack_cascade(model, x, y, [a, b])
    assert standing.tolist() == [True, False, False, True, False]
    assert a.seen[0].tolist() == [True, True, True, True, False]  # the misclassified image is never attacked
    assert b.seen[0].tolist() == [True, False, True, True, False]  # nor the one a broke
    assert [s["attacked"] for s in stages] == [5, 4, 3] and stages[-1]["accuracy"] == pytest.approx(40.0)


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


def test_noise_in_the_normalised_space_is_std_times_smaller_in_pixels():
    x = torch.full((2000, 1, 28, 28), 0.5)
    n = gaussian_noise(x, 1.0, torch.Generator().manual_seed(0), space="normalised", data_std=0.3081, clip=False)
    assert (n - x).std().item() == pytest.approx(0.3081, rel=0.01)
    assert n.min() < 0  # unclipped
    assert (gaussian_noise(x, 1.0, torch.Generator().manual_seed(0)) - x).std().item() < 0.5  # pixel space: clipped
    with pytest.raises(ValueError, match="space"):
        gaussian_noise(x, 1.0, space="fourier")


def test_pgd_rejects_bad_arguments(trained_mlp):
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="variant"):
        pgd_l2(trained_mlp, x, y, variant="linf")
    with pytest.raises(ValueError, match="eps"):
        pgd_l2(trained_mlp, x, y, eps=-1)


def test_attacking_a_subset_gives_each_image_the_result_it_gets_alone(trained_mlp, mnist_split):
    """``active``: random starts are drawn for every image, so the attacked rows are those of a full run."""
    from clipbook.repro.suite import strong_attacks
    x, y = mnist_split.x_test[:60], mnist_split.y_test[:60]
    active = torch.arange(60) % 3 != 0
    for attack in strong_attacks(1.0, seed=4, steps=8):
        full, part = attack(trained_mlp, x, y), attack(trained_mlp, x, y, active=active)
        assert torch.equal(part[~active], x[~active]), attack.name  # untouched
        assert torch.equal(part[active], full[active]), attack.name


def test_the_cascade_gives_the_same_per_image_verdicts_as_independent_attacks(trained_mlp, mnist_split):
    from clipbook.core.evaluation import robust_mask
    from clipbook.repro.suite import attack_cascade, strong_attacks
    x, y = mnist_split.x_test[:300], mnist_split.y_test[:300]
    for eps in (0.5, 1.5):
        attacks = strong_attacks(eps, seed=1, steps=10)
        standing, stages = attack_cascade(trained_mlp, x, y, attacks)
        independent = torch.stack([robust_mask(trained_mlp, x, y, a) for a in attacks]).all(0)
        assert torch.equal(standing, independent)
        attacked = [st["attacked"] for st in stages[1:]]
        assert attacked == sorted(attacked, reverse=True) and attacked[-1] < attacked[0]  # fewer images each stage
        assert stages[-1]["accuracy"] == 100 * standing.float().mean().item()


def test_early_exit_gives_the_verdicts_of_attacking_every_image_for_every_step(trained_mlp, mnist_split):
    """An image leaves the attack at its first misclassified iterate: its verdict is exactly "some iterate of the
    full-length trajectory fooled it" (iterate s of a K-step run is the end of an s-step run)."""
    x, y = mnist_split.x_test[:200], mnist_split.y_test[:200]
    k = 12
    for variant in ("sign", "normalized"):
        ever = torch.zeros(len(x), dtype=torch.bool)
        for s in range(k + 1):
            adv = pgd_l2(trained_mlp, x, y, eps=1.0, alpha=0.25, steps=s, variant=variant, early_stop=False)
            ever |= trained_mlp(adv).argmax(1) != y
        early = pgd_l2(trained_mlp, x, y, eps=1.0, alpha=0.25, steps=k, variant=variant)
        assert torch.equal(trained_mlp(early).argmax(1) != y, ever), variant


def test_the_ladder_on_a_subset_agrees_with_the_cascade_on_the_same_images(trained_mlp, mnist_split):
    """Fashion's budget runs the cascade on more images than the ladder: the check cascade runs on the ladder's."""
    from clipbook.repro.suite import robustness
    rob = robustness(trained_mlp, mnist_split, n=240, seed=2, eps=(1.0,), steps=8, per_attack=80)
    assert rob["attacks_n"] == 80 and rob["worst_independent"] == rob["worst_cascade_subset"]


def test_noise_response_tells_a_network_that_gives_noise_one_class():
    import torch
    from torch import nn
    from clipbook.core.evaluation import noise_response

    class Constant(nn.Module):  # logits (0, 3, 0, ...) whatever the input: all noise goes to class 1
        def forward(self, x):
            out = torch.zeros(len(x), 4)
            out[:, 1] = 3.0
            return out

    x = torch.rand(50, 1, 4, 4)
    r = noise_response(Constant(), x, std=0.5)
    assert r["top_class_share"] == 1.0 and r["top_class"] == 1
    assert r["logit_range_clean"] == r["logit_range_noisy"] == 3.0
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    torch.manual_seed(0)
    s = noise_response(lin, x, std=0.5, seed=1)
    assert 0.25 <= s["top_class_share"] <= 1.0 and s == noise_response(lin, x, std=0.5, seed=1)  # seeded


def test_pgd_with_one_restart_returns_that_restarts_iterates_for_every_sample():
    from clipbook.core.attacks import _pgd_once, pgd_l2
    from clipbook.core.models import build_model
    model = build_model("mnist_mlp", seed=0).eval()
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))
    for early_stop in (True, False):
        got = pgd_l2(model, x, y, 2.0, 0.05, 20, variant="normalized", random_start=True,
                     generator=torch.Generator().manual_seed(3), early_stop=early_stop)
        want = _pgd_once(model, x, y, 2.0, 0.05, 20, "normalized", True, torch.Generator().manual_seed(3), early_stop,
                         torch.ones(16, dtype=torch.bool))
        assert torch.equal(got, want)
