"""Assets: each variant's finished files, one per placement, made as its render arrives.

:meth:`PostContext.job_rows` turns a cached render into placement-ready files: crop, logo and
captions (images with Pillow, video with ffmpeg), encoding within the byte budget, provenance
(invisible watermark, XMP, optional C2PA), written atomically under a name built from ids and
a content hash of everything that shapes the file, so an unchanged asset is reused and a changed
one is redone.
The same code runs in a thread, a process or on a cluster node (the backends run it): it reads
the render from the cache, writes each file once to the output store and returns manifest rows
(:mod:`adgen.manifest`).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from adgen.catalog.locales import is_rtl
from adgen.errors import AdgenError, PostProcessError, StoreError
from adgen.guardrails import brand_violations, over_subject
from adgen.jobs import Rendered, RenderJob, stable_hash
from adgen.manifest import (
    failed_row,
    failure_reason,
    previous_checks,
    quality_json,
    variant_fields,
)
from adgen.output.cache import CachedRender, RenderCache
from adgen.output.files import atomic_write_bytes, scratch_dir
from adgen.output.store import OutputStore, open_store
from adgen.placements import Placement
from adgen.planning import CROP, Plan, file_sha256, placement_classes
from adgen.post import gpu
from adgen.post.encode import encode_image
from adgen.post.image import Caption, LogoStyle, compose, load_brand_image
from adgen.post.logo import mirrored
from adgen.post.video import VideoSpec, frames_to_video, still_to_video
from adgen.provenance import watermark
from adgen.provenance.c2pa import sign_c2pa
from adgen.provenance.metadata import (
    UNTRAINED_RENDERERS,
    Provenance,
    embed_image,
    embed_mp4,
    embed_overhead,
)
from adgen.spec import BackendSpec, CampaignSpec, PlacementSpec, VideoOptions

if TYPE_CHECKING:
    import torch

POST_VERSION = "post/v6"
"""Bump when post-processing changes its output, so cached assets are redone."""

VIDEO_MARK_EVERY = 1
"""Video frames get a watermark of their own every this many frames (the frames between reuse
the last one): 1 = every frame."""
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
    device: str | None = None
    """The torch device image assets are made on (``backend.post: gpu``); None: Pillow."""

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

    def job_rows(self, rows: list[dict[str, Any]], fresh: Rendered | None = None
                 ) -> list[tuple[dict[str, Any], bool]]:
        """Make the assets of ``rows`` (the assets that share one render; see
        :func:`asset_units`): a manifest row and whether the file was already there, for each.
        A problem of one asset makes its ``failed: <reason>`` row and leaves no file.
        ``fresh``: that render (a still), just made in this process and cached: used as it is
        (its pixels on the device too, for ``backend.post: gpu``) rather than read back."""
        return _JobAssets(self, rows, fresh).make()


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

    def __init__(self, ctx: PostContext, rows: list[dict[str, Any]],
                 fresh: Rendered | None = None) -> None:
        self.ctx, self.rows = ctx, rows
        self.creatives = {c.id: c for c in ctx.campaign.creatives}
        self._render: CachedRender | None = None
        if fresh is not None:  # a still AssetMaker.keep held
            self._render = CachedRender.of(fresh)
        self._info: dict[str, Any] | None = None  # the render's cache JSON, read once
        self._pixels: torch.Tensor | None = None  # the render on ctx.device, sent once

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
        ctx.assets.check_inside(rel)  # never write through a link out of the folder
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
            **variant_fields(row, campaign), "placement": placement.name,
            "width": placement.width, "height": placement.height, "format": fmt,
            "path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "created_at": _mtime(ctx.assets, rel), "asset_key": asset_key,
            "checks": json.dumps(checks, default=str, sort_keys=True),
            "quality": quality_json(quality), "status": "ok",
            "duration_s": timing.get("duration_s"), "fps": timing.get("fps"),
            "frames": timing.get("frames"), "aspect": row["aspect"], "render": row["render"],
            "watermark": (checks.get("watermark") or {}).get("payload", ""),
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
        signing = campaign.provenance
        if signing.labelled(placement):
            captions.append(Caption("label", signing.label))
        payload, mark_checks = _watermark(campaign, row["variant_id"], placement)
        prov = Provenance(campaign.name, row["variant_id"], campaign.renderer.model or "",
                          campaign.renderer.name, cached.composite, ctx.created_at,
                          signing.label, payload)
        sign = signing.c2pa_cert is not None and signing.c2pa_key is not None
        if video is None and not sign:
            return self._image(cached, placement, spec, logo, font, captions, prov, mark_checks)
        # ffmpeg and C2PA work on files: a node-local scratch file, read back when done
        with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
            path = Path(tmp) / f"asset.{EXTENSIONS['mp4' if video else spec.format]}"
            if video is not None:
                options = video.model_dump()
                if cached.frames:  # a generated clip: it moves already
                    options["motion"] = "none"
                settings = VideoSpec(**options, max_bytes=placement.max_bytes,
                                     max_duration=spec.max_duration,
                                     audio=ctx.local(campaign.brand.audio),
                                     mark=watermark.FrameMarker(payload, VIDEO_MARK_EVERY)
                                     if payload else None)
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
                if payload:
                    found = [watermark.detect(f) for f in watermark.video_frames(path, 1)]
                    mark_checks.update(every=VIDEO_MARK_EVERY, read_back=_read_back(
                        found[0] if found else None, payload))
                if mark_checks:
                    checks["watermark"] = mark_checks
            else:
                data, checks = self._image(cached, placement, spec, logo, font, captions, prov,
                                           mark_checks)
                path.write_bytes(data)
            if sign:
                cert, key = ctx.local(signing.c2pa_cert), ctx.local(signing.c2pa_key)
                assert cert is not None and key is not None
                sign_c2pa(path, path, cert=cert, key=key, prov=prov)
            return path.read_bytes(), checks

    def _image(self, cached: CachedRender, placement: Placement, spec: PlacementSpec,
               logo: LogoStyle | None, font: Path | None, captions: list[Caption],
               prov: Provenance, mark: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """Compose, watermark, encode and tag one picture; ``mark`` becomes its
        ``watermark`` check, with the PSNR of the mark and the confidence it reads back at.
        With ``backend.post: gpu`` the picture is composed and encoded on the device; the
        watermark, numpy on the CPU, is added to a copy brought back for it."""
        picture = cached.load()
        args: dict[str, Any] = {"subject_box": cached.subject_box, "logo": logo,
                                "captions": captions, "colors": self.ctx.style.colors,
                                "font": font}
        device = self.ctx.device
        pixels: torch.Tensor | None = None  # the ad on the device (backend.post: gpu)
        image: Image.Image | None = None  # the ad on the CPU: Pillow's, or for the watermark
        if device is not None:
            if self._pixels is None:
                self._pixels = gpu.on_device(picture, device, cached.pixels)
            ad = gpu.compose_on(self._pixels, picture, placement, **args)
            pixels = ad.pixels
            checks = {**ad.checks, "logo_box": ad.logo_box, "caption_boxes": ad.caption_boxes}
            if prov.watermark:
                image = ad.image()
        else:
            composed = compose(picture, placement, **args)
            image = composed.image
            checks = {**composed.checks, "logo_box": composed.logo_box,
                      "caption_boxes": composed.caption_boxes}
        if prov.watermark:
            assert image is not None
            marked = watermark.embed(image, prov.watermark)
            unmarked, done = (np.asarray(p.convert("RGB")) for p in (image, marked))
            mark = {**mark, "psnr_db": round(watermark.psnr(unmarked, done), 2)}
            image = marked
            if device is not None:
                pixels = gpu.to_tensor(marked, device)
        budget = placement.max_bytes
        if budget is not None:
            budget -= embed_overhead(spec.format, prov)
        if pixels is not None:
            encoded = gpu.encode_on(pixels, spec.format, max_bytes=budget)
        else:
            assert image is not None
            encoded = encode_image(image, spec.format, max_bytes=budget)
        if prov.watermark:
            with Image.open(io.BytesIO(encoded)) as written:
                mark["read_back"] = _read_back(watermark.detect(written), prov.watermark)
        if mark:
            checks["watermark"] = mark
        return embed_image(encoded, spec.format, prov), checks


def post_device(backend: BackendSpec) -> str | None:
    """The torch device ``backend.post: gpu`` makes image assets on, checked; None (Pillow)
    for the other ``post`` settings. Raises :class:`PostProcessError` when torch cannot use it."""
    if backend.post != "gpu":
        return None
    import torch

    try:
        kind = torch.device(backend.post_device).type
    except RuntimeError:
        raise PostProcessError(
            f"backend.post_device {backend.post_device!r} is not a torch device: use cuda, "
            "cuda:N or cpu") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise PostProcessError(
            f"backend.post: gpu makes assets on {backend.post_device!r}, but torch sees no CUDA "
            "GPU here: run where there is one, set backend.post_device: cpu (the same code on "
            "the CPU, slower), or set backend.post to cluster or driver")
    return backend.post_device


def _watermark(campaign: CampaignSpec, variant_id: str, placement: Placement
               ) -> tuple[str | None, dict[str, Any]]:
    """The watermark payload of an asset (None when it gets none) and its first checks."""
    setting = campaign.provenance.watermark
    wanted = campaign.renderer.name not in UNTRAINED_RENDERERS if setting == "auto" else setting
    if not wanted:
        return None, {}
    if not watermark.carries(*placement.size):
        return None, {"skipped": f"{placement.width}x{placement.height} is too small to carry "
                                 "the invisible watermark"}
    payload = watermark.payload_for(campaign.name, variant_id, placement.name)
    return payload, {"payload": payload, "alg": watermark.ALGORITHM}


def _read_back(found: watermark.Detection | None, payload: str) -> float | None:
    """The confidence with which the finished file gives its payload back (None: it does not)."""
    return found.confidence if found is not None and found.payload == payload else None


def post_context(plan: Plan, cache: RenderCache, style: BrandStyle) -> PostContext:
    """The context of a run's post-processing: its output store, cache, brand and device
    (checked before anything is rendered)."""
    campaign = plan.campaign
    return PostContext(campaign, style, open_store(campaign.output_location), cache,
                       datetime.now(tz=UTC).date().isoformat(),
                       previous_checks(campaign.output_dir),
                       device=post_device(campaign.backend))


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


def _render_label(job: RenderJob) -> str:
    """How the asset's picture was made: ``native 576x1024``, ``extend 768x1368 from
    <key8>``, or ``crop 1024x1024`` (one render for every placement)."""
    size = f"{job.width}x{job.height}"
    if job.source_key is not None:
        return f"extend {size} from {job.source_key[:8]}"
    return f"{'crop' if job.aspect == CROP else 'native'} {size}"


def _direction(row: Mapping[str, Any]) -> str:
    """``rtl`` for a variant in a right-to-left locale (its layout is mirrored), else ``ltr``."""
    return "rtl" if is_rtl(str(row.get("locale") or "en")) else "ltr"


def _mtime(store: OutputStore, rel: str) -> str:
    seconds = store.mtime(rel)
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")
