"""``run(campaign)``: the whole pipeline, from a campaign to placement-ready assets.

1. plan: read the audience, segment it, render templates, build and dedupe jobs
2. check: brand assets load, every caption can be drawn
3. render: jobs not in the cache, on the chosen backend
4. post-process: crops, logo and captions per variant × placement, encoded and written
5. write: manifest, assignments and the run summary (atomically), then prune stale assets
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.assignment import RefreshState, assign_customers
from adgen.audience import AudienceSource
from adgen.backends.local import render_local
from adgen.errors import AdgenError, CampaignError
from adgen.guardrails import brand_violations
from adgen.jobs import RenderJob, stable_hash
from adgen.placements import Placement
from adgen.planning import CACHE_DIR, Plan, file_sha256, make_plan
from adgen.post.encode import encode_image
from adgen.post.image import Caption, LogoStyle, check_captions_drawable, compose, load_brand_image
from adgen.post.video import VideoSpec, frames_to_video, still_to_video
from adgen.provenance import Provenance, embed_image, embed_mp4, embed_overhead, sign_c2pa
from adgen.renderers import create_renderer
from adgen.renderers.base import Rendered, Renderer
from adgen.report import write_report
from adgen.spec import CampaignSpec, PlacementSpec, VideoOptions
from adgen.store import RenderCache, atomic_write_bytes, atomic_write_text, safe_csv, write_parquet

POST_VERSION = "post/v2"
"""Bump when post-processing changes its output, so cached assets are redone."""

MANIFEST_COLUMNS = [
    "campaign", "variant_id", "segment_id", "segment", "creative_id", "variant_index", "seed",
    "prompt", "negative_prompt", "headline", "cta", "captions", "renderer", "model", "job_key",
    "placement", "width", "height", "format", "path", "bytes", "sha256", "created_at",
    "asset_key", "checks", "status", "duration_s", "fps", "frames",
]
ASSIGNMENT_COLUMNS = ["customer_id", "segment_id", "variant_id"]
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "mp4": "mp4"}

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage ``render``, ``post``, or a Ray worker's name."""


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
            "blocked": len(self.plan.blocked),
            "rendered": self.rendered,
            "assets": int((self.manifest["status"] == "ok").sum()),
            "assets_written": self.assets_written,
            "assets_reused": self.assets_reused,
            "failed_jobs": len(self.failed),
            "assigned_customers": int((self.assignments["variant_id"] != "").sum()),
        }


def with_options(
    campaign: CampaignSpec, *, out: str | Path | None = None, renderer: str | None = None,
    model: str | None = None, backend: str | None = None, ray_address: str | None = None,
    gpus: int | None = None,
) -> CampaignSpec:
    """A copy of the campaign with the output folder, renderer, model or backend replaced."""
    update: dict[str, Any] = {}
    if out is not None:
        update["output"] = Path(out).resolve()
    sections: dict[str, dict[str, Any]] = {
        "renderer": {"name": renderer, "model": model},
        "backend": {"name": backend, "address": ray_address, "gpus": gpus},
    }
    for section, values in sections.items():
        changes = {k: v for k, v in values.items() if v is not None}
        if changes:
            current = getattr(campaign, section)
            try:
                update[section] = type(current).model_validate(current.model_dump() | changes)
            except ValueError as exc:
                raise CampaignError(f"{section} override: {exc}") from None
    return campaign.model_copy(update=update) if update else campaign


