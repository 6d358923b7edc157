"""Checks computed from the pixels alone: exposure, contrast, sharpness and a perceptual hash.

They need no model and cost a few milliseconds per picture. Every figure is measured on the
picture's luma scaled to :data:`WORK_SIZE` pixels on its short side, so it means the same at
512 and at 2048 pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

WORK_SIZE = 256
"""Short side (pixels) of the grey copy that exposure and sharpness are measured on."""

HASH_BITS = 64


def luma(image: Image.Image, short_side: int = WORK_SIZE) -> np.ndarray:
    """The picture's luma in [0, 1], scaled so its short side is ``short_side`` pixels."""
    grey = image.convert("L")
    scale = short_side / min(grey.size)
    if scale < 1:
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.resize(size, Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float32) / 255.0


def pixel_scores(image: Image.Image) -> dict[str, float]:
    """``brightness`` (mean luma, 0-1), ``contrast`` (its standard deviation, 0-1) and
    ``sharpness`` (variance of the 4-neighbour Laplacian of the luma; a blurred or flat picture
    scores near 0, a crisp photo 0.005 and more)."""
    y = luma(image)
    laplacian = (y[1:-1, :-2] + y[1:-1, 2:] + y[:-2, 1:-1] + y[2:, 1:-1] - 4 * y[1:-1, 1:-1])
    return {
        "brightness": round(float(y.mean()), 4),
        "contrast": round(float(y.std()), 4),
        "sharpness": round(float(laplacian.var()) if laplacian.size else 0.0, 6),
    }


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT32 = _dct_matrix(32)


def phash(image: Image.Image) -> str:
    """The 64-bit perceptual hash of a picture (as 16 hex digits): the signs, against their
    median, of the 8x8 lowest frequencies of the DCT of its 32x32 grey copy (the classic pHash,
    as in ``imagehash.phash``). Near-identical pictures differ in few bits."""
    grey = ImageOps.grayscale(image).resize((32, 32), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    low = (_DCT32 @ pixels @ _DCT32.T)[:8, :8].flatten()
    bits = low > np.median(low)
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def hash_distance(a: str, b: str) -> int:
    """How many of the 64 bits differ between two :func:`phash` values."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
