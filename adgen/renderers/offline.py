"""The offline renderer: on-brand ad backgrounds drawn with numpy and Pillow, no model, no GPU.

It reads the prompt for words it knows (colours, moods, seasons and occasions, times of day),
blends them with the brand palette (job option ``palette``) into a *look*, paints a background
in that look (gradient, light, soft shapes, particles, grain, a floor for products) and composes
the product image, when the job has one, with a shadow. The seed drives every random choice
(layout, shapes, particles, grain), so a job renders to the same bytes on every machine: pixels
come from integer and IEEE-exact float operations (+, -, *, /, sqrt), seeded PCG64 streams and
Pillow's fixed-point filters; trigonometry only places shape vertices before Pillow rounds them.
A 1024x1024 picture takes about 0.1 s on one CPU core.

Options (the campaign's ``renderer.options``; each job carries them in ``job.options``, which
is what the picture reads, so that the job key covers them):

``palette``
    Brand colours as ``#RRGGBB`` (or ``#RGB``) strings, the first chromatic one being the
    background's key colour and the others accents (the planner sets it from the brand kit).
    Without it a neutral studio look is used.
``staging``
    How the product stands: ``"auto"`` (default: the seed picks ``floor`` or ``podium``),
    ``"floor"`` (a studio sweep), ``"podium"`` (a cylinder plinth) or ``"float"`` (no floor).
``shadow``
    ``False`` to compose the product without its shadow (default ``True``).
``grain``
    Film grain strength, a number >= 0 (default 1; 0 turns it off).
``stage``
    Where the product goes, as shares ``(left, top, right, bottom)`` of the frame: it is
    scaled to fill most of that box and stands in it (the planner sets it per aspect class
    from the placements' safe areas, so the captions have room around the product).

``device``, ``dtype`` and the runtime options of :data:`adgen.renderers.RUNTIME_OPTIONS` are
accepted and ignored, so a campaign can switch renderers without editing its options.
"""

from __future__ import annotations

import colorsys
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from adgen.errors import RenderError
from adgen.jobs import Box, Rendered, RenderJob
from adgen.post.logo import load_brand_image
from adgen.renderers import RUNTIME_OPTIONS
from adgen.renderers.base import SourceReader, read_source, source_offset

RGB = tuple[float, float, float]
"""A colour as sRGB floats in [0, 1]."""

_WORK_MAX = 768  # long side of the canvas the background is painted on, before upscaling
_GRADIENT_MAX = 192  # long side of the smooth base (gradient, light, floor), before upscaling
_STAGINGS = ("auto", "floor", "podium", "float")
_FAR = ("stars",)  # particles drawn behind the shapes
_OPTIONS = ("palette", "staging", "shadow", "grain", "stage")
_IGNORED = frozenset({"device", "dtype"}) | RUNTIME_OPTIONS

# Random streams: each layer draws from its own generator so that, for example, adding a product
# moves the layout but leaves the grain alone.
_LAYOUT, _SHAPES, _PARTICLES, _GRAIN = 1, 2, 3, 4


