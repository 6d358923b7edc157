"""Assets: each variant's finished files, one per placement, made as its render arrives.

:class:`AssetMaker` turns a cached render into placement-ready files: crop, logo and captions
(images with Pillow, video with ffmpeg), encoding within the byte budget, provenance (XMP,
optional C2PA), written atomically under a name built from ids and a content hash of
everything that shapes the file, so an unchanged asset is reused and a changed one is redone.
It runs on a thread pool (Pillow and ffmpeg release the GIL) and yields manifest rows.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.errors import AdgenError
from adgen.guardrails import brand_violations, over_subject
from adgen.jobs import RenderJob, stable_hash
from adgen.locales import is_rtl
from adgen.placements import Placement
from adgen.planning import CROP, Plan, file_sha256, placement_classes
from adgen.post.encode import encode_image
from adgen.post.image import Caption, LogoStyle, compose, load_brand_image
from adgen.post.logo import mirrored
from adgen.post.video import VideoSpec, frames_to_video, still_to_video
from adgen.provenance import Provenance, embed_image, embed_mp4, embed_overhead, sign_c2pa
from adgen.spec import CampaignSpec, PlacementSpec, VideoOptions
from adgen.store import RenderCache, atomic_write_bytes, no_links

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage ``render``, ``post``, or a Ray worker's name."""
QualityOf = Callable[[str], "dict[str, Any] | None"]
"""The quality gate's record of a job's render, by job key (:mod:`adgen.quality`)."""

POST_VERSION = "post/v4"
"""Bump when post-processing changes its output, so cached assets are redone."""

MANIFEST_COLUMNS = [
    "campaign", "variant_id", "segment_id", "segment", "creative_id", "variant_index",
    "generation", "seed", "prompt", "negative_prompt", "headline", "cta", "captions", "locale",
    "renderer", "model", "job_key", "placement", "width", "height", "format", "path", "bytes",
    "sha256", "created_at",
    "asset_key", "checks", "quality", "status", "duration_s", "fps", "frames", "aspect",
    "render",
]
_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO})
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "mp4": "mp4"}


@dataclass(frozen=True)
class BrandStyle:
    """The brand as post-processing uses it; ``key`` hashes everything of it that shapes a file
    (logo, font and jingle contents, placement of the logo, colours)."""

    logo: LogoStyle | None
    colors: tuple[str, ...]
    font: Path | None
    key: str


def brand_style(campaign: CampaignSpec) -> BrandStyle:
    """Load and check the brand's logos (:class:`AssetError` names a bad file)."""
    brand = campaign.brand
    logo = None
    if brand.logo is not None:
        load_brand_image(brand.logo, what="brand.logo")
        if brand.logo_light is not None:
            load_brand_image(brand.logo_light, what="brand.logo_light")
        logo = LogoStyle(brand.logo, brand.logo_light, brand.logo_position, brand.logo_size,
                         brand.logo_margin)
    hashes = [file_sha256(p) if p else None
              for p in (brand.logo, brand.logo_light, brand.font, brand.audio)]
    key = stable_hash(hashes, brand.logo_position, brand.logo_size, brand.logo_margin,
                      brand.colors)
    return BrandStyle(logo, tuple(brand.colors), brand.font, key)


