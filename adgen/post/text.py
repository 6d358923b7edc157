"""Caption text: fonts, glyph fallback, right-to-left scripts, wrapping and fitting to a box.

Pillow draws one font at a time and has no fallback of its own, so a caption is split into runs
by which font of a chain (brand font, then the bundled DejaVu Sans, then WenQuanYi Micro Hei for
CJK, then Noto Color Emoji) covers each character, read from the fonts' cmaps with fontTools.
Emoji (characters shown as emoji by default, or followed by U+FE0F) go to the colour emoji font,
a bitmap font that FreeType draws only at its strike size: its runs are measured and drawn at
that size and scaled to the text's size (:func:`paste_color_runs`). Characters that no font
covers are reported, never drawn as empty boxes. Lines are laid out with libraqm when Pillow has
it (Arabic shaping, right-to-left order); without it, right-to-left runs are reversed so at least
their order is right.

:func:`fit_text` finds, by binary search on the font size, the largest size at which the text,
greedily wrapped, fits a box: every glyph's ink stays inside the box. Lines break at spaces and,
next to Chinese or Japanese, where Unicode's line breaking (UAX #14, read with uniseg) allows:
between ideographs and kana, never before closing punctuation or small kana nor after an opening
bracket (kinsoku), with Latin words in a mixed line kept whole. When no size fits because a word
is wider than the box, the search runs again with such words hyphenated (pyphen's dictionary for
the caption's language, English rules by default) or, where the dictionary has no break that
fits, broken between characters; ``TextBlock.hyphenated`` says so. When still no size fits, it
runs once more with lines whose ink overhangs the box wrapped narrower. Only when even that fails
does a :class:`~adgen.errors.PostProcessError` say which caption is too long and how to fix it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from PIL import Image, ImageDraw, ImageFont, features

from adgen.errors import AssetError, PostProcessError

if TYPE_CHECKING:
    import pyphen

Box = tuple[int, int, int, int]

FONTS_DIR = Path(__file__).resolve().parent.parent / "fonts"
REGULAR = FONTS_DIR / "DejaVuSans.ttf"
BOLD = FONTS_DIR / "DejaVuSans-Bold.ttf"
CJK = FONTS_DIR / "wqy-microhei.ttc"
EMOJI = FONTS_DIR / "NotoColorEmoji.ttf"
EMOJI_STRIKE = 109
"""The one pixel size at which the bitmap colour emoji font can be loaded."""

RAQM = bool(features.check("raqm"))
"""Whether Pillow has libraqm (complex text layout); checked once."""
_LAYOUT = ImageFont.Layout.RAQM if RAQM else ImageFont.Layout.BASIC

# Chinese and Japanese: Han, kana, bopomofo, CJK punctuation and symbols, full- and half-width
# forms. A line break next to one of these follows UAX #14 (between characters, with kinsoku);
# anywhere else lines break at spaces only. Hangul is not here: Korean breaks at spaces.
_CJK = re.compile(
    "[\u2e80-\u2fdf\u2ff0-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3200-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\ufe10-\ufe1f\ufe30-\ufe4f\uff00-\uffef"
    "\U0001b000-\U0001b16f\U00020000-\U0003ffff]")
_BREAKING_SPACE = re.compile(r"[ \t\u1680\u2000-\u2006\u2008-\u200a\u205f\u3000]+")
_COMMON = ("Z", "P", "N", "S")  # categories that stay in the current run's font when covered
# Characters below U+1F000 that are emoji by default (Unicode's Emoji_Presentation); the others
# there are text unless followed by U+FE0F. Everything the emoji font has from U+1F000 is emoji.
_EMOJI_DEFAULT = re.compile(
    "[\u231a\u231b\u23e9-\u23ec\u23f0\u23f3\u25fd\u25fe\u2614\u2615\u2648-\u2653"
    "\u267f\u2693\u26a1\u26aa\u26ab\u26bd\u26be\u26c4\u26c5\u26ce\u26d4\u26ea"
    "\u26f2\u26f3\u26f5\u26fa\u26fd\u2705\u270a\u270b\u2728\u274c\u274e"
    "\u2753-\u2755\u2757\u2795-\u2797\u27b0\u27bf\u2b1b\u2b1c\u2b50\u2b55]")


@dataclass(frozen=True)
class Face:
    """One font of a fallback chain. ``embolden`` draws it with a thin stroke (synthetic bold)."""

    path: Path
    index: int = 0
    embolden: bool = False
    color: bool = False
    """A bitmap colour font (emoji): loaded at :data:`EMOJI_STRIKE` px and scaled."""


@dataclass(frozen=True)
class TextStyle:
    """How a caption is fitted and set. Sizes are in pixels; ``pad_em`` is the inner padding
    (x, y) in ems that a button plate needs around the text."""

    bold: bool = False
    min_size: int = 10
    max_size: int = 200
    line_spacing: float = 1.0
    max_lines: int | None = None
    align: Literal["center", "start"] = "center"
    valign: Literal["top", "center", "bottom"] = "top"
    pad_em: tuple[float, float] = (0.0, 0.0)
    one_line_first: bool = False
    """Try a single line first (buttons), wrapping only when one line cannot fit."""


@dataclass(frozen=True)
class Run:
    """A piece of one line set in one font and one direction, at ``x`` on ``baseline``."""

    text: str
    face: Face
    rtl: bool
    x: int = 0
    baseline: int = 0


@dataclass
class TextBlock:
    """A fitted caption: its runs in visual order, the size, the box its lines occupy (font
    metrics, plus ``pad_em``: where a button plate goes) and the box of the drawn ink."""

    runs: list[Run]
    size: int
    lines: int
    frame: Box
    ink: Box
    rtl: bool = False
    faces: list[Face] = field(default_factory=list)
    hyphenated: bool = False
    """A word too wide for the box was broken over lines (with a hyphen)."""


# -- fonts -----------------------------------------------------------------------------------


@lru_cache(maxsize=2048)
def load_font(path: Path, index: int, size: int) -> ImageFont.FreeTypeFont:
    """A FreeType font at ``size`` px, cached (fonts are loaded once per process and size)."""
    try:
        return ImageFont.truetype(str(path), size, index=index, layout_engine=_LAYOUT)
    except OSError as exc:
        raise AssetError(
            f"font {str(path)!r} cannot be loaded ({exc}): give a TrueType/OpenType file "
            "(.ttf, .otf, .ttc) or leave the brand font unset to use the bundled DejaVu Sans"
        ) from None


@lru_cache(maxsize=32)
def coverage(path: Path, index: int = 0) -> frozenset[int]:
    """The code points the font has glyphs for (its Unicode cmap), cached."""
    from fontTools.ttLib import TTFont, TTLibError

    if not path.is_file():
        raise AssetError(
            f"font {str(path)!r} does not exist: check the path, or leave the brand font unset "
            "to use the bundled DejaVu Sans"
        )
    try:
        with TTFont(str(path), fontNumber=index, lazy=True) as font:
            cmap = font.getBestCmap() or {}
    except (TTLibError, OSError, ValueError, KeyError, AssertionError) as exc:
        raise AssetError(
            f"font {str(path)!r} is not a readable TrueType/OpenType font ({exc}): export it "
            "again as .ttf or .otf"
        ) from None
    if not cmap:
        raise AssetError(f"font {str(path)!r} has no Unicode character map: use another font")
    return frozenset(cmap)


def font_chain(brand: Path | None = None, *, bold: bool = False) -> tuple[Face, ...]:
    """The fallback chain for a caption: the brand font (if any), DejaVu Sans (Bold),
    WenQuanYi Micro Hei for CJK (emboldened when ``bold``, as it has no bold face), then Noto
    Color Emoji."""
    faces = [Face(brand)] if brand is not None else []
    faces += [Face(BOLD if bold else REGULAR), Face(CJK, 0, embolden=bold),
              Face(EMOJI, color=True)]
    return tuple(faces)


def _font(face: Face, size: int) -> tuple[ImageFont.FreeTypeFont, float]:
    """The loaded font for ``face`` and the factor from its pixels to ``size`` px (1 except for
    colour bitmap fonts, which load only at their strike size)."""
    if face.color:
        return load_font(face.path, face.index, EMOJI_STRIKE), size / EMOJI_STRIKE
    return load_font(face.path, face.index, size), 1.0


def _is_emoji(text: str, i: int) -> bool:
    """Whether ``text[i]`` is shown as an emoji (by default, or asked for with U+FE0F)."""
    code = ord(text[i])
    return (code >= 0x1F000 or _EMOJI_DEFAULT.match(text[i]) is not None
            or text[i + 1:i + 2] == "\ufe0f")


def check_font(path: Path) -> None:
    """Raise :class:`AssetError` naming ``path`` if it is missing or not a usable font."""
    coverage(path, 0)
    load_font(path, 0, 12)


# -- characters, runs and direction ----------------------------------------------------------


def _ignorable(char: str) -> bool:
    """Invisible formatting characters (ZWJ, direction marks, variation selectors)."""
    code = ord(char)
    return (
        unicodedata.category(char) == "Cf"
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
    )


def describe_char(char: str) -> str:
    """``U+E000 (private use)``, ``U+0378 (unassigned)`` or ``U+1F600 GRINNING FACE``."""
    category = unicodedata.category(char)
    if category == "Co":
        return f"U+{ord(char):04X} (private use)"
    if category == "Cn":
        return f"U+{ord(char):04X} (unassigned)"
    return f"U+{ord(char):04X} {unicodedata.name(char, '')}".rstrip()


def missing_characters(text: str, chain: tuple[Face, ...]) -> list[tuple[int, str]]:
    """``(position, char)`` of every visible character that no font of ``chain`` covers
    (a caption is scanned once; the answer is remembered)."""
    return list(_missing(text, chain))


@lru_cache(maxsize=4096)
def _missing(text: str, chain: tuple[Face, ...]) -> tuple[tuple[int, str], ...]:
    covers = [coverage(face.path, face.index) for face in chain]
    return tuple(
        (i, char)
        for i, char in enumerate(text)
        if char != "\n" and not _ignorable(char) and not any(ord(char) in c for c in covers)
    )


def is_rtl(text: str) -> bool:
    """True when the first strong directional character is right-to-left (Hebrew, Arabic)."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return True
        if kind == "L":
            return False
    return False