def hex_to_rgb(value: object) -> RGB:
    """Parse ``#RRGGBB`` or ``#RGB`` into sRGB floats; :class:`RenderError` names a bad value."""
    text = value.strip() if isinstance(value, str) else ""
    if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})", text):
        raise RenderError(
            f"palette colour {value!r} is not a hex colour: write it as '#RRGGBB', e.g. '#0B3D91'"
        )
    digits = text[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    r, g, b = (int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return (r, g, b)


# --- colour helpers (pure Python floats: the same on every machine) ---------------------------


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _mix1(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _mean(colours: Sequence[RGB]) -> RGB:
    n = len(colours)
    return (sum(c[0] for c in colours) / n, sum(c[1] for c in colours) / n,
            sum(c[2] for c in colours) / n)


def _lightness(c: RGB) -> float:
    return colorsys.rgb_to_hls(*c)[1]


def _saturation(c: RGB) -> float:
    return colorsys.rgb_to_hls(*c)[2]


def _relight(c: RGB, lightness: float) -> RGB:
    h, _, s = colorsys.rgb_to_hls(*c)
    return colorsys.hls_to_rgb(h, min(max(lightness, 0.0), 1.0), s)


def _adjust(c: RGB, sat: float = 1.0, light: float = 0.0) -> RGB:
    """Scale saturation by ``sat``; move lightness towards white (light > 0) or black (< 0)."""
    h, lum, s = colorsys.rgb_to_hls(*c)
    lum = lum + light * (1 - lum) if light > 0 else lum * (1 + light)
    return colorsys.hls_to_rgb(h, min(max(lum, 0.0), 1.0), min(max(s * sat, 0.0), 1.0))


def _to255(c: RGB) -> tuple[int, int, int]:
    return (int(c[0] * 255 + 0.5), int(c[1] * 255 + 0.5), int(c[2] * 255 + 0.5))


# --- the vocabulary ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scene:
    """A season, occasion or time of day: sky stops (top to bottom), ground, accents, light."""

    sky: tuple[str, str, str]
    ground: str
    accents: tuple[str, ...]
    glow: str
    particles: tuple[str, ...] = ()
    time: bool = False  # a time of day: sets how light the sky is, seasons set its hues
    low_sun: bool = False  # the light sits near the horizon (sunset, morning)


@dataclass(frozen=True)
class _Mood:
    """How a mood word shapes the look."""

    motifs: tuple[str, ...] = ()
    sat: float = 1.0
    light: float = 0.0
    contrast: float = 1.0
    accent: float = 0.6  # how pure the accent colours stay (0: tone on tone, 1: pure)
    particles: tuple[str, ...] = ()
    accents: tuple[str, ...] = ()
    gloss: bool = False
    grain: float = 1.0
    vignette: float = 0.0
    scene: _Scene | None = None  # the backdrop when the prompt names no season or time


_SCENES: dict[str, _Scene] = {
    "summer": _Scene(("#8ED6EA", "#FCEBC0", "#FFCB8E"), "#F3D9AE",
                     ("#FF8A5C", "#1FB5A6", "#FFD166"), "#FFF4C7", ("sparkle",)),
    "winter": _Scene(("#EAF3FC", "#C6DAEF", "#8FB1D8"), "#F2F7FC",
                     ("#FFFFFF", "#5F86C0", "#B7D5F2"), "#F7FBFF", ("snow",)),
    "autumn": _Scene(("#F7E0C2", "#E9A86E", "#BD6438"), "#9E5634",
                     ("#B8472D", "#E49B32", "#6E4B2A"), "#FFE3B8", ("leaves",)),
    "spring": _Scene(("#F3FAEC", "#DCF0CF", "#B2DBAA"), "#CFE8BF",
                     ("#F5A9C0", "#FFE08A", "#6DBB82"), "#FFFDF0", ("petals",)),
    "christmas": _Scene(("#7C1622", "#52101A", "#2C0B12"), "#EFE7DC",
                        ("#D9B44A", "#2E6B45", "#F4E9D8"), "#FFD98E", ("lights", "snow")),
    "halloween": _Scene(("#1C1330", "#3E1F4D", "#B8561E"), "#221628",
                        ("#FF8A1F", "#7A3B91", "#3A1B47"), "#FF9E3D", ("embers",),
                        low_sun=True),
    "valentine": _Scene(("#FFE4EA", "#F8B4C4", "#E06482"), "#F9CCD6",
                        ("#D7263D", "#FFFFFF", "#FF8FAB"), "#FFF0F3", ("hearts",)),
    "party": _Scene(("#151C3C", "#232C5E", "#3B306C"), "#1B2148",
                    ("#E8C15A", "#F25F8A", "#5CC8E8"), "#B9A4FF", ("confetti",)),
    "sunset": _Scene(("#3A2E6B", "#CF5F7E", "#FFAE62"), "#5A3358",
                     ("#FF7B54", "#FFC46B", "#7A4A8C"), "#FFC47A", (), True, True),
    "morning": _Scene(("#DDEEFB", "#FFF4E2", "#FFE0BD"), "#F6E6D2",
                      ("#FFC98A", "#9CC8EE", "#FFFFFF"), "#FFFBEA", (), True, True),
    "night": _Scene(("#070B1F", "#121A45", "#27316C"), "#0E1433",
                    ("#8FA6FF", "#FFD98A", "#4B5BB8"), "#9FB4FF", ("stars",), True),
}

_MOODS: dict[str, _Mood] = {
    "calm": _Mood(("blobs", "waves"), sat=0.8, light=0.05, contrast=0.8, accent=0.35,
                  scene=_Scene(("#E8F1EF", "#D5E6E2", "#BCD4D0"), "#D9E6E2",
                               ("#9CC5BE", "#F2D7C4", "#B7C9E2"), "#FFFFFF")),
    "energetic": _Mood(("stripes", "rays"), sat=1.25, contrast=1.15, accent=1.0,
                       scene=_Scene(("#FFB347", "#FF6A3D", "#E8364F"), "#D93A45",
                                    ("#FFE156", "#2D2D6E", "#FFFFFF"), "#FFE8A3")),
    "luxury": _Mood(("arcs", "disc"), sat=0.9, light=-0.5, contrast=1.1, accent=0.9,
                    particles=("sparkle",), accents=("#D4AF37",), gloss=True, vignette=0.35,
                    scene=_Scene(("#34313A", "#1E1C22", "#111014"), "#1E1C22",
                                 ("#D4AF37", "#8C7A5B", "#F3E9D2"), "#F5DFA6")),
    "playful": _Mood(("blobs", "dots", "waves"), sat=1.15, light=0.05, accent=0.85,
                     particles=("confetti",),
                     scene=_Scene(("#FFE9D6", "#FFD6E0", "#DCD6FF"), "#FFE2D0",
                                  ("#FF6F91", "#FFC75F", "#4FC3F7", "#845EC2"), "#FFFFFF")),
    "minimal": _Mood(("disc", "plain"), sat=0.7, contrast=0.7, accent=0.25, grain=0.6,
                     scene=_Scene(("#F5F5F3", "#EBEBE8", "#DEDEDA"), "#E7E7E3",
                                  ("#CFCFCB", "#BFC4C8", "#E0D6CC"), "#FFFFFF")),
    "bold": _Mood(("disc", "stripes", "arcs"), sat=1.3, contrast=1.3, accent=1.0,
                  scene=_Scene(("#3246E0", "#2130A8", "#151D6E"), "#1A2480",
                               ("#FFD23F", "#FF4F5E", "#FFFFFF"), "#9AA8FF")),
    # colour modifiers
    "pastel": _Mood(sat=0.6, light=0.3),
    "vivid": _Mood(sat=1.4),
    "dark": _Mood(light=-0.4, vignette=0.2),
    "light": _Mood(light=0.2),
    "muted": _Mood(sat=0.6),
}

_METALS = ("gold", "silver")  # colour words that make accents, never the backdrop

_COLOURS: dict[str, str] = {
    "red": "#D62828", "crimson": "#B3122E", "scarlet": "#E3242B", "burgundy": "#7A1F2B",
    "orange": "#F77F00", "coral": "#FF6F61", "peach": "#FFB38A", "yellow": "#F9D423",
    "gold": "#D4AF37", "lime": "#A3D94B", "green": "#2E9E5B", "emerald": "#1F8A5B",
    "mint": "#9EE6C4", "olive": "#7A8B3A", "sage": "#9CAF88", "teal": "#138A8A",
    "turquoise": "#30C5C0", "cyan": "#22C3E6", "aqua": "#3FD0D4", "blue": "#2F6FDB",
    "navy": "#1B2A5E", "indigo": "#3F3D9E", "purple": "#7B3FA0", "violet": "#8A5CF6",
    "lavender": "#B9A6E8", "lilac": "#C8A2C8", "magenta": "#D0318A", "pink": "#F48FB1",
    "rose": "#E8798F", "brown": "#8B5A3C", "beige": "#E8D8C0", "cream": "#F6EEDC",
    "ivory": "#FAF6EC", "white": "#F7F7F5", "black": "#141414", "grey": "#8C8F94",
    "silver": "#C0C4CC", "charcoal": "#33363B",
}

_SYNONYMS: dict[str, str] = {
    # scenes
    "summery": "summer", "sunny": "summer", "beach": "summer", "tropical": "summer",
    "vacation": "summer", "wintry": "winter", "snow": "winter", "snowy": "winter",
    "frost": "winter", "frosty": "winter", "icy": "winter", "cold": "winter",
    "fall": "autumn", "autumnal": "autumn", "harvest": "autumn", "springtime": "spring",
    "blossom": "spring", "bloom": "spring", "floral": "spring", "xmas": "christmas",
    "festive": "christmas", "holiday": "christmas", "holidays": "christmas",
    "spooky": "halloween", "valentines": "valentine", "love": "valentine",
    "romantic": "valentine", "romance": "valentine", "celebration": "party",
    "celebrate": "party", "birthday": "party", "confetti": "party", "nye": "party",
    "dusk": "sunset", "evening": "sunset", "sunrise": "morning", "dawn": "morning",
    "daylight": "morning", "nighttime": "night", "midnight": "night", "starry": "night",
    "moonlight": "night",
    # moods
    "serene": "calm", "soothing": "calm", "relaxing": "calm", "peaceful": "calm",
    "gentle": "calm", "tranquil": "calm", "zen": "calm", "energy": "energetic",
    "dynamic": "energetic", "sporty": "energetic", "sport": "energetic",
    "active": "energetic", "luxurious": "luxury", "premium": "luxury", "elegant": "luxury",
    "exclusive": "luxury", "sophisticated": "luxury", "deluxe": "luxury", "fun": "playful",
    "cheerful": "playful", "happy": "playful", "joyful": "playful", "whimsical": "playful",
    "minimalist": "minimal", "clean": "minimal", "simple": "minimal", "striking": "bold",
    "punchy": "bold", "dramatic": "bold", "pastels": "pastel", "neon": "vivid",
    "vibrant": "vivid", "bright": "light", "airy": "light", "moody": "dark",
    "earthy": "muted", "soft": "muted",
    # colours
    "golden": "gold", "gray": "grey", "reds": "red", "blues": "blue", "greens": "green",
}

_STAGING_WORDS: dict[str, str] = {
    "podium": "podium", "pedestal": "podium", "plinth": "podium", "pedestals": "podium",
    "podiums": "podium", "floating": "float", "levitating": "float", "float": "float",
}

_BIGRAMS: dict[str, str] = {"new year": "party", "golden hour": "sunset", "black friday": "bold"}

_DEFAULT = _Scene(("#F5F0EA", "#E9E0D6", "#D8CBBD"), "#E4D8CB",
                  ("#C98F6B", "#8FA89B", "#E8B4A0"), "#FFF7EC")
_DEFAULT_MOTIFS = ("blobs", "disc", "arcs", "waves")


def prompt_terms(prompt: str, negative_prompt: str = "") -> tuple[str, ...]:
    """The vocabulary terms (scene, mood, colour or staging names) a prompt names, in order.

    Synonyms map to their term ("fall" is "autumn", "pedestal" is "podium"); terms the negative
    prompt names are dropped.
    """
    return tuple(t for t in _terms(prompt) if t not in set(_terms(negative_prompt)))


def _terms(text: str) -> list[str]:
    words = re.findall(r"[a-z]+", text.lower())
    found: list[str] = []
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(words)]
    for i, word in enumerate(words):
        term = _BIGRAMS.get(pairs[i]) if i < len(pairs) else None
        if term is None and word.endswith("s") and word not in _SYNONYMS:
            word = word[:-1] if _known(word[:-1]) else word  # plurals: "pinks", "pastels"
        term = term or _STAGING_WORDS.get(word) or _SYNONYMS.get(word, word)
        if (term in _SCENES or term in _MOODS or term in _COLOURS or term in _STAGINGS) \
                and term not in found:
            found.append(term)
    return found


def _known(term: str) -> bool:
    return (term in _SCENES or term in _MOODS or term in _COLOURS or term in _SYNONYMS
            or term in _STAGING_WORDS)


# --- the look: what the words and the palette ask for -----------------------------------------


@dataclass(frozen=True)
class Look:
    """Colours and ingredients of a background, resolved from prompt words and a palette."""

    terms: tuple[str, ...]
    staging: str  # "auto", or the staging the prompt asks for ("on a pedestal": "podium")
    sky: tuple[RGB, RGB, RGB]
    ground: RGB
    accents: tuple[RGB, ...]
    glow: RGB
    low_sun: bool
    particles: tuple[str, ...]
    motifs: tuple[str, ...]
    accent: float
    gloss: bool
    grain: float
    vignette: float


def resolve_look(prompt: str, negative_prompt: str = "",
                 palette: Sequence[RGB] = ()) -> Look:
    """Blend the prompt's scenes, moods and colours with the brand palette into a :class:`Look`.

    Scenes set the sky, ground, light and particles; colour words tint them; the palette, when
    given, re-colours the sky with its key colour and leads the accents; moods then scale
    saturation, lightness and contrast and choose the shapes.
    """
    terms = prompt_terms(prompt, negative_prompt)
    moods = [_MOODS[t] for t in terms if t in _MOODS]
    colours = [hex_to_rgb(_COLOURS[t]) for t in terms if t in _COLOURS]
    seasons = [_SCENES[t] for t in terms if t in _SCENES and not _SCENES[t].time]
    times = [_SCENES[t] for t in terms if t in _SCENES and _SCENES[t].time]
    backdrop = next((m for m in moods if m.scene is not None), None)
    scenes = seasons or times or [backdrop.scene if backdrop and backdrop.scene else _DEFAULT]

    # 1. scenes: average their skies and grounds, take turns for accents and particles;
    #    a time of day (night, sunset, morning) re-lights a season's hues
    sky = tuple(_mean([hex_to_rgb(s.sky[i]) for s in scenes]) for i in range(3))
    ground = _mean([hex_to_rgb(s.ground) for s in scenes])
    glow = _mean([hex_to_rgb(s.glow) for s in scenes])
    if seasons and times:
        lit = tuple(_mean([hex_to_rgb(s.sky[i]) for s in times]) for i in range(3))
        sky = tuple(_mix(_relight(c, _lightness(t)), t, 0.45) for c, t in zip(sky, lit,
                                                                                strict=True))
        ground = _mix(ground, _mean([hex_to_rgb(s.ground) for s in times]), 0.6)
        glow = _mean([hex_to_rgb(s.glow) for s in times])
        scenes = seasons + times
    accents = [hex_to_rgb(a) for group in zip(*(s.accents for s in scenes), strict=False)
               for a in group]
    particles = [p for s in scenes for p in s.particles] + [p for m in moods for p in m.particles]

    # 2. colour words tint the sky (gently when a brand palette leads) and lead the accents
    #    and pull its lightness a little towards theirs
    tint = 0.2 if palette else 0.65
    tints = [hex_to_rgb(_COLOURS[t]) for t in terms if t in _COLOURS and t not in _METALS]
    for i, c in enumerate(tints[:2]):
        k = tint if i == 0 else tint / 2
        sky = tuple(_mix(s, _relight(c, _mix1(_lightness(s), _lightness(c), k / 2)), k)
                    for s in sky)
        ground = _mix(ground, _relight(c, _mix1(_lightness(ground), _lightness(c), k / 2)), k)
    accents = colours + accents

    # 3. the palette: its key colour re-lit to the sky's lightness, its colours first as accents
    if palette:
        key = next((c for c in palette if _saturation(c) > 0.15 and 0.08 < _lightness(c) < 0.92),
                   palette[0])
        sky = tuple(_mix(_relight(key, _lightness(s)), s, 0.2) for s in sky)
        ground = _mix(_relight(key, _lightness(ground)), ground, 0.3)
        accents = [key, *[c for c in palette if c != key], *accents]

    # 4. moods: saturation, lightness and contrast; shapes
    sat = min(max(math.prod(m.sat for m in moods), 0.4), 1.6)
    light = min(max(sum(m.light for m in moods if scenes[0] is not m.scene), -0.7), 0.5)
    contrast = math.prod(m.contrast for m in moods)
    sky = _contrast(tuple(_adjust(s, sat, light) for s in sky), contrast)
    ground = _adjust(ground, sat, light)
    glow = _adjust(glow, sat, max(light, 0.0))
    accents = [hex_to_rgb(a) for m in moods for a in m.accents] + accents
    motifs = tuple(dict.fromkeys(m for mood in moods for m in mood.motifs)) or _DEFAULT_MOTIFS
    return Look(
        terms=terms,
        staging=next((t for t in terms if t in _STAGINGS), "auto"),
        sky=(sky[0], sky[1], sky[2]),
        ground=ground,
        accents=tuple(dict.fromkeys(_adjust(a, sat) for a in accents)),
        glow=glow,
        low_sun=any(s.low_sun for s in scenes),
        particles=tuple(dict.fromkeys(particles))[:2],
        motifs=motifs,
        accent=min((m.accent for m in moods if m.motifs), default=0.6),
        gloss=any(m.gloss for m in moods),
        grain=min((m.grain for m in moods), default=1.0),
        vignette=max((m.vignette for m in moods), default=0.12),
    )


def _contrast(stops: tuple[RGB, ...], k: float) -> tuple[RGB, ...]:
    mean = sum(_lightness(s) for s in stops) / len(stops)
    return tuple(_relight(s, mean + (_lightness(s) - mean) * k) for s in stops)


# --- layout -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where things go, in output pixels."""

    width: int
    height: int
    horizon: float | None  # the floor's far edge, or None for no floor
    light: tuple[float, float]  # centre of the glow
    staging: str  # "floor", "podium", "float" or "none" (no product)
    product: Box | None  # rectangle the product is pasted into
    focus: tuple[float, float]  # what shapes gather around: the product, or a point


def _plan(job: RenderJob, look: Look, product_size: tuple[int, int] | None,
          staging: str, stage: tuple[float, float, float, float] | None = None) -> _Layout:
    rng = np.random.default_rng([job.seed, _LAYOUT])
    w, h = job.width, job.height
    aspect = w / h
    tall = aspect < 0.8  # stories keep the product near the middle, clear of the bottom
    horizon = h * float(rng.uniform(0.5, 0.58) if tall else rng.uniform(0.56, 0.68))
    light_y = horizon - h * float(rng.uniform(0.02, 0.12)) if look.low_sun else \
        h * float(rng.uniform(0.08, 0.35))
    light = (w * float(rng.uniform(0.15, 0.85)), light_y)
    if product_size is None:
        focus = (w * float(rng.uniform(0.3, 0.7)), h * float(rng.uniform(0.35, 0.6)))
        return _Layout(w, h, None, light, "none", None, focus)
    if staging == "auto":
        staging = "floor" if rng.random() < 0.5 else "podium"

    if stage is not None:
        return _staged(rng, w, h, horizon, light, staging, product_size, stage)

    # 1. size: a share of the frame's height, capped by its width (wide banners: a third)
    pw, ph = product_size
    width_cap = 0.8 if aspect < 0.34 else 0.56 if tall else 0.5 if aspect < 1.6 else 0.34
    share = float(rng.uniform(0.62, 0.78) if aspect >= 3 else rng.uniform(0.44, 0.58))
    max_h = share * h if aspect < 0.5 else min(share * h, 0.8 * w)
    if staging == "podium":
        max_h *= 0.85
    scale = min(max_h / ph, width_cap * w / pw)
    bw, bh = max(1, round(pw * scale)), max(1, round(ph * scale))

    # 2. place: centred-ish (a third for wide banners), standing on the floor
    if aspect >= 1.6:
        cx = w * (float(rng.choice([0.28, 0.5, 0.72])) + float(rng.uniform(-0.03, 0.03)))
    else:
        cx = w * (0.5 + float(rng.uniform(-0.08, 0.08)))
    if staging == "float":
        base = h * (0.5 + float(rng.uniform(-0.04, 0.04))) + bh / 2
        horizon_or_none: float | None = None
    else:
        base = horizon + (h - horizon) * float(rng.uniform(0.12, 0.28) if tall
                                               else rng.uniform(0.3, 0.5))
        horizon_or_none = horizon
        if staging == "podium":
            base = horizon + (h - horizon) * float(rng.uniform(0.05, 0.2))
    base = min(max(base, bh + 0.05 * h), 0.95 * h)
    left = min(max(round(cx - bw / 2), round(0.03 * w)), w - bw - round(0.03 * w))
    top = min(max(round(base - bh), 0), h - bh)
    box = (max(left, 0), top, max(left, 0) + bw, top + bh)
    return _Layout(w, h, horizon_or_none, light, staging, box,
                   ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))


def _staged(rng: np.random.Generator, w: int, h: int, horizon: float,
            light: tuple[float, float], staging: str, product_size: tuple[int, int],
            stage: tuple[float, float, float, float]) -> _Layout:
    """The product inside ``stage`` (shares of the frame: where the placements leave it room
    by their captions), as large as fits there less a little, centred with a little play,
    standing on the floor (the horizon is kept above its foot)."""
    left, top, right, bottom = stage[0] * w, stage[1] * h, stage[2] * w, stage[3] * h
    podium = 0.12 * (bottom - top) if staging == "podium" else 0.0
    pw, ph = product_size
    fill = float(rng.uniform(0.86, 0.97))
    scale = fill * min((right - left) / pw, (bottom - top - podium) / ph)
    bw, bh = max(1, round(pw * scale)), max(1, round(ph * scale))
    play_x = (right - left - bw) / 2
    cx = (left + right) / 2 + play_x * float(rng.uniform(-0.5, 0.5))
    base = bottom - podium - (bottom - top - podium - bh) * float(rng.uniform(0.0, 0.3))
    box_left = round(min(max(cx - bw / 2, left), right - bw))
    box_top = round(base - bh)
    box = (box_left, box_top, box_left + bw, box_top + bh)
    if staging == "float":
        return _Layout(w, h, None, light, staging, box, ((box[0] + box[2]) / 2,
                                                         (box[1] + box[3]) / 2))
    foot = box[3] + (podium * 0.3 if staging == "podium" else 0.0)
    horizon = max(min(horizon, foot - 0.04 * h), box[1] + 0.3 * bh)
    return _Layout(w, h, horizon, light, staging, box,
                   ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))


