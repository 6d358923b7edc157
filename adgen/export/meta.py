"""Meta (Facebook/Instagram) upload files, every campaign, ad set and ad created PAUSED.

- ``meta/bulk_import.csv``: an Ads Manager bulk-import sheet, one row per ad (variant), with
  the campaign, the ad set (one per segment), the copy, the landing page and the image or
  video file to upload with it;
- ``meta/ad_sets/<segment_id>.json``: per ad set, the Marketing API objects to create, each ad
  with a creative whose ``asset_feed_spec`` holds the variant's pictures, one per ratio Meta
  places, labelled, with placement asset customization rules (feeds get the 4:5 or 1:1
  picture, stories and reels the 9:16 one), its body, title, link and call to action.
  Pictures are URLs when ``export.asset_base_url`` is set (or the assets are in object
  storage), else paths relative to the output folder, to upload first; videos are
  ``upload:<path>`` until their ``video_id`` is known;
- ``meta/audiences/<variant_id>.csv``: with ``export.audiences``, the hashed e-mails/phones of
  the customers assigned to each variant (a customer-list custom audience).

Copy mapping: body (primary text) = the headline; title = the CTA caption; description = any
other caption; the CTA button is ``export.meta_cta``.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from adgen.export import limits
from adgen.export.audiences import customer_lists
from adgen.export.base import ExportContext, Written
from adgen.export.source import Ad
from adgen.output.files import safe_csv

PAUSED = "PAUSED"
BULK_COLUMNS = ["Campaign Name", "Campaign Status", "Campaign Objective", "Buying Type",
                "Ad Set Name", "Ad Set Run Status", "Ad Name", "Ad Status", "Title", "Body",
                "Link Description", "Link", "Call to Action", "Image File Name",
                "Video File Name"]


def write_meta(ctx: ExportContext) -> Written:
    source, settings = ctx.source, ctx.settings
    url = ctx.url("the Meta export")
    out = Written()
    rows: list[dict[str, str]] = []
    ad_sets: dict[str, list[dict[str, Any]]] = {}
    for ad in source.ads:
        images, videos = _eligible(ad, out)
        if not images and not videos:
            out.skip(ad.variant_id, "no picture Meta can place (JPEG/PNG or MP4, at least 600 px "
                     "wide, ratio 1:1, 4:5, 1.91:1, 9:16 or 16:9)")
            continue
        copy = _copy(ad)
        if not copy["body"].strip():
            out.skip(ad.variant_id, "no headline or CTA caption to use as body and title")
            continue
        for field, text in copy.items():
            if len(text) > limits.META_RECOMMENDED[field]:
                out.warnings.append(
                    f"{ad.variant_id}: {field} is {len(text)} characters; Meta recommends at "
                    f"most {limits.META_RECOMMENDED[field]} (longer text is cut off)")
        ad_set = f"{source.campaign} {ad.segment_id}"
        primary = (videos or images)[0]
        rows.append({
            "Campaign Name": source.campaign, "Campaign Status": PAUSED,
            "Campaign Objective": settings.meta_objective, "Buying Type": "AUCTION",
            "Ad Set Name": ad_set, "Ad Set Run Status": PAUSED, "Ad Name": ad.variant_id,
            "Ad Status": PAUSED, "Title": copy["title"], "Body": copy["body"],
            "Link Description": copy["description"], "Link": url,
            "Call to Action": settings.meta_cta,
            "Image File Name": _file_name(primary) if primary in images else "",
            "Video File Name": _file_name(primary) if primary in videos else "",
        })
        ad_sets.setdefault(ad.segment_id, []).append(_ad(ctx, ad, images, videos, copy, url))
    out.files["meta/bulk_import.csv"] = safe_csv(pd.DataFrame(rows, columns=BULK_COLUMNS))
    for segment_id, ads in ad_sets.items():
        payload = {
            "campaign": {"name": source.campaign, "objective": settings.meta_objective,
                         "status": PAUSED, "buying_type": "AUCTION",
                         "special_ad_categories": []},
            "ad_set": {"name": f"{source.campaign} {segment_id}", "status": PAUSED,
                       "is_dynamic_creative": False},
            "ads": ads,
        }
        out.files[f"meta/ad_sets/{segment_id}.json"] = json.dumps(
            payload, indent=2, ensure_ascii=False) + "\n"
    if settings.audiences:
        _audiences(ctx, out)
    return out


def _eligible(ad: Ad, out: Written) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ad's pictures and clips Meta places; display-only sizes are left out quietly."""
    images, videos = [], []
    for asset in ad.assets:
        width, height = int(asset["width"] or 0), int(asset["height"] or 0)
        if not width or not height or str(asset["placement"]).startswith("iab_"):
            continue
        fmt = str(asset["format"]).lower()
        reason = None
        if limits.meta_ratio(width, height) is None:
            reason = f"ratio {width}x{height} is not one Meta places"
        elif width < limits.META_MIN_WIDTH:
            reason = f"{width} px wide; Meta needs at least {limits.META_MIN_WIDTH}"
        elif fmt not in limits.META_IMAGE_TYPES and fmt != "mp4":
            reason = f"format {fmt} (Meta takes JPEG or PNG pictures)"
        elif fmt != "mp4" and int(asset["bytes"] or 0) > limits.META_MAX_IMAGE_BYTES:
            reason = "over Meta's 30 MB picture limit"
        if reason:
            out.warnings.append(f"{ad.variant_id} {asset['placement']}: left out of Meta: "
                                f"{reason}")
        elif fmt == "mp4":
            videos.append(asset)
        else:
            images.append(asset)
    return images[: limits.META_MAX_IMAGES], videos[: limits.META_MAX_IMAGES]


