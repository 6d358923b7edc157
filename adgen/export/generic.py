"""A platform-neutral export: ``csv/ads.csv`` (one row per finished asset) and ``csv/ads.json``
(one entry per ad with its copy and files), for any platform without its own format. Each file
says whether it is AI-generated, shows the visible label, and its watermark payload."""

from __future__ import annotations

import json

import pandas as pd

from adgen.export.base import ExportContext, Written
from adgen.export.disclosure import ai_generated, labelled
from adgen.output.files import safe_csv

COLUMNS = ["campaign", "ad_id", "segment_id", "creative_id", "status", "headline", "cta",
           "captions", "landing_url", "placement", "width", "height", "format", "asset_url",
           "bytes", "sha256", "duration_s", "ai_generated", "visible_label", "watermark"]


def write_generic(ctx: ExportContext) -> Written:
    source, settings = ctx.source, ctx.settings
    url = settings.url or ""
    rows, ads = [], []
    for ad in source.ads:
        files = []
        for asset in ad.assets:
            entry = {"placement": asset["placement"], "width": int(asset["width"] or 0),
                     "height": int(asset["height"] or 0), "format": asset["format"],
                     "asset_url": source.asset_url(asset, settings.asset_base_url),
                     "bytes": int(asset["bytes"] or 0), "sha256": asset["sha256"],
                     "duration_s": _number(asset.get("duration_s")),
                     "ai_generated": ai_generated(asset), "visible_label": labelled(asset),
                     "watermark": str(asset.get("watermark") or "")}
            files.append(entry)
            rows.append({"campaign": source.campaign, "ad_id": ad.variant_id,
                         "segment_id": ad.segment_id, "creative_id": ad.creative_id,
                         "status": "paused", "headline": ad.headline, "cta": ad.cta,
                         "captions": json.dumps(ad.captions, ensure_ascii=False),
                         "landing_url": url, **entry})
        ads.append({"ad_id": ad.variant_id, "segment_id": ad.segment_id,
                    "creative_id": ad.creative_id, "status": "paused",
                    "captions": ad.captions, "landing_url": url, "assets": files})
    payload = {"campaign": source.campaign, "ads": ads}
    return Written(files={
        "csv/ads.csv": safe_csv(pd.DataFrame(rows, columns=COLUMNS)),
        "csv/ads.json": json.dumps(payload, indent=2, ensure_ascii=False) + "\n",
    })


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number == number else None
