"""Decode one image file into the models' input: uint8 3×128×128 RGB.

Kept free of torch so preparation workers start fast and stay small.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SIZE = 128
MIN_SIDE = 32  # below this an image is refused: upscaling it would invent most of the face
MAX_PIXELS = 40_000_000  # above this an image is refused from its header, before any decoding (a 20 KB PNG can
# declare 13000×13000 pixels: 500 MB once decoded)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

# How a picture becomes a 128×128 square.
#   resize-crop: the authors' (and DCGAN's) recipe: shorter side to 128, centre crop 128×128.
#   crop-resize: centre crop the largest square (178×178 on CelebA), then resize it to 128×128.
CROPS = ("resize-crop", "crop-resize")


class BadImage(Exception):
    """An image that cannot be used; the message says why."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB: 16-bit and float greys are rescaled, alpha is laid over white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        grey = np.asarray(img.convert("F") if img.mode != "F" else img, dtype=np.float64)
        if grey.max(initial=0) > 255:  # 16-bit range
            grey = grey / 257.0
        img = Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def square(img: Image.Image, crop: str = "resize-crop", size: int = SIZE) -> Image.Image:
    """Resize and centre-crop an RGB image to size×size as ``crop`` says (torchvision's arithmetic)."""
    w, h = img.size
    if crop == "resize-crop":
        short, long = min(w, h), max(w, h)
        new_long = int(size * long / short)
        new_w, new_h = (size, new_long) if w <= h else (new_long, size)
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.BILINEAR)
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        return img.crop((left, top, left + size, top + size))
    if crop == "crop-resize":
        side = min(w, h)
        top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
        img = img.crop((left, top, left + side, top + side))
        return img.resize((size, size), Image.BILINEAR) if side != size else img
    raise ValueError(f"unknown crop {crop!r}; choose one of {', '.join(CROPS)}")


def load_image(path: str | Path, crop: str = "resize-crop", size: int = SIZE) -> tuple[np.ndarray, bool]:
    """Read ``path`` → (uint8 array 3×size×size, whether it had to be upscaled).

    Raises BadImage for unreadable, truncated or too small files, FileNotFoundError for a missing one.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the decoder forever
        raise BadImage("not a regular file (a FIFO, a device or a folder)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's palette/EXIF chatter; real failures raise
            with Image.open(path) as img:
                w, h = img.size  # from the header: nothing is decoded yet
                if w * h > MAX_PIXELS:
                    raise BadImage(f"too large ({w}×{h} = {w * h:,} pixels; use one under {MAX_PIXELS:,})")
                # Let libjpeg decode big photos at a reduced scale: far faster, and we downscale anyway.
                if img.format == "JPEG" and min(img.size) > 4 * size:
                    img.draft("RGB", (2 * size, 2 * size))
                img.load()
                img = to_rgb(ImageOps.exif_transpose(img))
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadImage(f"unreadable or corrupt ({err})") from None
    return square_array(img, crop, size)


def square_array(img: Image.Image, crop: str = "resize-crop", size: int = SIZE) -> tuple[np.ndarray, bool]:
    """An RGB image → (uint8 3×size×size, whether it had to be upscaled); BadImage when it is too small."""
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise BadImage(f"too small ({w}×{h} px; images need a shorter side of at least {MIN_SIDE})")
    arr = np.asarray(square(img, crop, size), dtype=np.uint8)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)), min(w, h) < size


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)
