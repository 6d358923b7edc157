"""Assets: each variant's finished files, one per placement, made as its render arrives.

:class:`AssetMaker` turns a cached render into placement-ready files: crop, logo and captions
(images with Pillow, video with ffmpeg), encoding within the byte budget, provenance (XMP,
optional C2PA), written atomically under a name built from ids and a content hash of
everything that shapes the file, so an unchanged asset is reused and a changed one is redone.
The same code runs in a thread, a process or on a cluster node (:class:`PostContext`): it reads
the render from the cache, writes each file once to the output store and returns manifest rows.
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.errors import AdgenError, StoreError
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
from adgen.storage import OutputStore, scratch_dir
from adgen.store import CachedRender, RenderCache, atomic_write_bytes, no_links

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage ``render``, ``post``, or a Ray worker's name."""
QualityOf = Callable[[str], "dict[str, Any] | None"]
"""The quality gate's record of a job's render, by job key (:mod:`adgen.quality`)."""

POST_VERSION = "post/v5"
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


@dataclass(frozen=True)
class PostContext:
    """Everything post-processing needs to make a render's assets anywhere: a thread, a process
    or a cluster node. Picklable; a :meth:`portable` context carries the brand's files (logo,
    font, audio, signing keys) as bytes, written to the node's scratch folder on first use, so
    no worker relies on the driver's disk."""

    campaign: CampaignSpec
    style: BrandStyle
    assets: OutputStore
    cache: RenderCache
    created_at: str
    checks: Mapping[str, dict[str, Any]]
    """Checks of assets earlier runs made, by asset key (a reused asset keeps its checks)."""
    files: Mapping[str, bytes] = field(default_factory=dict)

    def portable(self) -> PostContext:
        """This context with the brand's files inside it."""
        brand, signing = self.campaign.brand, self.campaign.provenance
        paths = [brand.logo, brand.logo_light, brand.font, brand.audio, signing.c2pa_cert,
                 signing.c2pa_key]
        files = {str(p): Path(p).read_bytes() for p in paths if p is not None}
        return replace(self, files=files)

    def local(self, path: Path | None) -> Path | None:
        """Where a brand file is on this node."""
        if path is None or str(path) not in self.files:
            return path
        return _materialize(str(path), self.files[str(path)])

    def job_rows(self, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]:
        """Make the assets of ``rows`` (the assets that share one render; see
        :func:`asset_units`): a manifest row and whether the file was already there, for each.
        A problem of one asset makes its ``failed: <reason>`` row and leaves no file."""
        return _JobAssets(self, rows).make()


_LOCAL_FILES: dict[tuple[str, int], Path] = {}


def _materialize(name: str, data: bytes) -> Path:
    """Write a shipped brand file once per node (content-addressed), return its path."""
    known = _LOCAL_FILES.get((name, len(data)))
    if known is not None and known.is_file():
        return known
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = scratch_dir() / "brand" / f"{digest}-{Path(name).name}"
    if not path.is_file():
        atomic_write_bytes(path, data)
    _LOCAL_FILES[(name, len(data))] = path
    return path


