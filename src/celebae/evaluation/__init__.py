"""A run against honest baselines: PCA and the codecs (JPEG, WebP, AVIF) at a byte budget, ``evaluate``
(a run scored against them at the code's size) and ``rate_distortion``; ``share``: a scored run as a Hub
model folder whose card carries that evaluation; ``ood``: a detector measured against out-of-distribution sets
(AUROC, AP), beside PCA; ``probe``: linear probes from codes to CelebA's attributes.

Imports only from itself and the layers below (``use`` down to ``errors``).
"""
