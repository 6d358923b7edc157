"""Google Ads upload files, every ad created paused.

- ``google/responsive_display_ads.csv``: a Google Ads Editor import sheet, one responsive
  display ad per variant in an ad group per segment: up to 5 headlines (30 characters), a long
  headline (90), up to 5 descriptions (90), the business name (25), the final URL, and the
  variant's pictures by slot (1.91:1 marketing images, at least 600x314; 1:1 square ones, at
  least 300x300; ratio within 1%; GIF/JPEG/PNG up to 5120 KB). Google counts double-width
  (CJK) characters twice; so does adgen.
- ``google/assets.json``, when ads are AI-generated: their pictures as Google Ads API assets,
  each AI-generated one with its ``synthetic_content_info`` attestation
  (:mod:`adgen.export.disclosure`);
- ``google/customer_match/<variant_id>.csv``: with ``export.audiences``, each variant's
  customers as hashed ``Email``/``Phone`` (Customer Match).

Copy mapping: headlines = the captions that fit 30 characters (headline, CTA, others); long
headline = the headline; descriptions = the other captions and the CTA (the headline when
there is nothing else). Each ad's final URL is ``export.url`` with the variant id as
``utm_content``: Google Ads reports show the final URL, so their rows can be matched back to
variants (:mod:`adgen.experiments.platforms`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pandas as pd

from adgen.errors import CampaignError
from adgen.export import limits
from adgen.export.audiences import customer_lists
from adgen.export.base import ExportContext, Written
from adgen.export.disclosure import GOOGLE_ATTESTATION, ai_generated
from adgen.export.source import Ad
from adgen.output.files import safe_csv

HEADLINES = [f"Headline {i}" for i in range(1, limits.RDA_MAX_TEXTS + 1)]
DESCRIPTIONS = [f"Description {i}" for i in range(1, limits.RDA_MAX_TEXTS + 1)]
RDA_COLUMNS = ["Campaign", "Ad group", "Ad type", "Status", *HEADLINES, "Long headline",
               *DESCRIPTIONS, "Business name", "Final URL", "Marketing images",
               "Square marketing images"]
AD_TYPE = "Responsive display ad"
TAG = "utm_content"
"""The final URL's query parameter that names the variant."""
PAUSED = "Paused"


def write_google(ctx: ExportContext) -> Written:
    source, settings = ctx.source, ctx.settings
    url = ctx.url("the Google Ads export")
    business = settings.business_name or (ctx.campaign.brand.name if ctx.campaign else "")
    if not business:
        raise CampaignError("the Google Ads export needs a business name: set "
                            "export.business_name (or brand.name) in the campaign")
    problems = limits.check_text("business name", business, limits.RDA_BUSINESS_NAME,
                                 google=True)
    if problems:
        raise CampaignError(f"export.business_name: {problems[0]} (Google Ads' limit)")
    if any(key == TAG for key, _ in parse_qsl(urlsplit(url).query)):
        raise CampaignError(f"export.url sets {TAG}, which the Google Ads export sets to each "
                            "ad's variant id (so reports can be matched back to variants): "
                            f"remove {TAG} from export.url")
    out = Written()
    rows, assets = [], []
    for ad in source.ads:
        row, reasons = _rda(ctx, ad)
        if reasons:
            out.skip(ad.variant_id, "; ".join(reasons))
            continue
        rows.append({**dict.fromkeys(RDA_COLUMNS, ""), "Campaign": source.campaign,
                     "Ad group": f"{source.campaign} {ad.segment_id}", "Ad type": AD_TYPE,
                     "Status": PAUSED, **row, "Business name": business,
                     "Final URL": tagged(url, ad.variant_id)})
        assets += _api_assets(ctx, ad, row)
    out.files["google/responsive_display_ads.csv"] = safe_csv(
        pd.DataFrame(rows, columns=RDA_COLUMNS))
    if any("synthetic_content_info" in a for a in assets):
        out.files["google/assets.json"] = json.dumps({"assets": assets}, indent=2,
                                                     ensure_ascii=False) + "\n"
    if settings.audiences:
        lists = customer_lists(ctx.need_audience(), ctx.id_column, source.assignments(),
                               platform="google", email_column=settings.email_column,
                               phone_column=settings.phone_column,
                               country_code=settings.phone_country_code)
        if lists.columns == (None, None):
            out.warnings.append("export.audiences: the audience has no e-mail or phone column; "
                                "no customer match lists written")
        for variant_id, frame in lists.by_variant.items():
            out.files[f"google/customer_match/{variant_id}.csv"] = safe_csv(frame)
        if lists.left_out:
            out.warnings.append(f"{lists.left_out} assigned customers have no usable e-mail "
                                "or phone and are not in the customer match lists")
    return out


