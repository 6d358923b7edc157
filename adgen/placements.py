"""Ad placements: named presets, custom ``WxH`` sizes and their text safe zones."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
