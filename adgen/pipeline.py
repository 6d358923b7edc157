"""``run(campaign)``: the whole pipeline, from a campaign to placement-ready assets.

1. plan: read the audience, segment it, render templates, build and dedupe jobs
2. check: brand assets load, every caption can be drawn
3. render: jobs not in the cache, on the chosen backend
4. post-process: crops, logo and captions per variant × placement, encoded and written
5. write: manifest, assignments and the run summary (atomically), then prune stale assets
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from adgen import experiment
from adgen.audience import AudienceSource
from adgen.backends.local import render_local
from adgen.errors import AdgenError, CampaignError
from adgen.jobs import stable_hash
from adgen.planning import CACHE_DIR, Plan, file_sha256, make_plan
from adgen.post.encode import encode_image
from adgen.post.image import Caption, LogoStyle, check_captions_drawable, compose, load_brand_image
from adgen.renderers import create_renderer
from adgen.renderers.base import Rendered, Renderer
from adgen.spec import CampaignSpec, PlacementSpec
from adgen.store import RenderCache, atomic_write_bytes, atomic_write_text, safe_csv, write_parquet

POST_VERSION = "post/v1"
"""Bump when post-processing changes its output, so cached assets are redone."""

MANIFEST_COLUMNS = [
    "campaign", "variant_id", "segment_id", "segment", "creative_id", "variant_index", "seed",
    "prompt", "negative_prompt", "headline", "cta", "captions", "renderer", "model", "job_key",
    "placement", "width", "height", "format", "path", "bytes", "sha256", "created_at",
    "asset_key", "checks",
]
ASSIGNMENT_COLUMNS = ["customer_id", "segment_id", "variant_id"]
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)`` with stage ``render`` or ``post``."""


@dataclass
class RunResult:
    """What a run produced. ``manifest`` has one row per asset (:data:`MANIFEST_COLUMNS`)."""

    out: Path
    manifest: pd.DataFrame
    assignments: pd.DataFrame
    plan: Plan
    rendered: int = 0
    assets_written: int = 0
    assets_reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        plan = self.plan.summary()
        return {
            **plan,
            "rendered": self.rendered,
            "assets": len(self.manifest),
            "assets_written": self.assets_written,
            "assets_reused": self.assets_reused,
            "failed_jobs": len(self.failed),
            "assigned_customers": int((self.assignments["variant_id"] != "").sum()),
        }


def with_options(
    campaign: CampaignSpec, *, out: str | Path | None = None, renderer: str | None = None,
    model: str | None = None,
) -> CampaignSpec:
    """A copy of the campaign with the output folder, renderer name or model replaced."""
    update: dict[str, Any] = {}
    if out is not None:
        update["output"] = Path(out).resolve()
    if renderer is not None or model is not None:
        data = campaign.renderer.model_dump()
        data |= {k: v for k, v in {"name": renderer, "model": model}.items() if v is not None}
        try:
            update["renderer"] = type(campaign.renderer).model_validate(data)
        except ValueError as exc:
            raise CampaignError(f"renderer override: {exc}") from None
    return campaign.model_copy(update=update) if update else campaign


