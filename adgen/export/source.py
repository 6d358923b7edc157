"""What an export reads from a run's output folder: the finished ads and who sees them.

Only manifest rows with ``status == "ok"`` are exported (blocked and failed variants have no
file to publish), and only variants that review lets through (:meth:`ExportSource.reviewed`).
Asset paths are relative to the output folder, or already URLs when the assets live in object
storage; :meth:`ExportSource.asset_url` turns either into the address the platforms fetch when
``export.asset_base_url`` says where the folder is served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.errors import AssetError
from adgen.experiments.assignment import ASSIGNMENTS_FILE
from adgen.manifest import read_manifest
from adgen.output.files import read_safe_csv
from adgen.review.decisions import APPROVED, PENDING, REJECTED, Decisions, content_hashes

EXPORTS_DIR = "exports"
IMAGE_FORMATS = frozenset({"jpeg", "jpg", "png", "webp", "gif"})


@dataclass(frozen=True)
class Ad:
    """One variant ready to publish: its copy and its finished files (manifest rows)."""

    variant_id: str
    segment_id: str
    creative_id: str
    captions: dict[str, str]
    assets: list[dict[str, Any]]
    review: str = PENDING
    """The review decision that holds for the variant: approved, rejected or pending."""
    review_note: str = ""

    @property
    def headline(self) -> str:
        return self.captions.get("headline", "")

    @property
    def cta(self) -> str:
        return self.captions.get("cta", "")

    def images(self) -> list[dict[str, Any]]:
        return [a for a in self.assets if str(a["format"]).lower() in IMAGE_FORMATS]


@dataclass(frozen=True)
class ExportSource:
    """A run's output folder, read once: ``ads`` in manifest order, the campaign name."""

    out_dir: Path
    campaign: str
    ads: list[Ad]

    @classmethod
    def read(cls, out_dir: Path) -> ExportSource:
        manifest = read_manifest(out_dir)
        contents, decisions = content_hashes(manifest), Decisions.of(out_dir)
        ok = manifest[manifest.get("status", pd.Series("ok", index=manifest.index)) == "ok"]
        ads: dict[str, Ad] = {}
        for row in ok.to_dict("records"):
            record = {str(k): v for k, v in row.items()}
            vid = str(record["variant_id"])
            if vid not in ads:
                held = decisions.in_force(vid, contents[vid])
                ads[vid] = Ad(vid, str(record["segment_id"]), str(record["creative_id"]),
                              _captions(record), [], held.decision if held else PENDING,
                              f"review: {held.describe()}" if held else "")
            ads[vid].assets.append(record)
        names = [str(n) for n in ok.get("campaign", pd.Series(dtype=str)) if n]
        campaign = names[0] if names else out_dir.name
        return cls(out_dir, campaign, list(ads.values()))

    def reviewed(self, require_approval: bool) -> tuple[ExportSource, list[dict[str, str]]]:
        """The source without the ads review holds back, and those ads with the reason: a
        rejected ad always; a pending one when ``require_approval``."""
        held = [{"variant_id": ad.variant_id,
                 "reason": ad.review_note if ad.review == REJECTED else
                 "review: pending, not approved yet (export.require_approval is on)"}
                for ad in self.ads
                if ad.review == REJECTED or (require_approval and ad.review != APPROVED)]
        kept = {entry["variant_id"] for entry in held}
        return replace(self, ads=[ad for ad in self.ads if ad.variant_id not in kept]), held

    def asset_url(self, asset: dict[str, Any], base_url: str | None) -> str:
        """Where a platform fetches the asset: its URL, ``base_url`` + its path, else its path
        relative to the output folder (to upload by hand)."""
        path = str(asset["path"])
        if "://" in path:
            return path
        if base_url:
            return base_url.rstrip("/") + "/" + path
        return path

    def assignments(self) -> pd.DataFrame:
        """``customer_id, segment_id, variant_id`` of the customers who see an ad."""
        path = self.out_dir / ASSIGNMENTS_FILE
        if not path.exists():
            raise AssetError(f"{path}: not found; run `adgen run` first (it writes the "
                             "assignment the audience files are made from)")
        frame = read_safe_csv(path)
        return frame[frame["variant_id"] != ""]


def _captions(row: dict[str, Any]) -> dict[str, str]:
    try:
        captions = json.loads(str(row.get("captions") or "{}"))
    except json.JSONDecodeError:
        captions = {}
    if not isinstance(captions, dict):
        captions = {}
    for role in ("headline", "cta"):
        if not captions.get(role) and row.get(role):
            captions[role] = str(row[role])
    return {str(k): str(v) for k, v in captions.items()}
