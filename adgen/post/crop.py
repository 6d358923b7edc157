"""Crops that keep the subject in frame, and the one resize per placement.

A crop is a window over the source picture with the target's aspect ratio. When the renderer
says where the subject is (``subject_box``), the window always contains it: it is centred on
the subject and shifted back inside the picture; if the subject is too wide or too tall for the
aspect, the window grows past the picture's edges and the outside is filled with the picture's
edges continued outwards and blurred (padding, never cutting the subject). Without a subject box,
``smartcrop`` (edges, saturation, skin) chooses where the window goes.

The window is then cut and scaled in one antialiased bicubic resize
(:func:`adgen.post.resample.resample`), so each placement is resampled exactly once; a part of
the output (``region``) can be made alone, with the pixels the whole would have there.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageFilter

from adgen.post.resample import resample

Box = tuple[int, int, int, int]
Window = tuple[float, float, float, float]
"""A source region ``(left, top, right, bottom)`` in float pixels; may reach past the edges."""

SUBJECT_MARGIN = 0.06
"""Breathing room kept around the subject box, as a share of its size on each side."""
_THUMB = 160


@dataclass(frozen=True)
class Framing:
    """How a picture was framed: the source ``window``, whether it needed padding, and where
    the subject ended up in the output picture (``None`` when unknown)."""

    window: Window
    padded: bool
    subject: Box | None


def clamp_box(box: Box, size: tuple[int, int]) -> Box | None:
    """``box`` clipped to an image of ``size``; None when nothing of it is left."""
    left, top = max(0, box[0]), max(0, box[1])
    right, bottom = min(size[0], box[2]), min(size[1], box[3])
    return (left, top, right, bottom) if right > left and bottom > top else None


def _largest(size: tuple[int, int], aspect: float) -> tuple[float, float]:
    """The largest window of ``aspect`` (width / height) inside ``size``."""
    width, height = size
    if width / height > aspect:
        return height * aspect, float(height)
    return float(width), width / aspect


def _place(centre: float, length: float, lo: float, hi: float, extent: float) -> float:
    """Start of a span of ``length`` that contains ``[lo, hi]``: centred on ``centre`` and kept
    inside ``[0, extent]`` when it fits; when it is longer than ``extent``, centred on the
    picture as far as containing ``[lo, hi]`` allows."""
    if length <= extent:
        start, low, high = centre - length / 2, max(hi - length, 0.0), min(lo, extent - length)
    else:
        start, low, high = (extent - length) / 2, hi - length, lo
    return min(max(start, low), high)


def subject_window(size: tuple[int, int], aspect: float, subject: Box, *, zoom: float = 1.0
                   ) -> tuple[Window, bool]:
    """A window of ``aspect`` that contains ``subject``, with a margin around it when there
    is room.

    ``zoom`` in (0, 1] is the smallest share of the largest window to use: 1 shows as much of
    the picture as the aspect allows; smaller values close in on the subject (small banners).
    Returns the window and whether it reaches past the picture (padding needed)."""
    width, height = size
    sub_w, sub_h = subject[2] - subject[0], subject[3] - subject[1]
    max_w, _ = _largest(size, aspect)
    bare_w = max(sub_w, sub_h * aspect)
    padded = bare_w > max_w + 1e-6
    if padded:  # the subject needs more room than the aspect leaves inside the picture
        win_w = bare_w
        centre_x, centre_y = (subject[0] + subject[2]) / 2, (subject[1] + subject[3]) / 2
    else:
        margin_x, margin_y = sub_w * SUBJECT_MARGIN, sub_h * SUBJECT_MARGIN
        left, top = max(0.0, subject[0] - margin_x), max(0.0, subject[1] - margin_y)
        right, bottom = min(width, subject[2] + margin_x), min(height, subject[3] + margin_y)
        need_w = max(right - left, (bottom - top) * aspect)
        win_w = min(max_w, max(need_w, max_w * zoom))
        centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    win_h = win_w / aspect
    x = _place(centre_x, win_w, subject[0], subject[2], width)
    y = _place(centre_y, win_h, subject[1], subject[3], height)
    return (x, y, x + win_w, y + win_h), padded


def salient_window(image: Image.Image, aspect: float) -> Window:
    """The largest window of ``aspect``, placed by ``smartcrop`` on a small thumbnail."""
    width, height = image.size
    win_w, win_h = _largest(image.size, aspect)
    if win_w >= width - 1 and win_h >= height - 1:
        return (0.0, 0.0, float(width), float(height))
    import smartcrop

    scale = _THUMB / max(width, height)
    thumb = image.convert("RGB").resize(
        (max(1, round(width * scale)), max(1, round(height * scale))),
        Image.Resampling.BILINEAR, reducing_gap=2.0,
    )
    crop_w = max(1, int(win_w * scale))
    crop_h = max(1, int(win_h * scale))
    best = smartcrop.SmartCrop().crop(thumb, crop_w, crop_h, min_scale=1.0, step=4)["top_crop"]
    centre_x = (best["x"] + best["width"] / 2) / scale
    centre_y = (best["y"] + best["height"] / 2) / scale
    x = min(max(centre_x - win_w / 2, 0.0), width - win_w)
    y = min(max(centre_y - win_h / 2, 0.0), height - win_h)
    return (x, y, x + win_w, y + win_h)


def backdrop(image: Image.Image, window: Window, size: tuple[int, int]) -> Image.Image:
    """The picture's edges continued over ``window`` (which reaches past them), softly blurred,
    as a small image to be scaled to ``size``: the sky goes on above, the floor below, and
    nothing of the middle (the product) is repeated."""
    import numpy as np

    scale = 48 / max(image.size)
    thumb = np.asarray(image.resize((max(1, round(image.width * scale)),
                                     max(1, round(image.height * scale))),
                                    Image.Resampling.BILINEAR, reducing_gap=2.0))
    out_w = max(1, round(48 * size[0] / max(size)))
    out_h = max(1, round(48 * size[1] / max(size)))
    xs = window[0] + (np.arange(out_w) + 0.5) * (window[2] - window[0]) / out_w
    ys = window[1] + (np.arange(out_h) + 0.5) * (window[3] - window[1]) / out_h
    cols = np.clip((xs * scale).astype(int), 0, thumb.shape[1] - 1)
    rows = np.clip((ys * scale).astype(int), 0, thumb.shape[0] - 1)
    return Image.fromarray(thumb[rows][:, cols]).filter(ImageFilter.GaussianBlur(2.0))


def _intersect(a: Box, b: Box) -> Box | None:
    box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return box if box[2] > box[0] and box[3] > box[1] else None


def visible_part(picture: tuple[int, int], window: Window, size: tuple[int, int]
                 ) -> tuple[Window, Box | None]:
    """The part of ``window`` inside a picture of size ``picture`` (source pixels) and the
    output box it lands in when ``window`` is scaled to ``size``; None for the box when the
    window lies inside the picture (no padding)."""
    width, height = picture
    left, top, right, bottom = window
    src = (max(0.0, left), max(0.0, top), min(float(width), right), min(float(height), bottom))
    if left >= -1e-6 and top >= -1e-6 and right <= width + 1e-6 and bottom <= height + 1e-6:
        return src, None
    scale = size[0] / (right - left)
    return src, (round((src[0] - left) * scale), round((src[1] - top) * scale),
                 round((src[2] - left) * scale), round((src[3] - top) * scale))


def render_window(image: Image.Image, window: Window, size: tuple[int, int], *,
                  fast: bool = False, region: Box | None = None,
                  edges: Image.Image | None = None) -> Image.Image:
    """Cut ``window`` out of ``image`` and scale it to ``size`` in one resize; parts of the
    window past the picture's edges show its edges continued (blurred). ``fast``: bilinear
    rather than bicubic. With ``region`` (a box of the output), only that part of the output
    is made, with the pixels the whole would have there. ``edges``: :func:`backdrop` of the
    same window and size, when the caller has it already (made here otherwise)."""
    area = region or (0, 0, size[0], size[1])
    src, dest = visible_part(image.size, window, size)
    if dest is None:
        return resample(image, src, size, area, fast=fast)
    small = edges or backdrop(image, window, size)  # blurred: bilinear is enough
    out = resample(small, (0.0, 0.0, float(small.width), float(small.height)), size, area,
                   fast=True)
    shown = _intersect(dest, area) if src[2] > src[0] and src[3] > src[1] else None
    if shown is not None:  # the picture over it, where it is
        inner = (shown[0] - dest[0], shown[1] - dest[1], shown[2] - dest[0], shown[3] - dest[1])
        part = resample(image, src, (dest[2] - dest[0], dest[3] - dest[1]), inner, fast=fast)
        out.paste(part, (shown[0] - area[0], shown[1] - area[1]))
    return out


def map_box(box: Box, window: Window, size: tuple[int, int]) -> Box:
    """Where a source ``box`` lands in the output of :func:`render_window` (rounded outwards)."""
    scale_x = size[0] / (window[2] - window[0])
    scale_y = size[1] / (window[3] - window[1])
    return (
        int((box[0] - window[0]) * scale_x),
        int((box[1] - window[1]) * scale_y),
        -int(-((box[2] - window[0]) * scale_x) // 1),
        -int(-((box[3] - window[1]) * scale_y) // 1),
    )


def picture_window(image: Image.Image, size: tuple[int, int], subject_box: Box | None = None,
                   *, zoom: float = 1.0) -> Framing:
    """How :func:`frame_picture` frames ``image`` for ``size``, without making the pixels."""
    aspect = size[0] / size[1]
    subject = clamp_box(subject_box, image.size) if subject_box is not None else None
    if subject is not None:
        window, padded = subject_window(image.size, aspect, subject, zoom=zoom)
    else:
        window, padded = salient_window(image, aspect), False
    mapped = None
    if subject is not None:
        mapped = clamp_box(map_box(subject, window, size), size)
    return Framing(window, padded, mapped)


def frame_picture(image: Image.Image, size: tuple[int, int], subject_box: Box | None = None,
                  *, zoom: float = 1.0) -> tuple[Image.Image, Framing]:
    """Crop (or pad) ``image`` to ``size`` keeping ``subject_box`` whole; one resize."""
    framing = picture_window(image, size, subject_box, zoom=zoom)
    return render_window(image, framing.window, size), framing


def _span(lo: float, hi: float, stage: tuple[float, float], scale: float, extent: float,
          view: float) -> tuple[float, float, float]:
    """For one axis: the window starts that map the subject ``[lo, hi]`` into ``stage`` (output
    px) at ``scale``, intersected with those keeping the window (``view`` output px) inside
    ``[0, extent]``; and the start that centres the subject in the stage."""
    first = max(hi - stage[1] / scale, 0.0)
    last = min(lo - stage[0] / scale, extent - view / scale)
    centred = (lo + hi) / 2 - (stage[0] + stage[1]) / 2 / scale
    return first, last, centred


def stage_window(size: tuple[int, int], out: tuple[int, int], subject: Box, stage: Box
                 ) -> tuple[Window, bool]:
    """A window of ``out``'s aspect over a picture of ``size`` that shows ``subject`` whole
    inside ``stage`` (a box in output pixels), as large as it fits there: the product moved and
    scaled to leave the rest of the placement free. Windows inside the picture are preferred;
    when none can hold the subject in the stage, the window reaches past the picture (padded
    with the picture's edges continued, by :func:`render_window`). Returns the window and
    whether it pads."""
    sub_w, sub_h = max(1, subject[2] - subject[0]), max(1, subject[3] - subject[1])
    stage_w, stage_h = max(1, stage[2] - stage[0]), max(1, stage[3] - stage[1])
    k_max = min(stage_w / sub_w, stage_h / sub_h)
    k_cover = max(out[0] / size[0], out[1] / size[1])
    for step in range(41):
        k = k_max * (1 - step / 40) + k_cover * step / 40 if k_max > k_cover else k_max
        xs = _span(subject[0], subject[2], (stage[0], stage[2]), k, size[0], out[0])
        ys = _span(subject[1], subject[3], (stage[1], stage[3]), k, size[1], out[1])
        if xs[0] <= xs[1] + 1e-6 and ys[0] <= ys[1] + 1e-6:
            x = min(max(xs[2], xs[0]), xs[1])
            y = min(max(ys[2], ys[0]), ys[1])
            return (x, y, x + out[0] / k, y + out[1] / k), False
        if k_max <= k_cover:
            break
    k = k_max  # no window inside the picture holds the subject in the stage: pad
    x = (subject[0] + subject[2]) / 2 - (stage[0] + stage[2]) / 2 / k
    y = (subject[1] + subject[3]) / 2 - (stage[1] + stage[3]) / 2 / k
    return (x, y, x + out[0] / k, y + out[1] / k), True


def stage_framing(image: Image.Image, size: tuple[int, int], subject_box: Box, stage: Box
                  ) -> Framing:
    """How :func:`frame_on_stage` frames ``image``, without making the pixels."""
    subject = clamp_box(subject_box, image.size) or (0, 0, image.width, image.height)
    window, padded = stage_window(image.size, size, subject, stage)
    return Framing(window, padded, clamp_box(map_box(subject, window, size), size))


def frame_on_stage(image: Image.Image, size: tuple[int, int], subject_box: Box, stage: Box
                   ) -> tuple[Image.Image, Framing]:
    """:func:`frame_picture` with the subject moved and scaled into ``stage`` (output px)."""
    framing = stage_framing(image, size, subject_box, stage)
    return render_window(image, framing.window, size), framing
