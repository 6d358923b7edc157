"""Resampling a float window of a picture: OpenCV to enlarge, Pillow to shrink, torch on a GPU.

Every resize in post-processing is this one: the window ``box`` (float source pixels) scaled to
``size`` (:func:`resample`), output pixel ``j`` centred on source ``left + (j + 0.5) * step``.

- Enlargements (a render of 1024 px into a 1080x1920 story: most of the work) and shrinks up to
  :data:`OPENCV_SHRINK` are made with OpenCV's bicubic ``cv2.resize``, three to five times as
  fast as Pillow's and within 0.4/255 of it (its cubic is a little sharper: a = -0.75 rather
  than -0.5, and not widened for the mild shrinks). ``cv2.resize`` scales whole pixels from the
  first pixel it is given, so the window is reached through an aligned :class:`Grid`.
- Larger shrinks keep Pillow's antialiased bicubic (the filter widened by the shrink factor,
  whole blocks averaged first for large factors, :data:`REDUCING_GAP`): OpenCV has no
  antialiased cubic, and its area filter is slower than Pillow on these.
- ``fast`` (blurred backdrops; video frames use :func:`warp` directly): bilinear, with
  ``cv2.warpAffine`` on the exact subpixel window up to :data:`OPENCV_SHRINK`.
- The GPU path (:mod:`adgen.post.gpu`) runs the same :class:`Grid` with torch's antialiased
  interpolation, whose weights are Pillow's.

An aligned grid: a resample of whole pixels maps output ``j`` to ``start + (j + 0.5) * step``
where ``start`` is the first pixel it is given. A window starting between pixels is reached by
starting ``d`` output pixels early, at a whole pixel ``c = left - d * step`` (found by trying
``d = 0, 1, ...``; within :data:`ALIGN` of a pixel, or :data:`LOOSE` when the step is a simple
fraction and nothing closer exists), and dropping those ``d`` outputs (near the picture's top and
left edges ``c`` may fall before the first pixel: the edge pixels are repeated there). A region
made alone lands on the same samples as the whole whenever the whole is within :data:`ALIGN`.
:func:`grid` says None when no ``d`` lands close enough (Pillow then).

OpenCV's thread pool is left as the process has it: ``cv2.setNumThreads`` is process-wide (the
quality gate's text detector uses OpenCV too), the asset pools already make assets on parallel
threads, and an OpenCV call made while another thread's call holds the pool runs on its own
thread. The benchmarks set it to one thread, to compare single-threaded work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

Box = tuple[int, int, int, int]
Window = tuple[float, float, float, float]

ALIGN = 0.01
"""How far (source pixels) a grid's samples may sit from the window's."""
LOOSE = 1 / 24
"""The most a grid may sit off when no lead reaches :data:`ALIGN` (steps that are simple
fractions, such as 1024/1920 = 8/15, reach only multiples of 1/15): a 24th of a pixel."""
_MAX_LEAD = 400
"""The most output pixels made ahead of the region to align the grid."""
REDUCING_GAP = 1.5
"""Pillow: shrinks by more than twice this first average whole blocks of pixels
(``Image.reduce``): a third to half the time, within 0.4/255 of the full filter on average."""
OPENCV_SHRINK = 1.25
"""Shrinks up to this factor are made by OpenCV's plain bicubic or bilinear (within 0.5/255 of
Pillow's antialiased filters); beyond it plain filters alias, and Pillow's are used."""
_SUPPORT = {False: 2.0, True: 1.0}
"""The filters' half-widths in pixels at scale 1: bicubic, bilinear (``fast``)."""


@dataclass(frozen=True)
class _Span:
    """One axis of an aligned resample: the source pixels ``[start, stop)`` it reads (past the
    picture's edges, the edge pixel repeated), the ``lead`` outputs it makes before the
    region, and the scale (outputs per source pixel)."""

    start: int
    stop: int
    lead: int
    scale: float

    def needed(self, count: int) -> int:
        """The source pixels a resample of whole pixels needs for ``lead + count`` outputs."""
        return max(self.stop - self.start, math.ceil((self.lead + count) / self.scale))


def _span(left: float, step: float, first: int, last: int, extent: int, support: float
          ) -> _Span | None:
    """The span that makes outputs ``[first, last)`` of a grid starting at ``left`` with
    ``step`` source pixels per output, over a picture ``extent`` pixels long; None when no
    whole pixel within :data:`_MAX_LEAD` outputs lies within :data:`LOOSE` of the grid."""
    reach = support * max(step, 1.0)  # the filter's half-width in source pixels
    origin = left + first * step  # where the region's grid starts
    lowest = max(0, int(origin + 0.5 * step - reach + 0.5))  # the first pixel Pillow reads
    best: tuple[float, int, int] | None = None  # (distance, lead, whole pixel)
    for lead in range(_MAX_LEAD):
        start = origin - lead * step
        whole = round(start)
        if whole > lowest:
            continue
        off = abs(start - whole)
        if best is None or off < best[0] - 1e-9:
            best = (off, lead, whole)
        if off <= ALIGN:
            break
    if best is None or best[0] > LOOSE:
        return None
    _, lead, whole = best
    stop = min(extent, math.ceil(left + last * step + reach) + 1)
    return _Span(whole, stop, lead, 1.0 / step)