@lru_cache(maxsize=4096)
def split_runs(text: str, chain: tuple[Face, ...]) -> tuple[tuple[str, Face], ...]:
    """Split ``text`` into ``(text, face)`` runs: letters go to the first font that covers them;
    emoji to the first colour font that covers them; spaces, digits and punctuation stay in the
    current font when it covers them; invisible characters stay with their neighbours. Raises
    :class:`PostProcessError` on a character no font covers (callers check captions first, so
    this is a safeguard)."""
    covers = [coverage(face.path, face.index) for face in chain]
    runs: list[tuple[str, Face]] = []
    current: int | None = None
    buffer: list[str] = []
    for position, char in enumerate(text):
        code = ord(char)
        emoji = next((i for i, c in enumerate(covers) if chain[i].color and code in c), None)
        if emoji is not None and not _is_emoji(text, position):
            emoji = None
        if _ignorable(char) or (
            emoji is None
            and current is not None
            and code in covers[current]
            and unicodedata.category(char)[0] in (*_COMMON, "M")
        ):
            buffer.append(char)
            continue
        choice = emoji if emoji is not None else next(
            (i for i, c in enumerate(covers) if code in c and not chain[i].color), None)
        if choice is None:
            choice = next((i for i, c in enumerate(covers) if code in c), None)
        if choice is None:
            raise PostProcessError(f"no font can draw {describe_char(char)} in {text!r}")
        if choice != current and current is not None and buffer:
            runs.append(("".join(buffer), chain[current]))
            buffer = []
        current = choice
        buffer.append(char)
    if buffer:
        runs.append(("".join(buffer), chain[current if current is not None else 0]))
    return tuple(runs)


