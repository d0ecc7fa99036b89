"""``celebae explore RUN [RUN ...]``: a trained model in the browser (Gradio, on 127.0.0.1, fully offline).

    Reconstruct   a face (upload, webcam, or one of the split's) → reconstruction, per-pixel error, PSNR, SSIM,
                  the code as a plot and as a file
    Compare       two or more runs on the same faces (the report's Figure 3, for any faces and runs)
    Interpolate   between two of the split's faces: a slider, and the strip
    Neighbours    the k nearest faces of the split in code space
    Anomalies     the split's least and most typical faces by reconstruction error
    Walk          sliders along the first principal directions of the split's codes
    Attributes    a face moved along an attribute's direction (where the data has CelebA's attribute labels)

``Explorer`` holds the state and does the work (each action is a method, testable without a browser);
``build_app`` lays it out as ``gr.Blocks``; ``explore`` launches it. Codes, errors and principal directions
of the split are computed once, at start. Gradio comes with ``celebae[app]``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data import to_uint8
from ..data.attributes import Attributes
from ..data.images import MAX_PIXELS
from ..errors import CelebaeError
from ..quality.figures import image_grid
from ..quality.metrics import psnr_uint8, ssim_uint8
from .edits import attribute_direction, run_attributes
from .latent import check_count, code_distances, code_mixes, rank_by_error, reconstruction_errors, split_images
from .trained import TrainedRun, load

WALK_DIRECTIONS = 6
MAX_COMPARE = 12  # faces in one comparison
KEEP_PICTURES = 512  # answers kept on disk for the page to fetch; older ones are removed
DIRECTION_FACES = 20_000  # training faces (the labelled among them) that make an attribute's direction
EDIT_STRIP = (-2.0, -1.0, 0.0, 1.0, 2.0)


def hwc(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """uint8 3×H×W → H×W×3 (what Gradio shows)."""
    arr = x.cpu().numpy() if isinstance(x, torch.Tensor) else x
    return np.ascontiguousarray(arr.transpose(1, 2, 0))


def grid(rows: list[np.ndarray | torch.Tensor]) -> np.ndarray:
    """Rows of uint8 N×3×S×S images as one H×W×3 picture, 2 white pixels between them, no outer margin."""
    return np.asarray(image_grid(rows, margin=0))


class Explorer:
    """Runs, one split of images, and what the page computes from them."""

    def __init__(self, runs: list[str | Path], data: str | None = None, split: str = "test", limit: int | None = 2000,
                 device: str = "cpu"):  # fmt: skip
        if not runs:
            raise CelebaeError("explore needs at least one RUN")
        self.runs: list[TrainedRun] = [load(r, device=device) for r in runs]
        self.names = [_short_name(r.path) for r in self.runs]
        sizes = {r.model.image_shape for r in self.runs}
        if len(sizes) > 1:
            raise CelebaeError(f"runs of different image sizes cannot be compared on the same faces: {sorted(sizes)}")
        started = time.perf_counter()
        self.split = split_images(self.runs[0], data, split, limit)
        self.codes, self.mse, _ = reconstruction_errors(self.runs[0], self.split.pixels)
        self.mean = self.codes.mean(0)
        _, sdev, vt = np.linalg.svd(self.codes - self.mean, full_matrices=False)
        self.directions = vt[:WALK_DIRECTIONS]
        self.spread = sdev[:WALK_DIRECTIONS] / np.sqrt(max(1, len(self.codes) - 1))  # sd along each direction
        self.data = data
        self.attributes = _attributes(self.runs[0], data)  # the Attributes tab, where the data has labels
        self._directions: dict[str, tuple[torch.Tensor, dict[str, int]]] = {}  # made on first use
        self.setup_seconds = time.perf_counter() - started
        self.out = Path(tempfile.mkdtemp(prefix="celebae-explore-"))
        self.uploads = self.out / "gradio"  # Gradio's uploads and its copies of the answers
        self._pictures: list[Path] = []

    def close(self) -> None:
        """Remove the explorer's files: answers, codes, uploads."""
        shutil.rmtree(self.out, ignore_errors=True)

    def picture(self, pixels: np.ndarray) -> Path:
        """An H×W×3 picture as a PNG file of its own (written whole, then renamed into place), for the page."""
        path = self.out / f"{uuid.uuid4().hex}.png"
        tmp = path.with_suffix(".tmp")
        Image.fromarray(pixels).save(tmp, format="PNG")
        os.replace(tmp, path)
        self._pictures.append(path)
        while len(self._pictures) > KEEP_PICTURES:
            self._pictures.pop(0).unlink(missing_ok=True)
        return path

    # ---- inputs ---------------------------------------------------------------------------------------------
    def face(self, index: int) -> np.ndarray:
        """The split's face ``index`` (H×W×3 uint8)."""
        return hwc(self.split.pixels[self._index(index)])

    def _image(self, image: Any, run: TrainedRun) -> torch.Tensor:
        """An upload (the file Gradio saved) or an array, through the same loader as ``run.images``."""
        if image is None:
            raise CelebaeError("no image: upload one, use the webcam, or take a face from the split")
        if isinstance(image, np.ndarray) and image.ndim >= 2 and image.shape[0] * image.shape[1] > MAX_PIXELS:
            raise CelebaeError(
                f"that image has {image.shape[0] * image.shape[1]:,} pixels; use one under {MAX_PIXELS:,}"
            )
        return run.images(image)

    def _index(self, index: Any) -> int:
        index = int(index)
        if not 0 <= index < len(self.split.files):
            raise CelebaeError(f"face number {index} is outside the split's 0–{len(self.split.files) - 1}")
        return index

    # ---- actions --------------------------------------------------------------------------------------------
    def reconstruct(
        self, image: Any, run: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, np.ndarray]:
        """(input, reconstruction, error map, PSNR, SSIM, code) of one image, as the model sees it."""
        trained = self.runs[int(run)]
        x = self._image(image, trained)
        code = trained.encode_tensor(x)
        xs, ys = to_uint8(x).cpu(), to_uint8(trained.decode(code)).cpu()
        error = (xs[0].float() - ys[0].float()).abs().mean(0)  # per pixel, over the channels, 0–255
        heat = _heat(error.numpy())
        psnr = float(psnr_uint8(xs, ys)[0])
        ssim = float(ssim_uint8(xs.numpy(), ys.numpy())[0])
        return hwc(xs[0]), hwc(ys[0]), heat, psnr, ssim, code[0].cpu().numpy()

    def save_code(self, code: np.ndarray) -> Path:
        path = self.out / f"code-{time.strftime('%H%M%S')}-{os.getpid()}.npy"
        np.save(path, np.asarray(code, np.float32))
        return path

    def compare(self, image: Any = None, first: int = 0, count: int = 6) -> np.ndarray:
        """Rows: the faces (an uploaded one, or ``count`` of the split from ``first``), then each run's
        reconstructions of them."""
        if image is not None:
            pixels = to_uint8(self._image(image, self.runs[0])).cpu().numpy()
        else:
            check_count("faces", count, 1, MAX_COMPARE)
            first = self._index(first)
            pixels = self.split.pixels[first : first + int(count)]
        rows = [pixels, *(to_uint8(run.decode_batches(run.encode_batches(np.asarray(pixels)))) for run in self.runs)]
        return grid(rows)

    def interpolate(self, a: int, b: int, t: float, steps: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """(the decoded mix at ``t`` in [0, 1], the strip from face ``a`` to face ``b``)."""
        run, a, b = self.runs[0], self._index(a), self._index(b)
        check_count("steps", steps, 2)
        weights = torch.cat([torch.tensor([float(t)]), torch.linspace(0, 1, int(steps))])
        mixes = to_uint8(run.decode_batches(code_mixes(*torch.from_numpy(self.codes[[a, b]]), weights)))
        ends = self.split.pixels[[a, b]]
        return hwc(mixes[0]), grid([np.concatenate([ends[:1], mixes[1:].numpy(), ends[1:]])])

    def neighbours(self, image: Any, k: int = 8) -> list[tuple[np.ndarray, str]]:
        """The ``k`` faces of the split nearest to ``image`` in code space (cosine distance), nearest first."""
        check_count("k", k, 1)
        q = self.runs[0].encode_tensor(self._image(image, self.runs[0])).cpu()
        dist = code_distances(torch.from_numpy(self.codes), q)
        order = torch.argsort(dist)[: int(k)].numpy()
        return [(self.face(i), f"{self.split.files[i]}  d={float(dist[i]):.3f}") for i in order]

    def anomalies(self, n: int = 8) -> tuple[list[tuple[np.ndarray, str]], list[tuple[np.ndarray, str]]]:
        """(the ``n`` most typical faces, the ``n`` least typical), by the first run's reconstruction MSE."""
        check_count("faces", n, 1)
        order, n = rank_by_error(self.mse), int(n)

        def gallery(idx: np.ndarray) -> list[tuple[np.ndarray, str]]:
            return [(self.face(i), f"{self.split.files[i]}  MSE {self.mse[i]:.4f}") for i in idx]

        return gallery(order[::-1][:n]), gallery(order[:n])

    def edit(self, image: Any, attribute: str, amount: float) -> tuple[np.ndarray, np.ndarray, str]:
        """(the face moved ``amount`` along ``attribute``'s direction, the strip from −2 to +2, how the direction
        was made) for the first run; directions from up to ``DIRECTION_FACES`` training faces, made once."""
        if self.attributes is None:
            raise CelebaeError("this data has no attribute labels (list_attr_celeba.txt beside it)")
        run = self.runs[0]
        if attribute not in self._directions:
            found = attribute_direction(run, self.attributes, attribute, self.data, limit=DIRECTION_FACES)
            self._directions[attribute] = found
        direction, counts = self._directions[attribute]
        z = run.encode_tensor(self._image(image, run)).cpu()[:1]
        amounts = [float(amount), *EDIT_STRIP]
        faces = to_uint8(run.decode_batches(torch.cat([z + t * direction for t in amounts])))
        how = f"mean code of {counts['with']:,} training faces with {attribute} − of {counts['without']:,} without"
        return hwc(faces[0]), grid([faces[1:].numpy()]), how

    def walk(self, *steps: float) -> np.ndarray:
        """The face decoded at the split's mean code moved ``steps[i]`` standard deviations along direction i."""
        offsets = np.asarray(steps, np.float32)[: len(self.directions)]
        z = self.mean + (offsets * self.spread[: len(offsets)]) @ self.directions[: len(offsets)]
        return hwc(to_uint8(self.runs[0].decode(torch.from_numpy(z[None].astype(np.float32))))[0].cpu())


def _attributes(run: TrainedRun, data: str | None) -> Attributes | None:
    try:
        return run_attributes(run, data)
    except CelebaeError:
        return None


def _heat(error: np.ndarray) -> np.ndarray:
    """A per-pixel error (0–255) as an RGB heat map (black → red → yellow → white)."""
    e = np.clip(error / max(32.0, float(error.max())), 0, 1)
    rgb = np.stack([np.clip(3 * e, 0, 1), np.clip(3 * e - 1, 0, 1), np.clip(3 * e - 2, 0, 1)], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def _short_name(path: Path) -> str:
    return "/".join(path.resolve().parts[-2:])