def run(
    campaign: CampaignSpec,
    *,
    audience: AudienceSource | None = None,
    out: str | Path | None = None,
    renderer: str | None = None,
    model: str | None = None,
    backend: str | None = None,
    ray_address: str | None = None,
    gpus: int | None = None,
    make_renderer: Callable[[], Renderer] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run a campaign end to end and return what it wrote. Safe to rerun: cached renders and
    assets are reused, so an interrupted run continues where it stopped.

    The keyword options override the campaign's output folder, renderer, model and backend.
    ``make_renderer`` replaces the campaign's renderer (it must be picklable for Ray)."""
    campaign = with_options(campaign, out=out, renderer=renderer, model=model, backend=backend,
                            ray_address=ray_address, gpus=gpus)
    state = RefreshState.load(campaign.output_dir)
    return run_with_state(campaign, state, audience=audience, make_renderer=make_renderer,
                          progress=progress)


def run_with_state(
    campaign: CampaignSpec, state: RefreshState, *, audience: AudienceSource | None = None,
    make_renderer: Callable[[], Renderer] | None = None, progress: Progress | None = None,
) -> RunResult:
    """:func:`run` with the refresh state given (slot generations, weights, stickiness)."""
    out_dir = campaign.output_dir
    # 1. plan, 2. check
    plan = validate(campaign, audience=audience, generations=state.generations)
    style = _brand_style(campaign)
    cache = RenderCache(out_dir / CACHE_DIR)
    # 3. render and 4. post-process, overlapped: a variant's assets are made as soon as its
    #    render is in the cache
    post = _PostProcessor(plan, cache, style, progress)
    failed: dict[str, str] = {}
    todo = plan.to_render
    rendered = 0

    def on_rendered(result: Rendered) -> None:
        nonlocal rendered
        rendered += 1
        if result.error is not None:
            failed[result.job_key] = result.error
        else:
            post.submit(result.job_key)
        if progress:
            progress("render", rendered, len(todo))

    spec = campaign.renderer
    factory = make_renderer or functools.partial(
        create_renderer, spec.name, spec.model, **spec.options)
    with post:
        for key in plan.cached:
            post.submit(key)
        render_jobs(campaign, factory, todo, cache, on_rendered, progress)
        rows = post.results()
    manifest = pd.DataFrame(rows + _blocked_rows(plan), columns=MANIFEST_COLUMNS)
    # 5. write
    failed_variants = set(plan.variants.loc[plan.variants["job_key"].isin(failed), "variant_id"])
    assignments = assign_customers(plan, exclude=failed_variants | set(plan.blocked),
                                   weights=state.weights,
                                   previous=state.previous_assignments())
    _write_outputs(out_dir, manifest, assignments)
    result = RunResult(out_dir, manifest, assignments, plan, len(todo) - len(failed),
                       post.written, len(rows) - post.written, failed)
    settings = {
        "experiment": {"weights": state.weights or campaign.experiment.weights,
                       "holdout": campaign.experiment.holdout},
        "refresh": campaign.refresh.model_dump(),
    }
    atomic_write_text(out_dir / "run.json", json.dumps(
        {**result.summary(), "failed": failed, "blocked": plan.blocked, **settings,
         "finished_at": _now()}, indent=2))
    if campaign.report:
        write_report(out_dir, title=campaign.name)
    return result


def render_jobs(
    campaign: CampaignSpec, make_renderer: Callable[[], Renderer], jobs: list[RenderJob],
    cache: RenderCache, on_rendered: Callable[[Rendered], None],
    progress: Progress | None = None,
) -> None:
    """Render ``jobs`` into the cache on the campaign's backend (on Ray, ``progress`` also gets
    one stage per worker: ``gpu 0``, ``gpu 1``… or ``cpu worker 1a2b3c4d``)."""
    batch_size = int(campaign.renderer.options.get("batch_size", 4))
    backend = campaign.backend
    if backend.name == "ray":
        from adgen.backends.ray import PoolOptions, WorkerStats, render_ray

        options = PoolOptions(address=backend.address, gpus=backend.gpus,
                              gpus_per_worker=backend.gpus_per_worker,
                              cpu_workers=backend.cpu_workers)
        def on_worker(worker: str, stats: WorkerStats) -> None:
            if progress:
                label = f"gpu {','.join(stats.gpu_ids)}" if stats.gpu_ids else f"cpu {worker}"
                progress(label, stats.images, len(jobs))

        render_ray(make_renderer, jobs, cache, batch_size=batch_size, on_rendered=on_rendered,
                   options=options, on_worker=on_worker)
    else:
        render_local(make_renderer, jobs, cache, batch_size=batch_size, on_rendered=on_rendered)


def validate(
    campaign: CampaignSpec, *, audience: AudienceSource | None = None,
    generations: Mapping[str, int] | None = None,
) -> Plan:
    """Check everything a run needs before it renders (spec, audience, templates, brand assets,
    captions' glyphs) and return the plan. Raises an :class:`AdgenError` for the first problem."""
    plan = make_plan(campaign, audience, generations=generations)
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


class _PostProcessor:
    """Makes every placement of a variant once its render is cached, on a thread pool (Pillow
    releases the GIL), and collects manifest rows in plan order."""

    def __init__(self, plan: Plan, cache: RenderCache, style: _BrandStyle,
                 progress: Progress | None) -> None:
        self.plan, self.cache, self.style, self.progress = plan, cache, style, progress
        self.by_job: dict[str, list[dict[str, Any]]] = {}
        for row in plan.variants.to_dict("records"):
            record = {str(k): v for k, v in row.items()}
            self.by_job.setdefault(record["job_key"], []).append(record)
        self.total = len(plan.variants) * len(plan.campaign.placements)
        self.futures: dict[tuple[str, int], Future[tuple[dict[str, Any], bool]]] = {}
        self.pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
        self.done = 0
        self.written = 0
        self.lock = threading.Lock()
        self.checks = _previous_checks(plan.campaign.output_dir)
        self.created_at = datetime.now(tz=UTC).date().isoformat()
        self.creatives = {c.id: c for c in plan.campaign.creatives}

    def __enter__(self) -> _PostProcessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, job_key: str) -> None:
        for row in self.by_job.get(job_key, []):
            for index, spec in enumerate(self.plan.campaign.placements):
                future = self.pool.submit(self._one, row, spec)
                future.add_done_callback(self._tick)
                self.futures[(row["variant_id"], index)] = future

    def _tick(self, future: Future[tuple[dict[str, Any], bool]]) -> None:
        with self.lock:
            self.done += 1
            if not future.cancelled() and not future.exception() and not future.result()[1]:
                self.written += 1
            if self.progress:
                self.progress("post", self.done, self.total)

    def results(self) -> list[dict[str, Any]]:
        """Manifest rows in plan order (variants × placements); raises the first error."""
        order = {vid: i for i, vid in enumerate(self.plan.variants["variant_id"])}
        keys = sorted(self.futures, key=lambda k: (order[k[0]], k[1]))
        return [self.futures[key].result()[0] for key in keys]

    def _one(self, row: dict[str, Any], spec: PlacementSpec) -> tuple[dict[str, Any], bool]:
        campaign, style = self.plan.campaign, self.style
        placement = spec.resolve()
        creative = self.creatives[row["creative_id"]]
        video = creative.video if creative.kind == "video" else None
        fmt = "mp4" if video else spec.format
        asset_key = stable_hash(POST_VERSION, row["job_key"], row["captions"], style.key,
                                placement.name, placement.size, placement.safe.box(1000, 1000),
                                fmt, placement.max_bytes, spec.max_duration, row["variant_id"],
                                campaign.provenance.model_dump(mode="json"),
                                video.model_dump() if video else None)
        rel = Path("assets") / row["variant_id"] / (
            f"{placement.name}-{asset_key[:8]}.{EXTENSIONS[fmt]}")
        path = campaign.output_dir / rel
        reused = path.exists()
        if reused:
            data = path.read_bytes()
            checks = self.checks.get(asset_key, {})
        else:
            checks = self._make(row, placement, spec, video, path)
            self.checks[asset_key] = checks
            data = path.read_bytes()
        checks["violations"] = brand_violations(
            checks, placement, has_logo=style.logo is not None,
            min_contrast=campaign.guardrails.min_contrast)
        timing = dict(checks.get("video") or {}) if video else {}
        manifest_row = {
            **{k: row[k] for k in ("variant_id", "segment_id", "segment", "creative_id",
                                   "variant_index", "seed", "prompt", "negative_prompt",
                                   "headline", "cta", "captions", "job_key")},
            "campaign": campaign.name, "renderer": campaign.renderer.name,
            "model": campaign.renderer.model or "", "placement": placement.name,
            "width": placement.width, "height": placement.height, "format": fmt,
            "path": rel.as_posix(), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "created_at": _mtime(path), "asset_key": asset_key,
            "checks": json.dumps(checks, default=str, sort_keys=True), "status": "ok",
            "duration_s": timing.get("duration_s"), "fps": timing.get("fps"),
            "frames": timing.get("frames"),
        }
        return manifest_row, reused

    def _make(self, row: dict[str, Any], placement: Placement, spec: PlacementSpec,
              video: VideoOptions | None, path: Path) -> dict[str, Any]:
        """Compose, encode, mark and write one asset; returns its checks."""
        campaign, style = self.plan.campaign, self.style
        cached = self.cache.get(row["job_key"])
        if cached is None:
            raise AdgenError(f"render {row['job_key']} missing from the cache; run again")
        captions = [Caption(r, t) for r, t in json.loads(row["captions"]).items()]
        if campaign.provenance.visible_label:
            captions.append(Caption("label", campaign.provenance.label))
        prov = Provenance(campaign.name, row["variant_id"], campaign.renderer.model or "",
                          campaign.renderer.name, cached.composite, self.created_at,
                          campaign.provenance.label)
        if video is not None:
            options = video.model_dump()
            if cached.frames:  # a generated clip: it moves already
                options["motion"] = "none"
            settings = VideoSpec(**options, max_bytes=placement.max_bytes,
                                 max_duration=spec.max_duration, audio=campaign.brand.audio)
            if cached.frames:
                clip = frames_to_video(
                    cached.load_frames(), round(cached.fps or video.fps), placement,
                    subject_box=cached.subject_box, logo=style.logo, captions=captions,
                    colors=style.colors, font=style.font, spec=settings)
            else:
                clip = still_to_video(
                    cached.load(), placement, subject_box=cached.subject_box, logo=style.logo,
                    captions=captions, colors=style.colors, font=style.font, spec=settings)
            atomic_write_bytes(path, clip.data)
            embed_mp4(path, prov)
            checks = dict(clip.checks)
            checks["video"] = {"duration_s": clip.duration_s, "fps": clip.fps,
                               "frames": clip.frames}
        else:
            composed = compose(cached.load(), placement, subject_box=cached.subject_box,
                               logo=style.logo, captions=captions, colors=style.colors,
                               font=style.font)
            budget = placement.max_bytes
            if budget is not None:
                budget -= embed_overhead(spec.format, prov)
            data = embed_image(encode_image(composed.image, spec.format, max_bytes=budget),
                               spec.format, prov)
            atomic_write_bytes(path, data)
            checks = {**composed.checks, "logo_box": composed.logo_box,
                      "caption_boxes": composed.caption_boxes}
        signing = campaign.provenance
        if signing.c2pa_cert is not None and signing.c2pa_key is not None:
            sign_c2pa(path, path, cert=signing.c2pa_cert, key=signing.c2pa_key, prov=prov)
        return checks