# -- measuring -------------------------------------------------------------------------------


def _stroke(face: Face, size: int) -> int:
    return max(1, round(size * 0.03)) if face.embolden else 0


def _shape(text: str, rtl: bool) -> tuple[str, str | None]:
    """Text and direction for Pillow: libraqm gets a direction; basic layout gets
    right-to-left text reversed (no shaping, but the right order) and no direction."""
    if RAQM:
        return text, "rtl" if rtl else "ltr"
    if rtl:
        text = "".join(reversed(text))
    return "".join(c for c in text if not _ignorable(c)), None


def _width(text: str, face: Face, size: int) -> float:
    shaped, direction = _shape(text, _has_rtl(text))
    font, scale = _font(face, size)
    return float(font.getlength(shaped, direction=direction)) * scale


def _has_rtl(text: str) -> bool:
    return any(unicodedata.bidirectional(c) in ("R", "AL") for c in text)


@lru_cache(maxsize=16384)
def measure(text: str, chain: tuple[Face, ...], size: int) -> float:
    """Advance width of ``text`` at ``size`` px, run by run."""
    return sum(_width(run, face, size) for run, face in split_runs(text, chain))


@lru_cache(maxsize=4096)
def _tokens(paragraph: str) -> tuple[tuple[str, str], ...]:
    """``(separator, piece)`` pairs: the pieces between which a line may break, and what joins
    each piece to the one before it (a space, or nothing). See :func:`_breaks`."""
    text = " ".join(_BREAKING_SPACE.split(paragraph.strip()))
    cuts = [0, *_breaks(text), len(text)]
    return tuple(
        (" " if start and text[start - 1] == " " else "", text[start:end].rstrip(" "))
        for start, end in pairwise(cuts) if end > start)


