"""A run against honest baselines: PCA and the codecs (JPEG, WebP, AVIF) at a byte budget, ``evaluate``
(a run scored against them at the code's size) and ``rate_distortion``.

Imports only from itself and the layers below (``use`` down to ``errors``).
"""