class _JobAssets:
    """The assets of one render (its variants × the placements of its aspect class)."""

    def __init__(self, ctx: PostContext, rows: list[dict[str, Any]]) -> None:
        self.ctx, self.rows = ctx, rows
        self.creatives = {c.id: c for c in ctx.campaign.creatives}
        self._render: CachedRender | None = None
        self._info: dict[str, Any] | None = None  # the render's cache JSON, read once

    def quality(self, job_key: str) -> dict[str, Any]:
        """The quality gate's record of the render (from its cache entry's JSON)."""
        if self._info is None:
            self._info = self.ctx.cache.info(job_key) or {}
        return dict(self._info.get("quality") or {})

    def render(self, job_key: str) -> CachedRender:
        if self._render is None:
            self._render = self.ctx.cache.get(job_key, info=self._info or None)
            if self._render is None:
                raise AdgenError(f"render {job_key[:12]} missing or unreadable in the cache; "
                                 "run again to render it again")
        return self._render

    def make(self) -> list[tuple[dict[str, Any], bool]]:
        return [self.one(row) for row in self.rows]

    def one(self, row: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """One asset's manifest row and whether its file was reused."""
        campaign = self.ctx.campaign
        spec = campaign.placements[row["placement_index"]]
        if row["failing"] is not None:  # preflight knew it cannot be made
            return failed_row(row, campaign, spec, row["failing"]), False
        try:
            return self._asset(row, spec)
        except StoreError:
            raise  # the store's outage, not this asset's problem: the run stops, nothing lost
        except OSError as exc:
            if exc.errno in _DISK_ERRORS:
                raise  # the output's problem, not this asset's: the run stops, nothing lost
            return failed_row(row, campaign, spec, failure_reason(exc)), False
        except Exception as exc:  # one asset's problem never costs the others theirs
            return failed_row(row, campaign, spec, failure_reason(exc)), False

    def _asset(self, row: dict[str, Any], spec: PlacementSpec) -> tuple[dict[str, Any], bool]:
        ctx = self.ctx
        job_key, planned = row["render_key"], row["render_seed"]
        quality = self.quality(job_key)
        seed = quality.get("seed", planned)  # a render the quality gate retried kept a later seed
        row = {**row, "job_key": job_key, "seed": seed}
        campaign, style = ctx.campaign, ctx.style
        placement = spec.resolve()
        creative = self.creatives[row["creative_id"]]
        video = creative.video if creative.kind == "video" else None
        fmt = "mp4" if video else spec.format
        render_id = job_key if seed == planned else (job_key, seed)
        asset_key = stable_hash(POST_VERSION, render_id, row["captions"], style.key,
                                _direction(row),
                                placement.name, placement.size, placement.safe.box(1000, 1000),
                                fmt, placement.max_bytes, spec.max_duration, row["variant_id"],
                                campaign.provenance.model_dump(mode="json"),
                                video.model_dump() if video else None)
        rel = f"assets/{row['variant_id']}/{placement.name}-{asset_key[:8]}.{EXTENSIONS[fmt]}"
        if ctx.assets.local:
            no_links(ctx.assets.root, rel)  # never write through a link out of the folder
        reused = ctx.assets.exists(rel)
        if reused and asset_key in ctx.checks:
            data = ctx.assets.read_bytes(rel)
            checks = dict(ctx.checks[asset_key])
        else:  # also a file a retried or interrupted task wrote: made again for its checks
            data, checks = self._make(row, placement, spec, video)
            reused = not ctx.assets.write_once(rel, data)
        checks["over_subject"] = over_subject(checks)
        checks["violations"] = brand_violations(
            checks, placement, has_logo=style.logo is not None,
            min_contrast=campaign.guardrails.min_contrast)
        timing = dict(checks.get("video") or {}) if video else {}
        manifest_row = {
            **_variant_fields(row, campaign), "placement": placement.name,
            "width": placement.width, "height": placement.height, "format": fmt,
            "path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "created_at": _mtime(ctx.assets, rel), "asset_key": asset_key,
            "checks": json.dumps(checks, default=str, sort_keys=True),
            "quality": _quality_json(quality), "status": "ok",
            "duration_s": timing.get("duration_s"), "fps": timing.get("fps"),
            "frames": timing.get("frames"), "aspect": row["aspect"], "render": row["render"],
        }
        return manifest_row, reused

    def _make(self, row: dict[str, Any], placement: Placement, spec: PlacementSpec,
              video: VideoOptions | None) -> tuple[bytes, dict[str, Any]]:
        """Compose, encode and mark one asset; returns its bytes and checks."""
        ctx = self.ctx
        campaign, style = ctx.campaign, ctx.style
        cached = self.render(row["job_key"])
        logo = style.logo
        if logo is not None:
            logo = replace(logo, path=ctx.local(logo.path) or logo.path,
                           light_path=ctx.local(logo.light_path))
        if logo is not None and _direction(row) == "rtl":
            logo = mirrored(logo)
        font = ctx.local(style.font)
        lang = str(row.get("locale") or "en")
        captions = [Caption(r, t, lang) for r, t in json.loads(row["captions"]).items()]
        if campaign.provenance.visible_label:
            captions.append(Caption("label", campaign.provenance.label))
        prov = Provenance(campaign.name, row["variant_id"], campaign.renderer.model or "",
                          campaign.renderer.name, cached.composite, ctx.created_at,
                          campaign.provenance.label)
        signing = campaign.provenance
        sign = signing.c2pa_cert is not None and signing.c2pa_key is not None
        if video is None and not sign:
            data, checks = self._image(cached, placement, spec, logo, font, captions, prov)
            return data, checks
        # ffmpeg and C2PA work on files: a node-local scratch file, read back when done
        with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
            path = Path(tmp) / f"asset.{EXTENSIONS['mp4' if video else spec.format]}"
            if video is not None:
                options = video.model_dump()
                if cached.frames:  # a generated clip: it moves already
                    options["motion"] = "none"
                settings = VideoSpec(**options, max_bytes=placement.max_bytes,
                                     max_duration=spec.max_duration,
                                     audio=ctx.local(campaign.brand.audio))
                if cached.frames:
                    clip = frames_to_video(
                        cached.load_frames(), round(cached.fps or video.fps), placement,
                        subject_box=cached.subject_box, logo=logo, captions=captions,
                        colors=style.colors, font=font, spec=settings)
                else:
                    clip = still_to_video(
                        cached.load(), placement, subject_box=cached.subject_box, logo=logo,
                        captions=captions, colors=style.colors, font=font, spec=settings)
                path.write_bytes(clip.data)
                embed_mp4(path, prov)
                checks = dict(clip.checks)
                checks["video"] = {"duration_s": clip.duration_s, "fps": clip.fps,
                                   "frames": clip.frames}
            else:
                data, checks = self._image(cached, placement, spec, logo, font, captions, prov)
                path.write_bytes(data)
            if sign:
                cert, key = ctx.local(signing.c2pa_cert), ctx.local(signing.c2pa_key)
                assert cert is not None and key is not None
                sign_c2pa(path, path, cert=cert, key=key, prov=prov)
            return path.read_bytes(), checks

    def _image(self, cached: CachedRender, placement: Placement, spec: PlacementSpec,
               logo: LogoStyle | None, font: Path | None, captions: list[Caption],
               prov: Provenance) -> tuple[bytes, dict[str, Any]]:
        composed = compose(cached.load(), placement, subject_box=cached.subject_box,
                           logo=logo, captions=captions, colors=self.ctx.style.colors,
                           font=font)
        budget = placement.max_bytes
        if budget is not None:
            budget -= embed_overhead(spec.format, prov)
        data = embed_image(encode_image(composed.image, spec.format, max_bytes=budget),
                           spec.format, prov)
        checks = {**composed.checks, "logo_box": composed.logo_box,
                  "caption_boxes": composed.caption_boxes}
        return data, checks


def post_context(plan: Plan, cache: RenderCache, style: BrandStyle) -> PostContext:
    """The context of a run's post-processing: its output store, cache and brand."""
    campaign = plan.campaign
    return PostContext(campaign, style, OutputStore(campaign.output_location), cache,
                       datetime.now(tz=UTC).date().isoformat(),
                       previous_checks(campaign.output_dir))


JobResults = list[tuple[dict[str, Any], bool]]


def asset_units(plan: Plan, failing: Mapping[tuple[str, int], str] | None = None,
                ) -> dict[str, list[dict[str, Any]]]:
    """The plan's assets grouped by the render they use (job key), in plan order: each the
    variant's row plus ``placement_index``, the render (``render_key``, ``render_seed``,
    ``aspect``, ``render`` label) and ``failing`` (why preflight knows it cannot be made, or
    None)."""
    failing = failing or {}
    classes = placement_classes(plan.campaign)
    by_job: dict[str, list[dict[str, Any]]] = {}
    for row in plan.variants.to_dict("records"):
        record = {str(k): v for k, v in row.items()}
        renders = json.loads(record["renders"])
        for index, name in enumerate(classes):
            if name not in renders:
                continue
            job = plan.jobs[renders[name]]
            by_job.setdefault(job.key, []).append({
                **record, "placement_index": index, "render_key": job.key,
                "render_seed": job.seed, "aspect": job.aspect, "render": _render_label(job),
                "failing": failing.get((record["variant_id"], index))})
    return by_job


_WORKER_CONTEXT: PostContext | None = None


def _init_process(ctx: PostContext) -> None:
    global _WORKER_CONTEXT
    _WORKER_CONTEXT = ctx


def _in_process(rows: list[dict[str, Any]]) -> JobResults:
    assert _WORKER_CONTEXT is not None
    return _WORKER_CONTEXT.job_rows(rows)


class AssetMaker:
    """Makes a render's assets as soon as it is cached, in parallel: a thread pool (Pillow and
    ffmpeg release the GIL) or, with ``processes``, one process per core (caption layout, crops
    and PNG handling hold it); or takes the rows a cluster made (:meth:`add`). Collects
    manifest rows in plan order."""

    def __init__(self, plan: Plan, ctx: PostContext, progress: Progress | None, *,
                 failing: Mapping[tuple[str, int], str] | None = None,
                 workers: int | None = None, processes: bool = False,
                 quality: QualityOf | None = None) -> None:
        self.plan, self.ctx, self.progress = plan, ctx, progress
        self.quality: QualityOf = quality or (lambda key: None)
        self.by_job = asset_units(plan, failing)
        self.total = sum(map(len, self.by_job.values()))  # blocked variants have none
        self.futures: dict[str, Future[JobResults]] = {}
        self.made: dict[str, JobResults] = {}
        workers = workers or os.cpu_count() or 1
        self.pool: Executor
        if processes:
            context = multiprocessing.get_context("forkserver")  # forks of one clean process
            context.set_forkserver_preload(["adgen.assets"])  # that imported adgen once
            self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                            initializer=_init_process, initargs=(ctx,))
        else:
            self.pool = ThreadPoolExecutor(max_workers=workers)
        self.processes = processes
        self.done = 0
        self.written = 0
        self.lock = threading.Lock()

    def __enter__(self) -> AssetMaker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, job_key: str, *, render_error: str | None = None) -> None:
        """Make the assets that use render ``job_key`` (it is cached), or, with
        ``render_error``, record them all as failed."""
        rows = self.by_job.get(job_key, [])
        if not rows:
            return
        if render_error is not None:
            self.add(job_key, self.render_failed(job_key, render_error))
            return
        future = (self.pool.submit(_in_process, rows) if self.processes
                  else self.pool.submit(self.ctx.job_rows, rows))
        future.add_done_callback(self._tick)
        self.futures[job_key] = future

    def needs_render(self, job_key: str) -> bool:
        """Whether any asset of the job can still be made (preflight failed none or some)."""
        return any(row["failing"] is None for row in self.by_job.get(job_key, []))

    def render_failed(self, job_key: str, error: str) -> JobResults:
        """The failed rows of the assets of a render that failed."""
        placements = self.plan.campaign.placements
        quality = _quality_json(self.quality(job_key) or {})
        return [({**failed_row(row, self.plan.campaign, placements[row["placement_index"]],
                               f"render failed: {error}"), "quality": quality}, False)
                for row in self.by_job.get(job_key, [])]

    def add(self, job_key: str, results: JobResults) -> None:
        """Take the assets of a render made elsewhere (a cluster worker)."""
        self.made[job_key] = results
        self._count(results)

    def _tick(self, future: Future[JobResults]) -> None:
        if not future.cancelled() and not future.exception():
            self._count(future.result())

    def _count(self, results: JobResults) -> None:
        with self.lock:
            self.done += len(results)
            self.written += sum(1 for row, reused in results
                                if row["status"] == "ok" and not reused)
            if self.progress:
                self.progress("post", self.done, self.total)

    def results(self) -> list[dict[str, Any]]:
        """Manifest rows in plan order (variants × placements); raises the first error."""
        made = dict(self.made)
        for key, future in self.futures.items():
            made[key] = future.result()
        order = {vid: i for i, vid in enumerate(self.plan.variants["variant_id"])}
        placements = {p.resolve().name: i for i, p in enumerate(self.plan.campaign.placements)}
        rows = [row for results in made.values() for row, _ in results]
        return sorted(rows, key=lambda r: (order[r["variant_id"]], placements[r["placement"]]))


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


def _mtime(store: OutputStore, rel: str) -> str:
    seconds = store.mtime(rel)
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")