def _breaks(text: str) -> tuple[int, ...]:
    """Where a line may break in ``text`` (spaces already single): the positions of the pieces
    after the first. After a space, as always, unless Chinese or Japanese stands on either side;
    next to Chinese or Japanese, where UAX #14 allows it (uniseg's rules and Line_Break data):
    between ideographs and kana, but never before closing punctuation, iteration marks, small
    kana or ー, nor after an opening bracket (kinsoku), and never inside a Latin word."""
    if _CJK.search(text) is None:
        return tuple(i + 1 for i, char in enumerate(text) if char == " ")
    from uniseg.linebreak import line_break_breakables

    allowed = list(line_break_breakables(text))
    cuts = []
    for i in range(1, len(text)):
        if text[i] == " ":
            continue
        before = text[i - 2] if text[i - 1] == " " else text[i - 1]
        east_asian = _CJK.match(before) is not None or _CJK.match(text[i]) is not None
        if allowed[i] if east_asian else text[i - 1] == " ":
            cuts.append(i)
    return tuple(cuts)


HYPHEN = "-"


@lru_cache(maxsize=32)
def _dictionary(lang: str) -> pyphen.Pyphen | None:
    """pyphen's hyphenation dictionary for a locale (``de_DE``, ``de``, ``en``), falling back
    to English rules for languages pyphen lacks; None for scripts without hyphenation."""
    import pyphen

    if _is_cjk_locale(lang):
        return None
    name = pyphen.language_fallback(lang.replace("-", "_")) or "en_US"
    return pyphen.Pyphen(lang=name)


def _is_cjk_locale(lang: str) -> bool:
    return lang.replace("-", "_").split("_")[0].lower() in ("ja", "zh", "ko")


def _break_word(word: str, chain: tuple[Face, ...], size: int, first: float, width: float,
                lang: str) -> list[str] | None:
    """``word`` cut into pieces, each but the last ending in a hyphen (none next to Chinese or
    Japanese), the first no wider than ``first`` and the others than ``width``: at the
    dictionary's last hyphenation point that fits when it fills most of the line, else between
    characters (never inside a combining sequence). None when not even one character and a
    hyphen fit."""
    dictionary = _dictionary(lang)
    points = set(dictionary.positions(word)) if dictionary is not None else set()
    chars = {i for i in range(1, len(word))
             if unicodedata.category(word[i])[0] != "M" and not _ignorable(word[i])}
    pieces: list[str] = []
    start, limit = 0, first
    while measure(word[start:], chain, size) > limit:
        def fits(end: int) -> bool:
            return measure(word[start:end] + _hyphen(word, end), chain, size) <= limit  # noqa: B023

        candidates = [i for i in sorted(chars) if i > start]
        dict_ok = [i for i in candidates if i in points and fits(i)]
        char_ok = [i for i in candidates if fits(i)]
        end = max(char_ok) if char_ok else None
        if dict_ok and end is not None and max(dict_ok) - start >= 0.6 * (end - start):
            end = max(dict_ok)  # a dictionary break, unless it leaves the line half empty
        if end is None:
            if pieces or limit == width:
                return None
            pieces.append("")  # nothing fits on the current line: start on the next one
            limit = width
            continue
        pieces.append(word[start:end] + _hyphen(word, end))
        start, limit = end, width
    pieces.append(word[start:])
    return pieces


def _hyphen(word: str, end: int) -> str:
    """The mark for a break of ``word`` before ``end``: a hyphen, or nothing next to CJK."""
    return "" if _CJK.match(word[end - 1]) or _CJK.match(word[end]) else HYPHEN


