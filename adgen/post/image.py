"""Turn one rendered picture into one finished ad per placement.

:func:`compose` reads top to bottom as numbered steps:

1. check the inputs (brand colours, captions drawable, brand font readable);
2. plan the layout: near-square and moderately wide/tall placements show the picture full
   bleed; very wide ones (728x90, 320x50, 970x250) put the picture on the left and a panel in
   the brand colour on the right; very tall ones (160x600, 300x600) put the picture on top and
   the panel below;
3. frame the picture, keeping the subject box whole (one resize, see :mod:`adgen.post.crop`);
4. paste the logo inside the safe area, switching to the light variant or adding a plate when
   the background would hide it (:mod:`adgen.post.logo`);
5. fit the captions (:mod:`adgen.post.text`): full bleed, the headline and other captions at
   the top of the safe area and the call to action at the bottom on a button, above and below
   the subject when they keep a good size there; on landscape pictures, in a column beside the
   subject; in banners, in the panel;
6. paint them: each caption in black or white, whichever contrasts more with the pixels behind
   it, with a scrim (in the brand colour when that suffices) where neither reaches WCAG's
   4.5:1; buttons in the brand colour, outlined when they would melt into the picture.

What was decided is recorded in :attr:`Composed.checks` (layout, contrast, colour and size per
caption, scrims, logo variant and plate, captions left out of small banners), so a run can
report it and tests can assert it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from adgen.errors import PostProcessError
from adgen.placements import LayoutKind as Kind
from adgen.placements import Placement, picture_area
from adgen.post import color, crop
from adgen.post import text as textmod
from adgen.post.logo import (
    LogoStyle,
    PlacedLogo,
    anchor,
    choose_logo,
    load_brand_image,
    paint_logo,
    resized,
)

__all__ = ["Caption", "Composed", "Layers", "LogoStyle", "check_captions_drawable", "compose",
           "compose_layers", "load_brand_image"]

Box = tuple[int, int, int, int]

DEFAULT_PRIMARY = "#111111"
BOLD_ROLES = frozenset({"headline", "cta"})
PLATE_CONTRAST = 1.6
"""Below this contrast with the picture around it, a button plate is outlined or recoloured."""
BRAND_SCRIM = 0.85
"""Opacity of a scrim in the brand colour (used when it gives the text 4.5:1 at that)."""


@dataclass(frozen=True)
class Caption:
    """A caption to draw: ``role`` is "headline", "cta" or any other template name; ``lang``
    (a locale such as ``de_DE``) picks the hyphenation rules for words too long for the box."""

    role: str
    text: str
    lang: str = "en"


@dataclass
class Composed:
    """A finished ad: the RGB ``image`` of exactly the placement's size, where the logo and
    each caption's text went, and the decisions taken (``checks``)."""

    image: Image.Image
    logo_box: Box | None
    caption_boxes: dict[str, Box]
    checks: dict[str, object] = field(default_factory=dict)


@dataclass
class Layers:
    """:func:`compose`'s result taken apart, for ads in motion (video).

    ``background`` is the canvas before the logo and captions (the framed picture, and the
    panel of banner layouts); ``logo`` and ``captions`` (one per caption role) are RGBA layers
    of the same size holding what was painted over it: plates, scrims, the logo, the text.
    Laid over ``background`` with ``Image.alpha_composite`` (logo first) they give
    ``composed.image``. ``window`` is the source region shown in the picture box
    (``composed.checks["picture_box"]``)."""

    composed: Composed
    background: Image.Image
    logo: Image.Image | None
    captions: dict[str, Image.Image]
    window: crop.Window


@dataclass
class _LayerSet:
    """Transparent layers that painting mirrors its strokes onto (see :class:`Layers`)."""

    size: tuple[int, int]
    logo: Image.Image | None = None
    captions: dict[str, Image.Image] = field(default_factory=dict)

    def logo_layer(self) -> Image.Image:
        if self.logo is None:
            self.logo = Image.new("RGBA", self.size, (0, 0, 0, 0))
        return self.logo

    def caption(self, role: str) -> Image.Image:
        if role not in self.captions:
            self.captions[role] = Image.new("RGBA", self.size, (0, 0, 0, 0))
        return self.captions[role]


@dataclass(frozen=True)
class _Plan:
    kind: Kind
    picture: Box
    panel: Box | None
    content: Box
    margin: int
    scale: int
    canvas: tuple[int, int]
    zoom: float = 1.0
    """The smallest share of the largest window that framing may close in to (banners)."""


@dataclass(frozen=True)
class _Palette:
    primary: color.RGB
    accent: color.RGB


@dataclass(frozen=True)
class _Text:
    """A fitted caption waiting to be painted; ``plate`` is a button colour (CTA)."""

    role: str
    block: textmod.TextBlock
    plate: color.RGB | None = None


