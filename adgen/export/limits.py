"""The ad platforms' published limits, as data, and the checks adgen runs before it writes
an upload file (the README's "Publishing" section cites the source of each number).

A check returns a list of problems (empty: fine); the writers leave out an ad that has any
and say why in ``exports/export.json``, so one bad ad never costs the others their rows.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from pathlib import PurePosixPath

# --- Google Ads: HTML5 display ads (support.google.com/google-ads/answer/1722096) ----------
HTML5_MAX_BYTES = 150 * 1000
"""ZIP size limit for uploaded HTML5 ads: 150 KB (taken as 150,000 bytes, the stricter)."""
HTML5_MAX_FILES = 40
HTML5_EXTENSIONS = frozenset({".html", ".htm", ".css", ".js", ".gif", ".png", ".jpg", ".jpeg",
                              ".svg"})
HTML5_MAX_SECONDS = 30.0
HTML5_MAX_LOOPS = 3
# Campaign Manager 360 (support.google.com/campaignmanager/answer/4558694) takes up to 100
# files and 9.5 MB and needs a click tag in the primary HTML file: a ZIP that passes Google
# Ads' stricter limits and defines clickTag passes CM360 too.

# --- Google Ads: responsive display ads (developers.google.com/google-ads/api/reference/rpc/
#     latest/ResponsiveDisplayAdInfo) ----------------------------------------------------------
RDA_HEADLINE = 30
RDA_LONG_HEADLINE = 90
RDA_DESCRIPTION = 90
RDA_BUSINESS_NAME = 25
RDA_MAX_TEXTS = 5
RDA_MAX_IMAGES = 15
RDA_IMAGE_TYPES = frozenset({"jpeg", "jpg", "png", "gif"})
RDA_MAX_IMAGE_BYTES = 5120 * 1024
RDA_RATIOS = {"marketing": (1.91, (600, 314)), "square": (1.0, (300, 300))}
"""Image slot -> (aspect ratio, minimum size); the ratio may be off by at most 1%."""
RATIO_TOLERANCE = 0.01

# --- Meta (developers.facebook.com/docs/marketing-api/reference/ad-asset-feed-spec and the
#     Ads Guide at facebook.com/business/ads-guide) ------------------------------------------
META_MAX_IMAGES = 10
META_MAX_TEXTS = 5
META_IMAGE_TYPES = frozenset({"jpeg", "jpg", "png"})
META_MAX_IMAGE_BYTES = 30 * 1024 * 1024
META_MIN_WIDTH = 600
META_RATIOS = {"1:1": 1.0, "4:5": 0.8, "1.91:1": 1.91, "9:16": 9 / 16, "16:9": 16 / 9}
META_RECOMMENDED = {"body": 125, "title": 40, "description": 30}
"""Meta's recommended text lengths: longer text is cut off on some placements (a warning)."""


