"""Procedurally drawn faces: a built-in data set that needs no download.

Each face is a pure function of (seed, index): background, skin, hair, eyes,
brows, nose and mouth, with pose (position, size, roll, gaze) and lighting
varying per image. They are cartoons, not photographs, but they have the
structure an autoencoder must learn (a centred face, symmetric parts, smooth
shading), so the demo and the tests exercise the real pipeline end to end.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .images import SIZE

_SKIN = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 105], [198, 134, 66], [141, 85, 36], [92, 56, 30]])
_HAIR = np.array(
    [[20, 16, 14], [60, 40, 25], [110, 75, 40], [190, 150, 90], [230, 210, 160], [140, 60, 30], [150, 150, 150]]
)
_IRIS = np.array([[60, 40, 20], [40, 90, 140], [70, 110, 60], [90, 70, 50]])
_SS = 2  # supersampling: draw at twice the size, downsample for smooth edges


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> tuple[int, int, int]:
    c = colour + rng.normal(0, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def draw_face(index: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """Face number ``index`` of the set ``seed`` as uint8 3×size×size (drawn at 128, then resized)."""
    face = _draw(index, seed)
    if size == SIZE:
        return face
    resized = Image.fromarray(face.transpose(1, 2, 0)).resize((size, size), Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(resized).transpose(2, 0, 1))


def _draw(index: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, index])
    s = SIZE * _SS
    top, bottom = rng.uniform(40, 230, 3), rng.uniform(20, 200, 3)
    ramp = np.linspace(0, 1, s)[:, None, None]
    bg = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (s, s, 3))
    img = Image.fromarray(bg.astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)

    cx = s / 2 + rng.normal(0, 0.04) * s
    cy = s / 2 + rng.normal(0.04, 0.03) * s
    fw, fh = s * rng.uniform(0.24, 0.32), s * rng.uniform(0.32, 0.40)  # half-width, half-height
    yaw = rng.uniform(-0.25, 0.25)  # turns the features sideways
    skin = _jitter(rng, _SKIN[rng.integers(len(_SKIN))], 8)
    hair = _jitter(rng, _HAIR[rng.integers(len(_HAIR))], 10)

    hair_len = rng.uniform(0.2, 1.2)  # from short crop to shoulder length
    d.ellipse([cx - fw * 1.15, cy - fh * 1.15, cx + fw * 1.15, cy + fh * (0.1 + hair_len)], fill=hair)
    d.rectangle([cx - fw * 0.55, cy + fh * 0.7, cx + fw * 0.55, s], fill=_jitter(rng, np.array(skin), 5))  # neck
    d.ellipse(
        [cx - fw * 1.6, cy + fh * 1.05, cx + fw * 1.6, cy + fh * 2.4], fill=_jitter(rng, rng.uniform(0, 255, 3), 0)
    )
    d.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=skin)
    fringe = rng.uniform(0.35, 0.75)
    d.chord([cx - fw * 1.05, cy - fh * 1.15, cx + fw * 1.05, cy - fh * (1 - 2 * fringe)], 180, 360, fill=hair)

    fx = cx + yaw * fw * 0.6
    eye_y, eye_dx = cy - fh * rng.uniform(0.05, 0.2), fw * rng.uniform(0.36, 0.48)
    ew, eh = fw * rng.uniform(0.16, 0.22), fh * rng.uniform(0.06, 0.1)
    iris = _jitter(rng, _IRIS[rng.integers(len(_IRIS))], 10)
    gaze = rng.uniform(-0.4, 0.4) * ew
    brow = _jitter(rng, np.array(hair) * 0.8, 5)
    for side in (-1, 1):
        ex = fx + side * eye_dx
        d.ellipse([ex - ew, eye_y - eh, ex + ew, eye_y + eh], fill=(245, 245, 240))
        r = eh * 0.95
        d.ellipse([ex + gaze - r, eye_y - r, ex + gaze + r, eye_y + r], fill=iris)
        d.ellipse([ex + gaze - r / 2, eye_y - r / 2, ex + gaze + r / 2, eye_y + r / 2], fill=(10, 10, 10))
        by = eye_y - eh * rng.uniform(2.0, 3.2)
        d.line([ex - ew * 1.1, by + side * 0, ex + ew * 1.1, by - eh * 0.4], fill=brow, width=max(2, int(eh * 0.7)))
    nose_y = cy + fh * rng.uniform(0.15, 0.3)
    shade = _jitter(rng, np.array(skin) * 0.8, 3)
    d.polygon([(fx, eye_y + eh * 2), (fx - fw * 0.12, nose_y), (fx + fw * 0.12, nose_y)], fill=shade)
    mouth_y, mw = cy + fh * rng.uniform(0.45, 0.6), fw * rng.uniform(0.25, 0.45)
    lips = _jitter(rng, np.array([170, 70, 70]), 20)
    smile = rng.uniform(0.0, 1.0)
    d.chord([fx - mw, mouth_y - fh * 0.12 * smile, fx + mw, mouth_y + fh * 0.12], 0, 180, fill=lips)

    img = img.rotate(rng.normal(0, 6), resample=Image.BILINEAR, center=(cx, cy), fillcolor=tuple(int(v) for v in top))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5))).resize((SIZE, SIZE), Image.BILINEAR)

    # Lighting: a soft directional gradient and an overall exposure.
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[-1 : 1 : SIZE * 1j, -1 : 1 : SIZE * 1j]
    light = rng.uniform(0.75, 1.15) + rng.uniform(0, 0.3) * (np.cos(angle) * xx + np.sin(angle) * yy)
    arr = np.asarray(img, dtype=np.float32) * light[..., None]
    arr += rng.normal(0, 2.0, arr.shape)  # sensor noise
    return np.ascontiguousarray(np.clip(arr, 0, 255).astype(np.uint8).transpose(2, 0, 1))
