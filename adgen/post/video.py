"""Video ads from a still or from generated frames: motion, logo and captions, end card, audio.

:func:`still_to_video` and :func:`frames_to_video` read top to bottom as numbered steps:

1. check the inputs: the spec against the placement's limits, the jingle, ffmpeg itself;
2. lay out the first frame with :func:`adgen.post.image.compose_layers`: the crop, logo,
   captions, colours and scrims of the still ad, kept apart as a background and RGBA layers;
3. plan the motion (Ken Burns): the crop window moves between that layout's window and one
   ``motion_amount`` tighter around the subject (zoom), or slides across it (pan). Every
   window contains the subject box, so the subject stays whole in every frame;
4. paint the end card: the logo and the call-to-action button on the brand colour;
5. make each frame as yuv420p planes (:mod:`adgen.post.planes`) and pipe it raw to ffmpeg:
   H.264 High, BT.709, constant frame rate, ``+faststart``, AAC when there is a jingle; the
   CRF is raised until the file fits the byte budget. What does not change is made once: the
   part of each source picture the motion shows (at the scale of the tightest window, when
   the picture is larger or the windows pass its edges), the background, the logo and caption
   layers cut to their boxes, the end card, all converted to Y'CbCr. A frame is then one
   subpixel-exact bilinear warp of the window (OpenCV), a blend per layer and, at the end, a
   crossfade into the end card; two threads make frames while ffmpeg encodes.

Frames are made in Python rather than with ffmpeg filters because ``zoompan`` crops whole
source pixels (slow zooms jitter) while a warp of a float window is exact to the subpixel;
and because then no text ever reaches ffmpeg: captions are Pillow pixels, and ffmpeg gets no
video filter at all.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import ffmpeg
import numpy as np
from PIL import Image, ImageDraw

from adgen.errors import AssetError, FFmpegError, PostProcessError
from adgen.placements import Placement
from adgen.post import color, crop
from adgen.post import text as textmod
from adgen.post.ffmpeg import (
    QUIET,
    FramePipe,
    VideoInfo,
    ffmpeg_exe,
    file_url,
    probe_media,
    probe_video,
)
from adgen.post.image import (
    DEFAULT_PRIMARY,
    Caption,
    Composed,
    Layers,
    LogoStyle,
    compose_layers,
)
from adgen.post.logo import place_logo, resized
from adgen.post.planes import Frame, Overlay, Planes

__all__ = ["Motion", "VideoInfo", "VideoResult", "VideoSpec", "ffmpeg_exe", "frames_to_video",
           "probe_video", "still_to_video"]

Box = tuple[int, int, int, int]
Window = crop.Window
Motion = Literal["zoom_in", "zoom_out", "pan_left", "pan_right", "none"]
MOTIONS: tuple[str, ...] = get_args(Motion)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow")
AUDIO_BITRATE = 128_000
"""AAC bit rate in bits per second."""
BUDGET_TRIES = 6
"""Encodes tried, at most, to meet a byte budget (each after the first re-makes the frames)."""


@dataclass(frozen=True)
class VideoSpec:
    """How to make a video ad. Times are in seconds; ``duration`` includes the end card.

    ``caption_in``/``caption_out`` time the headline and the other captions (CTA included);
    ``caption_out=None`` keeps them until the end card. ``end_card`` is the length of the
    closing card (logo and CTA on the brand colour), 0 for none. ``max_bytes``: the CRF is
    raised (up to ``max_crf``) until the file fits, else :class:`PostProcessError`.
    ``max_duration``: the placement's limit. ``audio``: a jingle, trimmed or looped to the
    clip and faded out over ``audio_fade``; without it the file has no audio stream.
    ``motion_amount`` is how much tighter the zoom (or pan) window gets (0.12 = 12%);
    ``fade`` the length of caption fades and of the crossfade into the end card; ``preset``
    the x264 speed/size trade-off."""

    duration: float = 6.0
    fps: int = 30
    motion: Motion = "zoom_in"
    end_card: float = 1.5
    caption_in: float = 0.3
    caption_out: float | None = None
    crf: int = 20
    max_bytes: int | None = None
    max_duration: float | None = None
    audio: Path | None = None
    motion_amount: float = 0.12
    fade: float = 0.25
    audio_fade: float = 1.0
    preset: str = "veryfast"
    max_crf: int = 38
    mark: Callable[[Image.Image], Image.Image] | None = None
    """Applied to every finished frame, in order, before encoding (adgen's invisible watermark:
    :class:`adgen.provenance.watermark.FrameMarker`); the end card's frame once."""

    def __post_init__(self) -> None:
        problem = _spec_problem(self)
        if problem:
            raise PostProcessError(f"video settings: {problem}")


