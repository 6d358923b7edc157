"""Antialiased resampling of a float window of a picture, with Pillow or with torch.

Every resize in post-processing is this one: the window ``box`` (float source pixels) scaled to
``size`` with the antialiased bicubic filter (``fast``: bilinear), widened by the shrink factor,
as Pillow's ``Image.resize(box=...)`` does it (:func:`resample`). The GPU path
(:mod:`adgen.post.gpu`) does the same with torch's antialiased interpolation, whose weights are
Pillow's (:class:`Grid`).

torch scales from whole pixels only: output pixel ``j`` samples ``start + (j + 0.5) * step``
where ``start`` is the first pixel of the tensor. A window starting between pixels is reached
by starting the tensor ``d`` output pixels early, at a whole pixel ``c = left - d * step``
(found by trying ``d = 0, 1, ...``; within :data:`ALIGN` of a pixel), and dropping those ``d``
outputs (near the picture's top and left edges, ``c`` may fall before the first pixel: the edge
pixels are repeated there); :func:`grid` says None when no ``d`` lands close enough, as for
windows whose step is a simple fraction (the caller uses Pillow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import torch

Box = tuple[int, int, int, int]
Window = tuple[float, float, float, float]

ALIGN = 0.01
"""How far (source pixels) torch's sample grid may sit from the window's; Pillow otherwise."""
_MAX_LEAD = 400
"""The most output pixels made ahead of the region to align the grid."""
REDUCING_GAP = 1.5
"""Pillow: shrinks by more than twice this first average whole blocks of pixels
(``Image.reduce``): a third to half the time, within 0.4/255 of the full filter on average."""
_SUPPORT = {False: 2.0, True: 1.0}
"""The filters' half-widths in pixels at scale 1: bicubic, bilinear (``fast``)."""


@dataclass(frozen=True)
class _Span:
    """One axis of a torch resample: the source pixels ``[start, stop)`` it reads (past the
    picture's edges, the edge pixel repeated), the ``lead`` outputs it makes before the
    region, and the scale (outputs per source pixel)."""

    start: int
    stop: int
    lead: int
    scale: float


def _span(left: float, step: float, first: int, last: int, extent: int, support: float
          ) -> _Span | None:
    """The span that makes outputs ``[first, last)`` of a grid starting at ``left`` with
    ``step`` source pixels per output, over a picture ``extent`` pixels long; None when no
    whole pixel within :data:`_MAX_LEAD` outputs lies within :data:`ALIGN` of the grid."""
    reach = support * max(step, 1.0)  # the filter's half-width in source pixels
    origin = left + first * step  # where the region's grid starts
    lowest = max(0, int(origin + 0.5 * step - reach + 0.5))  # the first pixel Pillow reads
    for lead in range(_MAX_LEAD):
        start = origin - lead * step
        whole = round(start)
        if abs(start - whole) <= ALIGN and whole <= lowest:
            stop = min(extent, math.ceil(left + last * step + reach) + 1)
            return _Span(whole, stop, lead, 1.0 / step)
    return None


@dataclass(frozen=True)
class Grid:
    """How torch makes one resample (see the module's docstring)."""

    x: _Span
    y: _Span
    size: tuple[int, int]
    """The region's size (output pixels)."""

    def run(self, picture: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
        """Resample ``picture`` (1x3xHxW, the whole picture; uint8 on the CPU or float on
        any device), same dtype out. Near its top and left edges torch may need pixels
        before the first: the edge pixels are repeated (Pillow weighs only the pixels
        inside, so the outputs whose filter crosses the edge differ a little)."""
        import torch
        import torch.nn.functional as F

        x0, y0 = max(0, self.x.start), max(0, self.y.start)
        part = picture[..., y0:self.y.stop, x0:self.x.stop]
        if x0 > self.x.start or y0 > self.y.start:
            part = F.pad(part.float(), (x0 - self.x.start, 0, y0 - self.y.start, 0),
                         mode="replicate").to(picture.dtype)
        op = (torch.ops.aten._upsample_bilinear2d_aa if fast
              else torch.ops.aten._upsample_bicubic2d_aa)
        out = op(part, [self.y.lead + self.size[1], self.x.lead + self.size[0]], False,
                 self.y.scale, self.x.scale)
        return out[..., self.y.lead:, self.x.lead:]


def grid(picture: tuple[int, int], box: Window, size: tuple[int, int],
         region: Box | None = None, *, fast: bool = False) -> Grid | None:
    """How torch makes the ``region`` (output pixels, default all) of ``box`` of a picture
    of size ``picture`` scaled to ``size``; None when its grid cannot be aligned."""
    area = region or (0, 0, size[0], size[1])
    step_x, step_y = (box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1]
    xs = _span(box[0], step_x, area[0], area[2], picture[0], _SUPPORT[fast])
    ys = _span(box[1], step_y, area[1], area[3], picture[1], _SUPPORT[fast])
    if xs is None or ys is None:
        return None
    return Grid(xs, ys, (area[2] - area[0], area[3] - area[1]))


def resample(image: Image.Image, box: Window, size: tuple[int, int],
             region: Box | None = None, *, fast: bool = False) -> Image.Image:
    """The ``region`` (output pixels, default all) of ``box`` of ``image`` scaled to ``size``
    with Pillow: antialiased bicubic (``fast``: bilinear), large shrinks averaging whole blocks
    first (:data:`REDUCING_GAP`). The region alone costs only its own pixels."""
    area = region or (0, 0, size[0], size[1])
    step_x, step_y = (box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1]
    part = (box[0] + area[0] * step_x, box[1] + area[1] * step_y,
            box[0] + area[2] * step_x, box[1] + area[3] * step_y)
    resampling = Image.Resampling.BILINEAR if fast else Image.Resampling.BICUBIC
    return image.resize((area[2] - area[0], area[3] - area[1]), resampling, box=part,
                        reducing_gap=REDUCING_GAP)