@dataclass(frozen=True)
class _Canvas:
    """A placement's canvas before anything is painted on it: the brand colour, with the
    picture framed (``framing``) into the plan's picture box. Layouts read a few of its pixels
    while they are tried (:meth:`pixels`: what is behind the logo); only the layout kept has
    its canvas made whole (:meth:`render`), so each ad costs one resample of the render."""

    source: Image.Image
    plan: _Plan
    framing: crop.Framing
    fill: color.RGB

    @property
    def _size(self) -> tuple[int, int]:
        box = self.plan.picture
        return box[2] - box[0], box[3] - box[1]

    @functools.cached_property
    def _edges(self) -> Image.Image | None:
        """The blurred backdrop past the render's edges (made once), when the window needs it."""
        if crop.visible_part(self.source.size, self.framing.window, self._size)[1] is None:
            return None
        return crop.backdrop(self.source, self.framing.window, self._size)

    def _picture(self, region: Box | None = None) -> Image.Image:
        return crop.render_window(self.source, self.framing.window, self._size, region=region,
                                  edges=self._edges)

    def pixels(self, box: Box) -> Image.Image:
        """The canvas's pixels in ``box``, made alone."""
        out = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), self.fill)
        picture = self.plan.picture
        shown = _intersect(box, picture)
        if shown[2] > shown[0] and shown[3] > shown[1]:
            region = _offset(shown, (-picture[0], -picture[1], 0, 0))
            out.paste(self._picture(region), (shown[0] - box[0], shown[1] - box[1]))
        return out

    def render(self, regions: Sequence[Box] | None = None) -> Image.Image:
        """The whole canvas; with ``regions``, only their pixels (the brand colour around)."""
        if regions is not None:
            canvas = Image.new("RGB", self.plan.canvas, self.fill)
            for box in regions:
                canvas.paste(self.pixels(box), box[:2])
            return canvas
        picture = self._picture()
        if self.plan.picture == (0, 0, *self.plan.canvas):
            return picture
        canvas = Image.new("RGB", self.plan.canvas, self.fill)
        canvas.paste(picture, self.plan.picture[:2])
        return canvas


@dataclass
class _Context:
    """What a layout function needs: the canvas (see :class:`_Canvas`), the plan, the brand
    and the captions."""

    canvas: _Canvas
    plan: _Plan
    logo: LogoStyle | None
    captions: list[Caption]
    palette: _Palette
    subject: Box | None
    font: Path | None
    where: str

    def fit(self, caption: Caption, box: Box, style: textmod.TextStyle) -> textmod.TextBlock:
        return textmod.fit_text(caption.text, box, style, font=self.font, role=caption.role,
                                where=self.where, lang=caption.lang)

    def split(self) -> tuple[Caption | None, list[Caption], Caption | None]:
        headline = next((c for c in self.captions if c.role == "headline"), None)
        cta = next((c for c in self.captions if c.role == "cta"), None)
        others = [c for c in self.captions if c.role not in ("headline", "cta")]
        return headline, others, cta


@dataclass
class _Layout:
    """What a layout function decided: the logo it pasted, the captions to paint and the
    secondary captions it left out for lack of room (small banners only)."""

    logo: PlacedLogo | None
    texts: list[_Text]
    omitted: list[str] = field(default_factory=list)
    arrangement: str = ""


def _paint(canvas: Image.Image, texts: list[_Text], logo_box: Box | None,
           brand: color.RGB | None, layers: _LayerSet | None = None
           ) -> tuple[dict[str, Box], dict[str, object]]:
    """Paint the captions: first scrims where neither black nor white reaches 4.5:1 on the
    picture, then button plates, then the text in the colour that contrasts most with what
    is now behind it. Scrims never reach into another caption or the logo. With ``layers``,
    each caption's strokes are mirrored onto its own layer too."""
    frames = [t.block.frame for t in texts] + ([logo_box] if logo_box else [])
    own = {t.role: layers.caption(t.role) if layers is not None else None for t in texts}
    scrims: dict[str, Box] = {}
    for item in texts:
        zone = None if item.plate is not None else _needs_scrim(
            canvas, item.block, frames, brand, own[item.role])
        if zone is not None:
            scrims[item.role] = zone
    draw = ImageDraw.Draw(canvas)
    boxes: dict[str, Box] = {}
    checks: dict[str, object] = {}
    for item in texts:
        block = item.block
        if item.plate is not None:
            plate = _draw_plate(canvas, draw, block.frame, item.plate, branded=brand is not None,
                                layer=own[item.role])
            fill = color.best_on(plate)
            value = color.contrast(fill, plate)
            checks[f"plate_{item.role}"] = block.frame
            checks[f"plate_color_{item.role}"] = color.to_hex(plate)
        else:  # read against its own surroundings, not another caption's scrim
            others = frames + [zone for role, zone in scrims.items() if role != item.role]
            behind = color.region_pixels(canvas, _measure_box(canvas, block, others))
            fill, value = color.best_text_color(color.luminance(behind))
        textmod.paint_text(canvas, block, fill)
        layer = own[item.role]
        if layer is not None:
            textmod.paint_text(layer, block, fill)
        boxes[item.role] = block.ink
        checks.update({
            f"contrast_{item.role}": round(value, 2),
            f"color_{item.role}": color.to_hex(fill),
            f"size_{item.role}": block.size,
            f"scrim_{item.role}": item.role in scrims,
        })
    checks["scrim"] = bool(scrims)
    hyphenated = [item.role for item in texts if item.block.hyphenated]
    if hyphenated:
        checks["hyphenated"] = hyphenated
    return boxes, checks


