"""Brand logos: loading (cached, with clear errors), sizing, placing, and keeping them visible.

A logo is judged by the WCAG contrast of its opaque pixels against the pixels it covers (the
median over the logo, so thin outlines do not decide alone). Below 3:1 (the WCAG level for
graphics) the light variant is used when the brand has one and it reads better; otherwise a
plate in white or black goes behind the logo. :class:`PlacedLogo` records which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from adgen.errors import AssetError, PostProcessError
from adgen.post import color

Box = tuple[int, int, int, int]
Position = Literal["top-left", "top-right", "bottom-left", "bottom-right", "top-center",
                   "bottom-center"]
POSITIONS: tuple[str, ...] = get_args(Position)
_MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class LogoStyle:
    """Where and how big the brand logo goes.

    ``path`` is a PNG with alpha (the logo for light backgrounds); ``light_path`` an optional
    light/white variant for dark backgrounds. ``size`` is the logo's width as a share of the
    placement's width (banners clamp it so the logo stays legible and inside the banner);
    ``margin`` is the gap to the safe area's edges, as a share of the placement's shorter side.
    """

    path: Path
    light_path: Path | None = None
    position: Position = "top-right"
    size: float = 0.18
    margin: float = 0.04

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise PostProcessError(
                f"logo position {self.position!r} is not one of {', '.join(POSITIONS)}"
            )
        if not 0.02 <= self.size <= 0.6:
            raise PostProcessError(
                f"logo size {self.size} is out of range: give the logo's width as a share of "
                "the placement's width between 0.02 and 0.6 (e.g. 0.18)"
            )
        if not 0.0 <= self.margin <= 0.2:
            raise PostProcessError(
                f"logo margin {self.margin} is out of range: give a share of the placement's "
                "shorter side between 0 and 0.2 (e.g. 0.04)"
            )


@dataclass(frozen=True)
class PlacedLogo:
    """The logo's box, its variant (``dark``: ``path``, ``light``: ``light_path``), whether a
    plate goes behind it (its box and colour if so), the contrast it reached and the scaled
    logo ``image`` to paste (:func:`paint_logo`)."""

    box: Box
    variant: Literal["dark", "light"]
    plate: Box | None
    contrast: float
    plate_color: color.RGB | None = None
    image: Image.Image | None = dataclasses.field(default=None, compare=False, repr=False)


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def load_brand_image(path: Path, *, what: str) -> Image.Image:
    """Load a brand image (``what`` names it in errors: "logo", "light logo", ...) as RGBA.

    Raises :class:`AssetError` naming the file when it is missing, unreadable, empty or
    fully transparent. Loads are cached by path and modification time; a copy is returned."""
    return _load(Path(path), what).copy()


def _load(path: Path, what: str) -> Image.Image:
    if not path.is_file():
        raise AssetError(
            f"{what} {str(path)!r} does not exist: check the path (relative paths are resolved "
            f"from the campaign file's folder) or remove the {what} from the brand settings"
        )
    return _load_cached(*_stamp(path), what)


@lru_cache(maxsize=32)
def _load_cached(path: str, _mtime: int, _size: int, what: str) -> Image.Image:
    try:
        with Image.open(path) as opened:
            if opened.width * opened.height > _MAX_PIXELS:
                raise AssetError(
                    f"{what} {path!r} is {opened.width}x{opened.height} px, too large: "
                    "export it at most 4000 px on its longer side"
                )
            image = opened.convert("RGBA")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        raise AssetError(
            f"{what} {path!r} is not a readable image ({exc}): export it again as a PNG with "
            "a transparent background"
        ) from None
    bbox = image.getchannel("A").getbbox()
    if bbox is None:
        raise AssetError(
            f"{what} {path!r} is fully transparent: export it again with the logo visible"
        )
    return image.crop(bbox)  # trim transparent borders so sizes and margins are exact


def fit_size(size: tuple[int, int], max_w: float, max_h: float) -> tuple[int, int]:
    """The largest size with the aspect of ``size`` within ``max_w`` x ``max_h``."""
    scale = min(max_w / size[0], max_h / size[1])
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resized(path: Path, what: str, max_w: float, max_h: float) -> Image.Image:
    """The logo at ``path`` scaled (Lanczos) to fit ``max_w`` x ``max_h``, cached."""
    source = _load(path, what)
    return _resized_cached(*_stamp(path), what, fit_size(source.size, max_w, max_h))


@lru_cache(maxsize=256)
def _resized_cached(path: str, mtime: int, size: int, what: str, target: tuple[int, int]
                    ) -> Image.Image:
    source = _load_cached(path, mtime, size, what)
    return source.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


_MIRROR: dict[Position, Position] = {
    "top-left": "top-right", "top-right": "top-left", "bottom-left": "bottom-right",
    "bottom-right": "bottom-left", "top-center": "top-center", "bottom-center": "bottom-center",
}


def mirrored(style: LogoStyle) -> LogoStyle:
    """The logo style for a right-to-left layout: left and right corners swapped."""
    return dataclasses.replace(style, position=_MIRROR[style.position])


def anchor(area: Box, size: tuple[int, int], position: str) -> tuple[int, int]:
    """Top-left corner of a ``size`` item at ``position`` inside ``area``; besides the
    :data:`POSITIONS`, ``middle-left`` and ``middle-right`` centre it vertically (banners)."""
    vertical, horizontal = position.split("-")
    x = {"left": area[0], "right": area[2] - size[0],
         "center": area[0] + (area[2] - area[0] - size[0]) // 2}[horizontal]
    y = {"top": area[1], "bottom": area[3] - size[1],
         "middle": area[1] + (area[3] - area[1] - size[1]) // 2}[vertical]
    return x, y


def _opaque(logo: Image.Image) -> np.ndarray:
    rgba = np.asarray(logo)
    return rgba[..., 3] >= 128


def logo_contrast(logo: Image.Image, background: Image.Image) -> float:
    """Median WCAG contrast of the logo's opaque pixels against the pixels under them."""
    mask = _opaque(logo)
    if not mask.any():
        return 0.0
    fg = color.luminance(np.asarray(logo)[..., :3][mask])
    bg = color.luminance(np.asarray(background.convert("RGB"))[mask])
    return float(np.median(color.ratio(fg, bg)))


