"""A trained run put to use: ``load`` (a run as a model that encodes, decodes and reconstructs images), the
latent tools (encode, anomalies, interpolate, neighbours, map), the anomaly detector (a threshold from a
false-positive rate, p-values), attribute edits, and export (ONNX, TorchScript).

Imports only from itself and the layers below (``training`` down to ``errors``).
"""