def _read_by_paint(layout: _Layout, plan: _Plan) -> list[Box]:
    """The canvas boxes whose pixels painting reads: behind the logo (and its plate), and
    around each caption as far as its scrim, button outline or contrast check reaches."""
    boxes = [layout.logo.plate or layout.logo.box] if layout.logo is not None else []
    for item in layout.texts:
        reach = max(4, math.ceil(item.block.size * 0.3)) + 1
        boxes.append(_grow(item.block.frame, reach, plan.canvas))
    return boxes


def _draw_plate(canvas: Image.Image, draw: ImageDraw.ImageDraw, frame: Box, plate: color.RGB,
                *, branded: bool, layer: Image.Image | None = None) -> color.RGB:
    """Draw a button plate. When it would melt into the picture around it (contrast below
    :data:`PLATE_CONTRAST`), an unbranded plate turns white or black, and a brand-coloured one
    gets a white or black outline. Returns the plate's colour."""
    around = color.luminance(color.region_pixels(canvas, _grow(frame, 4, canvas.size)))
    backdrop = float(np.median(around)) if around.size else 0.0
    edge = color.WHITE if color.ratio(1.0, backdrop) >= color.ratio(0.0, backdrop) else color.BLACK
    outline = None
    if float(color.ratio(color.color_luminance(plate), backdrop)) < PLATE_CONTRAST:
        if branded:
            outline = edge
        else:
            plate = edge
    radius = max(2, round((frame[3] - frame[1]) * 0.22))
    width = max(2, round((frame[3] - frame[1]) * 0.05))
    draw.rounded_rectangle((frame[0], frame[1], frame[2] - 1, frame[3] - 1), radius=radius,
                           fill=plate, outline=outline, width=width if outline else 0)
    if layer is not None:
        ImageDraw.Draw(layer).rounded_rectangle(
            (frame[0], frame[1], frame[2] - 1, frame[3] - 1), radius=radius, fill=(*plate, 255),
            outline=(*outline, 255) if outline else None, width=width if outline else 0,
        )
    return plate


def _measure_box(canvas: Image.Image, block: textmod.TextBlock, frames: list[Box]) -> Box:
    """The pixels that the text is read against: its frame plus 0.15 em around it."""
    grown = _grow(block.frame, round(block.size * 0.15), canvas.size)
    return _trim(grown, block.frame, frames)


def _needs_scrim(canvas: Image.Image, block: textmod.TextBlock, frames: list[Box],
                 brand: color.RGB | None, layer: Image.Image | None = None) -> Box | None:
    """Veil the picture behind ``block`` when neither black nor white text reaches 4.5:1 on
    it: in the ``brand`` colour (at :data:`BRAND_SCRIM` opacity) when that is enough, else in
    black or white, as little as will do. Returns the veiled box, or None."""
    pixels = color.region_pixels(canvas, _measure_box(canvas, block, frames))
    _, value = color.best_text_color(color.luminance(pixels))
    if value >= color.TEXT_CONTRAST:
        return None
    options = []
    for text_rgb, veil in ((color.WHITE, color.BLACK), (color.BLACK, color.WHITE)):
        alpha = color.scrim_alpha(pixels, text_rgb, veil)
        if alpha is not None:
            options.append((alpha, veil))
    alpha, veil = min(options)
    if brand is not None:  # a band in the brand colour looks designed, a faint veil does not
        brand_alpha = color.scrim_alpha(pixels, color.best_on(brand), brand)
        if brand_alpha is not None and brand_alpha <= BRAND_SCRIM:
            alpha, veil = max(brand_alpha, BRAND_SCRIM), brand
    zone = _trim(_grow(block.frame, round(block.size * 0.3), canvas.size), block.frame, frames)
    region = canvas.crop(zone).convert("RGBA")
    overlay = Image.new("RGBA", region.size, (0, 0, 0, 0))
    ImageDraw.Draw(overlay).rounded_rectangle(
        (0, 0, region.width - 1, region.height - 1), radius=round(block.size * 0.25),
        fill=(*veil, min(255, math.ceil(alpha * 255) + 2)),
    )
    region.alpha_composite(overlay)
    canvas.paste(region.convert("RGB"), zone[:2])
    if layer is not None:
        layer.alpha_composite(overlay, dest=zone[:2])
    return zone


# -- public API ------------------------------------------------------------------------------


