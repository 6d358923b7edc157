"""Ad placements: named presets, custom ``WxH`` sizes, their text safe zones, the area of each
placement the picture fills, and the aspect class (render shape) that picture comes from."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from adgen.errors import CampaignError


@dataclass(frozen=True)
class SafeZone:
    """Margins, as shares of the placement's height (top/bottom) and width (left/right), that
    text and logos must stay out of (platform UI covers them)."""

    top: float = 0.0
    bottom: float = 0.0
    left: float = 0.0
    right: float = 0.0

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The safe area as a pixel box ``(left, top, right, bottom)``."""
        return (
            round(width * self.left),
            round(height * self.top),
            width - round(width * self.right),
            height - round(height * self.bottom),
        )


@dataclass(frozen=True)
class Placement:
    """One output size. ``name`` is a safe identifier used in file names."""

    name: str
    width: int
    height: int
    safe: SafeZone = SafeZone()
    max_bytes: int | None = None

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


_STORY_SAFE = SafeZone(top=0.14, bottom=0.35, left=0.06, right=0.06)
_IAB_MAX = 150_000

PRESETS: dict[str, Placement] = {
    p.name: p
    for p in [
        Placement("feed_square", 1080, 1080),
        Placement("feed_portrait", 1080, 1350),
        Placement("story", 1080, 1920, _STORY_SAFE),
        Placement("reel", 1080, 1920, _STORY_SAFE),
        Placement("landscape", 1920, 1080),
        Placement("display_1.91", 1200, 628),
        Placement("display_square", 1200, 1200),
        Placement("iab_300x250", 300, 250, max_bytes=_IAB_MAX),
        Placement("iab_336x280", 336, 280, max_bytes=_IAB_MAX),
        Placement("iab_728x90", 728, 90, max_bytes=_IAB_MAX),
        Placement("iab_160x600", 160, 600, max_bytes=_IAB_MAX),
        Placement("iab_300x600", 300, 600, max_bytes=_IAB_MAX),
        Placement("iab_970x250", 970, 250, max_bytes=250_000),
        Placement("iab_320x50", 320, 50, max_bytes=50_000),
        Placement("iab_320x100", 320, 100, max_bytes=_IAB_MAX),
    ]
}

_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


def resolve_placement(ref: str) -> Placement:
    """Turn a preset name (``feed_square``), an IAB size (``300x250``) or a custom ``WxH`` into a
    :class:`Placement`. Raises :class:`CampaignError` for anything else."""
    if ref in PRESETS:
        return PRESETS[ref]
    match = _SIZE.match(ref)
    if match:
        if f"iab_{ref}" in PRESETS:
            return PRESETS[f"iab_{ref}"]
        width, height = int(match[1]), int(match[2])
        if not (16 <= width <= 8192 and 16 <= height <= 8192):
            raise CampaignError(
                f"placement {ref!r}: width and height must be between 16 and 8192 px"
            )
        return Placement(f"custom_{width}x{height}", width, height)
    known = ", ".join(sorted(PRESETS))
    raise CampaignError(
        f"unknown placement {ref!r}: use one of {known}, or a custom size such as '640x480'"
    )


# -- the picture area and its aspect class ---------------------------------------------------

Box = tuple[int, int, int, int]
LayoutKind = Literal["full", "wide", "tall"]

WIDE_ASPECT = 2.4
"""Placements wider than this (width / height) get a picture + panel layout side by side."""
TALL_ASPECT = 0.53
"""Placements narrower than this get the picture on top of a panel (a 9:16 story is 0.5625)."""


@dataclass(frozen=True)
class PictureArea:
    """Where the picture goes in a placement: full bleed, or beside (``wide``: 728x90, 320x50,
    970x250) or above (``tall``: 160x600, 300x600) a ``panel`` in the brand colour."""

    kind: LayoutKind
    picture: Box
    panel: Box | None

    @property
    def aspect(self) -> float:
        return (self.picture[2] - self.picture[0]) / (self.picture[3] - self.picture[1])