@lru_cache(maxsize=16384)
def _wrap(text: str, chain: tuple[Face, ...], size: int, width: float, lang: str | None
          ) -> tuple[tuple[str, ...], bool] | None:
    """Lines, and whether a word was broken; see :func:`wrap`. Remembered per text, fonts,
    size, width and language: the same caption is wrapped for every placement and variant."""
    lines: list[str] = []
    broke = False
    space = measure(" ", chain, size)
    for paragraph in text.split("\n"):
        # Punctuation shared by the scripts ("“", "：") takes the font of its neighbours, so a
        # line with CJK is measured whole rather than as the sum of its pieces.
        whole = _CJK.search(paragraph) is not None
        line, line_width = "", 0.0
        for separator, piece in _tokens(paragraph):
            piece_width = measure(piece, chain, size)
            gap = space if separator and line else 0.0
            if piece_width > width:
                if lang is None:
                    return None
                room = width - line_width - gap if line else width
                pieces = _break_word(piece, chain, size, room, width, lang)
                if pieces is None:
                    return None
                broke = True
                head, *rest = pieces
                if head:
                    line = f"{line}{separator if line else ''}{head}"
                if line:
                    lines.append(line)
                lines.extend(rest[:-1])
                line = rest[-1]
                line_width = measure(line, chain, size)
                continue
            joined = f"{line}{separator if line else ''}{piece}"
            joined_width = (measure(joined, chain, size) if whole
                            else line_width + gap + piece_width)
            if line and joined_width > width:
                lines.append(line)
                line, line_width = piece, piece_width
            else:
                line, line_width = joined, joined_width
        if line:
            lines.append(line)
    return tuple(lines), broke


def wrap(text: str, chain: tuple[Face, ...], size: int, width: float, lang: str | None = None
         ) -> list[str] | None:
    """Greedy wrap of ``text`` (explicit newlines kept) into lines no wider than ``width`` at
    ``size`` px, breaking where :func:`_breaks` allows. A single piece (a word) wider than
    ``width`` makes it None, unless ``lang`` (a locale such as ``de_DE``) is given: then the word
    is hyphenated (see :func:`_break_word`)."""
    result = _wrap(text, chain, size, width, lang)
    return None if result is None else list(result[0])


def balanced_wrap(text: str, chain: tuple[Face, ...], size: int, width: float,
                  lang: str | None = None) -> list[str] | None:
    """:func:`wrap`, then the narrowest width that keeps the same number of lines, so lines
    come out even ("Summer hydration, / zero plastic" rather than a lone last word). Text
    with a hyphenated word is not evened out (it fills the box)."""
    lines = _balanced(text, chain, size, width, lang)
    return None if lines is None else list(lines)


@lru_cache(maxsize=16384)
def _balanced(text: str, chain: tuple[Face, ...], size: int, width: float, lang: str | None
              ) -> tuple[str, ...] | None:
    lines = wrap(text, chain, size, width, lang)
    if lines is None or len(lines) < 2:
        return None if lines is None else tuple(lines)
    low, high = int(widest_word(text, chain, size)[1]) + 1, int(width)
    while low < high:
        mid = (low + high) // 2
        attempt = wrap(text, chain, size, mid)
        if attempt is not None and len(attempt) <= len(lines):
            high = mid
        else:
            low = mid + 1
    return tuple(wrap(text, chain, size, high, lang) or lines)


def widest_word(text: str, chain: tuple[Face, ...], size: int) -> tuple[str, float]:
    pieces = [p for paragraph in text.split("\n") for _, p in _tokens(paragraph)]
    widths = [(measure(p, chain, size), p) for p in pieces] or [(0.0, "")]
    width, piece = max(widths)
    return piece, width


# -- layout ----------------------------------------------------------------------------------


def _metrics(faces: list[Face], size: int) -> tuple[int, int]:
    ascent, descent = 0, 0
    for face in faces:
        font, scale = _font(face, size)
        a, d = font.getmetrics()
        ascent, descent = max(ascent, round(a * scale)), max(descent, round(d * scale))
    return ascent, descent


