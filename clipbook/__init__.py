"""clipbook: CLIP (Cheap Lipschitz Training of Neural Networks, Bungert et al. 2021) in PyTorch.

Each idea of the paper lives in one module (the README's package table names the function for each equation):

- :mod:`clipbook.lipschitz`   difference quotients, Algorithm 1, the estimate (5), lower bounds
- :mod:`clipbook.bounds`      the product bound (4); :mod:`clipbook.lipsdp` the LipSDP bound
- :mod:`clipbook.clip`        Algorithm 2's step: the objective, the fused pair update, the lambda rule
- :mod:`clipbook.regularisers` every training method behind one interface; :mod:`clipbook.training` the loop
- :mod:`clipbook.attacks`     noise, eq. (13) PGD, L2 PGD; :mod:`clipbook.apgd` APGD-CE / APGD-T
- :mod:`clipbook.protocol`    the paper's evaluation protocol; :mod:`clipbook.suite` the evaluation of a run
- :mod:`clipbook.experiments`, :mod:`clipbook.runner`, :mod:`clipbook.storage`, :mod:`clipbook.schema`,
  :mod:`clipbook.reporting`   Table 1: specs, runs, files, the result layout, the table and the claims
- :mod:`clipbook.regression`, :mod:`clipbook.theory`, :mod:`clipbook.fig1`   Sec. 4.1, Sec. 3, Fig. 1
"""

__version__ = "0.2.0"
