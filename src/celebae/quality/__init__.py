"""What training and every tool measure and draw: the loss registry, per-image metrics, what a code costs
in bytes, and the figures (grids, curves, maps).

Imports only from ``errors``, ``data`` and ``models``.
"""