def google_length(text: str) -> int:
    """Length as Google Ads counts it: double-width characters (CJK) count twice."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def ratio_ok(width: int, height: int, ratio: float) -> bool:
    return abs(width / height - ratio) <= ratio * RATIO_TOLERANCE


def rda_slot(width: int, height: int) -> str | None:
    """The responsive display ad image slot a picture fits ("marketing", "square"), if any."""
    for slot, (ratio, (min_w, min_h)) in RDA_RATIOS.items():
        if ratio_ok(width, height, ratio) and width >= min_w and height >= min_h:
            return slot
    return None


def meta_ratio(width: int, height: int) -> str | None:
    """The Meta aspect ratio a picture has (within 1%), if it is one Meta places."""
    for name, ratio in META_RATIOS.items():
        if ratio_ok(width, height, ratio):
            return name
    return None


def check_text(field: str, text: str, limit: int, *, google: bool = False) -> list[str]:
    length = google_length(text) if google else len(text)
    if length > limit:
        return [f"{field} {text!r} is {length} characters; the limit is {limit}"]
    if not text.strip():
        return [f"{field} is empty"]
    return []


# --- HTML5 banner ZIPs --------------------------------------------------------------------


_AD_SIZE = re.compile(
    r'<meta\s+name="ad\.size"\s+content="width=(\d+),\s*height=(\d+)"\s*/?>', re.I)
_CLICKTAG_VAR = re.compile(r'\bvar\s+clickTag\s*=\s*"https?://[^"]+"')
_CLICKTAG_USE = re.compile(r"window\.open\(\s*window\.clickTag\s*\)")
_EXTERNAL = re.compile(r"""(?:src|href|action|poster)\s*=\s*["']?\s*(?:https?:)?//|"""
                       r"""url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)
_DURATION = re.compile(r"animation-duration:\s*([\d.]+)(m?s)", re.I)
_ITERATIONS = re.compile(r"animation-iteration-count:\s*(\w+)", re.I)


def check_banner_zip(data: bytes, expected: tuple[int, int] | None = None) -> list[str]:
    """Check an HTML5 banner ZIP against Google Ads' and Campaign Manager 360's upload rules:
    size, file count and types, one root ``index.html`` with ``<!DOCTYPE html>``, an
    ``ad.size`` meta tag (matching ``expected``), a ``clickTag`` exit, no external requests,
    animation within 30 s and 3 loops."""
    problems: list[str] = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
            texts = {n: archive.read(n).decode("utf-8", "replace") for n in names
                     if PurePosixPath(n).suffix.lower() in {".html", ".htm", ".css", ".js"}}
    except zipfile.BadZipFile as exc:
        return [f"not a readable ZIP ({exc})"]
    total = len(data)
    if total > HTML5_MAX_BYTES:
        problems.append(f"the ZIP is {total} bytes; Google Ads allows {HTML5_MAX_BYTES} (150 KB)")
    if len(names) > HTML5_MAX_FILES:
        problems.append(f"{len(names)} files; Google Ads allows {HTML5_MAX_FILES}")
    for name in names:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            problems.append(f"unsafe path {name!r} in the ZIP")
        if pure.suffix.lower() not in HTML5_EXTENSIONS:
            problems.append(f"{name}: file type {pure.suffix or '(none)'} is not allowed "
                            f"({', '.join(sorted(HTML5_EXTENSIONS))})")
    page = texts.get("index.html")
    if page is None:
        problems.append("no index.html at the root of the ZIP")
        page = ""
    else:
        if not page.lstrip().lower().startswith("<!doctype html>"):
            problems.append("index.html does not start with <!DOCTYPE html>")
        if "<body" not in page.lower():
            problems.append("index.html has no <body>")
        match = _AD_SIZE.search(page)
        if match is None:
            problems.append('index.html has no <meta name="ad.size" content="width=W,height=H">')
        else:
            found = (int(match[1]), int(match[2]))
            if expected is not None and found != expected:
                problems.append(f"ad.size says {found}, the banner is {expected}")
        if not _CLICKTAG_VAR.search(page):
            problems.append('index.html does not define var clickTag = "https://…"')
        if not _CLICKTAG_USE.search(page):
            problems.append("no exit opens window.clickTag")
    for name, text in texts.items():
        if _EXTERNAL.search(text):
            problems.append(f"{name} requests something outside the ZIP")
    css = "\n".join(texts.values())
    seconds = max((float(v) / (1000 if unit.lower() == "ms" else 1)
                   for v, unit in _DURATION.findall(css)), default=0.0)
    counts = _ITERATIONS.findall(css)
    if any(c.lower() == "infinite" for c in counts):
        problems.append("an animation loops forever; Google Ads stops at 30 s")
        loops = HTML5_MAX_LOOPS + 1
    else:
        loops = max((int(float(c)) for c in counts), default=1)
    if seconds * loops > HTML5_MAX_SECONDS:
        problems.append(f"animation lasts {seconds * loops:g} s; the limit is 30 s")
    if loops > HTML5_MAX_LOOPS:
        problems.append(f"animation loops {loops} times; the limit is {HTML5_MAX_LOOPS}")
    return problems

