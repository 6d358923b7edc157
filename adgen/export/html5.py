"""HTML5 animated banners: one ZIP per variant × IAB size, ready for Google Ads and CM360.

Each banner is the static ad taken apart (:func:`adgen.post.image.compose_layers`, the same
layout, crop, logo and fitted captions): ``background.jpg`` holds the picture and the logo,
one transparent PNG per caption holds its text, plate or scrim, placed where the static ad has
it. CSS keyframes bring the captions in (headline, then the others, then the CTA), hold, and
end on the final frame, which is the static ad; the loop count and length stay within Google's
30 s. The page (``banner.html.j2``, autoescaped) defines ``clickTag`` and opens it on click,
carries the ``ad.size`` meta tag, and requests nothing outside the ZIP. Each ZIP is checked
with :func:`adgen.export.limits.check_banner_zip` before it is written. The background carries
the static ad's invisible watermark (same payload). When banners are AI-generated,
``html5/creatives.json`` lists the ZIPs with the synthetic-content attestation that CM360 and
DV360 take on upload.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from PIL import Image

from adgen.assets import BrandStyle, brand_style
from adgen.errors import AdgenError
from adgen.export.base import ExportContext, Written
from adgen.export.disclosure import IS_SYNTHETIC, ai_generated
from adgen.export.limits import HTML5_MAX_BYTES, check_banner_zip
from adgen.export.source import EXPORTS_DIR, Ad, ExportSource
from adgen.jobs import stable_hash
from adgen.output.cache import RenderCache
from adgen.placements import PRESETS, Placement
from adgen.post.encode import encode_image
from adgen.post.image import Caption, compose_layers
from adgen.provenance import watermark
from adgen.spec import CampaignSpec

TEMPLATE = "banner.html.j2"
BANNER_VERSION = "banner/v2"
"""Bump when banners change for the same inputs, so exported ones are rebuilt."""
ENTRANCE = {"headline": (0.3, "translateY(10px)"), "cta": (0.9, "scale(0.85)")}
"""When each caption starts to enter (seconds into a loop) and how; others use ``OTHER``."""
OTHER = (0.6, "translateY(8px)")
ENTER_SECONDS = 0.6
_ZIP_OVERHEAD = 1500
"""Bytes kept free for ZIP headers when the background's JPEG budget is worked out."""
_ENV = Environment(loader=FileSystemLoader(Path(__file__).parent),
                   autoescape=select_autoescape(["html", "j2"]), keep_trailing_newline=True)


def iab_placement(name: str) -> Placement | None:
    """The IAB preset of a manifest placement name (``iab_300x250``), else ``None``."""
    placement = PRESETS.get(name)
    return placement if placement is not None and name.startswith("iab_") else None


def make_banner(campaign: CampaignSpec, style: BrandStyle, source: ExportSource, ad: Ad,
                asset: dict[str, Any], *, url: str, seconds: float, loops: int) -> bytes:
    """The checked banner ZIP of ``ad`` at the IAB placement of ``asset``."""
    # 1. take the static ad apart again from its cached render
    placement = iab_placement(str(asset["placement"]))
    if placement is None:
        raise AdgenError(f"placement {asset['placement']!r} is not an IAB display size")
    cached = RenderCache.of(source.out_dir).get(str(asset["job_key"]))
    if cached is None:
        raise AdgenError(f"the render of {ad.variant_id} is not in the cache; run the campaign "
                         "again (it re-renders it) and export again")
    texts = dict(ad.captions)
    if campaign.provenance.labelled(placement):  # drawn on the static ad as a caption too
        texts["label"] = campaign.provenance.label
    layers = compose_layers(cached.load(), placement, subject_box=cached.subject_box,
                            logo=style.logo, captions=[Caption(r, t) for r, t in texts.items()],
                            colors=style.colors, font=style.font)
    background = layers.background.convert("RGBA")
    if layers.logo is not None:
        background = Image.alpha_composite(background, layers.logo)
    if asset.get("watermark"):  # the static ad's payload, so a copy resolves to this variant
        background = watermark.embed(background.convert("RGB"), str(asset["watermark"]))
    # 2. one PNG per caption, cropped to what it paints
    sprites, files = [], {}
    for index, (role, layer) in enumerate(_in_order(layers.captions), start=1):
        box = layer.getbbox()
        if box is None:
            continue
        name = f"caption-{index}.png"
        files[name] = _png(layer.crop(box))
        start, entrance = ENTRANCE.get(role, OTHER)
        sprites.append({"file": name, "role": role, "text": texts.get(role, ""),
                        "left": box[0], "top": box[1], "width": box[2] - box[0],
                        "height": box[3] - box[1], "entrance": entrance,
                        "start": _percent(start, seconds),
                        "end": _percent(start + ENTER_SECONDS, seconds)})
    # 3. the page, from the autoescaped template
    page = _ENV.get_template(TEMPLATE).render(
        width=placement.width, height=placement.height, click_url=url, seconds=f"{seconds:g}",
        loops=loops, sprites=sprites, background="background.jpg",
        title=f"{source.campaign} {ad.variant_id}",
        label=" — ".join(t for t in (ad.headline, ad.cta) if t) or source.campaign,
    ).encode("utf-8")
    # 4. the background JPEG gets what the byte budget leaves
    budget = HTML5_MAX_BYTES - _ZIP_OVERHEAD - len(page) - sum(map(len, files.values()))
    files = {"index.html": page,
             "background.jpg": encode_image(background.convert("RGB"), "jpeg",
                                            max_bytes=budget),
             **files}
    data = _zip(files)
    # 5. check it as an ad server would
    problems = check_banner_zip(data, placement.size)
    if problems:
        raise AdgenError("; ".join(problems))
    return data