def _spec_problem(spec: VideoSpec) -> str | None:
    """What is wrong with ``spec``, with the fix, or None."""
    checks: list[tuple[bool, str]] = [
        (spec.duration > 0, f"duration {spec.duration} s must be positive"),
        (isinstance(spec.fps, int) and 1 <= spec.fps <= 120,
         f"fps {spec.fps!r} must be a whole number between 1 and 120 (e.g. 30)"),
        (spec.motion in MOTIONS, f"motion {spec.motion!r} is not one of {', '.join(MOTIONS)}"),
        (0 <= spec.end_card < spec.duration,
         f"end_card {spec.end_card} s must be at least 0 and shorter than the duration "
         f"({spec.duration} s)"),
        (0 <= spec.caption_in < spec.duration - spec.end_card,
         f"caption_in {spec.caption_in} s must be at least 0 and before the end card starts "
         f"({spec.duration - spec.end_card:g} s)"),
        (spec.caption_out is None or spec.caption_out > spec.caption_in,
         f"caption_out {spec.caption_out} s must come after caption_in ({spec.caption_in} s)"),
        (0 <= spec.crf <= spec.max_crf <= 51,
         f"crf {spec.crf} and max_crf {spec.max_crf} must satisfy 0 <= crf <= max_crf <= 51 "
         "(lower is better quality; 18-23 is usual)"),
        (spec.max_bytes is None or spec.max_bytes > 0,
         f"max_bytes {spec.max_bytes} must be a positive number of bytes"),
        (spec.max_duration is None or spec.max_duration > 0,
         f"max_duration {spec.max_duration} s must be positive"),
        (0 <= spec.motion_amount <= 0.5,
         f"motion_amount {spec.motion_amount} must be between 0 and 0.5 (e.g. 0.12)"),
        (spec.fade >= 0 and spec.audio_fade >= 0, "fade and audio_fade must not be negative"),
        (spec.preset in X264_PRESETS,
         f"preset {spec.preset!r} is not an x264 preset: use one of {', '.join(X264_PRESETS)}"),
    ]
    return next((message for ok, message in checks if not ok), None)


@dataclass
class VideoResult:
    """An encoded MP4 and what was decided making it (``checks``: the still layout's checks,
    logo and caption boxes, timings, motion windows, end card, CRF, audio)."""

    data: bytes
    duration_s: float
    fps: float
    frames: int
    checks: dict[str, object] = field(default_factory=dict)


# -- timing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Timeline:
    """Frame numbers and the strength (0..1) of each layer in each frame."""

    fps: int
    frames: int
    card_start: int
    """First frame of the end card (``frames`` when there is none)."""
    caption_in: float
    caption_out: float
    fade: float
    card_fade: int
    """Frames over which the end card fades in."""

    @classmethod
    def of(cls, spec: VideoSpec, card: bool) -> _Timeline:
        frames = max(1, round(spec.duration * spec.fps))
        card_start = min(frames - 1, round((spec.duration - spec.end_card) * spec.fps)) \
            if card and spec.end_card > 0 else frames
        body_end = card_start / spec.fps
        out = body_end if spec.caption_out is None else min(spec.caption_out, body_end)
        fade = min(spec.fade, max(0.0, out - spec.caption_in) / 2)
        card_fade = round(min(spec.fade, spec.end_card / 2) * spec.fps)
        return cls(spec.fps, frames, card_start, spec.caption_in, out, fade, card_fade)

    def motion(self, k: int) -> float:
        """Progress of the motion at frame ``k``: eased, from 0 to 1 when the card is in."""
        span = max(1, min(self.frames - 1, self.card_start + self.card_fade))
        u = min(1.0, k / span)
        return 0.5 * u + 0.5 * u * u * (3 - 2 * u)  # half linear, half smoothstep

    def caption(self, k: int) -> float:
        t = k / self.fps
        if not self.caption_in <= t < self.caption_out:
            return 0.0
        if self.fade <= 0:
            return 1.0
        return min(1.0, (t - self.caption_in) / self.fade, (self.caption_out - t) / self.fade)

    def card(self, k: int) -> float:
        if k < self.card_start:
            return 0.0
        return min(1.0, (k - self.card_start + 1) / (self.card_fade + 1))