def picture_area(placement: Placement) -> PictureArea:
    """The picture area of ``placement`` (see :class:`PictureArea`)."""
    width, height = placement.size
    aspect = width / height
    if aspect > WIDE_ASPECT:
        split = round(min(0.4 * width, 1.6 * height) if width >= 600
                      else min(0.3 * width, 1.2 * height))
        return PictureArea("wide", (0, 0, split, height), (split, 0, width, height))
    if aspect < TALL_ASPECT:
        split = round(min(0.5 * height, 1.2 * width))
        return PictureArea("tall", (0, 0, width, split), (0, split, width, height))
    return PictureArea("full", (0, 0, width, height), None)


ASPECT_CLASSES: dict[str, float] = {
    "1:1": 1.0, "4:5": 0.8, "9:16": 9 / 16, "16:9": 16 / 9, "1.91:1": 1.91,
}
"""The shapes pictures are rendered at (``renderer.aspect: native | extend``). Every
placement's picture area maps to the nearest one: full-bleed placements by their own shape;
the extreme banners (728x90, 320x50, 970x250, 160x600, 300x600) by the picture area beside or
above their brand panel (1:1 to 16:9), so no picture is ever rendered at 8:1."""


def aspect_class(placement: Placement) -> str:
    """The aspect class (a key of :data:`ASPECT_CLASSES`) whose render ``placement`` uses:
    the one nearest to its picture area's shape (by the logarithm of the ratio)."""
    target = math.log(picture_area(placement).aspect)
    return min(ASPECT_CLASSES, key=lambda name: abs(math.log(ASPECT_CLASSES[name]) - target))


def class_size(name: str, width: int, height: int, *, multiple: int = 8) -> tuple[int, int]:
    """The render size of aspect class ``name`` for a renderer set to ``width`` x ``height``:
    about the same number of pixels at the class's shape, both sides rounded to ``multiple``
    (8 for latent models; 64 gives the sizes SD/SDXL-family models are trained on)."""
    ratio = ASPECT_CLASSES[name]
    if abs(ratio - width / height) < 1e-9:
        return width, height
    area = width * height
    side_w, side_h = math.sqrt(area * ratio), math.sqrt(area / ratio)
    return (max(multiple, round(side_w / multiple) * multiple),
            max(multiple, round(side_h / multiple) * multiple))


def extend_size(name: str, width: int, height: int) -> tuple[int, int]:
    """The size a ``width`` x ``height`` render is extended (outpainted) to for aspect class
    ``name``: the render kept whole at its scale, the scene continued above and below (taller
    classes) or on both sides (wider ones), rounded up to a multiple of 8."""
    ratio = ASPECT_CLASSES[name]
    if ratio < width / height:
        return width, -(-round(width / ratio) // 8) * 8
    return -(-round(height * ratio) // 8) * 8, height


def product_stage(placements: list[Placement]) -> tuple[float, float, float, float]:
    """Where a renderer should put the product in pictures for ``placements`` (one aspect
    class), as shares ``(left, top, right, bottom)`` of the picture, so that the captions fit
    around it: full-bleed landscape pictures keep the left half for a column of text; other
    full-bleed ones keep the top 30% of the safe area for the headline and logo and its bottom
    20% for the button; pictures beside or above a brand panel hold no text, only a margin.
    The box that suits every placement of the class (their intersection)."""
    boxes = []
    for placement in placements:
        area = picture_area(placement)
        if area.kind != "full":
            boxes.append((0.1, 0.1, 0.9, 0.92))
            continue
        width, height = placement.size
        safe = placement.safe.box(width, height)
        left, top, right, bottom = (safe[0] / width, safe[1] / height, safe[2] / width,
                                    safe[3] / height)
        tall = bottom - top
        if area.aspect >= 1.3:
            boxes.append((left + 0.52 * (right - left), top + 0.1 * tall, right - 0.05,
                          bottom - 0.08 * tall))
        else:
            boxes.append((left + 0.08, top + 0.3 * tall, right - 0.08, bottom - 0.2 * tall))
    stage = (max(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes),
             min(b[3] for b in boxes))
    if stage[2] - stage[0] < 0.15 or stage[3] - stage[1] < 0.15:
        return boxes[0]
    return tuple(round(v, 4) for v in stage)  # type: ignore[return-value]
