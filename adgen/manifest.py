"""The manifest: one row per asset a run made, failed or was refused, and what is known of it.

:data:`MANIFEST_COLUMNS` is its schema. A run builds each row where its asset is made
(:mod:`adgen.assets`): an ``ok`` row with the file's path, size, hash and checks, a
``failed: <reason>`` row (:func:`failed_row`), or a ``blocked: <reason>`` row for a variant the
guardrails refused (:func:`blocked_rows`). :func:`write_manifest` writes it as Parquet and as
formula-safe CSV (the commit point of a run: a reader trusts only what it lists);
:func:`read_manifest` reads it back for the review sheet and the exports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.errors import AdgenError, AssetError
from adgen.output.files import atomic_write_text, read_safe_csv, safe_csv, write_parquet
from adgen.planning import Plan
from adgen.spec import CampaignSpec, PlacementSpec

MANIFEST_CSV, MANIFEST_PARQUET = "manifest.csv", "manifest.parquet"

MANIFEST_COLUMNS = [
    "campaign", "variant_id", "segment_id", "segment", "creative_id", "variant_index",
    "generation", "seed", "prompt", "negative_prompt", "headline", "cta", "captions", "locale",
    "renderer", "model", "job_key", "placement", "width", "height", "format", "path", "bytes",
    "sha256", "created_at",
    "asset_key", "checks", "quality", "status", "duration_s", "fps", "frames", "aspect",
    "render", "watermark",
]
REQUIRED_COLUMNS = ("variant_id", "segment_id", "creative_id", "placement", "path")
"""What a manifest must have to be read (older manifests lack some optional columns)."""
VARIANT_FIELDS = ("variant_id", "segment_id", "segment", "creative_id", "variant_index",
                  "generation", "seed", "prompt", "negative_prompt", "headline", "cta", "captions",
                  "locale", "job_key")


def variant_fields(row: Mapping[Any, Any], campaign: CampaignSpec) -> dict[str, Any]:
    """The manifest columns that describe the variant rather than the file."""
    return {**{k: row[k] for k in VARIANT_FIELDS}, "campaign": campaign.name,
            "renderer": campaign.renderer.name, "model": campaign.renderer.model or ""}


def failure_reason(exc: BaseException) -> str:
    """The one-line reason a manifest row gives for a failed asset."""
    if isinstance(exc, AdgenError):
        return " ".join(str(exc).split()) or type(exc).__name__
    return f"internal error ({type(exc).__name__}: {exc}); please report it"


def failed_row(row: Mapping[str, Any], campaign: CampaignSpec, spec: PlacementSpec,
               reason: str) -> dict[str, Any]:
    """The manifest row of an asset that could not be made: no file, ``status: failed: …``."""
    placement = spec.resolve()
    creative = next(c for c in campaign.creatives if c.id == row["creative_id"])
    return {**variant_fields(row, campaign), "placement": placement.name,
            "width": placement.width, "height": placement.height,
            "format": "mp4" if creative.kind == "video" else spec.format, "path": "",
            "bytes": 0, "sha256": "", "created_at": "", "asset_key": "", "checks": "{}",
            "quality": "{}", "status": f"failed: {reason}", "aspect": "", "render": "",
            "watermark": ""}


def blocked_rows(plan: Plan) -> list[dict[str, Any]]:
    """One manifest row per variant the guardrails refused (no file: ``path`` is empty)."""
    rows = plan.variants[plan.variants["blocked"] != ""]
    return [{**variant_fields(row, plan.campaign), "placement": "", "width": 0, "height": 0,
             "format": "", "path": "", "bytes": 0, "sha256": "", "created_at": "",
             "asset_key": "", "checks": "{}", "quality": "{}",
             "status": f"blocked: {row['blocked']}",
             "aspect": "", "render": "", "watermark": ""}
            for row in rows.to_dict("records")]


def quality_json(record: Mapping[str, Any]) -> str:
    """The manifest's ``quality`` cell: scores, the seed kept, the seeds rejected and why."""
    keep = ("scores", "seed", "rejected", "phash")
    return json.dumps({k: record[k] for k in keep if k in record}, sort_keys=True)


def write_manifest(out_dir: Path, manifest: pd.DataFrame) -> None:
    """Write ``manifest.csv`` (formula-safe) and ``manifest.parquet``, each atomically."""
    atomic_write_text(out_dir / MANIFEST_CSV, safe_csv(manifest))
    write_parquet(out_dir / MANIFEST_PARQUET, manifest)


def read_manifest(out_dir: Path) -> pd.DataFrame:
    """The run's manifest (Parquet, else CSV) with every optional column filled."""
    parquet, csv = out_dir / MANIFEST_PARQUET, out_dir / MANIFEST_CSV
    try:
        if parquet.exists():
            frame = pd.read_parquet(parquet)
            where = parquet
        elif csv.exists():
            frame = read_safe_csv(csv)
            where = csv
        else:
            raise AssetError(
                f"{out_dir}: no manifest.parquet or manifest.csv, so there is nothing to review; "
                f"run `adgen run CAMPAIGN --out {out_dir}` first"
            )
    except (OSError, ValueError) as exc:
        raise AssetError(f"{out_dir}: cannot read the manifest ({exc}); run `adgen run` "
                         "again to rewrite it") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise AssetError(f"{where}: missing column(s) {', '.join(missing)}; this is not an "
                         "adgen manifest, or an old one: run `adgen run` again")
    defaults = {"campaign": "", "segment": "{}", "variant_index": "", "seed": "", "prompt": "",
                "negative_prompt": "", "captions": "{}", "renderer": "", "model": "",
                "width": "", "height": "", "format": "", "bytes": "", "sha256": "",
                "asset_key": "", "checks": "{}", "quality": "{}", "created_at": "",
                "status": "ok", "watermark": ""}
    for column, value in defaults.items():
        if column not in frame.columns:
            frame[column] = value
    frame = frame.astype({c: "object" for c in frame.columns})
    return frame.where(frame.notna(), "").reset_index(drop=True)


def previous_checks(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The checks of assets an earlier run wrote, by asset key (reused assets keep theirs)."""
    path = out_dir / MANIFEST_PARQUET
    if not path.exists():
        return {}
    try:
        old = pd.read_parquet(path, columns=["asset_key", "checks"])
    except Exception:  # an unreadable old manifest only costs the reused assets their checks
        return {}
    return {key: json.loads(value) for key, value in zip(old["asset_key"], old["checks"],
                                                         strict=True)}