def _plate_color(logo: Image.Image) -> tuple[color.RGB, float]:
    """White or black, whichever the logo's opaque pixels contrast with more (median)."""
    fg = color.luminance(np.asarray(logo)[..., :3][_opaque(logo)])
    options = [(float(np.median(color.ratio(fg, color.color_luminance(c)))), c)
               for c in (color.WHITE, color.BLACK)]
    value, rgb = max(options)
    return rgb, value


def choose_logo(behind: Callable[[Box], Image.Image], style: LogoStyle, area: Box,
                max_w: float, max_h: float, *, position: str | None = None,
                plate_pad: int = 0) -> PlacedLogo:
    """Where the logo goes at ``position`` (default: the style's) inside ``area``, scaled to
    fit ``max_w`` x ``max_h``, and how it stays visible: the light variant or a plate (padded
    by ``plate_pad``) when it would not stand out from what is behind it. ``behind(box)``
    gives the pixels a box of the canvas holds; nothing is painted (:func:`paint_logo`)."""
    where = position or style.position
    variants: list[tuple[Literal["dark", "light"], Image.Image]] = [
        ("dark", resized(style.path, "logo", max_w, max_h))
    ]
    if style.light_path is not None:
        variants.append(("light", resized(style.light_path, "light logo", max_w, max_h)))
    scored = []
    for name, logo in variants:
        x, y = anchor(area, logo.size, where)
        box = (x, y, x + logo.width, y + logo.height)
        scored.append((logo_contrast(logo, behind(box)), name, logo, box))
    value, name, logo, box = scored[0]
    plate, plate_rgb = None, None
    if value < color.GRAPHIC_CONTRAST:
        light = [s for s in scored[1:] if s[0] >= color.GRAPHIC_CONTRAST and s[0] > value]
        if light:
            value, name, logo, box = light[0]
        else:
            plates = [(_plate_color(s[2]), s) for s in scored]
            (plate_rgb, value), (_, name, logo, box) = max(plates, key=lambda p: p[0][1])
            plate = (box[0] - plate_pad, box[1] - plate_pad, box[2] + plate_pad,
                     box[3] + plate_pad)
    return PlacedLogo(box, name, plate, round(value, 2), plate_rgb, logo)


def paint_logo(canvas: Image.Image, placed: PlacedLogo, layer: Image.Image | None = None
               ) -> None:
    """Paint ``placed``'s plate (if any) and logo on ``canvas``; with ``layer`` (RGBA, the
    canvas's size), lay them over it too."""
    assert placed.image is not None
    if placed.plate is not None and placed.plate_color is not None:
        plate = placed.plate
        radius = max(2, round(min(plate[2] - plate[0], plate[3] - plate[1]) * 0.18))
        shape = (plate[0], plate[1], plate[2] - 1, plate[3] - 1)
        ImageDraw.Draw(canvas).rounded_rectangle(shape, radius=radius, fill=placed.plate_color)
        if layer is not None:
            ImageDraw.Draw(layer).rounded_rectangle(shape, radius=radius,
                                                    fill=(*placed.plate_color, 255))
    box = placed.box
    region = canvas.crop(box).convert("RGBA")
    region.alpha_composite(placed.image)
    canvas.paste(region.convert("RGB"), box[:2])
    if layer is not None:
        layer.alpha_composite(placed.image, dest=box[:2])


def place_logo(canvas: Image.Image, style: LogoStyle, area: Box, max_w: float, max_h: float,
               *, position: str | None = None, plate_pad: int = 0) -> PlacedLogo:
    """:func:`choose_logo` on what ``canvas`` shows, then :func:`paint_logo` on it."""
    placed = choose_logo(canvas.crop, style, area, max_w, max_h, position=position,
                         plate_pad=plate_pad)
    paint_logo(canvas, placed)
    return placed