def write_html5(ctx: ExportContext) -> Written:
    """One banner ZIP per finished ad × IAB placement; a banner that cannot be made (render
    gone from the cache, over the byte budget) is left out with the reason."""
    campaign = ctx.need_campaign("HTML5 banners")
    url = ctx.url("HTML5 banners (their clickTag)")
    style = brand_style(campaign)
    out = Written()
    root = ctx.source.out_dir / EXPORTS_DIR
    creatives = []
    for ad in ctx.source.ads:
        for asset in ad.images():
            placement = str(asset["placement"])
            if iab_placement(placement) is None:
                continue
            rel = f"html5/{ad.variant_id}/{placement}.zip"
            key = stable_hash(BANNER_VERSION, asset["asset_key"], asset["sha256"], url,
                              ctx.settings.banner_seconds, ctx.settings.banner_loops)
            if ctx.previous.get(rel) == key and (root / rel).is_file():
                out.files[rel], out.keys[rel] = (root / rel).read_bytes(), key
                creatives.append(_creative(rel, ad, asset))
                continue
            try:
                data = make_banner(campaign, style, ctx.source, ad, asset, url=url,
                                   seconds=ctx.settings.banner_seconds,
                                   loops=ctx.settings.banner_loops)
            except AdgenError as exc:
                out.skip(ad.variant_id, str(exc), placement)
                continue
            out.files[rel], out.keys[rel] = data, key
            creatives.append(_creative(rel, ad, asset))
    if any(IS_SYNTHETIC in c.values() for c in creatives):
        out.files["html5/creatives.json"] = json.dumps({"creatives": creatives}, indent=2,
                                                       ensure_ascii=False) + "\n"
    if not out.files and not out.skipped:
        out.warnings.append("no finished ad has an IAB display placement (300x250, 728x90, …); "
                            "add one to the campaign's placements to get HTML5 banners")
    return out


def _creative(rel: str, ad: Ad, asset: dict[str, Any]) -> dict[str, Any]:
    """A banner as CM360/DV360 take it: its ZIP and, when AI-generated, the attestation."""
    entry = {"file": rel, "variant_id": ad.variant_id, "placement": str(asset["placement"])}
    if ai_generated(asset):
        entry["syntheticContentAttestationStatus"] = IS_SYNTHETIC
    return entry


def _in_order(captions: dict[str, Image.Image]) -> list[tuple[str, Image.Image]]:
    """Headline first, CTA last, the others between (the order they enter)."""
    rank = {"headline": 0, "cta": 2}
    return sorted(captions.items(), key=lambda item: rank.get(item[0], 1))


def _percent(at: float, seconds: float) -> str:
    return f"{min(100.0, 100.0 * at / seconds):.2f}".rstrip("0").rstrip(".")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    """A deterministic ZIP (fixed dates, this order): text deflated, pictures stored."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = (zipfile.ZIP_DEFLATED if name.endswith(".html")
                                  else zipfile.ZIP_STORED)
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()