# -- layers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scene:
    """Everything a frame is made of but the moving picture, converted to Y'CbCr planes once
    (:mod:`adgen.post.planes`): the background (the still ad's canvas before the logo and
    captions), the logo and caption layers cut to their visible boxes, the end card."""

    size: tuple[int, int]
    background: Planes
    picture_box: Box
    logo: Overlay | None
    captions: list[Overlay]
    card: Planes | None

    @classmethod
    def of(cls, layers: Layers, size: tuple[int, int], picture_box: Box,
           card: Image.Image | None) -> _Scene:
        captions = [o for o in map(Overlay.of, layers.captions.values()) if o is not None]
        return cls(size, Planes.of(layers.background), picture_box, Overlay.of(layers.logo),
                   captions, Planes.of(card) if card is not None else None)

    def lay_over(self, frame: Frame, captions: float) -> None:
        """Lay the logo and the captions (at strength ``captions``) over ``frame``."""
        if self.logo is not None:
            self.logo.over(frame, 1.0)
        for overlay in self.captions:
            overlay.over(frame, captions)


# -- motion ----------------------------------------------------------------------------------


def _lerp(a: Window, b: Window, p: float) -> Window:
    return (a[0] + (b[0] - a[0]) * p, a[1] + (b[1] - a[1]) * p,
            a[2] + (b[2] - a[2]) * p, a[3] + (b[3] - a[3]) * p)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(value, high)) if low <= high else low


def _keep(subject: Box | None, base: Window, width: float, height: float) -> Window | None:
    """What every window must contain: the subject with a margin when the window has room
    for it, else the bare subject (clipped to ``base``)."""
    if subject is None:
        return None
    margin_x = (subject[2] - subject[0]) * crop.SUBJECT_MARGIN
    margin_y = (subject[3] - subject[1]) * crop.SUBJECT_MARGIN
    grown = (subject[0] - margin_x, subject[1] - margin_y, subject[2] + margin_x,
             subject[3] + margin_y)
    keep = grown if (grown[2] - grown[0] <= width and grown[3] - grown[1] <= height) \
        else (float(subject[0]), float(subject[1]), float(subject[2]), float(subject[3]))
    return (max(keep[0], base[0]), max(keep[1], base[1]), min(keep[2], base[2]),
            min(keep[3], base[3]))


def _tight_size(base: Window, subject: Box | None, amount: float) -> tuple[float, float]:
    """The size of a window ``1 + amount`` times smaller than ``base``, or as much smaller as
    the subject (with its margin when it fits) allows."""
    base_w, base_h = base[2] - base[0], base[3] - base[1]
    aspect = base_w / base_h
    width = base_w / (1 + amount)
    if subject is not None:
        bare = max(subject[2] - subject[0], (subject[3] - subject[1]) * aspect)
        with_margin = bare * (1 + 2 * crop.SUBJECT_MARGIN)
        width = min(base_w, max(width, with_margin if with_margin <= base_w else bare))
    return width, width / aspect


def _steps(low: float, high: float, count: int = 7) -> list[float]:
    if high - low < 0.5:
        return [low]
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def _candidates(base: Window, subject: Box | None, motion: Motion, amount: float
                ) -> Iterator[tuple[Window, Window]]:
    """First and last windows for ``motion``, best first: the smaller window centred on the
    subject, then shifted off centre. All lie inside ``base`` and hold the subject."""
    if motion == "none" or amount <= 0:
        yield base, base
        return
    width, height = _tight_size(base, subject, amount)
    keep = _keep(subject, base, width, height)
    x_lo, x_hi, y_lo, y_hi = base[0], base[2] - width, base[1], base[3] - height
    if keep is not None:
        x_lo, x_hi = max(x_lo, keep[2] - width), min(x_hi, keep[0])
        y_lo, y_hi = max(y_lo, keep[3] - height), min(y_hi, keep[1])
    x_hi, y_hi = max(x_lo, x_hi), max(y_lo, y_hi)
    centre = keep or base
    x0 = _clamp((centre[0] + centre[2] - width) / 2, x_lo, x_hi)
    y0 = _clamp((centre[1] + centre[3] - height) / 2, y_lo, y_hi)
    ys = sorted(_steps(y_lo, y_hi), key=lambda y: abs(y - y0))
    if motion in ("pan_left", "pan_right"):
        for y in [y0, *ys]:
            left = (x_lo, y, x_lo + width, y + height)
            right = (x_hi, y, x_hi + width, y + height)
            yield (left, right) if motion == "pan_right" else (right, left)
        return
    spots = sorted(((x, y) for x in _steps(x_lo, x_hi) for y in ys),
                   key=lambda p: (p[0] - x0) ** 2 + (p[1] - y0) ** 2)
    for x, y in [(x0, y0), *spots]:
        tight = (x, y, x + width, y + height)
        yield (base, tight) if motion == "zoom_in" else (tight, base)


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _clear(start: Window, end: Window, subject: Box | None, avoid: Sequence[Box],
           picture_box: Box) -> bool:
    """Whether the subject stays off every ``avoid`` box (canvas pixels) all along the move."""
    if subject is None or not avoid:
        return True
    size = (picture_box[2] - picture_box[0], picture_box[3] - picture_box[1])
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        mapped = crop.map_box(subject, _lerp(start, end, p), size)
        moved = (mapped[0] + picture_box[0], mapped[1] + picture_box[1],
                 mapped[2] + picture_box[0], mapped[3] + picture_box[1])
        if any(_overlaps(moved, box) for box in avoid):
            return False
    return True