def _copy(ad: Ad) -> dict[str, str]:
    others = [t for role, t in ad.captions.items() if role not in ("headline", "cta") and t]
    return {"body": ad.headline or ad.cta, "title": ad.cta or ad.headline,
            "description": others[0] if others else ""}


def _file_name(asset: dict[str, Any]) -> str:
    return str(asset["path"]).rsplit("/", 1)[-1]


FEED = {"publisher_platforms": ["facebook", "instagram"], "facebook_positions": ["feed"],
        "instagram_positions": ["stream"]}
STORIES = {"publisher_platforms": ["facebook", "instagram"], "facebook_positions": ["story"],
           "instagram_positions": ["story", "reels"]}
RULES = ((FEED, ("4:5", "1:1", "1.91:1", "16:9", "9:16")),
         (STORIES, ("9:16", "4:5", "1:1", "1.91:1", "16:9")))
"""Placement asset customization: each rule's placements and the ratios it prefers, best
first (Meta needs at least two rules in an ``asset_feed_spec``)."""


def _ad(ctx: ExportContext, ad: Ad, images: list[dict[str, Any]],
        videos: list[dict[str, Any]], copy: dict[str, str], url: str) -> dict[str, Any]:
    """The ad and its creative: one labelled picture per ratio, and one rule per placement
    group picking the best ratio for it (feeds 4:5 or 1:1, stories and reels 9:16)."""
    base = ctx.settings.asset_base_url
    kind = "video" if videos else "image"
    labelled: dict[str, dict[str, Any]] = {}
    for asset in videos or images:
        ratio = limits.meta_ratio(int(asset["width"]), int(asset["height"]))
        if ratio is not None and ratio not in labelled:
            labelled[ratio] = asset
    entries = []
    for ratio, asset in labelled.items():
        where = ctx.source.asset_url(asset, base)
        entry: dict[str, Any] = ({"video_id": f"upload:{where}"} if videos else {"url": where})
        entry["adlabels"] = [{"name": _label(ad, ratio)}]
        entries.append(entry)
    rules = []
    for priority, (placements, preferred) in enumerate(RULES, start=1):
        ratio = next(r for r in (*preferred, *labelled) if r in labelled)
        rules.append({"customization_spec": placements, "priority": priority,
                      f"{kind}_label": {"name": _label(ad, ratio)}})
    spec: dict[str, Any] = {
        f"{kind}s": entries,
        "bodies": [{"text": copy["body"]}],
        "titles": [{"text": copy["title"]}],
        "link_urls": [{"website_url": url}],
        "call_to_action_types": [ctx.settings.meta_cta],
        "ad_formats": ["SINGLE_VIDEO" if videos else "SINGLE_IMAGE"],
        "optimization_type": "PLACEMENT",
        "asset_customization_rules": rules,
    }
    if copy["description"]:
        spec["descriptions"] = [{"text": copy["description"]}]
    files = [{"placement": a["placement"], "path": a["path"], "sha256": a["sha256"],
              "ratio": ratio, "label": _label(ad, ratio)} for ratio, a in labelled.items()]
    return {"name": ad.variant_id, "status": PAUSED,
            "creative": {"name": ad.variant_id, "asset_feed_spec": spec}, "files": files}


def _label(ad: Ad, ratio: str) -> str:
    return f"{ad.variant_id}-{ratio.replace(':', 'x')}"


def _audiences(ctx: ExportContext, out: Written) -> None:
    lists = customer_lists(ctx.need_audience(), ctx.id_column, ctx.source.assignments(),
                           platform="meta", email_column=ctx.settings.email_column,
                           phone_column=ctx.settings.phone_column,
                           country_code=ctx.settings.phone_country_code)
    if lists.columns == (None, None):
        out.warnings.append("export.audiences: the audience has no e-mail or phone column; "
                            "no customer lists written")
        return
    for variant_id, frame in lists.by_variant.items():
        out.files[f"meta/audiences/{variant_id}.csv"] = safe_csv(frame)
    if lists.left_out:
        out.warnings.append(f"{lists.left_out} assigned customers have no usable e-mail or "
                            "phone and are not in the customer lists")