@dataclass(frozen=True)
class Grid:
    """How a resample of whole pixels makes one window (see the module's docstring)."""

    x: _Span
    y: _Span
    size: tuple[int, int]
    """The region's size (output pixels)."""

    def resize(self, image: Image.Image) -> np.ndarray:
        """The region of ``image`` (RGB) by OpenCV's bicubic ``resize``, as an HxWx3 uint8
        array."""
        x, y = self.x, self.y
        x0, y0 = max(0, x.start), max(0, y.start)
        part = pixels(image, (x0, y0, x.stop, y.stop))
        right = x.needed(self.size[0]) - (x.stop - x.start)
        bottom = y.needed(self.size[1]) - (y.stop - y.start)
        if x0 > x.start or y0 > y.start or right > 0 or bottom > 0:
            part = cv2.copyMakeBorder(part, y0 - y.start, max(0, bottom), x0 - x.start,
                                      max(0, right), cv2.BORDER_REPLICATE)
        out = cv2.resize(part, None, fx=x.scale, fy=y.scale, interpolation=cv2.INTER_CUBIC)
        return out[y.lead:y.lead + self.size[1], x.lead:x.lead + self.size[0]]

    def run(self, picture: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
        """Resample ``picture`` (1x3xHxW, the whole picture; uint8 on the CPU or float on
        any device) with torch's antialiased filters, same dtype out. Near its top and left
        edges torch may need pixels before the first: the edge pixels are repeated (Pillow
        weighs only the pixels inside, so the outputs whose filter crosses the edge differ a
        little)."""
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
    """How a resample of whole pixels makes the ``region`` (output pixels, default all) of
    ``box`` of a picture of size ``picture`` scaled to ``size``; None when its grid cannot be
    aligned."""
    area = region or (0, 0, size[0], size[1])
    step_x, step_y = (box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1]
    xs = _span(box[0], step_x, area[0], area[2], picture[0], _SUPPORT[fast])
    ys = _span(box[1], step_y, area[1], area[3], picture[1], _SUPPORT[fast])
    if xs is None or ys is None:
        return None
    return Grid(xs, ys, (area[2] - area[0], area[3] - area[1]))


def pixels(image: Image.Image, box: Box) -> np.ndarray:
    """The pixels of ``box`` of ``image`` as an array (a view of the whole image's when the box
    is most of it: cropping first would copy twice)."""
    if (box[2] - box[0]) * (box[3] - box[1]) * 4 < image.width * image.height:
        return np.asarray(image.crop(box))
    return np.asarray(image)[box[1]:box[3], box[0]:box[2]]


def affine(box: Window, size: tuple[int, int], origin: tuple[float, float] = (0.0, 0.0)
           ) -> np.ndarray:
    """The 2x3 matrix taking output pixel indices to source pixel indices (OpenCV's inverse
    map) for ``box`` scaled to ``size``; ``origin``: the output pixel that index 0 is (a
    region), and the source's first pixel is at 0."""
    step_x, step_y = (box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1]
    return np.array([[step_x, 0.0, box[0] + (origin[0] + 0.5) * step_x - 0.5],
                     [0.0, step_y, box[1] + (origin[1] + 0.5) * step_y - 0.5]])


def warp(pixels: np.ndarray, box: Window, size: tuple[int, int], region: Box | None = None,
         out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear ``cv2.warpAffine`` of ``box`` of ``pixels`` (HxW or HxWxC uint8) scaled to
    ``size``: the ``region`` (default all), subpixel-exact, the edge pixels repeated past the
    picture; written into ``out`` when given (an array of the region's shape)."""
    area = region or (0, 0, size[0], size[1])
    matrix = affine(box, size, (area[0], area[1]))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(pixels, matrix, (area[2] - area[0], area[3] - area[1]), dst=out,
                          flags=flags, borderMode=cv2.BORDER_REPLICATE)


def resample(image: Image.Image, box: Window, size: tuple[int, int],
             region: Box | None = None, *, fast: bool = False) -> Image.Image:
    """The ``region`` (output pixels, default all) of ``box`` of ``image`` (RGB) scaled to
    ``size``: enlargements and mild shrinks by OpenCV's bicubic, larger shrinks by Pillow's
    antialiased bicubic (``fast``: bilinear; see the module's docstring). The region alone
    costs only its own pixels."""
    area = region or (0, 0, size[0], size[1])
    step_x, step_y = (box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1]
    if max(step_x, step_y) <= OPENCV_SHRINK:
        if fast:
            return Image.fromarray(_warp_image(image, box, size, area))
        plan = grid(image.size, box, size, area)
        if plan is not None:
            return Image.fromarray(plan.resize(image))
    part = (box[0] + area[0] * step_x, box[1] + area[1] * step_y,
            box[0] + area[2] * step_x, box[1] + area[3] * step_y)
    resampling = Image.Resampling.BILINEAR if fast else Image.Resampling.BICUBIC
    return image.resize((area[2] - area[0], area[3] - area[1]), resampling, box=part,
                        reducing_gap=REDUCING_GAP)


def _warp_image(image: Image.Image, box: Window, size: tuple[int, int], area: Box
                ) -> np.ndarray:
    """:func:`warp` of a Pillow image, reading only the source pixels the region needs."""
    step_x, step_y = (box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1]
    left = max(0, min(image.width - 1, math.floor(box[0] + area[0] * step_x) - 1))
    top = max(0, min(image.height - 1, math.floor(box[1] + area[1] * step_y) - 1))
    right = min(image.width, max(left + 1, math.ceil(box[0] + area[2] * step_x) + 2))
    bottom = min(image.height, max(top + 1, math.ceil(box[1] + area[3] * step_y) + 2))
    part = pixels(image, (left, top, right, bottom))
    return warp(part, (box[0] - left, box[1] - top, box[2] - left, box[3] - top), size, area)