def plan_motion(base: Window, subject: Box | None, motion: Motion, amount: float, *,
                picture_box: Box, avoid: Sequence[Box] = ()) -> tuple[Window, Window, float]:
    """The first and last crop windows of a Ken Burns ``motion`` over ``base`` (the still
    ad's window, in source pixels) and the amount used.

    Every window in between (linearly interpolated) holds ``subject``; and the subject, as
    drawn in ``picture_box`` of the canvas, never runs into the ``avoid`` boxes (captions and
    logo that the still kept off it): the window is shifted off centre, or the amount reduced
    (to no motion at worst), until it does not."""
    for share in (1.0, 0.75, 0.5, 0.3, 0.15):
        for start, end in _candidates(base, subject, motion, amount * share):
            if _clear(start, end, subject, avoid, picture_box):
                return start, end, amount * share if start != end else 0.0
    return base, base, 0.0


@dataclass(frozen=True)
class _Stage:
    """The part of the source that the motion shows, made once per source picture: ``box``
    (source pixels) made at ``size``, ``scale`` of its pixels to a source pixel; ``box`` None
    keeps the source as it is."""

    box: Window | None = None
    size: tuple[int, int] = (0, 0)
    scale: float = 1.0

    @classmethod
    def of(cls, source: tuple[int, int], windows: Sequence[Window], width: int) -> _Stage:
        """A source of size ``source`` as it is when every window lies inside it and frames
        enlarge it; else the windows' union made once (with crop's blurred backdrop past the
        edges) at the scale of the tightest window, so frames shrink it by at most the
        motion's amount rather than each resampling a large or padded source."""
        left, top = min(w[0] for w in windows), min(w[1] for w in windows)
        right, bottom = max(w[2] for w in windows), max(w[3] for w in windows)
        scale = min(1.0, width / min(w[2] - w[0] for w in windows))
        inside = left >= 0 and top >= 0 and right <= source[0] and bottom <= source[1]
        if inside and scale >= 1.0:
            return cls()
        size = (math.ceil((right - left) * scale), math.ceil((bottom - top) * scale))
        return cls((left, top, left + size[0] / scale, top + size[1] / scale), size, scale)

    def planes(self, source: Image.Image) -> Planes:
        """The stage of ``source``, as planes."""
        if self.box is None:
            return Planes.of(source)
        return Planes.of(crop.render_window(source, self.box, self.size))

    def window(self, window: Window) -> Window:
        """``window`` (source pixels) in the pixels of the stage."""
        if self.box is None:
            return window
        x, y, k = self.box[0], self.box[1], self.scale
        return ((window[0] - x) * k, (window[1] - y) * k, (window[2] - x) * k,
                (window[3] - y) * k)


@dataclass(frozen=True)
class _Sources:
    """The pictures frames are made from (one for a still; made into their stage, as planes,
    once each, on first use) and which one frame ``k`` shows (``index(k)``)."""

    stage: _Stage
    pictures: Sequence[Image.Image]
    index: Callable[[int], int]
    made: dict[int, Planes] = field(default_factory=dict)

    def __call__(self, k: int) -> Planes:
        number = self.index(k)
        planes = self.made.get(number)
        if planes is None:  # two threads may both make it: the same planes
            planes = self.made.setdefault(number, self.stage.planes(self.pictures[number]))
        return planes


# -- the end card ----------------------------------------------------------------------------