def layout(text: str, chain: tuple[Face, ...], size: int, box: Box, style: TextStyle,
           lang: str | None = None, *, trim: bool = False) -> TextBlock | None:
    """Set ``text`` at ``size`` px inside ``box``; None when it does not fit (too wide, too
    many lines, too tall, or any glyph's ink outside the box). With ``lang``, words wider
    than the box are hyphenated (see :func:`wrap`). With ``trim``, lines that fit by their
    advance but whose ink reaches outside the box (glyphs overhang their advance: side
    bearings, synthetic bold) are wrapped again, narrower by the overhang."""
    pad_x, pad_y = round(style.pad_em[0] * size), round(style.pad_em[1] * size)
    inner = (box[0] + pad_x, box[1] + pad_y, box[2] - pad_x, box[3] - pad_y)
    width, height = inner[2] - inner[0], inner[3] - inner[1]
    if width <= 0 or height <= 0:
        return None
    for _ in range(_TRIES if trim else 1):
        lines = balanced_wrap(text, chain, size, width, lang)
        if not lines or (style.max_lines is not None and len(lines) > style.max_lines):
            return None
        block, overhang = _set_lines(text, lines, chain, size, inner, style)
        if block is not None:
            hyphenated = lang is not None and wrap(text, chain, size, width) is None
            frame = (block.frame[0] - pad_x, block.frame[1] - pad_y, block.frame[2] + pad_x,
                     block.frame[3] + pad_y)
            return replace(block, frame=frame, hyphenated=hyphenated)
        width -= overhang
        if overhang <= 0 or width <= 0:
            return None
    return None


_TRIES = 3
"""How often :func:`layout` with ``trim`` wraps again, narrower, before giving up."""


def _set_lines(text: str, lines: list[str], chain: tuple[Face, ...], size: int, inner: Box,
               style: TextStyle) -> tuple[TextBlock | None, int]:
    """``lines`` placed in ``inner`` (the frame is the lines' own box), or None and by how
    many pixels the widest line's ink is wider than ``inner`` (0 when something else fails)."""
    width, height = inner[2] - inner[0], inner[3] - inner[1]
    line_runs = [split_runs(line, chain) for line in lines]
    faces = sorted({face for runs in line_runs for _, face in runs}, key=chain.index)
    ascent, descent = _metrics(faces, size)
    advance = round((ascent + descent) * style.line_spacing)
    block_height = ascent + descent + advance * (len(lines) - 1)
    if block_height > height:
        return None, 0
    top = {"top": inner[1], "center": inner[1] + (height - block_height) // 2,
           "bottom": inner[3] - block_height}[style.valign]
    rtl = is_rtl(text)
    placed: list[Run] = []
    ink = [10**9, 10**9, -(10**9), -(10**9)]
    left_edge, right_edge = 10**9, -(10**9)
    overhang = 0
    for number, runs in enumerate(line_runs):
        baseline = top + ascent + number * advance
        widths = [_width(t, f, size) for t, f in runs]
        line_width = round(sum(widths))
        if line_width > width:
            return None, 0
        if style.align == "center":
            x = inner[0] + (width - line_width) // 2
        else:
            x = inner[2] - line_width if rtl else inner[0]
        left_edge, right_edge = min(left_edge, x), max(right_edge, x + line_width)
        order = list(zip(runs, widths, strict=True))
        if rtl:
            order.reverse()
        cursor = float(x)
        line: list[Run] = []
        line_ink = [10**9, 10**9, -(10**9), -(10**9)]
        for (run_text, face), run_width in order:
            run = Run(run_text, face, _has_rtl(run_text), round(cursor), baseline)
            _grow(line_ink, run_ink(run, size))
            line.append(run)
            cursor += run_width
        overhang = max(overhang, line_ink[2] - line_ink[0] - width)
        # glyphs may overhang their advance (side bearings, synthetic bold): nudge the line in
        dx = max(0, inner[0] - line_ink[0]) - max(0, line_ink[2] - inner[2])
        if dx:
            line = [replace(run, x=run.x + dx) for run in line]
            line_ink[0] += dx
            line_ink[2] += dx
        _grow(ink, (line_ink[0], line_ink[1], line_ink[2], line_ink[3]))
        placed.extend(line)
    if ink[0] < inner[0] or ink[1] < inner[1] or ink[2] > inner[2] or ink[3] > inner[3]:
        return None, overhang
    frame = (left_edge, top, right_edge, top + block_height)
    return TextBlock(placed, size, len(lines), frame, (ink[0], ink[1], ink[2], ink[3]), rtl,
                     faces), 0


def _grow(acc: list[int], box: Box) -> None:
    acc[0], acc[1] = min(acc[0], box[0]), min(acc[1], box[1])
    acc[2], acc[3] = max(acc[2], box[2]), max(acc[3], box[3])


