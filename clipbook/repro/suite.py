"""The evaluation suite of one trained model: Table 1's columns, the strong attacks with the worst case per
image, robustness curves, Lipschitz bounds and certificates, and the small tensors the book draws."""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from . import protocol
from ..core.attacks import L2PGD, PaperPGD
from ..core.bounds import layerwise_upper_bound
from ..core.certify import certified_accuracy, certified_radii
from ..core.data import ClassificationSplit
from ..core.evaluation import accuracy, attack_accuracy, correct, noise_accuracy, predict, robust_mask
from .experiments import EvalBudget
from ..core.lipschitz import jacobian_norm_lower_bound, search_lipschitz_pairs
from ..core.tasks import ClassificationTask

#: Radii of the robustness curves and of the certified-accuracy curve.
CURVE_EPS = (0.5, 1.0, 2.0, 3.0)
CURVE_SIGMA = (0.1, 0.25, 0.5, 0.75, 1.0)
CERT_EPS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


def strong_attacks(eps: float, seed: int = 0, steps: int = protocol.STEPS) -> list:
    """Every attack of the worst case at radius ``eps``, ``steps`` iterations each, cheapest first (the order
    of the cascade): eq. (13) PGD, AutoAttack's APGD-CE, standard L2 PGD (3 restarts) and APGD-T (targeted
    DLR loss, 9 target classes)."""
    from ..core.apgd import APGD
    return [PaperPGD(eps=eps, steps=steps), APGD(eps=eps, loss="ce", steps=steps, seed=seed),
            L2PGD(eps=eps, steps=steps, seed=seed), APGD(eps=eps, loss="dlr", targeted=True, steps=steps, seed=seed)]


