"""How the exports disclose that ads are AI-generated, in the fields the platforms have for it.

An asset counts as AI-generated when a renderer with a trained model made it (``diffusers``,
``diffusers-video``: IPTC ``trainedAlgorithmicMedia``); the offline renderer's pictures are
drawn by an algorithm alone, so adgen attests nothing for them. Fields, as documented on
2026-12-05 (docs/publishing.md names the pages):

- Google Ads API: ``Asset.synthetic_content_info.advertiser_attestation`` (a
  ``SyntheticContentInfo``; in the API since v22) with status ``IS_SYNTHETIC``: written per
  image to ``google/assets.json`` (the Editor sheet has no column for it that could be found);
- Campaign Manager 360 ``Creative.syntheticContentAttestationStatus`` and Display & Video 360
  ``Creative``/``AdAsset.syntheticContentAttestationStatus``: ``IS_SYNTHETIC``, per banner ZIP
  in ``html5/creatives.json`` (both are set through their APIs on upload);
- Meta: no Marketing API field for an advertiser's disclosure could be confirmed; Meta reads
  the IPTC and C2PA metadata in the files. ``export.json`` states the disclosure per ad for
  every format (:func:`disclosures`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from adgen.export.source import Ad
from adgen.provenance.metadata import UNTRAINED_RENDERERS

IS_SYNTHETIC = "IS_SYNTHETIC"
GOOGLE_ATTESTATION = {"advertiser_attestation": {"source": "ADVERTISER_ATTESTED",
                                                 "status": IS_SYNTHETIC}}
"""The Google Ads API ``SyntheticContentInfo`` of an AI-generated asset."""


def ai_generated(asset: Mapping[str, Any]) -> bool:
    """Whether a manifest row's asset was made by a renderer with a trained model."""
    renderer = str(asset.get("renderer") or "")
    return bool(renderer) and renderer not in UNTRAINED_RENDERERS


def labelled(asset: Mapping[str, Any]) -> bool:
    """Whether the asset shows the visible label (its checks list a ``label`` caption)."""
    try:
        checks = json.loads(str(asset.get("checks") or "{}"))
    except json.JSONDecodeError:
        return False
    boxes = checks.get("caption_boxes") if isinstance(checks, dict) else None
    return isinstance(boxes, dict) and "label" in boxes


def disclosures(ads: list[Ad]) -> list[dict[str, Any]]:
    """Per ad: whether it is AI-generated, the placements that show the visible label, and
    the watermark payload of each placement's file."""
    return [{
        "variant_id": ad.variant_id,
        "ai_generated": any(ai_generated(a) for a in ad.assets),
        "renderer": next((str(a.get("renderer") or "") for a in ad.assets), ""),
        "visible_label": [str(a["placement"]) for a in ad.assets if labelled(a)],
        "watermark": {str(a["placement"]): str(a.get("watermark") or "") or None
                      for a in ad.assets},
    } for ad in ads]