def _blocked_rows(plan: Plan) -> list[dict[str, Any]]:
    """One manifest row per variant the guardrails refused (no file: ``path`` is empty)."""
    rows = plan.variants[plan.variants["blocked"] != ""]
    return [{**{k: row[k] for k in ("variant_id", "segment_id", "segment", "creative_id",
                                    "variant_index", "seed", "prompt", "negative_prompt",
                                    "headline", "cta", "captions", "job_key")},
             "campaign": plan.campaign.name, "renderer": plan.campaign.renderer.name,
             "model": plan.campaign.renderer.model or "", "placement": "", "width": 0,
             "height": 0, "format": "", "path": "", "bytes": 0, "sha256": "", "created_at": "",
             "asset_key": "", "checks": "{}", "status": f"blocked: {row['blocked']}"}
            for row in rows.to_dict("records")]


def _previous_checks(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The checks of assets an earlier run wrote, by asset key (reused assets keep theirs)."""
    path = out_dir / "manifest.parquet"
    if not path.exists():
        return {}
    try:
        old = pd.read_parquet(path, columns=["asset_key", "checks"])
    except Exception:  # an unreadable old manifest only costs the reused assets their checks
        return {}
    return {key: json.loads(value) for key, value in zip(old["asset_key"], old["checks"],
                                                         strict=True)}


def assign(
    campaign: CampaignSpec, *, audience: AudienceSource | None = None
) -> pd.DataFrame:
    """The customer → variant assignment of a campaign (what ``adgen run`` writes to
    ``assignments.csv``), without rendering anything."""
    state = RefreshState.load(campaign.output_dir)
    plan = make_plan(campaign, audience, generations=state.generations)
    return assign_customers(plan, weights=state.weights, previous=state.previous_assignments())


def _write_outputs(out_dir: Path, manifest: pd.DataFrame, assignments: pd.DataFrame) -> None:
    write_parquet(out_dir / "manifest.parquet", manifest)
    atomic_write_text(out_dir / "manifest.csv", safe_csv(manifest))
    atomic_write_text(out_dir / "assignments.csv", safe_csv(assignments))
    _prune_assets(out_dir, set(manifest["path"]) - {""})


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
