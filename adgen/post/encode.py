"""Encode finished ads as JPEG, PNG or WebP, within a byte budget when the placement has one.

JPEG is saved at quality 90 with optimised Huffman tables, baseline, 4:2:0 chroma (on the
example's ads: progressive took 3.2 times as long for files 5% smaller; unoptimised tables
are twice as fast but 6% bigger; 4:4:4 is 20% bigger); WebP at quality 90; PNG optimised.

With ``max_bytes``, JPEG and WebP quality is lowered until the file fits: the next quality is
read off a typical size-for-quality curve through the sizes reached so far (or interpolated
between a size that fits and one that does not), so the second encode usually fits and is
kept when it uses at least :data:`FULL_ENOUGH` of the budget; otherwise one or two more close
in on the highest quality that fits. A PNG that is too big is quantised to a palette (256, then
128, 64 colours). When nothing fits, :class:`~adgen.errors.PostProcessError` names the budget,
the smallest size reached and what to do.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Literal

from PIL import Image

from adgen.errors import PostProcessError

Format = Literal["jpeg", "png", "webp"]
QUALITY = 90
MIN_QUALITY = 30
"""Below this JPEG/WebP quality, artefacts ruin text and faces: better to fail loudly."""
_PALETTES = (256, 128, 64)
FULL_ENOUGH = 0.85
"""The search ends at a file that fits and fills at least this share of the budget."""
_AIM = 0.97
"""Qualities are picked to fill this share of the budget (predictions are not exact)."""
_CURVES = {
    "jpeg": {30: 0.328, 35: 0.359, 40: 0.382, 45: 0.408, 50: 0.431, 55: 0.454, 60: 0.482,
             65: 0.519, 70: 0.561, 75: 0.611, 80: 0.688, 85: 0.799, 90: 1.0},
    "webp": {30: 0.397, 35: 0.422, 40: 0.452, 45: 0.476, 50: 0.499, 55: 0.52, 60: 0.54,
             65: 0.564, 70: 0.592, 75: 0.616, 80: 0.709, 85: 0.823, 90: 1.0},
}
"""File size at each quality relative to quality 90: the median over the example campaign's
ads (JPEG optimised, WebP method 4); a single picture's curve is steeper or flatter."""


def encode_image(image: Image.Image, fmt: Format, *, max_bytes: int | None = None,
                 quality: int = QUALITY, min_quality: int = MIN_QUALITY) -> bytes:
    """The encoded bytes of ``image`` in ``fmt`` ("jpeg", "png" or "webp").

    With ``max_bytes`` the result is at most that many bytes, at the highest quality in
    ``[min_quality, quality]`` that fits (JPEG, WebP) or after palette quantisation (PNG)."""
    kind = checked_format(fmt, max_bytes)
    if kind == "png":
        return _png(image, max_bytes)
    flat = _flatten(image)
    return budgeted(lambda q: _save(flat, kind, q), kind, image.size, max_bytes, quality,
                    min_quality)


def checked_format(fmt: str, max_bytes: int | None) -> str:
    """``fmt`` as "jpeg", "png" or "webp"; :class:`PostProcessError` for an unknown format
    or a byte budget that is not positive."""
    kind = fmt.lower()
    if kind == "jpg":
        kind = "jpeg"
    if kind not in ("jpeg", "png", "webp"):
        raise PostProcessError(f"unknown image format {fmt!r}: use 'jpeg', 'png' or 'webp'")
    if max_bytes is not None and max_bytes <= 0:
        raise PostProcessError(f"byte budget {max_bytes} must be a positive number of bytes")
    return kind


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
        image.save(buffer, "JPEG", quality=quality, optimize=True, subsampling="4:2:0")
    else:
        image.save(buffer, "WEBP", quality=quality, method=4)
    return buffer.getvalue()


def _typical(kind: str, quality: int) -> float:
    """The typical file size at ``quality`` relative to quality 90 (log-linear between the
    measured qualities; outside them, the nearest)."""
    curve = _CURVES[kind]
    points = sorted(curve)
    if quality <= points[0] or quality >= points[-1]:
        return curve[points[0] if quality <= points[0] else points[-1]]
    upper = next(q for q in points if q >= quality)
    lower = max(q for q in points if q <= quality)
    if upper == lower:
        return curve[upper]
    share = (quality - lower) / (upper - lower)
    return math.exp(math.log(curve[lower]) * (1 - share) + math.log(curve[upper]) * share)


def _next_quality(kind: str, sizes: dict[int, int], low: int, high: int, target: float) -> int:
    """The quality in ``[low, high]`` predicted to give ``target`` bytes, from the ``sizes``
    reached so far: interpolated (log size) between the nearest quality that fits and the
    nearest that does not when there are both; else the typical curve through the size
    closest to the target."""
    fits = [q for q, n in sizes.items() if n <= target]
    over = [q for q, n in sizes.items() if n > target]
    if fits and over:
        a, b = max(fits), min(over)
        share = math.log(target / sizes[a]) / math.log(sizes[b] / sizes[a])
        guess = math.floor(a + (b - a) * share)
    else:
        near = min(sizes, key=lambda q: abs(math.log(sizes[q] / target)))
        scale = sizes[near] / _typical(kind, near)
        guess = max((q for q in range(low, high + 1) if scale * _typical(kind, q) <= target),
                    default=low)
    return min(max(guess, low), high)


def budgeted(save: Callable[[int], bytes], kind: str, size: tuple[int, int],
             max_bytes: int | None, quality: int = QUALITY, min_quality: int = MIN_QUALITY
             ) -> bytes:
    """``save(quality)`` at ``quality``, or, over ``max_bytes``, at the quality the search
    described in this module's docstring finds for a ``kind`` ("jpeg", "webp") picture of
    ``size``. Raises :class:`PostProcessError` when not even ``min_quality`` fits."""
    data = save(quality)
    if max_bytes is None or len(data) <= max_bytes:
        return data
    sizes = {quality: len(data)}
    low, high, best = min_quality, quality - 1, None
    while low <= high:
        aim = _AIM if best is None else 1.0  # with a file that fits in hand, aim at the budget
        attempt = _next_quality(kind, sizes, low, high, aim * max_bytes)
        data = save(attempt)
        sizes[attempt] = len(data)
        if len(data) > max_bytes:
            high = attempt - 1
            continue
        best, low = data, attempt + 1
        if len(data) >= FULL_ENOUGH * max_bytes:
            break
    if best is None:
        raise _over_budget(size, kind.upper(), max_bytes, min(sizes.values()),
                           f"quality {min(sizes)}")
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
    raise _over_budget(image.size, "PNG", max_bytes, smallest, f"{_PALETTES[-1]} colours")


def _over_budget(size: tuple[int, int], kind: str, max_bytes: int, smallest: int, at: str
                 ) -> PostProcessError:
    return PostProcessError(
        f"cannot encode the {size[0]}x{size[1]} ad as {kind} within {max_bytes:,} "
        f"bytes: the smallest file reached is {smallest:,} bytes ({at}); raise the "
        "placement's max_bytes, choose 'jpeg' or 'webp', or use a simpler picture "
        "(fewer fine details)"
    )