def attack_cascade(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: list,
                   ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The per-image worst case over ``attacks`` as AutoAttack computes it: each attack runs only on the images
    that are clean-correct and that every earlier attack failed to break. Every attack draws its random
    numbers for all images (``active``), so an image's verdict is the one the attack gives it alone, and the
    result equals the conjunction of the attacks run independently (tested). Returns the mask ``[N]`` of
    images no attack broke and one record per stage: images attacked, accuracy [%] after it, wall time [s]."""
    standing = correct(model, x, y)
    stages = [{"attack": "clean", "attacked": len(x), "accuracy": 100 * standing.float().mean().item(), "wall_s": 0.0}]
    for attack in attacks:
        t0, attacked = time.perf_counter(), int(standing.sum())
        standing = robust_mask(model, x, y, attack, desc=attack.name, active=standing)
        stages.append({"attack": attack.name, "attacked": attacked, "accuracy": 100 * standing.float().mean().item(),
                       "wall_s": time.perf_counter() - t0})
    return standing, stages


def table1_metrics(model: nn.Module, split: ClassificationSplit, dataset: str, budget: EvalBudget,
                   seed: int) -> dict[str, float]:
    """Table 1's columns in percent: clean train/test (all images), noise in both protocols (all test
    images) and eq. (13) PGD (the first ``budget.pgd`` test images, all by default)."""
    x, y = split.x_test, split.y_test
    n = budget.pgd or len(x)
    _, std = protocol.NORMALISATION[dataset]
    return {
        "train": 100 * accuracy(model, split.x_train, split.y_train),
        "test": 100 * accuracy(model, x, y),
        "noise": 100 * noise_accuracy(model, x, y, protocol.SIGMA, seed),
        "noise_normalised": 100 * noise_accuracy(model, x, y, protocol.SIGMA, seed, space="normalised",
                                                 data_std=std, clip=False),
        "noise_normalised_clipped": 100 * noise_accuracy(model, x, y, protocol.SIGMA, seed, space="normalised",
                                                         data_std=std, clip=True),
        "pgd": 100 * attack_accuracy(model, x[:n], y[:n], PaperPGD()),
    }


def robustness(model: nn.Module, split: ClassificationSplit, n: int, seed: int,
               eps: tuple[float, ...] = (protocol.EPS, protocol.EXTRA_EPS), steps: int = protocol.STEPS,
               per_attack: int | None = None) -> dict[str, Any]:
    """The worst case per image over :func:`strong_attacks` on the first ``n`` test images, by the cascade of
    :func:`attack_cascade`, at each radius; and each attack's own accuracy [%], run independently on the
    first ``per_attack`` images (default ``n``; 0: none), with their conjunction (``worst_independent``)
    beside the cascade's worst case on the same call's images (``worst_cascade_subset``; when
    ``per_attack < n`` a second, small cascade on those images, since an attack's random draws depend on
    how many images one call attacks): the two agree by construction, and every stored run shows it. The :class:`~clipbook.repro.schema.Robustness` layout."""
    per_attack = n if per_attack is None else min(per_attack, n)
    x, y = split.x_test[:n], split.y_test[:n]
    out: dict[str, Any] = {"n": n, "eps": list(eps), "worst": [], "cascade": [], "attacks_n": per_attack,
                           "attacks": {}, "attacks_wall_s": {}, "worst_independent": [],
                           "worst_cascade_subset": []}
    for e in eps:
        attacks = strong_attacks(e, seed, steps)
        standing, stages = attack_cascade(model, x, y, attacks)
        out["worst"].append(100 * standing.float().mean().item())
        out["cascade"].append(stages)
        if per_attack:
            masks = []
            for attack in attacks:
                t0 = time.perf_counter()
                m = robust_mask(model, x[:per_attack], y[:per_attack], attack, desc=f"{attack.name} eps={e}")
                out["attacks"].setdefault(attack.name, []).append(100 * m.float().mean().item())
                out["attacks_wall_s"].setdefault(attack.name, []).append(time.perf_counter() - t0)
                masks.append(m)
            out["worst_independent"].append(100 * torch.stack(masks).all(0).float().mean().item())
            # the cascade on exactly the images (and so the random draws) of the independent runs
            sub = standing[:per_attack] if per_attack == n else attack_cascade(model, x[:per_attack], y[:per_attack],
                                                                               attacks)[0]
            out["worst_cascade_subset"].append(100 * sub.float().mean().item())
    return out


def robustness_curves(model: nn.Module, split: ClassificationSplit, budget: EvalBudget, seed: int) -> dict[str, Any]:
    """Accuracy [%] against the eq. (13) PGD radius (first ``budget.curves`` test images) and against the
    pixel-space noise level sigma (all test images)."""
    x, y = split.x_test[:budget.curves], split.y_test[:budget.curves]
    return {
        "pgd_eps": list(CURVE_EPS), "pgd_n": budget.curves, "pgd_steps": budget.curve_steps,
        "pgd_acc": [100 * attack_accuracy(model, x, y, PaperPGD(eps=e, steps=budget.curve_steps)) for e in CURVE_EPS],
        "noise_sigma": list(CURVE_SIGMA),
        "noise_acc": [100 * noise_accuracy(model, split.x_test, split.y_test, s, seed) for s in CURVE_SIGMA],
    }


#: The bounds' pair search: its own generator seed offset and noise (the Table-time estimate,
#: :func:`lipschitz_estimate`, uses ``seed`` and the run's ``lip_noise``; stored results were made so).
BOUND_PAIR_SEED_OFFSET, BOUND_PAIR_NOISE = 7, 0.1


def lipschitz_bounds(model: nn.Module, split: ClassificationSplit, budget: EvalBudget, seed: int = 0) -> dict[str, float]:
    """Upper bound (4) and lower bounds: pair search (:func:`lipschitz_estimate`) from ``budget.bound_pairs``
    random held-out starts (generator seed ``seed + 7``, noise 0.1) for ``budget.bound_steps`` steps, the
    largest Jacobian spectral norm over ``budget.jacobian`` test images, and the better of the two."""
    search = lipschitz_estimate(model, split, seed + BOUND_PAIR_SEED_OFFSET, BOUND_PAIR_NOISE, budget.bound_pairs,
                                budget.bound_steps)
    jac = max(jacobian_norm_lower_bound(model, split.x_test[i:i + 250]).max().item()
              for i in range(0, budget.jacobian, 250))
    return {"pair_search": search, "jacobian": jac, "lower": max(search, jac), "upper": layerwise_upper_bound(model)}


def certificates(model: nn.Module, split: ClassificationSplit, upper: float) -> dict[str, Any]:
    """Certified accuracy [%] on all test images at each radius of :data:`CERT_EPS`, from the bound ``upper``."""
    radii = certified_radii(model, split.x_test, split.y_test, upper)
    return {"cert_eps": list(CERT_EPS), "certified_acc": certified_accuracy(radii, CERT_EPS),
            "median_certified_radius": radii.median().item()}


def artifacts(model: nn.Module, split: ClassificationSplit, seed: int = 0, n_examples: int = 8) -> dict[str, torch.Tensor]:
    """Small CPU tensors for the book's figures: test images, their adversarials under eq. (13) PGD and under
    APGD-CE at eps = 2, and the class probabilities of each (Fig. 1 is :mod:`clipbook.repro.fig1`'s)."""
    from ..core.apgd import APGD
    x, y = split.x_test[:n_examples], split.y_test[:n_examples]
    adv = PaperPGD()(model, x, y)
    strong = APGD(eps=protocol.EPS, loss="ce", seed=seed)(model, x, y)
    out = {"x": x, "y": y, "x_adv": adv, "x_strong": strong, "p_clean": predict(model, x).softmax(1),
           "p_adv": predict(model, adv).softmax(1), "p_strong": predict(model, strong).softmax(1)}
    # clone: a saved slice would otherwise carry the whole test set's storage with it
    return {k: v.detach().cpu().clone() for k, v in out.items()}


def lipschitz_estimate(model: nn.Module, split: ClassificationSplit, seed: int, noise: float = 0.1,
                       n_pairs: int = 1000, steps: int = 50) -> float:
    """Lipschitz estimate by pair search: the largest quotient after ``steps`` updates of Algorithm 1
    (step size 1, factor 1.3) of ``n_pairs`` held-out images and their copies with ``noise`` times Gaussian
    noise, drawn from a CPU generator seeded with ``seed``. The runner's ``lip_estimate`` (``seed``, the run's
    ``lip_noise``, ``budget.lip_pairs`` / ``lip_steps``) and the bounds' pair search (:func:`lipschitz_bounds`)."""
    px, pxp = ClassificationTask(split).pairs(n_pairs, noise, torch.Generator().manual_seed(seed))
    return search_lipschitz_pairs(model, px, pxp, steps=steps).quotients.max().item()