def check_captions_drawable(captions: Sequence[Caption], font: Path | None = None) -> None:
    """Raise :class:`PostProcessError` if a caption has characters that neither the brand
    ``font`` nor the bundled fonts can draw (they would come out as empty boxes)."""
    if font is not None:
        textmod.check_font(font)
    for caption in captions:
        chain = textmod.font_chain(font, bold=caption.role in BOLD_ROLES)
        missing = textmod.missing_characters(caption.text, chain)
        if not missing:
            continue
        listed = ", ".join(f"{textmod.describe_char(c)} at position {i}" for i, c in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        emoji = any(ord(c) >= 0x1F000 for _, c in missing)
        hint = " (colour emoji are not supported in captions)" if emoji else ""
        raise PostProcessError(
            f"caption {caption.role!r} has characters that no available font can draw: "
            f"{listed}{more}{hint}; remove them, or set a brand font that has them (the bundled "
            "fonts cover Latin, Greek, Cyrillic, Arabic, Hebrew, Chinese, Japanese and Korean)"
        )


def compose(image: Image.Image, placement: Placement, *, subject_box: Box | None = None,
            logo: LogoStyle | None = None, captions: Sequence[Caption] = (),
            colors: Sequence[str] = (), font: Path | None = None) -> Composed:
    """Compose the finished ad for ``placement`` from a rendered ``image``.

    ``subject_box`` (in ``image`` pixels) is kept whole in the frame. ``colors`` are brand
    colours: the first paints banner panels (and buttons), the second, when given, buttons.
    ``font`` is a brand font used before the bundled ones."""
    return _compose(image, placement, subject_box, logo, captions, colors, font, None)[0]


def compose_layers(image: Image.Image, placement: Placement, *, subject_box: Box | None = None,
                   logo: LogoStyle | None = None, captions: Sequence[Caption] = (),
                   colors: Sequence[str] = (), font: Path | None = None,
                   sparse: bool = False) -> Layers:
    """:func:`compose`, also returning the background and the logo and caption layers apart
    (:class:`Layers`), so a video can move the picture under them and time each layer.
    Every decision (layout, colours, scrims, logo variant) is the one :func:`compose` takes.

    ``sparse``: the picture is left to the caller (the GPU path makes it): only the pixels
    that the decisions read, behind the logo and around each caption, are made, and
    ``background`` and ``composed.image`` show the brand colour elsewhere."""
    layers = _LayerSet(placement.size)
    composed, background, window = _compose(image, placement, subject_box, logo, captions,
                                            colors, font, layers, sparse)
    assert background is not None
    return Layers(composed, background, layers.logo, layers.captions, window)


def _compose(image: Image.Image, placement: Placement, subject_box: Box | None,
             logo: LogoStyle | None, captions: Sequence[Caption], colors: Sequence[str],
             font: Path | None, layers: _LayerSet | None, sparse: bool = False
             ) -> tuple[Composed, Image.Image | None, crop.Window]:
    """The steps of :func:`compose`; with ``layers``, also the background and the window
    (``sparse``: see :func:`compose_layers`)."""
    # 1. check inputs
    palette = _palette(colors)
    items = _captions(captions)
    check_captions_drawable(items, font)
    source = image if image.mode == "RGB" else image.convert("RGB")
    where = f"placement {placement.name!r} ({placement.width}x{placement.height})"

    # 2. plan the layout
    plan = _plan(placement, logo.margin if logo is not None else 0.04)

    # 3. frame the picture, 4. place the logo, 5. fit the captions, all off the subject: as
    #    rendered; else with the subject moved and scaled into a stage that leaves room for
    #    them; else with the captions on a band in the brand colour
    tries: list[tuple[str, _Plan]] = [("as rendered" if plan.kind == "full" else "panel", plan)]
    if plan.kind == "full":
        if subject_box is not None:
            tries.append(("staged", plan))
        tries.append(("band", _band_plan(placement, plan)))
    for number, (arrangement, current) in enumerate(tries):
        framing = _framing(source, current, subject_box, staged=arrangement == "staged",
                           logo=logo)
        subject = _offset(framing.subject, current.picture) if framing.subject else None
        context = _Context(_Canvas(source, current, framing, palette.primary), current, logo,
                           items, palette, subject, font, where)
        last = number == len(tries) - 1
        if current.kind == "full":
            layout = _layout_full(context)
        else:
            layout = {"wide": _layout_wide, "tall": _layout_tall}[current.kind](context)
        if layout is not None or last:
            break
    assert layout is not None
    plan = current

    # 6. paint: the picture (its one resample), the logo, the captions
    canvas = context.canvas.render(_read_by_paint(layout, plan) if sparse else None)
    background = canvas.copy() if layers is not None else None
    if layout.logo is not None:
        paint_logo(canvas, layout.logo, layers.logo_layer() if layers is not None else None)
    logo_box = layout.logo.box if layout.logo else None
    logo_area = (layout.logo.plate or layout.logo.box) if layout.logo else None
    boxes, painted = _paint(canvas, layout.texts, logo_area,
                            palette.primary if colors else None, layers)

    checks: dict[str, object] = {
        "layout": plan.kind,
        "framing": arrangement,
        "arrangement": layout.arrangement or arrangement,
        "picture_box": plan.picture,
        "padded": framing.padded,
        "subject_box": subject,
        "text_layout": "raqm" if textmod.RAQM else "basic",
        "omitted": layout.omitted,
    }
    if layout.logo is not None:
        checks.update({"logo_variant": layout.logo.variant,
                       "logo_plate": layout.logo.plate is not None,
                       "contrast_logo": layout.logo.contrast})
    checks.update(painted)
    return Composed(canvas, logo_box, boxes, checks), background, framing.window


# -- inputs and plan -------------------------------------------------------------------------


def _palette(colors: Sequence[str]) -> _Palette:
    parsed = [color.parse_color(c) for c in colors]
    primary = parsed[0] if parsed else color.parse_color(DEFAULT_PRIMARY)
    return _Palette(primary, parsed[1] if len(parsed) > 1 else primary)


def _captions(captions: Sequence[Caption]) -> list[Caption]:
    seen: set[str] = set()
    out = []
    for caption in captions:
        if caption.role in seen:
            raise PostProcessError(
                f"two captions share the role {caption.role!r}: give each caption its own role"
            )
        seen.add(caption.role)
        text = caption.text.strip()
        if text:
            out.append(Caption(caption.role, text, caption.lang))
    return out


def _plan(placement: Placement, margin_share: float) -> _Plan:
    width, height = placement.size
    scale = min(width, height)
    safe = placement.safe.box(width, height)
    area = picture_area(placement)
    kind, picture, panel = area.kind, area.picture, area.panel
    floor = 0.1 if kind != "full" else 0.0
    margin = max(3, round(scale * max(margin_share, floor)))
    region = _intersect(safe, panel) if panel else safe
    content = (region[0] + margin, region[1] + margin, region[2] - margin, region[3] - margin)
    if content[2] - content[0] < 8 or content[3] - content[1] < 8:
        raise PostProcessError(
            f"placement {placement.name!r} ({width}x{height}) leaves no room for text and logo "
            "inside its safe zone: reduce the logo margin or the safe zone"
        )
    zoom = {"full": 1.0, "wide": 0.6, "tall": 0.85}[kind]
    return _Plan(kind, picture, panel, content, margin, scale, (width, height), zoom)


# -- layouts ---------------------------------------------------------------------------------


def _sizes(scale: int, role: str, kind: Kind) -> tuple[int, int]:
    """(min, max) font size in px for a caption role on a placement of shorter side ``scale``."""
    if role == "headline":
        top = {"full": 0.11, "tall": 0.16, "wide": 0.5}[kind]
        return max(10, round(0.035 * scale)), max(12, round(top * scale))
    if role == "cta":
        top = {"full": 0.05, "tall": 0.09, "wide": 0.3}[kind]
        return max(9, round(0.022 * scale)), max(10, round(top * scale))
    top = {"full": 0.055, "tall": 0.09, "wide": 0.3}[kind]
    return max(9, round(0.025 * scale)), max(10, round(top * scale))


def _style(plan: _Plan, role: str, *, cap: int | None = None, **options: object
           ) -> textmod.TextStyle:
    low, high = _sizes(plan.scale, role, plan.kind)
    if cap is not None:
        high = max(low, min(high, cap))
    extra: dict[str, object] = (
        {"pad_em": (0.9, 0.42), "max_lines": 2, "one_line_first": True} if role == "cta" else {}
    )
    extra.update(options)
    return textmod.TextStyle(bold=role in BOLD_ROLES, min_size=low, max_size=high,
                             line_spacing=1.0 if role in BOLD_ROLES else 1.08,
                             **extra)  # type: ignore[arg-type]


def _button(palette: _Palette, plan: _Plan) -> color.RGB:
    """The CTA plate colour: the accent, unless it would vanish into the panel."""
    if plan.panel is None or color.contrast(palette.accent, palette.primary) >= 1.5:
        return palette.accent
    return color.best_on(palette.primary)


def _framing(source: Image.Image, plan: _Plan, subject_box: Box | None, *, staged: bool,
             logo: LogoStyle | None) -> crop.Framing:
    """How the picture is framed into the plan's picture box. ``staged``: the subject moved
    and scaled into :func:`_stage`."""
    size = (plan.picture[2] - plan.picture[0], plan.picture[3] - plan.picture[1])
    if staged and subject_box is not None:
        return crop.stage_framing(source, size, subject_box, _stage(plan, logo))
    return crop.picture_window(source, size, subject_box, zoom=plan.zoom)


def _stage(plan: _Plan, logo: LogoStyle | None) -> Box:
    """Where a staged subject goes (full-bleed placements): on landscape pictures the right
    half of the content area (the captions take the left); else the middle of it, leaving a
    band above for the headline and other captions, one below for the button, and the logo's
    row at its end."""
    left, top, right, bottom = plan.content
    width, height = right - left, bottom - top
    if (plan.picture[2] - plan.picture[0]) / (plan.picture[3] - plan.picture[1]) >= 1.3:
        return (left + round(0.52 * width), top, right, bottom)
    above, below = round(0.28 * height), round(0.17 * height)
    if logo is not None:
        row = _logo_size(plan, logo, plan.canvas[0])[1] + 2 * _plate_pad(plan) + plan.margin
        if logo.position.startswith("top"):
            above += row
        else:
            below += row
    return (left, top + above, right, bottom - below)


def _band_plan(placement: Placement, plan: _Plan) -> _Plan:
    """The last resort for full-bleed placements: the picture above, and a band in the brand
    colour over the lower third of the safe area (down to the bottom edge) holding logo and
    text side by side, as on a wide banner."""
    width, height = placement.size
    safe = placement.safe.box(width, height)
    band_top = safe[3] - round(0.36 * (safe[3] - safe[1]))
    panel = (0, band_top, width, height)
    region = _intersect(safe, panel)
    margin = plan.margin
    content = (region[0] + margin, region[1] + margin, region[2] - margin, region[3] - margin)
    return _Plan("wide", (0, 0, width, band_top), panel, content, margin, plan.scale,
                 plan.canvas, 1.0)


def _logo_size(plan: _Plan, logo: LogoStyle, canvas_width: int) -> tuple[int, int]:
    """The logo's size on a full-bleed placement."""
    left, top, right, bottom = plan.content
    max_w = min(logo.size * canvas_width, 0.45 * (right - left))
    return resized(logo.path, "logo", max_w, 0.14 * (bottom - top)).size


_NEXT_CORNERS = {
    "top-right": ("top-left", "bottom-right", "bottom-left"),
    "top-left": ("top-right", "bottom-left", "bottom-right"),
    "bottom-right": ("bottom-left", "top-right", "top-left"),
    "bottom-left": ("bottom-right", "top-left", "top-right"),
    "top-center": ("top-left", "top-right", "bottom-center"),
    "bottom-center": ("bottom-left", "bottom-right", "top-center"),
}


def _logo_clear(ctx: _Context, gap: int) -> tuple[bool, PlacedLogo | None]:
    """Paste the logo in the first corner of the content area (its own, then the others)
    where it stays clear of the subject. ``(False, None)`` when no corner is clear."""
    if ctx.logo is None:
        return True, None
    plan = ctx.plan
    left, top, right, bottom = plan.content
    size = _logo_size(plan, ctx.logo, plan.canvas[0])
    pad = _plate_pad(plan)
    for position in (ctx.logo.position, *_NEXT_CORNERS[ctx.logo.position]):
        x, y = anchor(plan.content, size, position)
        box = (x - pad - gap, y - pad - gap, x + size[0] + pad + gap, y + size[1] + pad + gap)
        if ctx.subject is None or not _crosses(box, ctx.subject):
            max_w = min(ctx.logo.size * plan.canvas[0], 0.45 * (right - left))
            return True, choose_logo(ctx.canvas.pixels, ctx.logo, plan.content, max_w,
                                     0.14 * (bottom - top), position=position, plate_pad=pad)
    return False, None


def _layout_full(ctx: _Context) -> _Layout | None:
    """Picture full bleed; the logo in the first corner of the safe area clear of the subject;
    the captions in the free space around the subject: beside it on landscape pictures, else
    the headline (and other captions) above it and the button below, or all above, or all
    below. None when no arrangement keeps every caption off the subject at a good size."""
    plan = ctx.plan
    left, top, right, bottom = plan.content
    gap = max(4, plan.margin // 2)
    clear, placed = _logo_clear(ctx, gap)
    if not clear:
        return None
    if placed is not None:
        logo = placed.plate or placed.box
        if logo[1] - top < bottom - logo[3]:  # the logo is in the top row
            top = logo[3] + gap
        else:
            bottom = logo[1] - gap
    side = _side_column(ctx, placed, gap)
    if side is not None:
        try:
            beside = _column_group(ctx, placed, side)
        except PostProcessError:
            beside = None
        if beside is not None and _good(ctx, beside.texts):
            beside.arrangement = "beside"
            return beside
    headline, others, cta = ctx.split()
    tall = bottom - top
    subject = ctx.subject or (left, top + round(0.36 * tall), right, bottom - round(0.2 * tall))
    above = (left, top, right, subject[1] - gap)
    below = (left, subject[3] + gap, right, bottom)
    group = [c for c in (headline, *others) if c is not None]
    tries: list[tuple[str, list[_Text] | None]] = []
    head = _stack_fit(ctx, group, above)
    if head is not None:
        head_size = next((t.block.size for t in head if t.role == "headline"), None)
        button = _stack_fit(ctx, [cta] if cta else [], below, head_size=head_size)
        tries.append(("above and below", None if button is None else head + button))
    everything = [*group, *([cta] if cta else [])]
    tries += [("above", _stack_fit(ctx, everything, above)),
              ("below", _stack_fit(ctx, everything, below))]
    fitted = [(name, texts) for name, texts in tries if texts is not None]
    for name, texts in fitted:
        if _good(ctx, texts) or (ctx.subject is None and name == "above and below"):
            return _Layout(placed, texts, arrangement=name)
    return None


def _good(ctx: _Context, texts: list[_Text]) -> bool:
    """Whether the captions keep a size that reads well: the headline at least 1.3 times its
    minimum size, the others at least their minimum (full-bleed placements)."""
    for item in texts:
        low = _sizes(ctx.plan.scale, item.role, ctx.plan.kind)[0]
        floor = 1.3 * low if item.role == "headline" else low
        if item.block.size < floor:
            return False
    return True


def _stack_fit(ctx: _Context, captions: Sequence[Caption], box: Box, *,
               head_size: int | None = None) -> list[_Text] | None:
    """``captions`` stacked from the top of ``box``, centred, each in its share of the height
    (headline 0.6, button 0.3, others 0.22); other captions at most 0.6 and the button 0.7 of
    the headline's size. None when one does not fit."""
    if not captions:
        return []
    if box[3] - box[1] < 8 or box[2] - box[0] < 8:
        return None
    plan = ctx.plan
    gap = max(4, plan.margin // 2)
    weights = [{"headline": 0.6, "cta": 0.3}.get(c.role, 0.22) for c in captions]
    cursor, out = box[1], []
    for number, caption in enumerate(captions):
        room = box[3] - cursor
        height = room if number == len(captions) - 1 else round(
            room * weights[number] / sum(weights[number:]))
        cap = None
        if head_size is not None and caption.role != "headline":
            cap = round(head_size * (0.7 if caption.role == "cta" else 0.6))
        block = _try_fit(ctx, caption, (box[0], cursor, box[2], cursor + height),
                         _style(plan, caption.role, cap=cap, valign="top"))
        if block is None:
            return None
        if caption.role == "headline":
            head_size = block.size
        out.append(_Text(caption.role, block,
                         _button(ctx.palette, plan) if caption.role == "cta" else None))
        cursor = block.frame[3] + (gap * 2 if number + 1 < len(captions)
                                   and captions[number + 1].role == "cta" else gap)
    return out


def _crosses(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _try_fit(ctx: _Context, caption: Caption, box: Box, style: textmod.TextStyle
             ) -> textmod.TextBlock | None:
    if box[3] - box[1] < style.min_size or box[2] - box[0] < style.min_size:
        return None
    try:
        return ctx.fit(caption, box, style)
    except PostProcessError:
        return None


def _side_column(ctx: _Context, placed: PlacedLogo | None, gap: int) -> Box | None:
    """On landscape placements, the free side of the picture beside the subject, when it is
    wide enough to hold the text (at least 36% of the content width)."""
    plan, subject = ctx.plan, ctx.subject
    left, top, right, bottom = plan.content
    if subject is None or plan.panel is not None or plan.picture[2] / plan.picture[3] < 1.3:
        return None
    free_left, free_right = subject[0] - gap - left, right - (subject[2] + gap)
    if max(free_left, free_right) < 0.36 * (right - left):
        return None
    use_left = free_left >= free_right
    if abs(free_left - free_right) < 0.1 * (right - left) and ctx.logo is not None:
        use_left = not ctx.logo.position.endswith("left")  # balance the logo's corner
    column = ((left, top, subject[0] - gap, bottom) if use_left
              else (subject[2] + gap, top, right, bottom))
    if placed is not None:
        logo = placed.plate or placed.box
        if logo[0] < column[2] and logo[2] > column[0]:  # the logo is in this column
            if ctx.logo is not None and ctx.logo.position.startswith("top"):
                column = (column[0], logo[3] + gap, column[2], column[3])
            else:
                column = (column[0], column[1], column[2], logo[1] - gap)
    return column


def _column_group(ctx: _Context, placed: PlacedLogo | None, column: Box) -> _Layout:
    """Headline, other captions and the CTA button stacked in ``column``, left-aligned (right
    for right-to-left text) and centred vertically as a group."""
    plan = ctx.plan
    left, top, right, bottom = column
    tall = bottom - top
    gap = max(4, plan.margin // 2)
    headline, others, cta = ctx.split()
    shares = [("headline", 0.42)] if headline else []
    shares += [(c.role, 0.14) for c in others] + ([("cta", 0.16)] if cta else [])
    by_role = {c.role: c for c in ctx.captions}
    fitted: list[_Text] = []
    cursor, head_size = top, None
    for role, share in shares:
        cap = None if head_size is None else round(head_size * (0.7 if role == "cta" else 0.6))
        style = _style(plan, role, cap=cap, align="start")
        if role == "cta":
            width = max(round(0.75 * (right - left)), 1)
            box = (left, cursor, left + width, min(bottom, cursor + round(share * tall)))
        else:
            box = (left, cursor, right, min(bottom, cursor + round(share * tall)))
        block = ctx.fit(by_role[role], box, style)
        if role == "headline":
            head_size = block.size
        fitted.append(_Text(role, block, _button(ctx.palette, plan) if role == "cta" else None))
        cursor = block.frame[3] + (gap * 2 if role != "cta" else gap)
    if fitted:
        used = fitted[-1].block.frame[3] - fitted[0].block.frame[1]
        dy = top + (tall - used) // 2 - fitted[0].block.frame[1]
        fitted = [_Text(t.role, textmod.shifted(t.block, 0, dy), t.plate) for t in fitted]
    return _Layout(placed, fitted)


def _layout_wide(ctx: _Context) -> _Layout:
    """A wide banner: picture on the left, brand panel on the right holding the logo (at the
    end its position names), the headline (and, when there is room, other captions) and the
    CTA button, beside the text on short banners and under it on taller ones."""
    plan = ctx.plan
    left, top, right, bottom = plan.content
    width, height = right - left, bottom - top
    gap = plan.margin
    placed = None
    if ctx.logo is not None:
        side = "right" if ctx.logo.position.endswith("right") else "left"
        max_w = min(max(ctx.logo.size * plan.canvas[0], 0.12 * width), 0.25 * width)
        max_h = height * (0.62 if height < 150 else 0.5)
        placed = choose_logo(ctx.canvas.pixels, ctx.logo, plan.content, max_w, max_h,
                             position=f"middle-{side}", plate_pad=_plate_pad(plan))
        if side == "left":
            left = (placed.plate or placed.box)[2] + gap
        else:
            right = (placed.plate or placed.box)[0] - gap
    headline, others, cta = ctx.split()
    stack = (right - left) / height < 4  # else the button goes beside the text
    texts: list[_Text] = []
    if cta is not None:
        if stack:
            box = (left, bottom - round(0.3 * height), left + round(0.6 * (right - left)), bottom)
            style = _style(plan, "cta", valign="bottom", align="start", cap=round(0.2 * height))
        else:
            style = _style(plan, "cta", valign="center", cap=round(0.3 * height))
            need = textmod.one_line_width(cta.text, style, font=ctx.font)
            box = (right - max(round(0.3 * (right - left)), need), top, right, bottom)
        block = ctx.fit(cta, box, style)
        texts.append(_Text("cta", block, _button(ctx.palette, plan)))
        if stack:
            bottom = block.frame[1] - gap // 2
        else:
            right = block.frame[0] - gap
    column = (left, top, right, bottom)
    return _stack(ctx, texts, placed, headline, others, column, align="start",
                  centre=not stack, head_cap=round((0.32 if stack else 0.5) * height),
                  other_cap=round(0.22 * height))


def _layout_tall(ctx: _Context) -> _Layout:
    """A tall banner: picture on top, brand panel below with the logo (at the panel's top or
    bottom, as its position says), the headline and other captions centred in the room left,
    and the CTA button at the bottom."""
    plan = ctx.plan
    left, top, right, bottom = plan.content
    width = right - left
    gap = max(4, plan.margin // 2)
    placed = None
    if ctx.logo is not None:
        max_w = min(max(ctx.logo.size * plan.canvas[0], 0.45 * width), width)
        placed = choose_logo(ctx.canvas.pixels, ctx.logo, plan.content, max_w,
                             0.1 * plan.canvas[1], plate_pad=_plate_pad(plan))
        if ctx.logo.position.startswith("top"):
            top = (placed.plate or placed.box)[3] + gap * 2
        else:
            bottom = (placed.plate or placed.box)[1] - gap * 2
    headline, others, cta = ctx.split()
    texts: list[_Text] = []
    if cta is not None:
        block = ctx.fit(cta, (left, bottom - round(0.2 * (bottom - top)), right, bottom),
                        _style(plan, "cta", valign="bottom"))
        texts.append(_Text("cta", block, _button(ctx.palette, plan)))
        bottom = block.frame[1] - gap * 2
    return _stack(ctx, texts, placed, headline, others, (left, top, right, bottom),
                  align="center", centre=True, head_cap=None, other_cap=None)


def _stack(ctx: _Context, texts: list[_Text], placed: PlacedLogo | None,
           headline: Caption | None, others: list[Caption], column: Box, *,
           align: Literal["center", "start"], centre: bool, head_cap: int | None,
           other_cap: int | None) -> _Layout:
    """Headline over other captions in a banner's ``column``, centred vertically when
    ``centre``; other captions that do not fit under the headline are left out (recorded),
    as banners are read at a glance."""
    try:
        blocks = _fit_column(ctx, headline, others, column, align, head_cap, other_cap)
        omitted: list[str] = []
    except PostProcessError:
        if not others:
            raise
        blocks = _fit_column(ctx, headline, [], column, align, head_cap, other_cap)
        omitted = [c.role for c in others]
    if centre and blocks:
        used = blocks[-1][1].frame[3] - blocks[0][1].frame[1]
        dy = column[1] + (column[3] - column[1] - used) // 2 - blocks[0][1].frame[1]
        blocks = [(role, textmod.shifted(block, 0, dy)) for role, block in blocks]
    texts.extend(_Text(role, block) for role, block in blocks)
    return _Layout(placed, texts, omitted)


def _fit_column(ctx: _Context, headline: Caption | None, others: list[Caption], column: Box,
                align: Literal["center", "start"], head_cap: int | None,
                other_cap: int | None) -> list[tuple[str, textmod.TextBlock]]:
    left, top, right, bottom = column
    captions = ([headline] if headline else []) + others
    out: list[tuple[str, textmod.TextBlock]] = []
    cursor, head_size = top, None
    for number, caption in enumerate(captions):
        last = number == len(captions) - 1
        share = 1.0 if last else (0.62 if number == 0 else 1.0 / (len(captions) - number))
        box_bottom = bottom if last else cursor + round(share * (bottom - cursor))
        cap = head_cap if caption is headline else other_cap
        if caption is not headline and head_size is not None:
            cap = min(cap or head_size, round(head_size * 0.7))
        style = _style(ctx.plan, caption.role, cap=cap, align=align)
        block = ctx.fit(caption, (left, cursor, right, box_bottom), style)
        out.append((caption.role, block))
        if caption is headline:
            head_size = block.size
        cursor = block.frame[3] + max(2, ctx.plan.margin // 3)
    return out


# -- geometry --------------------------------------------------------------------------------


def _plate_pad(plan: _Plan) -> int:
    return max(1, round(plan.margin * 0.5))


def _intersect(a: Box, b: Box) -> Box:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def _grow(box: Box, by: int, size: tuple[int, int]) -> Box:
    return (max(0, box[0] - by), max(0, box[1] - by), min(size[0], box[2] + by),
            min(size[1], box[3] + by))


def _offset(box: Box, origin: Box) -> Box:
    return (box[0] + origin[0], box[1] + origin[1], box[2] + origin[0], box[3] + origin[1])


def _trim(box: Box, own: Box, others: list[Box]) -> Box:
    """``box`` (grown around ``own``) cut back so it does not reach into ``others``."""
    left, top, right, bottom = box
    for other in others:
        if other == own or other[2] <= left or other[0] >= right or other[3] <= top \
                or other[1] >= bottom:
            continue
        if other[3] <= own[1]:
            top = max(top, other[3])
        elif other[1] >= own[3]:
            bottom = min(bottom, other[1])
        elif other[2] <= own[0]:
            left = max(left, other[2])
        elif other[0] >= own[2]:
            right = min(right, other[0])
    return (left, top, right, bottom)
