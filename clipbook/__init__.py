"""clipbook: CLIP (Cheap Lipschitz Training of Neural Networks, Bungert et al. 2021) in PyTorch.

The public API (``import clipbook as cb``; names are imported on first use, so ``import clipbook`` stays cheap):

- CLIP on any network: :class:`CLIP` (Algorithm 2: X_Lip, Algorithm 1 on it, lambda and the discrepancy rule),
  :func:`discrepancy_update`, :func:`clip_objective`
- Lipschitz constants from below: :func:`difference_quotients`, :func:`lipschitz_estimate` (eq. 5),
  Algorithm 1 (:class:`PairState`, :func:`algorithm1_step`, :func:`adversarial_update`,
  :func:`search_lipschitz_pairs`), :func:`random_pairs_lower_bound`, :func:`jacobian_norm_lower_bound`
- from above: :func:`layerwise_upper_bound` (the product bound 4), :func:`layer_lipschitz_constants`,
  :func:`lipsdp_bound` (needs ``clipbook[certify]``)
- certificates: :func:`certified_radii`, :func:`certified_accuracy`
- attacks: :func:`gaussian_noise`, :class:`PaperPGD` (eq. 13), :class:`L2PGD`, :class:`APGD`,
  :func:`empirical_radii` (needs ``clipbook[attacks]``)
- models: :func:`mnist_mlp`, :func:`fashion_cnn`, :func:`build_model`, :func:`apply_spectral_norm`,
  :func:`eval_mode`; a faster first-layer input gradient for CLIP on CPU: :func:`fold_input_gradients`
  (:class:`FoldGradConv2d`)
- data: :func:`load_images`, :func:`split_lipschitz`, :func:`noisy_pairs`
- the package's trainer: :func:`train`, :class:`TrainConfig`

The package has three parts: :mod:`clipbook.core` (everything above), :mod:`clipbook.repro` (the paper's
experiments: protocol, runs, runner, storage, Table 1, Fig. 1 and 2, the command line) and :mod:`clipbook.book`
(the book's figures and widgets). The core imports neither of the others; the reproduction imports only the core.
"""
from __future__ import annotations

import importlib
from importlib.util import find_spec

__version__ = "0.2.0"

#: public name -> the module that defines it
_API = {
    **dict.fromkeys(("CLIP", "discrepancy_update", "clip_objective"), "core.clip"),
    **dict.fromkeys(("difference_quotients", "lipschitz_estimate", "PairState", "algorithm1_step",
                     "adversarial_update", "search_lipschitz_pairs", "random_pairs_lower_bound",
                     "jacobian_norm_lower_bound"), "core.lipschitz"),
    **dict.fromkeys(("layerwise_upper_bound", "layer_lipschitz_constants"), "core.bounds"),
    "lipsdp_bound": "core.lipsdp",
    **dict.fromkeys(("certified_radii", "certified_accuracy"), "core.certify"),
    **dict.fromkeys(("gaussian_noise", "PaperPGD", "L2PGD"), "core.attacks"),
    "APGD": "core.apgd",
    **dict.fromkeys(("fold_input_gradients", "FoldGradConv2d"), "core.fold_gradient"),
    "empirical_radii": "core.radii",
    **dict.fromkeys(("mnist_mlp", "fashion_cnn", "build_model", "apply_spectral_norm", "eval_mode"), "core.models"),
    **dict.fromkeys(("load_images", "split_lipschitz", "noisy_pairs"), "core.data"),
    **dict.fromkeys(("train", "TrainConfig"), "core.training"),
}

#: optional dependencies: extra -> the packages it installs (pyproject.toml's optional-dependencies)
EXTRAS = {"book": ("matplotlib", "ipywidgets", "pandas"), "certify": ("cvxpy", "cvxopt"), "attacks": ("foolbox",)}
#: what needs an extra (public names and submodules): name -> (extra, the packages it imports)
_NEEDS = {"lipsdp_bound": ("certify", ("cvxpy",)), "empirical_radii": ("attacks", ("foolbox",)),
          "book.plots": ("book", ("matplotlib",)), "book.widgets": ("book", ("matplotlib", "ipywidgets")),
          "book.robustness_figures": ("book", ("matplotlib", "pandas")),
          "book.table1_figures": ("book", ("matplotlib",))}

__all__ = sorted(_API)


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require_extra(extra: str, what: str, packages: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtraError` (one line, naming the extra) when one of ``packages`` (default: all
    of ``extra``'s) is not installed."""
    missing = [m for m in (packages or EXTRAS[extra]) if find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"clipbook.{what} needs {', '.join(missing)}: pip install 'clipbook[{extra}]'")


def __getattr__(name: str):
    if name in _NEEDS:
        require_extra(_NEEDS[name][0], name, _NEEDS[name][1])
    if name in _API:
        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value
        return value
    if find_spec(f"{__name__}.{name}") is not None:  # a submodule: clipbook.core.lipschitz etc.
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'clipbook' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
