"""A run from settings to a finished run directory: ``Settings``, the device and precision, the processes of a
torchrun job, safetensors checkpoints, the run directory (``RunDir``, the one module that knows its layout),
the loop (``train_step``, ``train``) and the FLOPs it costs.

Imports only from itself and ``errors``, ``data``, ``models``, ``quality``.
"""
