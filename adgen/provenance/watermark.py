"""adgen's invisible watermark: a 40-bit payload hidden in an ad's pixels that survives the
re-encoding, resizing and cropping of publishing, where metadata does not.

The payload is a hash of the campaign, variant and placement (:func:`payload_for`); the output
folder's manifest resolves it (the ``watermark`` column). It is written with a CRC-24 as 64
code bits, and each bit is repeated over many 8x8-pixel tiles of a *canvas*:

- the canvas of a large picture (a feed ad, 1080x1080 and up) is the picture scaled to at most
  half its size and 512x512 pixels of area, so the mark lives at a scale that a 0.5x resize
  keeps; it is written in the blue-difference chroma (Cb), where it is least visible, and the
  difference is scaled back up and added to the full-size picture;
- a small banner (300x250, 728x90, ...) is its own canvas, marked in luma, the tiles aligned
  with JPEG's 8x8 blocks; the tiniest (320x50) and banner-sized video frames (H.264 is
  harsher on small steps than JPEG) with a stronger step.

Each tile carries its bit by quantisation index modulation (QIM) of the largest singular value
of its 4x4 block in the Haar wavelet's low band: the value is moved to the nearest point of the
lattice ``(k + 1/4 + b/2) * step`` for bit ``b``. That lattice and transform are those of
invisible-watermark's ``dwtDctSvd`` method (ShieldMnt, MIT; the one Stable Diffusion XL uses),
reimplemented here in numpy because importing that package loads torch, it rounds to the
lattice with a floor (2.8 dB of quality given away), writes floats into 8-bit arrays and
refuses pictures under 256x256. The tile-to-bit map is a diagonal interleave, so a crop never
loses a whole bit; the difference is blurred, so it is a smooth texture rather than squares.

:func:`detect` reads soft bit values (the phase of each tile on the lattice, averaged per bit),
corrects up to the 4 least reliable bits against the CRC (a Chase search) and tries the sizes
the picture may have had before it was resized or centre-cropped (adgen's placement sizes of
the same shape, and any given); a payload is reported only when its CRC holds. The mark is not
keyed: anyone with this code can read, copy or remove it. The C2PA signature, not the
watermark, is the authority on who made an ad.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from adgen.errors import PostProcessError
from adgen.placements import PRESETS
from adgen.post.ffmpeg import QUIET, file_url, probe_video, run_ffmpeg

ALGORITHM = "dev.adgen.watermark.1"
"""The name in C2PA soft-binding assertions (not on the C2PA soft-binding algorithm list)."""
SCHEME = "adgen invisible watermark 1: 40-bit payload + CRC-24, QIM of tile singular values"
PAYLOAD_BITS, CRC_BITS = 40, 24
CODE_BITS = PAYLOAD_BITS + CRC_BITS
TILE = 8
"""Canvas pixels per tile side (a 4x4 block of the Haar low band)."""
MIN_TILES = 2 * CODE_BITS
"""A picture needs this many tiles to carry the mark (two per code bit)."""
CANVAS_AREA = 512 * 512
CANVAS_SHARE = 0.5
SCALED_TILES = 1024
"""A picture whose half-size canvas has at least this many tiles is marked on that canvas;
smaller ones (banners) at full size."""
TINY_TILES = 300
PASSES = 3
"""Refinements: each marks the canvas as the detector will see it after the previous ones."""
CROPS = (1.0, 0.95, 0.9, 0.85, 0.8)
"""Centre crops :func:`detect` tries, as a share of each side."""
CHASE_FLIPS = 4
_ASPECT_TOLERANCE = 0.015
_CRC24_POLY, _CRC24_INIT = 0x864CFB, 0xB704CE  # CRC-24/OpenPGP (RFC 4880)

Channel = Literal["y", "cb"]


@dataclass(frozen=True)
class Band:
    """Where and how strongly a picture is marked: the plane, the QIM step (in Haar low-band
    units) and the blur of the difference (in canvas pixels)."""

    channel: Channel
    step: float
    blur: float


SCALED = Band("cb", 48.0, 2.5)
BANNER = Band("y", 40.0, 2.0)
TINY = Band("y", 64.0, 1.0)
MOVING = Band("y", 64.0, 2.0)
"""Banner-sized video frames: H.264 flattens the small steps that JPEG keeps."""

# an RGB change that moves the plane by +1 and leaves the other two YCbCr (BT.601) planes alone
_DIRECTION: dict[Channel, np.ndarray] = {
    "y": np.array([1.0, 1.0, 1.0], np.float32),
    "cb": np.array([0.0, -0.344136, 1.772], np.float32),
}


# --- payload ---------------------------------------------------------------------------------


def payload_for(campaign: str, variant_id: str, placement: str) -> str:
    """The payload of one asset: 40 bits of a SHA-256 of its campaign, variant and placement,
    as 10 hex digits."""
    text = "\0".join(("adgen-watermark-1", campaign, variant_id, placement))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[: PAYLOAD_BITS // 4]


def _crc24(data: bytes) -> int:
    crc = _CRC24_INIT
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= _CRC24_POLY
    return crc & 0xFFFFFF


def code_bits(payload: str) -> np.ndarray:
    """The 64 code bits of a payload: its 40 bits, then the CRC-24 of its 5 bytes."""
    try:
        value = int(payload, 16)
    except ValueError:
        value = -1
    if len(payload) != PAYLOAD_BITS // 4 or value < 0:
        raise PostProcessError(f"watermark payload {payload!r} must be {PAYLOAD_BITS // 4} hex "
                               "digits (see payload_for)")
    word = (value << CRC_BITS) | _crc24(value.to_bytes(PAYLOAD_BITS // 8, "big"))
    return np.array([(word >> (CODE_BITS - 1 - i)) & 1 for i in range(CODE_BITS)], np.uint8)


def _payload(bits: np.ndarray) -> str | None:
    """The payload of 64 code bits, or None when the CRC does not hold."""
    word = int("".join("1" if b else "0" for b in bits), 2)
    value, crc = word >> CRC_BITS, word & 0xFFFFFF
    if _crc24(value.to_bytes(PAYLOAD_BITS // 8, "big")) != crc:
        return None
    return f"{value:0{PAYLOAD_BITS // 4}x}"


# --- geometry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where the mark lives in a picture of ``size``: the ``canvas`` it is written on (the
    picture scaled, or the picture itself) and the :class:`Band`."""

    size: tuple[int, int]
    canvas: tuple[int, int]
    band: Band

    @property
    def tiles(self) -> tuple[int, int]:
        """Rows and columns of tiles (they cover the canvas from its top-left corner)."""
        return self.canvas[1] // TILE, self.canvas[0] // TILE

    @property
    def scaled(self) -> bool:
        return self.canvas != self.size