def run(
    campaign: CampaignSpec,
    *,
    audience: AudienceSource | None = None,
    out: str | Path | None = None,
    renderer: str | None = None,
    model: str | None = None,
    make_renderer: Callable[[], Renderer] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run a campaign end to end and return what it wrote. Safe to rerun: cached renders and
    assets are reused, so an interrupted run continues where it stopped."""
    campaign = with_options(campaign, out=out, renderer=renderer, model=model)
    out_dir = campaign.output_dir
    # 1. plan, 2. check
    plan = validate(campaign, audience=audience)
    style = _brand_style(campaign)
    # 3. render
    cache = RenderCache(out_dir / CACHE_DIR)
    failed: dict[str, str] = {}
    todo = plan.to_render
    done = 0

    def on_rendered(result: Rendered) -> None:
        nonlocal done
        done += 1
        if result.error is not None or result.image is None:
            failed[result.job_key] = result.error or "renderer returned no image"
        if progress:
            progress("render", done, len(todo))

    spec = campaign.renderer
    factory = make_renderer or (lambda: create_renderer(spec.name, spec.model, **spec.options))
    render_local(factory, todo, cache, batch_size=int(spec.options.get("batch_size", 4)),
                 on_rendered=on_rendered)
    # 4. post-process
    rows, written, reused = _post_process(plan, cache, style, failed, progress)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    # 5. write
    assignments = assign_customers(plan, exclude=set(
        plan.variants.loc[plan.variants["job_key"].isin(failed), "variant_id"]))
    _write_outputs(out_dir, manifest, assignments)
    result = RunResult(out_dir, manifest, assignments, plan, len(todo) - len(failed), written,
                       reused, failed)
    atomic_write_text(out_dir / "run.json", json.dumps(
        {**result.summary(), "failed": failed, "finished_at": _now()}, indent=2))
    return result


def validate(campaign: CampaignSpec, *, audience: AudienceSource | None = None) -> Plan:
    """Check everything a run needs before it renders (spec, audience, templates, brand assets,
    captions' glyphs) and return the plan. Raises an :class:`AdgenError` for the first problem."""
    plan = make_plan(campaign, audience)
    _brand_style(campaign)
    check_captions_drawable(
        [Caption(role, text) for captions in plan.variants["captions"].unique()
         for role, text in json.loads(captions).items()],
        font=campaign.brand.font,
    )
    return plan


@dataclass(frozen=True)
class _BrandStyle:
    logo: LogoStyle | None
    colors: tuple[str, ...]
    font: Path | None
    key: str


def _brand_style(campaign: CampaignSpec) -> _BrandStyle:
    brand = campaign.brand
    logo = None
    if brand.logo is not None:
        load_brand_image(brand.logo, what="brand.logo")
        if brand.logo_light is not None:
            load_brand_image(brand.logo_light, what="brand.logo_light")
        logo = LogoStyle(brand.logo, brand.logo_light, brand.logo_position, brand.logo_size,
                         brand.logo_margin)
    hashes = [file_sha256(p) if p else None for p in (brand.logo, brand.logo_light, brand.font)]
    key = stable_hash(hashes, brand.logo_position, brand.logo_size, brand.logo_margin,
                      brand.colors)
    return _BrandStyle(logo, tuple(brand.colors), brand.font, key)


def _post_process(
    plan: Plan, cache: RenderCache, style: _BrandStyle, failed: dict[str, str],
    progress: Progress | None,
) -> tuple[list[dict[str, Any]], int, int]:
    campaign = plan.campaign
    out_dir = campaign.output_dir
    variants = plan.variants[~plan.variants["job_key"].isin(failed)]
    tasks = [(row, spec) for row in variants.to_dict("records") for spec in campaign.placements]

    def one(task: tuple[dict[str, Any], PlacementSpec]) -> tuple[dict[str, Any], bool]:
        row, spec = task
        placement = spec.resolve()
        asset_key = stable_hash(POST_VERSION, row["job_key"], row["captions"], style.key,
                                placement.name, placement.size, placement.safe.box(1000, 1000),
                                spec.format, placement.max_bytes)
        rel = Path("assets") / row["variant_id"] / (
            f"{placement.name}-{asset_key[:8]}.{EXTENSIONS[spec.format]}")
        path = out_dir / rel
        checks: dict[str, Any] = {}
        reused = path.exists()
        if reused:
            data = path.read_bytes()
        else:
            cached = cache.get(row["job_key"])
            if cached is None:
                raise AdgenError(f"render {row['job_key']} missing from the cache; rerun")
            composed = compose(
                cached.load(), placement, subject_box=cached.subject_box, logo=style.logo,
                captions=[Caption(r, t) for r, t in json.loads(row["captions"]).items()],
                colors=style.colors, font=style.font,
            )
            data = encode_image(composed.image, spec.format, max_bytes=placement.max_bytes)
            atomic_write_bytes(path, data)
            checks = composed.checks
        return {
            **{k: row[k] for k in ("variant_id", "segment_id", "segment", "creative_id",
                                   "variant_index", "seed", "prompt", "negative_prompt",
                                   "headline", "cta", "captions", "job_key")},
            "campaign": campaign.name, "renderer": campaign.renderer.name,
            "model": campaign.renderer.model or "", "placement": placement.name,
            "width": placement.width, "height": placement.height, "format": spec.format,
            "path": rel.as_posix(), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "created_at": _mtime(path), "asset_key": asset_key,
            "checks": json.dumps(checks, default=str, sort_keys=True),
        }, reused

    rows: list[dict[str, Any]] = []
    reused = 0
    workers = min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for row, was_reused in pool.map(one, tasks):
            rows.append(row)
            reused += was_reused
            if progress:
                progress("post", len(rows), len(tasks))
    return rows, len(rows) - reused, reused


def assign_customers(plan: Plan, *, exclude: set[str] | None = None) -> pd.DataFrame:
    """Each customer gets one of its segment's variants, by the GrowthBook-compatible hash of the
    experiment seed and the customer id, in the campaign's split weights. Customers in the
    holdout (or whose variant failed to render) get an empty ``variant_id``."""
    campaign = plan.campaign
    exp = campaign.experiment
    members = plan.segments.members
    arms = campaign.arms
    weights = exp.weights if exp.weights is not None else [1.0 / arms] * arms
    if len(weights) != arms:
        raise CampaignError(
            f"experiment.weights has {len(weights)} values but each segment has {arms} variants "
            f"({len(campaign.creatives)} creatives × {campaign.variants} variants); give {arms}"
        )
    arm = experiment.assign_arms(members["customer_id"].astype("string"), seed=exp.seed,
                                 weights=weights, holdout=exp.holdout)
    creative_ids = [c.id for c in campaign.creatives]
    names = pd.Series([f"{creative_ids[a // campaign.variants]}-{{}}-v{a % campaign.variants}"
                       for a in range(arms)])
    in_test = arm >= 0
    variant = pd.Series([""] * len(members), dtype="string")
    picked = names.to_numpy()[arm[in_test]]
    segs = members["segment_id"].to_numpy()[in_test]
    variant[in_test] = [p.format(s) for p, s in zip(picked, segs, strict=True)]
    if exclude:
        variant[variant.isin(list(exclude))] = ""
    frame = pd.DataFrame({"customer_id": members["customer_id"].astype("string"),
                          "segment_id": members["segment_id"], "variant_id": variant})
    if exp.holdout > 0:
        frame["holdout"] = ~in_test
    return frame


def _write_outputs(out_dir: Path, manifest: pd.DataFrame, assignments: pd.DataFrame) -> None:
    write_parquet(out_dir / "manifest.parquet", manifest)
    atomic_write_text(out_dir / "manifest.csv", safe_csv(manifest))
    atomic_write_text(out_dir / "assignments.csv", safe_csv(assignments))
    _prune_assets(out_dir, set(manifest["path"]))


def _prune_assets(out_dir: Path, keep: set[str]) -> None:
    """Delete asset files the new manifest no longer lists (e.g. after a caption change)."""
    root = out_dir / "assets"
    if not root.is_dir():
        return
    for path in root.rglob("*"):
        if path.is_file() and path.relative_to(out_dir).as_posix() not in keep:
            path.unlink()
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _mtime(path: Path) -> str:
    stamp = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return stamp.isoformat(timespec="seconds")


def _now() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="seconds")
