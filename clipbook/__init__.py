"""clipbook: CLIP (Cheap Lipschitz Training of Neural Networks, Bungert et al. 2021) in PyTorch.

Modules, one concern each:

- :mod:`clipbook.data`        MNIST / Fashion-MNIST tensors, the Lipschitz set, the regression samples
- :mod:`clipbook.models`      the paper's three networks
- :mod:`clipbook.lipschitz`   difference quotients, Algorithm 1, the estimate (5), the product bound (4)
- :mod:`clipbook.training`    Algorithm 2 (CLIP), weight regularisation, standard training
- :mod:`clipbook.attacks`     Gaussian noise, the paper's L2 PGD (13) and standard L2 PGD
- :mod:`clipbook.evaluation`  clean / noise / PGD accuracy
- :mod:`clipbook.regression`  the Section 4.1 experiment (warm starts over lambda, lambda path)
- :mod:`clipbook.runner`      one Table 1 configuration end to end, stored results, Table 1
"""

__version__ = "0.1.0"
