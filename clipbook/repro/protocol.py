"""The paper's evaluation protocol (Sec. 4.2), defined once.

Table 1 reports the accuracy on clean test images, on images with Gaussian noise of standard deviation
``SIGMA`` and under the L2 PGD attack of eq. (13) with radius ``EPS``, step ``ALPHA`` and ``STEPS`` steps.
Checkpoints are selected by a cheaper PGD on the validation set (``SELECTION_STEPS`` steps).
"""
from __future__ import annotations

from ..core.attacks import EQ13_ALPHA as ALPHA, EQ13_EPS as EPS, EQ13_STEPS as STEPS  # noqa: F401  (eq. 13)

SIGMA = 1.0          # standard deviation of the noise test
EXTRA_EPS = 0.5      # a second, smaller radius reported beside EPS (beyond the paper)
SELECTION_STEPS = 10  # PGD steps of the validation attack that selects the checkpoint

#: Per-dataset (mean, std) of the training images, the usual normalisation constants: the noise test
#: "in the normalised space" adds ``SIGMA`` times noise to ``(x - mean) / std``, i.e. ``SIGMA * std`` in pixels.
NORMALISATION = {"mnist": (0.1307, 0.3081), "fashion": (0.2860, 0.3530)}