def tagged(url: str, variant_id: str) -> str:
    """``url`` with ``utm_content=<variant_id>`` added to its query."""
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, f"{TAG}={quote(variant_id, safe='')}"]))
    return parts._replace(query=query).geturl()


def _fits(text: str, limit: int) -> bool:
    return bool(text.strip()) and limits.google_length(text) <= limit


def _rda(ctx: ExportContext, ad: Ad) -> tuple[dict[str, Any], list[str]]:
    """One ad's text and image columns, or the reasons it cannot be a responsive display ad."""
    reasons = []
    others = [t for role, t in ad.captions.items() if role not in ("headline", "cta") and t]
    headlines = _unique(t for t in [ad.headline, ad.cta, *others]
                        if _fits(t, limits.RDA_HEADLINE))[: limits.RDA_MAX_TEXTS]
    if not headlines:
        reasons.append(f"no caption fits a {limits.RDA_HEADLINE}-character headline")
    long_headline = ad.headline or ad.cta
    reasons += limits.check_text("long headline", long_headline, limits.RDA_LONG_HEADLINE,
                                 google=True)
    descriptions = _unique(t for t in [*others, ad.cta]
                           if _fits(t, limits.RDA_DESCRIPTION) and t != long_headline)
    descriptions = (descriptions or [long_headline])[: limits.RDA_MAX_TEXTS]
    slots: dict[str, list[str]] = {"marketing": [], "square": []}
    base = ctx.settings.asset_base_url
    for asset in ad.images():
        width, height = int(asset["width"] or 0), int(asset["height"] or 0)
        slot = limits.rda_slot(width, height) if width and height else None
        if (slot is None or str(asset["format"]).lower() not in limits.RDA_IMAGE_TYPES
                or int(asset["bytes"] or 0) > limits.RDA_MAX_IMAGE_BYTES):
            continue
        slots[slot].append(ctx.source.asset_url(asset, base))
    if not slots["marketing"]:
        reasons.append("no 1.91:1 picture of at least 600x314 in JPEG/PNG/GIF (add the "
                       "display_1.91 placement)")
    if not slots["square"]:
        reasons.append("no 1:1 picture of at least 300x300 in JPEG/PNG/GIF (add feed_square "
                       "or display_square)")
    row: dict[str, Any] = dict(zip(HEADLINES, headlines, strict=False))
    row.update(zip(DESCRIPTIONS, descriptions, strict=False))
    row["Long headline"] = long_headline
    row["Marketing images"] = ";".join(slots["marketing"][: limits.RDA_MAX_IMAGES])
    row["Square marketing images"] = ";".join(slots["square"][: limits.RDA_MAX_IMAGES])
    return row, reasons


def _api_assets(ctx: ExportContext, ad: Ad, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The pictures the sheet's row uses, as Google Ads API image assets: an AI-generated one
    carries the advertiser's synthetic-content attestation."""
    used = set(row["Marketing images"].split(";") + row["Square marketing images"].split(";"))
    entries = []
    for asset in ad.images():
        where = ctx.source.asset_url(asset, ctx.settings.asset_base_url)
        if where not in used:
            continue
        entry: dict[str, Any] = {"name": f"{ad.variant_id} {asset['placement']}",
                                 "type": "IMAGE", "file": where}
        if ai_generated(asset):
            entry["synthetic_content_info"] = GOOGLE_ATTESTATION
        entries.append(entry)
    return entries


def _unique(texts: Any) -> list[str]:
    return list(dict.fromkeys(texts))
