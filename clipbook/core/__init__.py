"""The core a practitioner imports: Lipschitz estimates from below (:mod:`.lipschitz`: eq. 5, Algorithm 1) and
bounds from above (:mod:`.bounds`, :mod:`.lipsdp`), CLIP itself (:mod:`.clip`: Algorithm 2), the training
objectives of CLIP and its baselines (:mod:`.objectives`) and a trainer (:mod:`.training`), attacks
(:mod:`.attacks`, :mod:`.apgd`; their L2 geometry: :mod:`.l2`), certificates and radii (:mod:`.certify`,
:mod:`.radii`), models (a faster input gradient for few-channel convolutions: :mod:`.fold_gradient`),
data and devices. It imports nothing from :mod:`clipbook.repro` or :mod:`clipbook.book`
(a test checks)."""
