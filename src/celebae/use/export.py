"""Export a trained run's encoder and decoder, separately, as ONNX or TorchScript.

    encoder: images N×3×S×S float in [-1, 1] → code N×code_size     (S: the run's image size, 128 by default)
    decoder: code N×code_size → images N×3×S×S float in [-1, 1]

The batch dimension stays dynamic. ONNX uses PyTorch's torch.export-based exporter (it needs onnxscript,
in the ``onnx`` extra; torch 2.4, whose exporter takes no dynamic shapes, uses the TorchScript-based one);
TorchScript is a trace (PyTorch deprecates TorchScript: prefer ONNX for new uses).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import CelebaeError
from .trained import load

FORMATS = ("onnx", "torchscript")


class Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode(images)


class Decoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.model.decode(code)


def export(run: str | Path, fmt: str, out_dir: str | Path, checkpoint: str = "best") -> list[Path]:
    """Write ``encoder`` and ``decoder`` files (``.onnx`` or ``.pt``) plus ``export.json`` to ``out_dir``."""
    if fmt not in FORMATS:
        raise CelebaeError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "onnx":
        check_onnx()  # before anything is made
    trained = load(run, checkpoint, device="cpu")
    model = trained.model.float().eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = torch.zeros(2, *model.image_shape)
    code = torch.zeros(2, model.code_size)
    parts = [("encoder", Encoder(model), images, "images", "code"), ("decoder", Decoder(model), code, "code", "images")]
    written = []
    for name, module, example, input_name, output_name in parts:
        if fmt == "onnx":
            path = out_dir / f"{name}.onnx"
            onnx(module, example, path, input_name, output_name)
        else:
            path = out_dir / f"{name}.pt"
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated upstream
                # the code layers branch on the spatial size, which is fixed by the model; the trace keeps it
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.jit.save(torch.jit.trace(module, example), str(path))
        written.append(path)
    meta = out_dir / "export.json"
    c, h, w = model.image_shape
    meta.write_text(
        json.dumps(
            {
                "run": str(run),
                "checkpoint": checkpoint,
                "format": fmt,
                "label": trained.settings.label,
                "code_size": model.code_size,
                "input": f"N×{c}×{h}×{w} float32 in [-1, 1] (RGB; shorter side resized to {h}, centre crop)",
                "torch": torch.__version__,
            },
            indent=1,
        )
        + "\n"
    )
    return [*written, meta]


def check_onnx() -> None:
    """The ONNX exporter's packages are here, or a one-line error naming the extra."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise CelebaeError("ONNX export needs onnx and onnxscript: pip install 'celebae[onnx]'") from None


def onnx(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str) -> None:
    """``module`` as an ONNX file with a dynamic batch dimension (PyTorch's torch.export-based exporter)."""
    check_onnx()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on optional torchvision ops
        if "dynamic_shapes" not in inspect.signature(torch.onnx.export).parameters:  # torch 2.4: TorchScript exporter
            batch = {0: "batch"}
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: batch, output_name: batch},
                opset_version=17,
                # the module is in eval mode already; EVAL would run torch 2.4's Conv+BN fusion, which is
                # wrong for ConvTranspose + BatchNorm (outputs off by up to 3 in a test)
                training=torch.onnx.TrainingMode.PRESERVE,
            )
            return
        with _quiet("torch.onnx"):  # its progress lines and notes on torchvision's ops, which these models lack
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                verbose=False,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    program.save(str(path))


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Only errors from ``logger`` while the block runs."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
