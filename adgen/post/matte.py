"""Cut a product out of its catalog photo.

Catalog photos are usually shot on a plain white (or light) background and have no alpha. The
white matte makes the background transparent: pixels close to the background colour *and
connected to the image border* become transparent, so white parts inside the product (a label,
a sole) stay. Only the one-pixel ring where product meets background gets a soft alpha, with the
background colour taken out of its colour (no white halo); every other product pixel keeps its
exact value. A photo that already has transparency is used as it is.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

MATTE_VERSION = "v1"
"""Bump when the matte changes its output, so cached cut-outs are redone."""


def has_transparency(image: Image.Image) -> bool:
    """True when the image has an alpha channel that is not fully opaque."""
    if image.mode in {"RGBA", "LA", "PA"} or "transparency" in image.info:
        low, _ = image.convert("RGBA").getchannel("A").getextrema()
        return int(low) < 255  # type: ignore[arg-type]
    return False


def white_matte(image: Image.Image, *, tolerance: int = 24) -> tuple[Image.Image, str]:
    """The product as RGBA with its plain background removed, and a note of what was done
    (``"white matte, 41% background"``, ``"kept alpha"`` or ``"no plain background"``)."""
    if has_transparency(image):
        return image.convert("RGBA"), "kept alpha"
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    distance = np.abs(rgb - background).max(axis=2)
    border_share = float((np.abs(border - background).max(axis=1) <= tolerance).mean())
    if background.min() < 180 or border_share < 0.6:
        # not a light, plain background: keep the photo as an opaque rectangle
        return image.convert("RGBA"), "no plain background"
    outside = connected_to_border(distance <= tolerance)
    alpha = np.where(outside, 0.0, 255.0)
    out = rgb.astype(np.float32)
    ring = _ring(outside)
    inner = _inner_colour(out, ~outside & ~ring, ring)
    found = ring & ~np.isnan(inner[..., 0])
    # the ring pixel is a blend a·inner + (1 - a)·background: solve for a along inner - bg,
    # then take the background out of its colour
    towards = inner[found] - background
    share = np.clip(((out[found] - background) * towards).sum(axis=1)
                    / np.maximum((towards * towards).sum(axis=1), 1.0), 0.0, 1.0)
    alpha[found] = share * 255
    keep = share[:, None] > 1e-3
    unmixed = (out[found] - (1.0 - share[:, None]) * background) / np.maximum(share, 1e-3)[:, None]
    out[found] = np.where(keep, np.clip(unmixed, 0, 255), out[found])
    rgba = np.dstack([np.rint(out), np.rint(alpha)]).astype(np.uint8)
    note = f"white matte, {100 * float(outside.mean()):.0f}% background"
    return Image.fromarray(rgba, "RGBA"), note


BACKGROUND_LABELS = frozenset({"background", "bg", "__background__", "unlabeled"})


def model_matte(image: Image.Image, model: str) -> tuple[Image.Image, str]:
    """The product as RGBA cut out by an image-segmentation model (a ``transformers`` hub id or
    folder, e.g. a SegFormer or Mask2Former): every label but the background is the product.
    Only the alpha channel is set; the colours are the photo's."""
    if has_transparency(image):
        return image.convert("RGBA"), "kept alpha"
    rgb = image.convert("RGB")
    foreground = np.zeros((rgb.height, rgb.width), dtype=bool)
    for segment in _segmenter(model)(rgb):
        if str(segment["label"]).lower() not in BACKGROUND_LABELS:
            foreground |= np.asarray(segment["mask"].convert("L")) > 127
    alpha = np.where(foreground, 255, 0).astype(np.uint8)
    rgba = np.dstack([np.asarray(rgb), alpha])
    share = 100 * float((~foreground).mean())
    return Image.fromarray(rgba, "RGBA"), f"segmentation model {model}, {share:.0f}% background"


@lru_cache(maxsize=2)
def _segmenter(model: str) -> Any:
    from transformers import pipeline

    from adgen.errors import CatalogError

    try:
        return pipeline("image-segmentation", model=model)
    except (OSError, ValueError, KeyError) as exc:
        raise CatalogError(f"catalog.matte_model {model!r} cannot be loaded as an "
                           f"image-segmentation model ({str(exc)[:200]})") from None


def connected_to_border(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` joined to the image border through ``mask`` (4-connected).

    Runs of the mask along rows, then along columns, take the value of any reached pixel in
    them, until nothing changes: exact, and a handful of sweeps for real photos."""
    reached = np.zeros_like(mask)
    reached[0], reached[-1] = mask[0], mask[-1]
    reached[:, 0], reached[:, -1] = mask[:, 0], mask[:, -1]
    count = -1
    while count != int(reached.sum()):
        count = int(reached.sum())
        reached = _spread_runs(mask, reached)
        reached = _spread_runs(mask.T, reached.T).T
    return reached


def _spread_runs(mask: np.ndarray, reached: np.ndarray) -> np.ndarray:
    starts = mask.copy()
    starts[:, 1:] &= ~mask[:, :-1]
    labels = np.cumsum(starts.ravel()) * mask.ravel()
    hit = np.zeros(int(labels.max()) + 1, dtype=bool)
    hit[labels[reached.ravel() & mask.ravel()]] = True
    hit[0] = False
    return hit[labels].reshape(mask.shape)


def _inner_colour(rgb: np.ndarray, core: np.ndarray, ring: np.ndarray, reach: int = 2
                  ) -> np.ndarray:
    """For each ring pixel, the mean colour of the product's core pixels within ``reach``
    (NaN where there are none)."""
    height, width = core.shape
    total = np.zeros((height, width, 3), dtype=np.float32)
    count = np.zeros((height, width), dtype=np.float32)
    padded = np.pad(rgb * core[..., None], ((reach, reach), (reach, reach), (0, 0)))
    padded_core = np.pad(core, reach).astype(np.float32)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            ys, xs = slice(reach + dy, reach + dy + height), slice(reach + dx, reach + dx + width)
            total += padded[ys, xs]
            count += padded_core[ys, xs]
    inner = np.full((height, width, 3), np.nan, dtype=np.float32)
    has = ring & (count > 0)
    inner[has] = total[has] / count[has][:, None]
    return inner


def _ring(outside: np.ndarray) -> np.ndarray:
    """Foreground pixels with a background pixel among their four neighbours."""
    near = np.zeros_like(outside)
    near[1:] |= outside[:-1]
    near[:-1] |= outside[1:]
    near[:, 1:] |= outside[:, :-1]
    near[:, :-1] |= outside[:, 1:]
    return near & ~outside