def run_ink(run: Run, size: int) -> Box:
    """The pixel box a run's glyphs cover when drawn."""
    font, scale = _font(run.face, size)
    shaped, direction = _shape(run.text, run.rtl)
    left, top, right, bottom = font.getbbox(
        shaped, anchor="ls", stroke_width=_stroke(run.face, size), direction=direction
    )
    return (run.x + math.floor(left * scale), run.baseline + math.floor(top * scale),
            run.x + math.ceil(right * scale), run.baseline + math.ceil(bottom * scale))


def fit_text(text: str, box: Box, style: TextStyle, *, font: Path | None = None,
             role: str = "caption", where: str = "", lang: str = "en") -> TextBlock:
    """The largest size in ``[style.min_size, style.max_size]`` at which ``text`` fits ``box``
    (binary search). When it fits at no size, the search is repeated with words too wide for
    the box hyphenated by the rules of ``lang`` (a locale: ``de_DE``, ``en``), or broken
    between characters, and then also with lines whose ink overhangs the box wrapped narrower
    (``trim``, see :func:`layout`): the last resort, so text that fits without it is set as
    before. Raises :class:`PostProcessError` naming ``role``, the text's length and ``where``
    (the placement), with a fix, when even that does not fit.

    What fits depends on the box's size only (a block moves with its box), so the search is
    remembered per text, box size, style, font and language: the same caption is fitted for
    every placement of every variant."""
    width, height = box[2] - box[0], box[3] - box[1]
    block = _fit(text, width, height, style, font, lang)
    if block is None:
        chain = font_chain(font, bold=style.bold)
        raise PostProcessError(_too_long(text, chain, box, style, role, where))
    return shifted(block, box[0], box[1])


@lru_cache(maxsize=4096)
def _fit(text: str, width: int, height: int, style: TextStyle, font: Path | None, lang: str
         ) -> TextBlock | None:
    """:func:`fit_text`'s search in a box of ``width`` x ``height`` at the origin; None when
    nothing fits."""
    chain = font_chain(font, bold=style.bold)
    box = (0, 0, width, height)
    if style.one_line_first and style.max_lines != 1:
        single = _largest_fit(text, chain, box, replace(style, max_lines=1))
        if single is not None:
            return single
    best = _largest_fit(text, chain, box, style)
    if best is None:
        best = _largest_fit(text, chain, box, style, lang)
    if best is None:
        best = _largest_fit(text, chain, box, style, lang, trim=True)
    return best


def _largest_fit(text: str, chain: tuple[Face, ...], box: Box, style: TextStyle,
                 lang: str | None = None, *, trim: bool = False) -> TextBlock | None:
    low, high = style.min_size, max(style.min_size, style.max_size)
    best = layout(text, chain, low, box, style, lang, trim=trim)
    if best is None:
        return None
    while low < high:
        mid = (low + high + 1) // 2
        block = layout(text, chain, mid, box, style, lang, trim=trim)
        if block is None:
            high = mid - 1
        else:
            low, best = mid, block
    return best


def one_line_width(text: str, style: TextStyle, *, font: Path | None = None) -> int:
    """Width in px that ``text`` needs on one line at the style's minimum size, padding
    included (to size a button's box before fitting it)."""
    chain = font_chain(font, bold=style.bold)
    size = style.min_size
    return int(measure(" ".join(text.split()), chain, size)) + 2 * round(style.pad_em[0] * size) + 2


def shifted(block: TextBlock, dx: int, dy: int) -> TextBlock:
    """``block`` moved by ``(dx, dy)`` pixels."""
    def move(box: Box) -> Box:
        return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)

    runs = [replace(run, x=run.x + dx, baseline=run.baseline + dy) for run in block.runs]
    return replace(block, runs=runs, frame=move(block.frame), ink=move(block.ink))