# --- painting ---------------------------------------------------------------------------------


def _smoothstep(a: float, b: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _base(look: Look, lay: _Layout, size: tuple[int, int], seed: int) -> Image.Image:
    """The smooth base at low resolution: sky gradient, glow, floor and vignette."""
    gw, gh = size
    sx, sy = lay.width / gw, lay.height / gh
    y, x = np.mgrid[0:gh, 0:gw].astype(np.float32)
    px, py = (x + 0.5) * sx, (y + 0.5) * sy
    rng = np.random.default_rng([seed, _SHAPES])
    tilt = float(rng.uniform(-0.35, 0.35))  # slope of the gradient's bands
    span = lay.horizon if lay.horizon is not None else float(lay.height)
    t = np.clip((py + (px - lay.width / 2) * tilt) / span, 0.0, 1.0)[..., None]
    s0, s1, s2 = (np.array(s, np.float32) for s in look.sky)
    img = np.where(t < 0.5, s0 + (s1 - s0) * _smoothstep(0, 0.5, t),
                   s1 + (s2 - s1) * _smoothstep(0.5, 1.0, t))

    # light: mix towards the glow colour with a soft radial falloff
    radius = float(rng.uniform(0.45, 0.75)) * math.hypot(lay.width, lay.height)
    d = np.sqrt((px - lay.light[0]) ** 2 + (py - lay.light[1]) ** 2) / radius
    strength = 0.3 + 0.3 * sum(_lightness(s) for s in look.sky) / 3  # dim lights at night
    g = (strength * (1.0 - _smoothstep(0.0, 1.0, d)))[..., None]
    img = img + (np.array(look.glow, np.float32) - img) * g

    if lay.horizon is not None:  # a studio sweep: the floor fades in below the horizon
        hz = lay.horizon
        tf = np.clip((py - hz) / max(lay.height - hz, 1.0), 0.0, 1.0)[..., None]
        near = np.array(_adjust(look.ground, light=-0.12), np.float32)
        far = np.array(_mix(look.ground, look.sky[2], 0.35), np.float32)
        floor = far + (near - far) * tf
        f = _smoothstep(hz - 0.035 * lay.height, hz + 0.035 * lay.height, py)[..., None]
        img = img + (floor - img) * f

    # vignette
    dv = np.sqrt(((px / lay.width - 0.5) * 2) ** 2 + ((py / lay.height - 0.5) * 2) ** 2)
    img = img * (1.0 - look.vignette * _smoothstep(0.5, 1.45, dv))[..., None]
    return Image.fromarray((np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), "RGB")


Point = tuple[float, float]


@dataclass(frozen=True)
class _Shape:
    """A filled polygon, or an ellipse in a box (a ring when ``width`` is set)."""

    kind: str  # "polygon" or "ellipse"
    points: tuple[Point, ...]
    width: int = 0


def _circle(cx: float, cy: float, r: float, width: int = 0) -> _Shape:
    return _Shape("ellipse", ((cx - r, cy - r), (cx + r, cy + r)), width)


def _polygon(points: Sequence[Point]) -> _Shape:
    return _Shape("polygon", tuple(points))


def _paint(canvas: Image.Image, colour: RGB, shapes: Sequence[_Shape], opacity: float = 1.0,
           blur: float = 0.0) -> None:
    """Draw ``shapes`` into a mask, soften it by ``blur`` px and paint ``colour`` through it."""
    mask = Image.new("L", canvas.size, 0)
    draw, fill = ImageDraw.Draw(mask), round(255 * min(max(opacity, 0.0), 1.0))
    for shape in shapes:
        if shape.kind == "polygon":
            draw.polygon(list(shape.points), fill=fill)
        elif shape.width:
            draw.ellipse(shape.points, outline=fill, width=shape.width)
        else:
            draw.ellipse(shape.points, fill=fill)
    box = mask.getbbox()
    if box is None:
        return
    pad = math.ceil(blur * 3) + 1
    box = (max(box[0] - pad, 0), max(box[1] - pad, 0),
           min(box[2] + pad, canvas.width), min(box[3] + pad, canvas.height))
    canvas.paste(_to255(colour), box, _soften(mask.crop(box), blur))


def _soften(mask: Image.Image, blur: float) -> Image.Image:
    """Gaussian-blur a mask; wide blurs run on a reduced copy (they hide the lost detail)."""
    if blur <= 0:
        return mask
    if blur < 1.5:  # anti-aliasing: one box pass is enough
        return mask.filter(ImageFilter.BoxBlur(blur))
    f = min(int(blur // 3), mask.width, mask.height)
    if f < 2:
        return mask.filter(ImageFilter.GaussianBlur(blur))
    small = mask.reduce(f).filter(ImageFilter.GaussianBlur(blur / f))
    return small.resize(mask.size, Image.Resampling.BILINEAR)


class _Painter:
    """Draws motifs, podium and particles on the work canvas, in work-canvas pixels."""

    def __init__(self, canvas: Image.Image, look: Look, lay: _Layout, seed: int) -> None:
        self.canvas, self.look, self.lay = canvas, look, lay
        self.k = canvas.width / lay.width  # output px -> work px
        self.w, self.h = canvas.size
        self.unit = math.sqrt(self.w * self.h)
        self.rng = np.random.default_rng([seed, _SHAPES, 1])
        self.scatter_rng = np.random.default_rng([seed, _PARTICLES])
        self.aa = max(0.6, self.unit / 900)  # anti-aliasing blur

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def accent(self, i: int, k: float | None = None) -> RGB:
        """Accent ``i`` blended into the sky by the look's accent purity (or ``k``)."""
        a = self.look.accents[i % len(self.look.accents)]
        return _mix(self.look.sky[1], a, self.look.accent if k is None else k)

    @property
    def focus(self) -> tuple[float, float]:
        return (self.lay.focus[0] * self.k, self.lay.focus[1] * self.k)

    def motifs(self) -> None:
        motif = str(self.rng.choice(list(self.look.motifs)))
        getattr(self, f"_{motif}")()
        if motif != "blobs" and self.rng.random() < 0.5:
            self._blobs(count=2)

    def _plain(self) -> None:
        self._blobs(count=1)

    def _blobs(self, count: int | None = None) -> None:
        n = count or int(self.rng.integers(3, 6))
        for i in range(n):
            r = self.u(0.14, 0.32) * self.unit
            cx, cy = self.u(-0.05, 1.05) * self.w, self.u(-0.05, 0.8) * self.h
            colour = _mix(self.accent(i), self.look.glow, self.u(0.0, 0.4))
            _paint(self.canvas, colour, [_circle(cx, cy, r)], self.u(0.3, 0.55), blur=0.35 * r)

    def _disc(self) -> None:
        fx, fy = self.focus
        r = self.u(0.26, 0.36) * min(self.unit, 1.3 * min(self.w, self.h))
        cx, cy = fx + self.u(-0.06, 0.06) * self.w, fy - self.u(0.0, 0.12) * self.h
        _paint(self.canvas, self.accent(0), [_circle(cx, cy, r)], 0.92, blur=self.aa)
        rr, width = r * self.u(1.12, 1.25), max(1, round(0.006 * self.unit))
        _paint(self.canvas, self.accent(1), [_circle(cx, cy, rr, width)], 0.6, blur=self.aa)

    def _arcs(self) -> None:
        for i in range(int(self.rng.integers(1, 4))):
            r = self.u(0.3, 0.7) * self.unit
            corner = self.rng.integers(0, 2, size=2)
            cx = self.w * (float(corner[0]) + self.u(-0.15, 0.15))
            cy = self.h * (float(corner[1]) + self.u(-0.15, 0.15))
            width = max(1, round(self.u(0.006, 0.035) * self.unit))
            _paint(self.canvas, self.accent(i), [_circle(cx, cy, r, width)], self.u(0.55, 0.9),
                   blur=self.aa)

    def _stripes(self) -> None:
        angle = self.u(0.45, 0.8) * (1 if self.rng.random() < 0.5 else -1)
        dx, dy = math.cos(angle), math.sin(angle)
        long = 2 * math.hypot(self.w, self.h)
        for i in range(int(self.rng.integers(2, 5))):
            cx, cy = self.u(0.0, 1.0) * self.w, self.u(0.1, 0.9) * self.h
            half = self.u(0.02, 0.09) * self.unit
            pts = [(cx - dx * long - dy * half, cy - dy * long + dx * half),
                   (cx + dx * long - dy * half, cy + dy * long + dx * half),
                   (cx + dx * long + dy * half, cy + dy * long - dx * half),
                   (cx - dx * long + dy * half, cy - dy * long - dx * half)]
            _paint(self.canvas, self.accent(i), [_polygon(pts)], self.u(0.45, 0.8), blur=self.aa)

    def _rays(self) -> None:
        fx, fy = self.focus
        n = int(self.rng.integers(10, 18))
        start, long = self.u(0, 2 * math.pi), 2 * math.hypot(self.w, self.h)
        rays = []
        for i in range(n):
            a0 = start + 2 * math.pi * i / n
            a1 = a0 + math.pi / n
            rays.append(_polygon([(fx, fy), (fx + long * math.cos(a0), fy + long * math.sin(a0)),
                                  (fx + long * math.cos(a1), fy + long * math.sin(a1))]))
        _paint(self.canvas, _mix(self.look.glow, (1.0, 1.0, 1.0), 0.5), rays, 0.16,
               blur=self.aa * 2)

    def _waves(self) -> None:
        base = (self.lay.horizon * self.k) if self.lay.horizon is not None else self.h
        for i in range(int(self.rng.integers(2, 4))):
            amp = self.u(0.03, 0.08) * self.h
            level = base - self.u(0.08, 0.3) * self.h * (1 if self.lay.horizon is None else 0.5)
            freq, phase = self.u(1.0, 2.5) * 2 * math.pi / self.w, self.u(0, 2 * math.pi)
            pts = [(x, level - amp * math.sin(freq * x + phase)
                    - 0.3 * amp * math.sin(2.3 * freq * x + 1.7 * phase))
                   for x in np.linspace(0, self.w, 48).tolist()]
            pts += [(self.w, base + 2), (0, base + 2)]
            colour = _mix(self.accent(i), self.look.sky[2], 0.3)
            _paint(self.canvas, colour, [_polygon(pts)], self.u(0.35, 0.65), blur=self.aa * 1.5)

    def _dots(self) -> None:
        self._blobs(count=2)
        self._scatter(7, (0.01, 0.03), _dot, (0.5, 0.9))

    def podium(self) -> None:
        """A cylinder plinth whose top ellipse the product stands on."""
        box = self.lay.product
        if box is None:
            return
        k = self.k
        cx, top = (box[0] + box[2]) / 2 * k, box[3] * k
        rx = (box[2] - box[0]) * k * 0.62 + 0.04 * self.unit
        ry = rx * 0.16
        bottom = min(top + 0.16 * self.h, self.h * 0.985 - ry)
        ground = self.look.ground  # tone on tone: the floor's colour, a little lighter
        lum = _lightness(ground)
        colour = _relight(ground, lum + 0.12 if lum < 0.5 else min(lum + 0.06, 0.9))
        shadow = _Shape("ellipse", ((cx - rx * 1.1, bottom - ry * 0.6),
                                    (cx + rx * 1.1, bottom + ry * 1.6)))
        _paint(self.canvas, _adjust(colour, light=-0.6), [shadow], 0.35, blur=ry)
        body = Image.new("L", self.canvas.size, 0)
        bd = ImageDraw.Draw(body)
        bd.rectangle((cx - rx, top, cx + rx, bottom), fill=255)
        bd.ellipse((cx - rx, bottom - ry, cx + rx, bottom + ry), fill=255)
        x = (np.arange(self.w, dtype=np.float32) - (cx - 0.3 * rx)) / rx
        shade = 0.78 + 0.22 * (1.0 - np.clip(x * x, 0.0, 1.0))
        shaded = (np.array(colour, np.float32)[None, None, :] * shade[None, :, None]
                  * np.ones((self.h, 1, 1), np.float32))
        body_img = Image.fromarray((np.clip(shaded, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
        self.canvas.paste(body_img, (0, 0), body.filter(ImageFilter.GaussianBlur(self.aa)))
        top_face = _Shape("ellipse", ((cx - rx, top - ry), (cx + rx, top + ry)))
        _paint(self.canvas, _adjust(colour, light=0.12), [top_face], blur=self.aa)

    def particles(self, far: bool) -> None:
        """Scatter the look's particles: the far ones (stars) behind the shapes, others before."""
        for kind in self.look.particles:
            if (kind in _FAR) == far:
                getattr(self, f"_p_{kind}")()

    def _scatter(self, per_100k: float, size: tuple[float, float],
                 shape: Callable[[float, float, float, float], _Shape],
                 opacity: tuple[float, float], colours: Sequence[RGB] | None = None,
                 blur: float = 0.0, area: tuple[float, float] = (0.0, 1.0)) -> None:
        """Scatter ``per_100k`` shapes per 100k work px over rows ``area`` (shares of height)."""
        rng = self.scatter_rng
        palette = list(colours) if colours is not None else [
            self.accent(i, 1.0) for i in range(3)]
        n = max(len(palette), round(per_100k * self.w * self.h / 1e5))
        for i, colour in enumerate(palette):
            m = n // len(palette) + (i < n % len(palette))
            items = zip((rng.uniform(0, 1, m) * self.w).tolist(),
                        (rng.uniform(*area, m) * self.h).tolist(),
                        (rng.uniform(*size, m) * self.unit).tolist(),
                        rng.uniform(0, math.pi, m).tolist(), strict=True)
            _paint(self.canvas, colour, [shape(x, y, r, a) for x, y, r, a in items],
                   float(rng.uniform(*opacity)), blur=blur or self.aa)

    def _p_snow(self) -> None:
        white = (1.0, 1.0, 1.0)
        self._scatter(10, (0.0015, 0.004), _dot, (0.7, 0.95), [white])
        self._scatter(3, (0.005, 0.01), _dot, (0.45, 0.7), [white], blur=0.004 * self.unit)

    def _p_stars(self) -> None:
        white = (1.0, 1.0, 1.0)
        self._scatter(8, (0.0008, 0.0022), _dot, (0.6, 0.95), [white], area=(0.0, 0.6))
        self._scatter(0.4, (0.008, 0.016), _sparkle, (0.7, 0.9),
                      [_mix(self.look.glow, white, 0.6)], area=(0.0, 0.5))

    def _p_confetti(self) -> None:
        self._scatter(9, (0.007, 0.015), _chip, (0.75, 0.95))

    def _p_petals(self) -> None:
        self._scatter(8, (0.006, 0.013), _petal, (0.6, 0.9))

    def _p_leaves(self) -> None:
        self._scatter(7, (0.01, 0.02), _petal, (0.7, 0.95))

    def _p_hearts(self) -> None:
        self._scatter(4, (0.012, 0.03), _heart, (0.45, 0.8))

    def _p_sparkle(self) -> None:
        colour = _mix(self.look.glow, (1.0, 1.0, 1.0), 0.4)
        self._scatter(0.8, (0.006, 0.016), _sparkle, (0.7, 0.95), [colour])

    def _p_lights(self) -> None:
        warm = [_mix(self.look.glow, (1.0, 1.0, 1.0), 0.3), self.accent(0, 1.0)]
        self._scatter(2, (0.012, 0.035), _dot, (0.25, 0.45), warm,
                      blur=0.006 * self.unit, area=(0.0, 0.75))

    def _p_embers(self) -> None:
        self._scatter(4, (0.0015, 0.004), _dot, (0.6, 0.95),
                      [self.look.glow, self.accent(0, 1.0)], blur=0.002 * self.unit)


def _dot(x: float, y: float, r: float, a: float) -> _Shape:
    return _circle(x, y, r)


def _rotated(x: float, y: float, a: float, pts: Sequence[Point]) -> _Shape:
    c, s = math.cos(a), math.sin(a)
    return _polygon([(x + px * c - py * s, y + px * s + py * c) for px, py in pts])


def _chip(x: float, y: float, r: float, a: float) -> _Shape:
    return _rotated(x, y, a * 2, [(-r, -r / 2), (r, -r / 2), (r, r / 2), (-r, r / 2)])


def _petal(x: float, y: float, r: float, a: float) -> _Shape:
    ts = [2 * math.pi * i / 12 for i in range(12)]
    return _rotated(x, y, a * 2, [(r * math.cos(t), 0.45 * r * math.sin(t)) for t in ts])


def _heart(x: float, y: float, r: float, a: float) -> _Shape:
    ts = [2 * math.pi * i / 24 for i in range(24)]
    pts = [(r * math.sin(t) ** 3,
            -r / 16 * (13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t)
                       - math.cos(4 * t))) for t in ts]
    return _rotated(x, y, (a - math.pi / 2) * 0.4, pts)


def _sparkle(x: float, y: float, r: float, a: float) -> _Shape:
    radii = [r if i % 2 == 0 else 0.2 * r for i in range(8)]
    return _polygon([(x + q * math.cos(i * math.pi / 4), y + q * math.sin(i * math.pi / 4))
                     for i, q in enumerate(radii)])


def _grain(img: Image.Image, amount: float, seed: int) -> Image.Image:
    """Add monochrome uniform grain of ``±amount`` levels (it also dithers gradient banding)."""
    level = round(amount)
    if level <= 0:
        return img
    rng = np.random.default_rng([seed, _GRAIN])
    noise = rng.integers(0, 2 * level + 1, size=(img.height, img.width), dtype=np.uint8)
    grain = Image.fromarray(noise, "L")
    return ImageChops.add(img, Image.merge("RGB", (grain, grain, grain)), offset=-level)


# --- the product ------------------------------------------------------------------------------


def load_product(path: str) -> Image.Image:
    """The product image as RGBA trimmed to its visible pixels (an image without alpha is used
    as an opaque rectangle); :class:`AssetError` names a file that cannot be used."""
    return load_brand_image(Path(path), what="product image")


def _compose(canvas: Image.Image, product: Image.Image, look: Look, lay: _Layout,
             shadow: bool) -> None:
    """Shadow, reflection (glossy looks) and the product itself, at output resolution."""
    assert lay.product is not None
    x0, y0, x1, y1 = lay.product
    item = product.resize((x1 - x0, y1 - y0), Image.Resampling.BICUBIC)
    if shadow:
        _shadow(canvas, item, look, lay)
    if look.gloss and lay.staging == "floor":
        _reflection(canvas, item, lay)
    canvas.paste(item.convert("RGB"), (x0, y0), item.getchannel("A"))


def _shadow(canvas: Image.Image, item: Image.Image, look: Look, lay: _Layout) -> None:
    """Darken the background under the product: a contact shadow and a soft cast shadow."""
    assert lay.product is not None
    x0, y0, x1, y1 = lay.product
    pw, ph = x1 - x0, y1 - y0
    # region of the output the shadow may touch, drawn at a reduced scale
    floating = lay.staging == "float"
    rx0, rx1 = max(x0 - pw // 2, 0), min(x1 + pw // 2, lay.width)
    ry0 = y1 if floating else max(y1 - max(pw // 4, 4), 0)
    ry1 = min(y1 + max(ph // 2 if floating else pw // 4, 4), lay.height)
    if ry1 <= ry0:
        return
    k = min(1.0, 160 / max(rx1 - rx0, ry1 - ry0, 1))
    sw, sh = max(1, round((rx1 - rx0) * k)), max(1, round((ry1 - ry0) * k))
    mask = Image.new("L", (sw, sh), 0)
    draw = ImageDraw.Draw(mask)
    alpha = item.getchannel("A")
    foot = alpha.crop((0, ph - max(ph // 12, 1), pw, ph)).getbbox() or (0, 0, pw, 1)
    fx0, fx1 = (x0 + foot[0] - rx0) * k, (x0 + foot[2] - rx0) * k
    base, fw = (y1 - ry0) * k, fx1 - fx0
    if floating:  # a drop shadow: the silhouette, lower down, blurred
        drop = alpha.resize((max(1, round(pw * k * 0.9)), max(1, round(ph * k * 0.25))))
        mask.paste(drop.point(lambda v: v * 2 // 5), (round((x0 - rx0) * k + pw * k * 0.05),
                                                     round(base + 0.08 * ph * k)), drop)
        blur = 0.06 * pw * k
    else:  # a contact shadow at the foot and a wider, lighter one on the floor
        side = 1 if lay.light[0] < (x0 + x1) / 2 else -1
        draw.ellipse((fx0 - 0.15 * fw + side * 0.1 * fw, base - 0.08 * fw,
                      fx1 + 0.15 * fw + side * 0.1 * fw, base + 0.08 * fw), fill=90)
        draw.ellipse((fx0 + 0.02 * fw, base - 0.025 * fw, fx1 - 0.02 * fw, base + 0.03 * fw),
                     fill=220)
        blur = 0.03 * fw
    mask = mask.filter(ImageFilter.GaussianBlur(max(blur, 0.8)))
    mask = mask.resize((rx1 - rx0, ry1 - ry0), Image.Resampling.BICUBIC)
    # multiply by 1 - 0.75 * mask * (1 - tint): shadows pick up the floor's colour
    shades = [mask.point([round(255 - 0.75 * v * (1 - (0.22 + 0.3 * c))) for v in range(256)])
              for c in look.ground]
    region = canvas.crop((rx0, ry0, rx1, ry1))
    canvas.paste(ImageChops.multiply(region, Image.merge("RGB", shades)), (rx0, ry0))


def _reflection(canvas: Image.Image, item: Image.Image, lay: _Layout) -> None:
    """A faint mirror image under the product, fading out, for glossy floors."""
    assert lay.product is not None
    x0, _, _, y1 = lay.product
    depth = min(round(item.height * 0.35), lay.height - y1)
    if depth < 2:
        return
    flipped = item.transpose(Image.Transpose.FLIP_TOP_BOTTOM).crop((0, 0, item.width, depth))
    fade = np.linspace(0.22, 0.0, depth, dtype=np.float32)[:, None]
    alpha = np.asarray(flipped.getchannel("A"), dtype=np.float32) * fade
    mask = Image.fromarray((alpha + 0.5).astype(np.uint8), "L")
    canvas.paste(flipped.convert("RGB"), (x0, y1), mask)


# --- extending a render ------------------------------------------------------------------------


def _extended(job: RenderJob, scene: Image.Image, sources: SourceReader | None) -> Rendered:
    """An extend job: its source render (read through ``sources``) kept pixel for pixel in the
    middle of the freshly painted ``scene`` (same look, the job's size), blended into it over a
    band at the source's edges that face the new space (the product, inside the source, is
    untouched)."""
    source, subject = read_source(sources, job)
    if source.width > scene.width or source.height > scene.height:
        raise RenderError(f"extend job {job.key[:8]}: its source {source.width}x"
                          f"{source.height} is larger than the job's {job.width}x{job.height}")
    x, y = source_offset(scene.size, source.size)
    band = max(2, round(0.08 * min(source.size)))
    if subject is not None:  # never let the blend reach the product
        band = max(1, min(band, subject[0], subject[1], source.width - subject[2],
                          source.height - subject[3]))
    ramp = np.minimum(np.arange(1, band + 1, dtype=np.float32) / band, 1.0)
    mask = np.ones((source.height, source.width), np.float32)
    if y > 0:
        mask[:band] *= ramp[:, None]
        mask[-band:] *= ramp[::-1, None]
    if x > 0:
        mask[:, :band] *= ramp[None, :]
        mask[:, -band:] *= ramp[None, ::-1]
    scene.paste(source, (x, y), Image.fromarray((mask * 255 + 0.5).astype(np.uint8), "L"))
    box = None if subject is None else (subject[0] + x, subject[1] + y, subject[2] + x,
                                        subject[3] + y)
    return Rendered(job.key, scene, subject_box=box, composite=job.product_image is not None)


# --- the renderer -----------------------------------------------------------------------------


def _fit(width: int, height: int, long_side: int, short_min: int = 16) -> tuple[int, int]:
    k = min(1.0, long_side / max(width, height))
    return (max(round(width * k), min(short_min, width)), max(round(height * k),
                                                               min(short_min, height)))


@dataclass(frozen=True)
class _Options:
    palette: tuple[RGB, ...] = ()
    staging: str = "auto"
    shadow: bool = True
    grain: float = 1.0
    stage: tuple[float, float, float, float] | None = None


def _read_options(options: dict[str, Any], strict: bool) -> _Options:
    """Check the options' values; ``strict`` also rejects names the renderer does not know."""
    unknown = sorted(set(options) - set(_OPTIONS) - _IGNORED)
    if strict and unknown:
        raise RenderError(
            f"offline renderer: unknown option(s) {', '.join(unknown)}; "
            f"it accepts {', '.join(_OPTIONS)}"
        )
    palette = options.get("palette") or ()
    if isinstance(palette, str):
        palette = (palette,)
    staging = options.get("staging", "auto")
    if staging not in _STAGINGS:
        raise RenderError(
            f"offline renderer: staging {staging!r} is unknown; use one of {', '.join(_STAGINGS)}"
        )
    shadow = options.get("shadow", True)
    if not isinstance(shadow, bool):
        raise RenderError(f"offline renderer: shadow must be true or false, got {shadow!r}")
    grain = options.get("grain", 1.0)
    if isinstance(grain, bool) or not isinstance(grain, int | float) or not 0 <= grain <= 10:
        raise RenderError(
            f"offline renderer: grain must be a number from 0 to 10, got {grain!r}")
    stage = options.get("stage")
    if stage is not None:
        try:
            left, top, right, bottom = (float(v) for v in stage)
        except (TypeError, ValueError):
            left = top = right = bottom = math.nan
        if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
            raise RenderError(
                f"offline renderer: stage must be four shares (left, top, right, bottom) of the "
                f"frame with left < right and top < bottom, got {stage!r}")
        stage = (left, top, right, bottom)
    return _Options(tuple(hex_to_rgb(c) for c in palette), staging, shadow, float(grain),
                    stage)


class OfflineRenderer:
    """adgen's default renderer: on-brand backgrounds from prompt words, no weights, no network.

    ``model`` is unused (there is none). ``options`` are checked here (see the module
    docstring); each picture reads them from its job. The job's ``kind`` is not read: every
    job gets a still image. ``sources`` reads the renders that extend jobs keep.

    For a job with a product image, ``subject_box`` is the rectangle the product (cropped to its
    visible pixels, resized with Pillow's bicubic filter) is pasted into; its opaque pixels keep
    their exact colours. ``composite`` is then True.
    """

    name = "offline"
    options = frozenset(_OPTIONS) | _IGNORED

    def __init__(self, model: str | None = None, *, sources: SourceReader | None = None,
                 **options: Any) -> None:
        _read_options(options, strict=True)
        self.model = model
        self.sources = sources

    def __call__(self, jobs: Sequence[RenderJob]) -> list[Rendered]:
        """Render each job; jobs that share a product image read it once."""
        products: dict[str, Image.Image] = {}
        return [self.render(job, products) for job in jobs]

    def render(self, job: RenderJob, products: dict[str, Image.Image] | None = None
               ) -> Rendered:
        """Render one job (``products`` caches opened product images by path)."""
        # 1. check inputs
        if job.width < 1 or job.height < 1:
            raise RenderError(f"offline renderer: size {job.width}x{job.height} is not positive")
        opts = _read_options(dict(job.options), strict=False)
        product = None
        if job.product_image is not None and job.source_key is None:
            cache = products if products is not None else {}
            if job.product_image not in cache:
                cache[job.product_image] = load_product(job.product_image)
            product = cache[job.product_image]

        # 2. read the look from the prompt and palette; lay out the frame
        look = resolve_look(job.prompt, job.negative_prompt, opts.palette)
        look = replace(look, grain=look.grain * opts.grain)
        staging = look.staging if opts.staging == "auto" else opts.staging
        lay = _plan(job, look, product.size if product else None, staging, opts.stage)

        # 3. paint the background on a work canvas, then bring it to size with grain
        canvas = _base(look, lay, _fit(job.width, job.height, _GRADIENT_MAX), job.seed)
        canvas = canvas.resize(_fit(job.width, job.height, _WORK_MAX), Image.Resampling.BICUBIC)
        painter = _Painter(canvas, look, lay, job.seed)
        painter.particles(far=True)
        painter.motifs()
        if lay.staging == "podium":
            painter.podium()
        painter.particles(far=False)
        if canvas.size != (job.width, job.height):
            canvas = canvas.resize((job.width, job.height), Image.Resampling.BILINEAR)
        canvas = _grain(canvas, 4.0 * look.grain, job.seed)

        # 4. compose the product, or keep the source render of an extend job
        if job.source_key is not None:
            return _extended(job, canvas, self.sources)
        if product is not None:
            _compose(canvas, product, look, lay, opts.shadow)
        return Rendered(job_key=job.key, image=canvas, subject_box=lay.product,
                        composite=product is not None)
