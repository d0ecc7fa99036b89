"""Many runs and what they show: study files and sweeps over points × seeds, runs grouped by point at a
footing, the paired bootstrap, the report's claims, ``compare`` and the report.

Imports only from itself and the layers below (``evaluation`` down to ``errors``).
"""
