"""Colours and WCAG contrast for post-processing.

Relative luminance and contrast ratio follow WCAG 2.x: sRGB channels are linearised, then
``L = 0.2126 R + 0.7152 G + 0.0722 B`` and ``ratio = (L_light + 0.05) / (L_dark + 0.05)``.
Backgrounds are judged by a high percentile of their pixels (``WORST_SHARE``), so a few stray
pixels do not force a scrim while a patterned background still does.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageColor

from adgen.errors import PostProcessError

RGB = tuple[int, int, int]
BLACK: RGB = (0, 0, 0)
WHITE: RGB = (255, 255, 255)
TEXT_CONTRAST = 4.5
"""WCAG AA for normal text."""
GRAPHIC_CONTRAST = 3.0
"""WCAG AA for graphics (logos) and large text."""
WORST_SHARE = 0.02
"""Share of background pixels allowed to be worse than the reported contrast."""

_LUT = np.array(
    [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in np.arange(256) / 255],
    dtype=np.float64,
)
_WEIGHTS = np.array([0.2126, 0.7152, 0.0722])


def parse_color(value: str) -> RGB:
    """``'#0A84FF'``, ``'0A84FF'``, ``'rgb(10,132,255)'`` or a CSS name -> an RGB triple."""
    text = value.strip()
    if len(text) in (3, 6) and all(c in "0123456789abcdefABCDEF" for c in text):
        text = "#" + text
    try:
        rgb = ImageColor.getrgb(text)
    except ValueError:
        raise PostProcessError(
            f"brand colour {value!r} is not a colour: use a hex code such as '#0A84FF' "
            "or a CSS colour name such as 'navy'"
        ) from None
    return (rgb[0], rgb[1], rgb[2])


def to_hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def luminance(pixels: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Relative luminance of an ``(..., 3)`` uint8 array (one value per pixel)."""
    linear = _LUT[pixels[..., :3]]
    return np.asarray(linear @ _WEIGHTS, dtype=np.float64)


def color_luminance(rgb: RGB) -> float:
    return float(luminance(np.array(rgb, dtype=np.uint8)))


def ratio(l1: float | NDArray[np.float64], l2: float | NDArray[np.float64]) -> NDArray[np.float64]:
    """WCAG contrast ratio of two luminances (order does not matter)."""
    a, b = np.maximum(l1, l2), np.minimum(l1, l2)
    return np.asarray((a + 0.05) / (b + 0.05))


def contrast(rgb1: RGB, rgb2: RGB) -> float:
    return float(ratio(color_luminance(rgb1), color_luminance(rgb2)))


def region_pixels(image: Image.Image, box: tuple[int, int, int, int], limit: int = 12_000
                  ) -> NDArray[np.uint8]:
    """The RGB pixels of ``box`` (clipped to the image) as an ``(n, 3)`` array, subsampled on a
    regular grid to at most about ``limit`` pixels."""
    left, top = max(0, box[0]), max(0, box[1])
    right, bottom = min(image.width, box[2]), min(image.height, box[3])
    if right <= left or bottom <= top:
        return np.zeros((0, 3), dtype=np.uint8)
    area = (right - left) * (bottom - top)
    step = max(1, int((area / limit) ** 0.5))
    arr = np.asarray(image.crop((left, top, right, bottom)).convert("RGB"))[::step, ::step]
    return arr.reshape(-1, 3)


def text_contrast(text_rgb: RGB, background: NDArray[np.float64]) -> float:
    """Contrast of a text colour against background luminances, judged on the worst pixels
    (all but ``WORST_SHARE`` of them are at least this good)."""
    if background.size == 0:
        return float("inf")
    text = color_luminance(text_rgb)
    lum = background.ravel()
    if text < lum.max() and text > lum.min():
        return float(np.quantile(ratio(text, lum), WORST_SHARE))
    # Contrast grows with the distance from the text's luminance, which is at one end of the
    # background's: the quantile is that of the luminances nearest to it (one partition).
    position = (lum.size - 1) * WORST_SHARE
    first = math.floor(position)
    ranks = [first, min(first + 1, lum.size - 1)]
    if text >= lum.max():  # light text: the brightest pixels are the worst
        ranks = [lum.size - 1 - r for r in ranks]
    nearest = np.partition(lum, ranks)[ranks]
    worst, next_worst = ratio(text, nearest)
    return float(worst + (next_worst - worst) * (position - first))


def best_text_color(background: NDArray[np.float64]) -> tuple[RGB, float]:
    """Black or white, whichever contrasts more with the background luminances."""
    candidates = [(text_contrast(c, background), c) for c in (WHITE, BLACK)]
    value, rgb = max(candidates)
    return rgb, value


def best_on(rgb: RGB) -> RGB:
    """Black or white, whichever reads better on a flat ``rgb``."""
    return WHITE if contrast(WHITE, rgb) >= contrast(BLACK, rgb) else BLACK


def scrim_alpha(pixels: NDArray[np.uint8], text_rgb: RGB, scrim_rgb: RGB,
                target: float = TEXT_CONTRAST + 0.2) -> float | None:
    """The least opacity of a ``scrim_rgb`` veil over ``pixels`` that lifts the contrast of
    ``text_rgb`` to ``target`` (binary search; None when even an opaque veil cannot)."""
    base = pixels.astype(np.float64)
    veil = np.array(scrim_rgb, dtype=np.float64)

    def reached(alpha: float) -> bool:
        mixed = np.rint(base * (1 - alpha) + veil * alpha).astype(np.uint8)
        return text_contrast(text_rgb, luminance(mixed)) >= target

    if not reached(1.0):
        return None
    low, high = 0.0, 1.0
    for _ in range(10):
        mid = (low + high) / 2
        low, high = (low, mid) if reached(mid) else (mid, high)
    return high