def layout(width: int, height: int, *, video: bool = False) -> Layout:
    """The layout of the mark in a ``width`` x ``height`` picture (or video frame)."""
    share = min(CANVAS_SHARE, math.sqrt(CANVAS_AREA / (width * height)))
    canvas = (round(width * share) // TILE * TILE, round(height * share) // TILE * TILE)
    if (canvas[0] // TILE) * (canvas[1] // TILE) >= SCALED_TILES:
        return Layout((width, height), canvas, SCALED)
    tiles = (width // TILE) * (height // TILE)
    band = TINY if tiles < TINY_TILES else MOVING if video else BANNER
    return Layout((width, height), (width, height), band)


def tile_bits(rows: int, cols: int) -> np.ndarray:
    """The code bit each tile carries: ``(column + 23 * row) mod 64``, so every bit is spread
    over all rows and columns and a crop that loses outer columns loses no bit."""
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return (j + 23 * i) % CODE_BITS


def _plane(rgb: np.ndarray, channel: Channel) -> np.ndarray:
    pixels = rgb.astype(np.float32)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    if channel == "y":
        return 0.299 * r + 0.587 * g + 0.114 * b
    return 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b


def _resize(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``plane`` at ``size`` (width, height): area averaging down, bilinear up."""
    if (plane.shape[1], plane.shape[0]) == size:
        return plane
    smaller = size[0] * size[1] < plane.shape[0] * plane.shape[1]
    return cv2.resize(plane, size, interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR)


def _blocks(canvas: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The 4x4 Haar low-band block of every tile, shape (rows, cols, 4, 4). The orthonormal
    Haar low band is half the sum of each 2x2 pixel square."""
    area = canvas[: rows * TILE, : cols * TILE].astype(np.float64)
    low = (area[0::2, 0::2] + area[0::2, 1::2] + area[1::2, 0::2] + area[1::2, 1::2]) / 2
    return low.reshape(rows, 4, cols, 4).transpose(0, 2, 1, 3)


POWER_STEPS = 8
"""Power-iteration steps for a block's largest singular value (see :func:`_top`)."""


def _top(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The largest singular value of each 4x4 block and its left and right singular vectors,
    as ``np.linalg.svd`` gives them, several times faster: power iteration on BᵀB from the
    column sums, which pixel blocks (never negative: their largest singular value stands well
    apart) settle in a few steps; the rare block that has not settled (two values nearly tied)
    goes to the SVD."""
    gram = blocks.swapaxes(-1, -2) @ blocks
    right = blocks.sum(axis=-2)[..., None]
    for _ in range(POWER_STEPS):
        right = gram @ right
        right /= np.sqrt((right * right).sum(axis=-2, keepdims=True)) + 1e-300
    left = blocks @ right
    top = np.sqrt((left * left).sum(axis=(-2, -1)))
    left, right = left[..., 0] / (top[..., None] + 1e-300), right[..., 0]
    moved = gram @ right[..., None] - (top * top)[..., None, None] * right[..., None]
    unsettled = np.sqrt((moved * moved).sum(axis=(-2, -1))) > 1e-9 * (top * top + 1e-300)
    if unsettled.any():
        u, s, vt = np.linalg.svd(blocks[unsettled])
        left[unsettled], top[unsettled], right[unsettled] = u[..., :, 0], s[..., 0], vt[..., 0, :]
    return left, top, right


# --- embed -----------------------------------------------------------------------------------


def _qim(canvas: np.ndarray, bits: np.ndarray, step: float) -> np.ndarray:
    """The change of ``canvas`` that moves each tile's largest singular value to the nearest
    lattice point of its bit; ``bits`` is the bit of every tile, shape (rows, cols)."""
    rows, cols = bits.shape
    left, top, right = _top(_blocks(canvas, rows, cols))
    target = (np.floor(top / step) + 0.25 + 0.5 * bits) * step
    options = np.stack([target - step, target, target + step])
    options = np.where(options >= 0, options, np.inf)  # a singular value is never negative
    best = np.take_along_axis(options, np.argmin(np.abs(options - top), axis=0)[None], 0)[0]
    flat = top < 1e-6  # a black block has no direction of its own: change it evenly
    left = np.where(flat[..., None], 0.5, left)
    right = np.where(flat[..., None], 0.5, right)
    change = (best - top)[..., None, None] * (left[..., :, None] * right[..., None, :])
    low = change.transpose(0, 2, 1, 3).reshape(rows * 4, cols * 4) / 2
    delta = np.zeros(canvas.shape, np.float32)
    delta[: rows * TILE, : cols * TILE] = np.repeat(np.repeat(low, 2, axis=0), 2, axis=1)
    return delta


@dataclass(frozen=True)
class Mark:
    """The difference that marks one picture, rounded to whole RGB levels and split into what
    is added and what is taken away. Adding it to a similar picture (the next frames of a
    video) marks that one too."""

    up: np.ndarray
    down: np.ndarray

    @classmethod
    def of(cls, plane: np.ndarray, direction: np.ndarray) -> Mark:
        """The mark that moves a plane by ``plane``, along ``direction`` in RGB."""
        up = np.zeros((*plane.shape, 3), np.uint8)
        down = np.zeros_like(up)
        for channel, weight in enumerate(direction):
            if weight:  # a change is a few levels: well inside 0..255 before saturation
                change = np.rint(plane * weight)
                up[..., channel] = np.maximum(change, 0)
                down[..., channel] = np.maximum(-change, 0)
        return cls(up, down)

    @property
    def shape(self) -> tuple[int, int]:
        return self.up.shape[0], self.up.shape[1]

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` (H x W x 3, uint8) with the mark added, held to 0..255 (saturating)."""
        return cv2.subtract(cv2.add(rgb, self.up), self.down)


def carries(width: int, height: int) -> bool:
    """Whether a ``width`` x ``height`` picture is big enough to carry the mark."""
    rows, cols = layout(width, height).tiles
    return rows * cols >= MIN_TILES


def mark_of(rgb: np.ndarray, payload: str, *, video: bool = False) -> Mark:
    """The :class:`Mark` that writes ``payload`` into ``rgb`` (H x W x 3, uint8), a picture
    or a ``video`` frame."""
    height, width = rgb.shape[:2]
    where = layout(width, height, video=video)
    rows, cols = where.tiles
    if not carries(width, height):
        raise PostProcessError(
            f"a {width}x{height} picture is too small for the invisible watermark: it needs "
            f"{MIN_TILES} tiles of {TILE}x{TILE} pixels; set provenance.watermark: false for "
            "this campaign or use a larger placement")
    bits = code_bits(payload)[tile_bits(rows, cols)]
    band = where.band
    plane = _plane(rgb, band.channel)
    seen = _resize(plane, where.canvas)
    total = np.zeros(seen.shape, np.float32)
    for step in range(PASSES):
        view = seen if step == 0 else seen + _resize(_resize(total, where.size), where.canvas)
        delta = _qim(view, bits, band.step)
        if band.blur:
            delta = cv2.GaussianBlur(delta, (0, 0), band.blur)
        total += delta
    return Mark.of(_resize(total, where.size), _DIRECTION[band.channel])


def embed(image: Image.Image, payload: str) -> Image.Image:
    """``image`` with ``payload`` written into its pixels (RGB; an alpha channel is kept)."""
    rgb = np.asarray(image.convert("RGB"))
    marked = Image.fromarray(mark_of(rgb, payload).apply(rgb), "RGB")
    if image.mode == "RGBA":
        marked.putalpha(image.getchannel("A"))
    return marked


class FrameMarker:
    """Marks the frames of one video: the mark is computed anew on every ``every``-th call
    and the last one is added to the frames between (``every=1``: each frame gets its own).
    Frames may be marked from several threads (a mark is computed outside the lock)."""

    def __init__(self, payload: str, every: int = 1) -> None:
        if every < 1:
            raise PostProcessError(f"watermark cadence {every} must be at least 1 (every frame)")
        code_bits(payload)  # a bad payload fails here, not at the first frame
        self.payload, self.every = payload, every
        self._calls = 0
        self._last: Mark | None = None
        self._lock = threading.Lock()

    def __call__(self, frame: Image.Image) -> Image.Image:
        rgb = np.asarray(frame.convert("RGB"))
        with self._lock:
            last = self._last
            if last is not None and last.shape != rgb.shape[:2]:
                last = None
            fresh = last is None or self._calls % self.every == 0
            self._calls += 1
        if fresh or last is None:
            last = mark_of(rgb, self.payload, video=True)
            with self._lock:
                self._last = last
        return Image.fromarray(last.apply(rgb), "RGB")


# --- detect ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """A payload read from a picture: ``confidence`` is how well the tiles agree with its code
    (1: every tile on its lattice point; 0: no better than chance), ``size`` and ``crop`` the
    original size and centre crop the picture was read as, ``corrected`` the bits the CRC
    search flipped."""

    payload: str
    confidence: float
    size: tuple[int, int]
    crop: float
    corrected: int


@dataclass(frozen=True)
class _Hypothesis:
    where: Layout
    crop: float
    box: tuple[int, int, int, int]
    """Where the received picture lands on the canvas: x, y, width, height."""


def _hypotheses(width: int, height: int, sizes: Iterable[tuple[int, int]]
                ) -> list[_Hypothesis]:
    """The original sizes and centre crops a ``width`` x ``height`` picture may come from,
    most likely first, without two that read the picture the same way."""
    known = list(dict.fromkeys([*sizes, *(p.size for p in PRESETS.values())]))
    out: list[_Hypothesis] = []
    seen: set[tuple[object, ...]] = set()
    for crop in CROPS:
        aspect = width / height
        own = (round(width / crop), round(height / crop))
        for size in [own, *known]:
            if abs(size[0] / size[1] - aspect) > _ASPECT_TOLERANCE * aspect:
                continue
            for video in (False, True):
                hypothesis = _hypothesis(size, crop, video=video)
                key = (hypothesis.where.canvas, hypothesis.where.band, hypothesis.box)
                if key not in seen and min(hypothesis.where.tiles) > 0:
                    seen.add(key)
                    out.append(hypothesis)
    return out


def _hypothesis(size: tuple[int, int], crop: float, *, video: bool = False) -> _Hypothesis:
    """Reading a picture as the centre ``crop`` of one of ``size`` (a video frame's)."""
    where = layout(*size, video=video)
    cw, ch = where.canvas
    box = (round((size[0] - round(size[0] * crop)) / 2 * cw / size[0]),
           round((size[1] - round(size[1] * crop)) / 2 * ch / size[1]),
           round(cw * crop), round(ch * crop))
    return _Hypothesis(where, crop, box)


def _soft(planes: dict[Channel, np.ndarray], rgb: np.ndarray, hypothesis: _Hypothesis
          ) -> tuple[np.ndarray, np.ndarray]:
    """Soft code values of one reading (mean of ``-sin(2 pi phase)`` per bit: -1 is a clear
    0, +1 a clear 1) and how many tiles each bit had."""
    where = hypothesis.where
    band = where.band
    if band.channel not in planes:
        planes[band.channel] = _plane(rgb, band.channel)
    x, y, w, h = hypothesis.box
    cw, ch = where.canvas
    w, h = min(w, cw - x), min(h, ch - y)
    canvas = np.zeros((ch, cw), np.float32)
    covered = np.zeros((ch, cw), bool)
    canvas[y:y + h, x:x + w] = _resize(planes[band.channel], (w, h))
    covered[y:y + h, x:x + w] = True
    rows, cols = where.tiles
    top = _top(_blocks(canvas, rows, cols))[1]
    values = -np.sin(2 * np.pi * (top % band.step) / band.step)
    whole = covered[: rows * TILE, : cols * TILE].reshape(rows, TILE, cols, TILE).all(axis=(1, 3))
    bits = tile_bits(rows, cols)[whole]
    sums = np.bincount(bits, weights=values[whole], minlength=CODE_BITS)
    counts = np.bincount(bits, minlength=CODE_BITS)
    return sums / np.maximum(counts, 1), counts


def _chase(soft: np.ndarray) -> tuple[str, int] | None:
    """The payload whose code differs from the hard decision in at most :data:`CHASE_FLIPS`
    of the least reliable bits (fewest flips first), and the flips, or None."""
    hard = (soft > 0).astype(np.uint8)
    weakest = np.argsort(np.abs(soft))[:CHASE_FLIPS]
    for flips in range(CHASE_FLIPS + 1):
        for combo in itertools.combinations(weakest, flips):
            trial = hard.copy()
            trial[list(combo)] ^= 1
            payload = _payload(trial)
            if payload is not None:
                return payload, flips
    return None


def detect(image: Image.Image | np.ndarray, sizes: Sequence[tuple[int, int]] = ()
           ) -> Detection | None:
    """The payload in a picture (or video frame), or None. ``sizes`` are original sizes to try
    besides the picture's own and adgen's placement presets (a campaign's custom ones)."""
    rgb = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
    height, width = rgb.shape[:2]
    if width < TILE or height < TILE:
        return None
    planes: dict[Channel, np.ndarray] = {}
    for hypothesis in _hypotheses(width, height, sizes):
        soft, counts = _soft(planes, rgb, hypothesis)
        if counts.min() == 0:
            continue
        found = _chase(soft)
        if found is not None:
            payload, flips = found
            signs = 2.0 * code_bits(payload) - 1
            confidence = max(0.0, float(np.mean(soft * signs)))
            return Detection(payload, round(confidence, 3), hypothesis.where.size,
                             hypothesis.crop, flips)
    return None


def soft_bits(rgb: np.ndarray, size: tuple[int, int], crop: float = 1.0, *,
              video: bool = False) -> np.ndarray:
    """The soft code values (-1: a clear 0 ... +1: a clear 1) of ``rgb`` read as the centre
    ``crop`` of a ``size`` picture (or video frame), with no search and no correction (for
    measurements)."""
    return _soft({}, rgb, _hypothesis(size, crop, video=video))[0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit pictures, in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def video_frames(path: Path, count: int = 6) -> list[np.ndarray]:
    """Up to ``count`` frames spread evenly over the video at ``path``, as RGB arrays (ffmpeg
    decodes them; :class:`FFmpegError` when it cannot)."""
    info = probe_video(path)
    every = max(1, info.frames // count) if info.frames else 1
    with tempfile.TemporaryDirectory(prefix="adgen-frames-") as folder:
        run_ffmpeg([*QUIET, "-i", file_url(path), "-vf", f"select=not(mod(n\\,{every}))",
                    "-fps_mode", "vfr", "-frames:v", str(count), "-f", "image2",
                    file_url(Path(folder) / "%03d.png")],
                   what=f"reading frames of {str(path)!r}")
        return [np.asarray(Image.open(frame).convert("RGB"))
                for frame in sorted(Path(folder).glob("*.png"))]
