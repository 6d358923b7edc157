"""Encode finished ads as JPEG, PNG or WebP, within a byte budget when the placement has one.

JPEG is saved at quality 90, optimised and progressive; WebP at quality 90; PNG optimised.
With ``max_bytes``, JPEG and WebP quality is lowered by binary search to the highest quality
that fits; a PNG that is too big is quantised to a palette (256, then 128, 64 colours). When
nothing fits, :class:`~adgen.errors.PostProcessError` names the budget, the smallest size
reached and what to do.
"""

from __future__ import annotations

import io
from typing import Literal

from PIL import Image

from adgen.errors import PostProcessError

Format = Literal["jpeg", "png", "webp"]
QUALITY = 90
MIN_QUALITY = 30
"""Below this JPEG/WebP quality, artefacts ruin text and faces: better to fail loudly."""
_PALETTES = (256, 128, 64)


def encode_image(image: Image.Image, fmt: Format, *, max_bytes: int | None = None,
                 quality: int = QUALITY, min_quality: int = MIN_QUALITY) -> bytes:
    """The encoded bytes of ``image`` in ``fmt`` ("jpeg", "png" or "webp").

    With ``max_bytes`` the result is at most that many bytes, at the highest quality in
    ``[min_quality, quality]`` that fits (JPEG, WebP) or after palette quantisation (PNG)."""
    kind = fmt.lower()
    if kind == "jpg":
        kind = "jpeg"
    if kind not in ("jpeg", "png", "webp"):
        raise PostProcessError(f"unknown image format {fmt!r}: use 'jpeg', 'png' or 'webp'")
    if max_bytes is not None and max_bytes <= 0:
        raise PostProcessError(f"byte budget {max_bytes} must be a positive number of bytes")
    if kind == "png":
        return _png(image, max_bytes)
    return _lossy(_flatten(image), kind, max_bytes, quality, min_quality)


def _flatten(image: Image.Image) -> Image.Image:
    """RGB for lossy formats; transparency is laid on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        base = Image.new("RGB", rgba.size, (255, 255, 255))
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return image.convert("RGB")


def _save(image: Image.Image, kind: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if kind == "jpeg":
        image.save(buffer, "JPEG", quality=quality, optimize=True, progressive=True)
    else:
        image.save(buffer, "WEBP", quality=quality, method=4)
    return buffer.getvalue()


def _lossy(image: Image.Image, kind: str, max_bytes: int | None, quality: int,
           min_quality: int) -> bytes:
    data = _save(image, kind, quality)
    if max_bytes is None or len(data) <= max_bytes:
        return data
    smallest = _save(image, kind, min_quality)
    if len(smallest) > max_bytes:
        raise _over_budget(image, kind.upper(), max_bytes, len(smallest),
                           f"quality {min_quality}")
    low, high, best = min_quality, quality - 1, smallest  # low always fits
    while low < high:
        mid = (low + high + 1) // 2
        attempt = _save(image, kind, mid)
        if len(attempt) <= max_bytes:
            low, best = mid, attempt
        else:
            high = mid - 1
    return best


def _png(image: Image.Image, max_bytes: int | None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    data = buffer.getvalue()
    if max_bytes is None or len(data) <= max_bytes:
        return data
    smallest = len(data)
    source = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    for colors in _PALETTES:
        method = Image.Quantize.FASTOCTREE if source.mode == "RGBA" else Image.Quantize.MEDIANCUT
        buffer = io.BytesIO()
        source.quantize(colors, method=method).save(buffer, "PNG", optimize=True)
        data = buffer.getvalue()
        if len(data) <= max_bytes:
            return data
        smallest = min(smallest, len(data))
    raise _over_budget(image, "PNG", max_bytes, smallest, f"{_PALETTES[-1]} colours")


def _over_budget(image: Image.Image, kind: str, max_bytes: int, smallest: int, at: str
                 ) -> PostProcessError:
    return PostProcessError(
        f"cannot encode the {image.width}x{image.height} ad as {kind} within {max_bytes:,} "
        f"bytes: the smallest file reached is {smallest:,} bytes ({at}); raise the "
        "placement's max_bytes, choose 'jpeg' or 'webp', or use a simpler picture "
        "(fewer fine details)"
    )