def _too_long(text: str, chain: tuple[Face, ...], box: Box, style: TextStyle, role: str,
              where: str) -> str:
    size = style.min_size
    width = box[2] - box[0] - 2 * round(style.pad_em[0] * size)
    height = box[3] - box[1] - 2 * round(style.pad_em[1] * size)
    head = (
        f"caption {role!r} ({len(text)} characters) does not fit {where or 'its box'} "
        f"(text area {max(width, 0)}x{max(height, 0)} px) even at the minimum font size of "
        f"{size} px"
    )
    word, word_width = widest_word(text, chain, size)
    if word_width > width:
        return (
            f"{head}: the word {word!r} alone is {round(word_width)} px wide and even broken "
            f"over lines it does not fit; shorten it, or drop this placement for this caption"
        )
    ascent, descent = _metrics([face for face in chain if not face.color], size)
    per_line = max(1, round((ascent + descent) * style.line_spacing))
    fit_lines = max(1, (height - (ascent + descent)) // per_line + 1)
    if style.max_lines is not None:
        fit_lines = min(fit_lines, style.max_lines)
    needed = len(wrap(text, chain, size, max(width, 1)) or [text])
    if needed <= fit_lines:
        return f"{head}: its glyphs reach outside the text area; shorten it or drop this placement"
    keep = max(1, int(len(text) * fit_lines / needed * 0.9))
    return (
        f"{head}: it needs {needed} lines and only {fit_lines} fit; shorten it to about {keep} "
        f"characters, or drop this placement"
    )


def draw_text(draw: ImageDraw.ImageDraw, block: TextBlock, fill: int | tuple[int, int, int]
              ) -> None:
    """Draw a fitted block, run by run, in ``fill`` (an RGB triple, or a level on "L"). Colour
    (emoji) runs are left out: :func:`paste_color_runs` lays them on the image."""
    for run in block.runs:
        if run.face.color:
            continue
        font = load_font(run.face.path, run.face.index, block.size)
        shaped, direction = _shape(run.text, run.rtl)
        stroke = _stroke(run.face, block.size)
        draw.text(
            (run.x, run.baseline), shaped, font=font, fill=fill, anchor="ls",
            stroke_width=stroke, stroke_fill=fill if stroke else None, direction=direction,
        )


def text_mask(block: TextBlock) -> tuple[Image.Image, tuple[int, int]]:
    """The coverage of ``block``'s glyphs (colour runs left out) as an "L" image over its ink
    box, and where that box starts. Rasterised once per block shape and size, wherever it
    stands: the same caption is drawn for every variant."""
    left, top = block.ink[0] - 2, block.ink[1] - 2
    runs = tuple((r.text, r.face, r.rtl, r.x - left, r.baseline - top) for r in block.runs
                 if not r.face.color)
    return _mask(runs, block.size, (block.ink[2] + 2 - left, block.ink[3] + 2 - top)), (left, top)


@lru_cache(maxsize=256)
def _mask(runs: tuple[tuple[str, Face, bool, int, int], ...], size: int,
          extent: tuple[int, int]) -> Image.Image:
    mask = Image.new("L", (max(1, extent[0]), max(1, extent[1])), 0)
    block = TextBlock([Run(*run) for run in runs], size, 1, (0, 0, 0, 0), (0, 0, 0, 0))
    draw_text(ImageDraw.Draw(mask), block, 255)
    return mask


def paint_text(image: Image.Image, block: TextBlock, fill: tuple[int, ...]) -> None:
    """Paint ``block`` on ``image`` in ``fill`` (RGB, or RGBA on a layer) from its cached
    :func:`text_mask`, then its colour runs; the pixels :func:`draw_text` gives."""
    mask, origin = text_mask(block)
    if image.mode == "RGBA":
        ink = Image.new("RGBA", mask.size, (*fill[:3], 0))
        ink.putalpha(mask)
        image.alpha_composite(ink, dest=origin)
    else:
        image.paste(fill, origin, mask)
    paste_color_runs(image, block)


def paste_color_runs(image: Image.Image, block: TextBlock) -> None:
    """Lay ``block``'s colour (emoji) runs on ``image``: drawn at the font's strike size with
    their own colours and scaled to the block's size. On an "L" image (a text mask) their
    coverage is drawn instead, so masks and layers keep them."""
    for run in block.runs:
        if not run.face.color:
            continue
        font, scale = _font(run.face, block.size)
        shaped, direction = _shape(run.text, run.rtl)
        left, top, right, bottom = (int(v) for v in font.getbbox(
            shaped, anchor="ls", direction=direction))
        if right <= left or bottom <= top:
            continue
        strike = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
        ImageDraw.Draw(strike).text((-left, -top), shaped, font=font, anchor="ls",
                                    embedded_color=True, direction=direction)
        x0, y0 = run.x + math.floor(left * scale), run.baseline + math.floor(top * scale)
        x1, y1 = run.x + math.ceil(right * scale), run.baseline + math.ceil(bottom * scale)
        glyphs = strike.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
        if image.mode == "L":
            image.paste(255, (x0, y0), glyphs.getchannel("A"))
        elif image.mode == "RGBA":
            image.alpha_composite(glyphs, (x0, y0))
        else:
            image.paste(glyphs.convert(image.mode), (x0, y0), glyphs)