class AssetMaker:
    """Makes every placement of a variant once its render is cached, on a thread pool (Pillow
    releases the GIL), and collects manifest rows in plan order."""

    def __init__(self, plan: Plan, cache: RenderCache, style: BrandStyle,
                 progress: Progress | None,
                 failing: Mapping[tuple[str, int], str] | None = None, *,
                 quality: QualityOf | None = None) -> None:
        self.plan, self.cache, self.style, self.progress = plan, cache, style, progress
        self.quality: QualityOf = quality or (lambda key: None)
        self.failing = dict(failing or {})  # (variant_id, placement index) -> why, known before
        # each render's placements: (variant row, placement index) by job key
        self.by_job: dict[str, list[tuple[dict[str, Any], int]]] = {}
        classes = placement_classes(plan.campaign)
        for row in plan.variants.to_dict("records"):
            record = {str(k): v for k, v in row.items()}
            renders = json.loads(record["renders"])
            for index, name in enumerate(classes):
                if name in renders:
                    self.by_job.setdefault(renders[name], []).append((record, index))
        self.total = len(plan.variants) * len(plan.campaign.placements)
        self.futures: dict[tuple[str, int], Future[tuple[dict[str, Any], bool]]] = {}
        self.pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
        self.done = 0
        self.written = 0
        self.lock = threading.Lock()
        self.checks = previous_checks(plan.campaign.output_dir)
        self.created_at = datetime.now(tz=UTC).date().isoformat()
        self.creatives = {c.id: c for c in plan.campaign.creatives}

    def __enter__(self) -> AssetMaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, job_key: str, *, render_error: str | None = None) -> None:
        """Make the placements that use render ``job_key`` (it is cached), or, with
        ``render_error``, record them all as failed."""
        placements = self.plan.campaign.placements
        for row, index in self.by_job.get(job_key, []):
            spec = placements[index]
            reason = (f"render failed: {render_error}" if render_error is not None
                      else self.failing.get((row["variant_id"], index)))
            if reason is None:
                future = self.pool.submit(self._one, row, spec, job_key)
            else:
                future = Future()
                failed = failed_row(row, self.plan.campaign, spec, reason)
                failed["quality"] = _quality_json(self.quality(job_key) or {})
                future.set_result((failed, False))
            future.add_done_callback(self._tick)
            self.futures[(row["variant_id"], index)] = future

    def needs_render(self, job_key: str) -> bool:
        """Whether any asset of the job can still be made (preflight failed none or some)."""
        return any((row["variant_id"], index) not in self.failing
                   for row, index in self.by_job.get(job_key, []))

    def _tick(self, future: Future[tuple[dict[str, Any], bool]]) -> None:
        with self.lock:
            self.done += 1
            if not future.cancelled() and not future.exception():
                row, reused = future.result()
                if row["status"] == "ok" and not reused:
                    self.written += 1
            if self.progress:
                self.progress("post", self.done, self.total)

    def results(self) -> list[dict[str, Any]]:
        """Manifest rows in plan order (variants × placements); raises the first error."""
        order = {vid: i for i, vid in enumerate(self.plan.variants["variant_id"])}
        keys = sorted(self.futures, key=lambda k: (order[k[0]], k[1]))
        return [self.futures[key].result()[0] for key in keys]

    def _one(self, row: dict[str, Any], spec: PlacementSpec, job_key: str
             ) -> tuple[dict[str, Any], bool]:
        """One asset's manifest row and whether its file was reused; a problem of this asset
        alone makes a ``failed: <reason>`` row and leaves no file."""
        try:
            return self._asset(row, spec, job_key)
        except OSError as exc:
            if exc.errno in _DISK_ERRORS:
                raise  # the folder's problem, not this asset's: the run stops, nothing lost
            return failed_row(row, self.plan.campaign, spec, failure_reason(exc)), False
        except Exception as exc:  # one asset's problem never costs the others theirs
            return failed_row(row, self.plan.campaign, spec, failure_reason(exc)), False

    def _asset(self, row: dict[str, Any], spec: PlacementSpec, job_key: str
               ) -> tuple[dict[str, Any], bool]:
        campaign, style = self.plan.campaign, self.style
        job = self.plan.jobs[job_key]
        quality = self.quality(job_key) or {}
        seed = quality.get("seed", job.seed)  # a render the quality gate retried kept a later seed
        row = {**row, "job_key": job_key, "seed": seed}
        placement = spec.resolve()
        creative = self.creatives[row["creative_id"]]
        video = creative.video if creative.kind == "video" else None
        fmt = "mp4" if video else spec.format
        render_id = job_key if seed == job.seed else (job_key, seed)
        asset_key = stable_hash(POST_VERSION, render_id, row["captions"], style.key,
                                _direction(row),
                                placement.name, placement.size, placement.safe.box(1000, 1000),
                                fmt, placement.max_bytes, spec.max_duration, row["variant_id"],
                                campaign.provenance.model_dump(mode="json"),
                                video.model_dump() if video else None)
        rel = Path("assets") / row["variant_id"] / (
            f"{placement.name}-{asset_key[:8]}.{EXTENSIONS[fmt]}")
        path = no_links(campaign.output_dir, rel)
        reused = path.is_file()
        if reused:
            data = path.read_bytes()
            checks = self.checks.get(asset_key, {})
        else:
            try:
                checks = self._make(row, placement, spec, video, path)
            except BaseException:
                path.unlink(missing_ok=True)  # e.g. written, then provenance failed
                raise
            self.checks[asset_key] = checks
            data = path.read_bytes()
        checks["over_subject"] = over_subject(checks)
        checks["violations"] = brand_violations(
            checks, placement, has_logo=style.logo is not None,
            min_contrast=campaign.guardrails.min_contrast)
        timing = dict(checks.get("video") or {}) if video else {}
        manifest_row = {
            **_variant_fields(row, campaign), "placement": placement.name,
            "width": placement.width, "height": placement.height, "format": fmt,
            "path": rel.as_posix(), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "created_at": _mtime(path), "asset_key": asset_key,
            "checks": json.dumps(checks, default=str, sort_keys=True),
            "quality": _quality_json(quality), "status": "ok",
            "duration_s": timing.get("duration_s"), "fps": timing.get("fps"),
            "frames": timing.get("frames"), "aspect": job.aspect,
            "render": _render_label(job),
        }
        return manifest_row, reused

    def _make(self, row: dict[str, Any], placement: Placement, spec: PlacementSpec,
              video: VideoOptions | None, path: Path) -> dict[str, Any]:
        """Compose, encode, mark and write one asset; returns its checks."""
        campaign, style = self.plan.campaign, self.style
        logo = mirrored(style.logo) if style.logo and _direction(row) == "rtl" else style.logo
        cached = self.cache.get(row["job_key"])
        if cached is None:
            raise AdgenError(f"render {row['job_key'][:12]} missing or unreadable in the cache; "
                             "run again to render it again")
        lang = str(row.get("locale") or "en")
        captions = [Caption(r, t, lang) for r, t in json.loads(row["captions"]).items()]
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
                    subject_box=cached.subject_box, logo=logo, captions=captions,
                    colors=style.colors, font=style.font, spec=settings)
            else:
                clip = still_to_video(
                    cached.load(), placement, subject_box=cached.subject_box, logo=logo,
                    captions=captions, colors=style.colors, font=style.font, spec=settings)
            atomic_write_bytes(path, clip.data)
            embed_mp4(path, prov)
            checks = dict(clip.checks)
            checks["video"] = {"duration_s": clip.duration_s, "fps": clip.fps,
                               "frames": clip.frames}
        else:
            composed = compose(cached.load(), placement, subject_box=cached.subject_box,
                               logo=logo, captions=captions, colors=style.colors,
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


def _render_label(job: RenderJob) -> str:
    """How the asset's picture was made: ``native 576x1024``, ``extend 768x1368 from
    <key8>``, or ``crop 1024x1024`` (one render for every placement)."""
    size = f"{job.width}x{job.height}"
    if job.source_key is not None:
        return f"extend {size} from {job.source_key[:8]}"
    return f"{'crop' if job.aspect == CROP else 'native'} {size}"


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
    return {**_variant_fields(row, campaign), "placement": placement.name,
            "width": placement.width, "height": placement.height,
            "format": "mp4" if creative.kind == "video" else spec.format, "path": "",
            "bytes": 0, "sha256": "", "created_at": "", "asset_key": "", "checks": "{}",
            "quality": "{}", "status": f"failed: {reason}", "aspect": "", "render": ""}


def blocked_rows(plan: Plan) -> list[dict[str, Any]]:
    """One manifest row per variant the guardrails refused (no file: ``path`` is empty)."""
    rows = plan.variants[plan.variants["blocked"] != ""]
    return [{**_variant_fields(row, plan.campaign), "placement": "", "width": 0, "height": 0,
             "format": "", "path": "", "bytes": 0, "sha256": "", "created_at": "",
             "asset_key": "", "checks": "{}", "quality": "{}",
             "status": f"blocked: {row['blocked']}",
             "aspect": "", "render": ""}
            for row in rows.to_dict("records")]


def _quality_json(record: Mapping[str, Any]) -> str:
    """The manifest's ``quality`` cell: scores, the seed kept, the seeds rejected and why."""
    keep = ("scores", "seed", "rejected", "phash")
    return json.dumps({k: record[k] for k in keep if k in record}, sort_keys=True)


_VARIANT_FIELDS = ("variant_id", "segment_id", "segment", "creative_id", "variant_index",
                   "generation", "seed", "prompt", "negative_prompt", "headline", "cta", "captions",
                   "locale", "job_key")


def _direction(row: Mapping[str, Any]) -> str:
    """``rtl`` for a variant in a right-to-left locale (its layout is mirrored), else ``ltr``."""
    return "rtl" if is_rtl(str(row.get("locale") or "en")) else "ltr"


def _variant_fields(row: Mapping[Any, Any], campaign: CampaignSpec) -> dict[str, Any]:
    """The manifest columns that describe the variant rather than the file."""
    return {**{k: row[k] for k in _VARIANT_FIELDS}, "campaign": campaign.name,
            "renderer": campaign.renderer.name, "model": campaign.renderer.model or ""}


def previous_checks(out_dir: Path) -> dict[str, dict[str, Any]]:
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


def _mtime(path: Path) -> str:
    stamp = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return stamp.isoformat(timespec="seconds")