def _end_card(placement: Placement, logo: LogoStyle | None, cta: Caption | None,
              colors: Sequence[str], font: Path | None, where: str
              ) -> tuple[Image.Image, dict[str, object]]:
    """The closing card: the logo over the CTA button, centred as a group in the safe area,
    on the first brand colour; the button in the second (or black/white when that would
    vanish into the card), its text in black or white, whichever reads better."""
    parsed = [color.parse_color(c) for c in colors]
    background = parsed[0] if parsed else color.parse_color(DEFAULT_PRIMARY)
    button = parsed[1] if len(parsed) > 1 else background
    if color.contrast(button, background) < 1.5:
        button = color.best_on(background)
    card = Image.new("RGB", placement.size, background)
    scale = min(placement.size)
    margin = max(3, round(0.06 * scale))
    safe = placement.safe.box(*placement.size)
    left, top, right, bottom = (safe[0] + margin, safe[1] + margin, safe[2] - margin,
                                safe[3] - margin)
    width, height = right - left, bottom - top
    gap = round(0.06 * height)
    block = None
    if cta is not None:
        style = textmod.TextStyle(bold=True, min_size=max(9, round(0.03 * scale)),
                                  max_size=max(12, round(0.08 * scale)), max_lines=2,
                                  one_line_first=True, pad_em=(0.9, 0.42))
        box = (left + width // 10, 0, right - width // 10, round(0.22 * height))
        block = textmod.fit_text(cta.text, box, style, font=font, role="cta", where=where,
                                 lang=cta.lang)
    max_w, max_h = 0.6 * width, (0.3 if block else 0.45) * height
    logo_h = resized(logo.path, "logo", max_w, max_h).height if logo is not None else 0
    block_h = block.frame[3] - block.frame[1] if block is not None else 0
    total = logo_h + block_h + (gap if logo_h and block_h else 0)
    y = top + (height - total) // 2
    checks: dict[str, object] = {"end_card_background": color.to_hex(background)}
    if logo is not None:
        placed = place_logo(card, logo, (left, y, right, y + logo_h), max_w, max_h,
                            position="top-center", plate_pad=max(2, margin // 3))
        checks.update({"end_card_logo_box": placed.box, "end_card_logo_variant": placed.variant})
        y += logo_h + gap
    if block is not None:
        block = textmod.shifted(block, 0, y - block.frame[1])
        frame = block.frame
        draw = ImageDraw.Draw(card)
        draw.rounded_rectangle((frame[0], frame[1], frame[2] - 1, frame[3] - 1),
                               radius=max(2, round((frame[3] - frame[1]) * 0.22)), fill=button)
        ink = color.best_on(button)
        textmod.paint_text(card, block, ink)
        checks.update({"end_card_cta_box": frame, "end_card_button": color.to_hex(button),
                       "end_card_cta_color": color.to_hex(ink)})
    return card, checks


# -- frames ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frames:
    """Frame ``k`` of a video, made on its own (so several threads can make frames): the
    picture through the window of the moment (between ``start`` and ``end``) of the source
    of the moment (``source_at(k)``: its stage, as planes), the layers, the crossfade into
    the end card. ``source_at`` None: the picture does not move (the scene's background
    holds it). Each frame goes through ``mark``."""

    scene: _Scene
    timeline: _Timeline
    source_at: Callable[[int], Planes] | None
    start: Window
    end: Window
    mark: Callable[[Image.Image], Image.Image] | None = None
    """Applied to every finished frame, the end card's once: the invisible watermark."""

    @functools.cached_property
    def card_frame(self) -> np.ndarray:
        """The end card's frame, marked (the frames once it is fully in)."""
        assert self.scene.card is not None
        return self._finished(Frame.of(self.scene.card))

    def _finished(self, frame: Frame) -> np.ndarray:
        """The frame's bytes, marked: through RGB (the mark is made for RGB pictures)."""
        if self.mark is not None:
            frame.fill(Planes.of(self.mark(Image.fromarray(frame.to_rgb(), "RGB"))))
        return frame.data

    def __call__(self, k: int) -> np.ndarray:
        """Frame ``k``, as the yuv420p bytes ffmpeg reads."""
        scene, strength = self.scene, self.timeline.card(k)
        if strength >= 1 and scene.card is not None:
            return self.card_frame
        if self.source_at is None:
            frame = Frame.of(scene.background)
        else:
            frame = Frame(scene.size)
            if scene.picture_box != (0, 0, *scene.size):
                frame.fill(scene.background)
            window = _lerp(self.start, self.end, self.timeline.motion(k))
            frame.warp(self.source_at(k), window, scene.picture_box)
        scene.lay_over(frame, self.timeline.caption(k))
        if strength > 0 and scene.card is not None:
            frame.fade_to(scene.card, strength)
        return self._finished(frame)


FRAME_THREADS = 2
"""Threads making frames while ffmpeg encodes (OpenCV lets go of the GIL while it warps and
blends)."""


def _in_order(make: Callable[[int], np.ndarray], count: int, threads: int = FRAME_THREADS
              ) -> Iterator[np.ndarray]:
    """``make(0)`` ... ``make(count - 1)``, made ahead by ``threads`` threads and given in
    order. Errors come through; stopping early cancels the frames not yet made."""
    with ThreadPoolExecutor(threads, thread_name_prefix="adgen-video-frames") as pool:
        pending: collections.deque[Future[np.ndarray]] = collections.deque()
        try:
            for k in range(count):
                pending.append(pool.submit(make, k))
                if len(pending) > 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


# -- encoding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Audio:
    path: Path
    duration: float | None


def _audio(path: Path | None) -> _Audio | None:
    """The jingle, checked: it exists and ffmpeg finds an audio stream in it."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise AssetError(
            f"jingle {str(path)!r} does not exist: check the path (relative paths are resolved "
            "from the campaign file's folder) or remove the audio from the video settings"
        )
    try:
        media = probe_media(path)
    except FFmpegError as exc:
        last = str(exc).splitlines()[-1]
        raise AssetError(f"jingle {str(path)!r} is not a readable audio file ({last}): "
                         "export it again as WAV, MP3, AAC or Ogg") from None
    if media.audio is None:
        raise AssetError(f"jingle {str(path)!r} has no audio stream: export it again as WAV, "
                         "MP3, AAC or Ogg")
    return _Audio(path, media.duration)


def _command(size: tuple[int, int], spec: VideoSpec, crf: int, duration: float,
             audio: _Audio | None, out: Path) -> list[str]:
    """ffmpeg's arguments (without the binary): raw yuv420p frames (BT.709, limited range:
    :mod:`adgen.post.planes`) on stdin, the jingle looped, trimmed and faded, out to an
    ad-platform MP4."""
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="yuv420p",
                         s=f"{size[0]}x{size[1]}", framerate=spec.fps, color_range="tv",
                         colorspace="bt709")
    streams = [video]
    options: dict[str, object] = {
        "c:v": "libx264", "profile:v": "high", "preset": spec.preset, "crf": crf,
        "pix_fmt": "yuv420p", "fps_mode": "cfr", "r": spec.fps, "colorspace": "bt709",
        "color_primaries": "bt709", "color_trc": "bt709", "color_range": "tv",
        "movflags": "+faststart", "t": f"{duration:.6f}", "format": "mp4",
    }
    if audio is not None:
        fade = min(spec.audio_fade, duration / 2)
        sound = ffmpeg.input(file_url(audio.path), stream_loop=-1).audio
        sound = (sound.filter("atrim", duration=f"{duration:.6f}")
                 .filter("asetpts", "PTS-STARTPTS")
                 .filter("afade", t="out", st=f"{duration - fade:.6f}", d=f"{fade:.6f}"))
        streams.append(sound)
        options.update({"c:a": "aac", "b:a": str(AUDIO_BITRATE), "ar": 48000, "ac": 2})
    command = ffmpeg.output(*streams, file_url(out), **options).overwrite_output()
    return [*QUIET, *command.compile(cmd="ffmpeg")[1:]]


def _filters(args: list[str]) -> str:
    return args[args.index("-filter_complex") + 1] if "-filter_complex" in args else ""


def _encode(frames: _Frames, size: tuple[int, int], spec: VideoSpec, duration: float,
            audio: _Audio | None, where: str) -> tuple[bytes, dict[str, object]]:
    """Encode the frames at ``spec.crf``; over the byte budget, again at higher CRFs (guessed
    from the sizes reached: about half the bytes per 6 CRF) until it fits."""
    tries: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory(prefix="adgen-video-") as folder:
        out = Path(folder) / "video.mp4"

        def encode(crf: int) -> bytes:
            args = _command(size, spec, crf, duration, audio, out)
            with FramePipe(args, what=f"encoding the video for {where}") as pipe:
                pipe.write_all(f.data for f in _in_order(frames, frames.timeline.frames))
            data = out.read_bytes()
            tries.append((crf, len(data)))
            return data

        crf = spec.crf
        best = data = encode(crf)
        budget = spec.max_bytes
        if budget is not None and len(data) > budget:
            best_crf, too_big = None, crf
            while len(tries) < BUDGET_TRIES:
                ceiling = best_crf - 1 if best_crf is not None else spec.max_crf
                if ceiling <= too_big:
                    break
                guess = crf + math.ceil(6 * math.log2(len(data) / (0.97 * budget)))
                crf = min(max(guess, too_big + 1), ceiling)
                data = encode(crf)
                if len(data) <= budget:
                    best, best_crf = data, crf
                else:
                    too_big = crf
            if best_crf is None:
                raise _over_budget(size, where, budget, tries, duration, audio)
            crf = best_crf
        checks: dict[str, object] = {"crf": crf, "crf_tries": tries, "bytes": len(best),
                                     "preset": spec.preset,
                                     "filters": _filters(_command(size, spec, crf, duration,
                                                                  audio, out))}
        return best, checks


def _over_budget(size: tuple[int, int], where: str, budget: int, tries: list[tuple[int, int]],
                 duration: float, audio: _Audio | None) -> PostProcessError:
    crf, smallest = min(tries, key=lambda t: t[1])
    sound = ""
    if audio is not None:
        sound = (f", about {round(AUDIO_BITRATE / 8 * duration):,} of them audio; or drop the "
                 "jingle")
    return PostProcessError(
        f"cannot encode the {size[0]}x{size[1]} video for {where} within {budget:,} bytes: "
        f"the smallest file reached is {smallest:,} bytes (CRF {crf}{sound}); raise max_bytes, "
        "shorten the video, lower its fps or raise max_crf"
    )


# -- public API ------------------------------------------------------------------------------


def _even(placement: Placement) -> Placement:
    """The placement with even sides (yuv420p needs them): odd sides lose one pixel."""
    width, height = placement.width - placement.width % 2, placement.height - placement.height % 2
    if (width, height) == placement.size:
        return placement
    return dataclasses.replace(placement, width=width, height=height)


def _check(placement: Placement, spec: VideoSpec) -> tuple[Placement, str, _Audio | None]:
    ffmpeg_exe()  # fail early, with the install hint, when there is no ffmpeg
    where = f"placement {placement.name!r} ({placement.width}x{placement.height})"
    if spec.max_duration is not None and spec.duration > spec.max_duration + 1e-9:
        raise PostProcessError(
            f"the video for {where} would last {spec.duration:g} s, more than the "
            f"placement's limit of {spec.max_duration:g} s: set the video duration to at "
            f"most {spec.max_duration:g} s"
        )
    return _even(placement), where, _audio(spec.audio)


def _kept_off(composed: Composed) -> list[Box]:
    """The caption boxes (button plates for CTAs) and the logo box that the still ad kept off
    the subject, grown by a small gap: the motion must not bring the subject onto them."""
    subject = composed.checks.get("subject_box")
    boxes = [composed.checks.get(f"plate_{role}", ink)
             for role, ink in composed.caption_boxes.items()]
    boxes += [composed.logo_box] if composed.logo_box is not None else []
    gap = max(2, round(0.01 * min(composed.image.size)))
    grown = [(b[0] - gap, b[1] - gap, b[2] + gap, b[3] + gap) for b in boxes
             if isinstance(b, tuple)]
    if not isinstance(subject, tuple):
        return grown
    return [b for b in grown if not _overlaps(b, subject)]


@dataclass(frozen=True)
class _Brand:
    logo: LogoStyle | None
    captions: Sequence[Caption]
    colors: Sequence[str]
    font: Path | None


def _render(layers: Layers, placement: Placement, brand: _Brand,
            sources: Sequence[Image.Image], source_index: Callable[[int], int],
            subject_box: Box | None, spec: VideoSpec, where: str, audio: _Audio | None
            ) -> tuple[VideoResult, _Timeline]:
    """Steps 3 to 5 for both entry points: motion, end card, frames and encoding.
    ``sources`` are the pictures (one for a still), ``source_index(k)`` frame ``k``'s."""
    composed = layers.composed
    # 3. plan the motion, and make the part of each source it shows once
    size = sources[0].size
    subject = crop.clamp_box(subject_box, size) if subject_box is not None else None
    picture_box = composed.checks["picture_box"]
    assert isinstance(picture_box, tuple)
    start, end, amount = plan_motion(layers.window, subject, spec.motion, spec.motion_amount,
                                     picture_box=picture_box, avoid=_kept_off(composed))
    source_at, shown = None, (start, end)
    if start != end or len(sources) > 1:  # else the still's background holds the picture
        stage = _Stage.of(size, (start, end), picture_box[2] - picture_box[0])
        source_at = _Sources(stage, sources, source_index)
        shown = (stage.window(start), stage.window(end))

    # 4. the end card
    cta = next((c for c in brand.captions if c.role == "cta" and c.text.strip()), None)
    card: Image.Image | None = None
    card_checks: dict[str, object] = {}
    if spec.end_card > 0 and (brand.logo is not None or cta is not None):
        card, card_checks = _end_card(placement, brand.logo, cta, brand.colors, brand.font,
                                      where)
    timeline = _Timeline.of(spec, card is not None)
    scene = _Scene.of(layers, placement.size, picture_box, card)

    # 5. frames, piped to ffmpeg
    duration = timeline.frames / spec.fps
    frames = _Frames(scene, timeline, source_at, *shown, spec.mark)
    data, encoded = _encode(frames, placement.size, spec, duration, audio, where)
    checks: dict[str, object] = {
        **composed.checks, "logo_box": composed.logo_box,
        "caption_boxes": composed.caption_boxes, "size": placement.size,
        "motion": spec.motion if start != end else "none", "motion_amount": round(amount, 3),
        "window_start": tuple(round(v, 2) for v in start),
        "window_end": tuple(round(v, 2) for v in end),
        "caption_in": timeline.caption_in, "caption_out": timeline.caption_out,
        "end_card_start": timeline.card_start / spec.fps if card is not None else None,
        **card_checks, **encoded,
        "audio": str(audio.path) if audio is not None else None,
        "audio_looped": bool(audio and audio.duration and audio.duration < duration),
    }
    return VideoResult(data, duration, float(spec.fps), timeline.frames, checks), timeline


def still_to_video(image: Image.Image, placement: Placement, *, subject_box: Box | None = None,
                   logo: LogoStyle | None = None, captions: Sequence[Caption] = (),
                   colors: Sequence[str] = (), font: Path | None = None,
                   spec: VideoSpec = VideoSpec()) -> VideoResult:
    """A video ad for ``placement`` from one rendered still: a slow zoom or pan that keeps
    ``subject_box`` (in ``image`` pixels) whole, the logo and the captions laid out as
    :func:`~adgen.post.image.compose` lays them out (captions timed), then the end card.
    Odd placement sides are rounded down to even (H.264 in yuv420p needs them)."""
    # 1. check inputs
    placement, where, audio = _check(placement, spec)
    source = image if image.mode == "RGB" else image.convert("RGB")
    # 2. lay out the first frame
    layers = compose_layers(source, placement, subject_box=subject_box, logo=logo,
                            captions=captions, colors=colors, font=font)
    brand = _Brand(logo, captions, colors, font)
    return _render(layers, placement, brand, [source], lambda _k: 0, subject_box, spec, where,
                   audio)[0]


def frames_to_video(frames: Sequence[Image.Image], fps: float, placement: Placement, *,
                    subject_box: Box | None = None, logo: LogoStyle | None = None,
                    captions: Sequence[Caption] = (), colors: Sequence[str] = (),
                    font: Path | None = None, spec: VideoSpec = VideoSpec()) -> VideoResult:
    """A video ad for ``placement`` from generated ``frames`` (a text-to-video model's, at
    ``fps``): each frame cropped like the still ad (keeping ``subject_box``, given in frame
    pixels, whole), re-timed to ``spec.fps``, with logo, timed captions and the end card.
    The clip plays once from the start; a clip shorter than the video before the end card
    holds its last frame, a longer one is cut. ``spec.motion`` still applies (use "none"
    for clips that move on their own)."""
    # 1. check inputs
    if not frames:
        raise PostProcessError("frames_to_video got no frames: give at least one frame")
    if fps <= 0:
        raise PostProcessError(f"frame rate {fps} of the generated frames must be positive")
    size = frames[0].size
    odd = next((i for i, f in enumerate(frames) if f.size != size), None)
    if odd is not None:
        raise PostProcessError(
            f"frame {odd} is {frames[odd].width}x{frames[odd].height} but frame 0 is "
            f"{size[0]}x{size[1]}: all generated frames must have the same size"
        )
    placement, where, audio = _check(placement, spec)
    rgb = [f if f.mode == "RGB" else f.convert("RGB") for f in frames]

    def source_index(k: int) -> int:
        return min(len(rgb) - 1, int(k / spec.fps * fps + 1e-6))

    # 2. lay out the first frame
    layers = compose_layers(rgb[0], placement, subject_box=subject_box, logo=logo,
                            captions=captions, colors=colors, font=font)
    brand = _Brand(logo, captions, colors, font)
    result, timeline = _render(layers, placement, brand, rgb, source_index, subject_box, spec,
                               where, audio)
    body, clip = timeline.card_start / spec.fps, len(rgb) / fps
    result.checks.update({"source_frames": len(rgb), "source_fps": fps,
                          "held_s": round(max(0.0, body - clip), 3),
                          "cut_s": round(max(0.0, clip - body), 3)})
    return result
