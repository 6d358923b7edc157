"""The render plan: segments × creatives × variant indices → variants and deduplicated jobs.

Seeds come from the experiment seed and the job's identity (creative, prompt, negative prompt,
variant index, and the aspect class for renders at a shape other than the renderer's own
``width`` x ``height``), so the same campaign gives the same seeds on any machine, adding a
segment leaves every other seed alone, and two segments whose prompts come out the same share
one render.

Each variant gets one render per aspect class its placements need (``renderer.aspect:
native``: rendered at that shape; ``extend``: the base render outpainted to it; ``crop``: one
render for all). The variant's ``renders`` column maps each class to its job key.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.audience import AudienceSource, Segments, read_audience, segment_audience
from adgen.errors import AssetError, AudienceError, CampaignError
from adgen.guardrails import check_columns, compile_blocked, text_problem
from adgen.jobs import RenderJob, derive_seed
from adgen.placements import Placement, aspect_class, class_size, extend_size, product_stage
from adgen.prompts import TemplateSet
from adgen.renderers import RUNTIME_OPTIONS, STAGED_RENDERERS, VIDEO_RENDERERS
from adgen.spec import CampaignSpec, Creative
from adgen.store import RenderCache

CACHE_DIR = ".cache"

VARIANT_COLUMNS = [
    "variant_id", "slot", "segment_id", "segment", "creative_id", "variant_index", "seed", "prompt",
    "negative_prompt", "captions", "headline", "cta", "product", "job_key", "renders", "blocked",
]
CROP = "crop"
"""The aspect class name of the one render every placement is cut from (``aspect: crop``)."""


@dataclass(frozen=True)
class Plan:
    """What a run will do. ``variants`` has one row per variant (:data:`VARIANT_COLUMNS`);
    ``jobs`` maps each distinct job key to its job; ``cached`` holds the keys already rendered."""

    campaign: CampaignSpec
    segments: Segments
    variants: pd.DataFrame
    jobs: dict[str, RenderJob]
    cached: frozenset[str]

    @property
    def blocked(self) -> dict[str, str]:
        """Variants the guardrails refused, with the reason."""
        rows = self.variants[self.variants["blocked"] != ""]
        return dict(zip(rows["variant_id"], rows["blocked"], strict=True))

    @property
    def to_render(self) -> list[RenderJob]:
        """Jobs not in the cache; extend jobs come after the renders they extend."""
        todo = [job for key, job in self.jobs.items() if key not in self.cached]
        return sorted(todo, key=lambda job: job.source_key is not None)

    def summary(self) -> dict[str, int]:
        """The counts ``adgen plan`` prints."""
        return {
            "customers": len(self.segments.members),
            "segments": len(self.segments.table),
            "creatives": len(self.campaign.creatives),
            "variants": len(self.variants),
            "jobs": len(self.jobs),
            "cached": len(self.cached),
            "to_render": len(self.jobs) - len(self.cached),
        }


def compile_templates(campaign: CampaignSpec) -> TemplateSet:
    """Compile every prompt and caption template of the campaign (names like ``hero.prompt``)."""
    templates = TemplateSet(campaign.template_dirs)
    for creative in campaign.creatives:
        if creative.prompt_file is not None:
            templates.add_file(f"{creative.id}.prompt", creative.prompt_file)
        else:
            templates.add(f"{creative.id}.prompt", creative.prompt or "")
        templates.add(f"{creative.id}.negative_prompt", creative.negative_prompt)
        for caption, source in creative.captions.items():
            templates.add(f"{creative.id}.{caption}", source)
    return templates


def check_brand_assets(campaign: CampaignSpec) -> None:
    """Every brand file the campaign names must exist (contents are checked when loaded)."""
    brand = campaign.brand
    named = {"brand.logo": brand.logo, "brand.logo_light": brand.logo_light,
             "brand.font": brand.font, "brand.audio": brand.audio}
    named |= {f"brand.products.{k}": v for k, v in brand.products.items()}
    for field, path in named.items():
        if path is not None and not path.is_file():
            raise AssetError(f"{field}: file not found: {path}; fix the path in the campaign")


def placement_classes(campaign: CampaignSpec) -> list[str]:
    """The aspect class of each of the campaign's placements, in order (:data:`CROP` for all
    with ``renderer.aspect: crop``)."""
    if campaign.renderer.aspect == CROP:
        return [CROP] * len(campaign.placements)
    return [aspect_class(spec.resolve()) for spec in campaign.placements]


@functools.lru_cache(maxsize=256)
def _file_sha256(path: Path, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_sha256(path: Path) -> str:
    """Content hash of a file (cached while the file is unchanged)."""
    return _file_sha256(path, path.stat().st_mtime_ns)


def make_plan(
    campaign: CampaignSpec, audience: AudienceSource | None = None, *,
    generations: Mapping[str, int] | None = None,
) -> Plan:
    """Read and segment the audience, render every template, and build the deduplicated jobs.

    ``generations`` maps a variant *slot* (``creative-segment-vN``) to its generation: a slot
    at generation n > 0 gets fresh seeds and the variant id ``creative-segment-vN-gn`` (refreshes
    use it to replace retired variants)."""
    generations = generations or {}
    check_brand_assets(campaign)
    templates = compile_templates(campaign)
    guard = campaign.guardrails
    blocked = compile_blocked(guard.blocked)
    data = read_audience(campaign.audience, audience)
    segments = segment_audience(data, campaign.audience, row_columns=guard.prompt_columns)
    check_columns(templates.used_variables, [str(c) for c in data.frame.columns],
                  allowed=guard.prompt_columns)
    contexts = segments.contexts()
    extra = {"campaign": campaign.name, "brand_name": campaign.brand.name}
    available = [*segments.table.columns.drop("segment_id"), *extra, "product"]
    templates.check_variables(
        available,
        hint=(
            f". Audience columns: {', '.join(map(str, data.frame.columns))}; add a column to "
            "audience.segment_by or audience.aggregates to use it"
        ),
    )
    rows: list[dict[str, Any]] = []
    jobs: dict[str, RenderJob] = {}
    stages = _stages(campaign)
    if campaign.renderer.aspect == "extend" and campaign.renderer.name in VIDEO_RENDERERS:
        raise CampaignError(
            f"renderer.aspect 'extend' outpaints still pictures; the video renderer "
            f"{campaign.renderer.name!r} cannot: use aspect 'native' or 'crop'")
    for segment_id, context in zip(segments.table["segment_id"], contexts, strict=True):
        context |= extra
        key_values = {k: context[k] for k in segments.keys}
        for creative in campaign.creatives:
            product = _product_for(campaign, creative, context, data.where)
            context["product"] = product or ""
            prompt = templates.render(f"{creative.id}.prompt", context)
            negative = templates.render(f"{creative.id}.negative_prompt", context)
            captions = {
                name: templates.render(f"{creative.id}.{name}", context)
                for name in creative.captions
            }
            problem = text_problem({"prompt": prompt, "negative_prompt": negative, **captions},
                                   blocked, allow_pii=guard.allow_pii)
            for index in range(campaign.variants):
                slot = f"{creative.id}-{segment_id}-v{index}"
                generation = generations.get(slot, 0)
                renders = _jobs(campaign, creative, prompt, negative, product, index,
                                generation, stages)
                job = next(iter(renders.values()))
                if problem is None:
                    for each in renders.values():
                        jobs.setdefault(each.key, each)
                rows.append({
                    "variant_id": f"{slot}-g{generation}" if generation else slot,
                    "slot": slot,
                    "segment_id": segment_id,
                    "segment": json.dumps(key_values, ensure_ascii=False, default=str),
                    "creative_id": creative.id,
                    "variant_index": index,
                    "seed": job.seed,
                    "prompt": prompt,
                    "negative_prompt": negative,
                    "captions": json.dumps(captions, ensure_ascii=False),
                    "headline": captions.get("headline", ""),
                    "cta": captions.get("cta", ""),
                    "product": product or "",
                    "job_key": "" if problem else job.key,
                    "renders": "{}" if problem else json.dumps(
                        {name: each.key for name, each in renders.items()}),
                    "blocked": problem or "",
                })
    variants = pd.DataFrame(rows, columns=VARIANT_COLUMNS)
    cache = RenderCache(campaign.output_dir / CACHE_DIR)
    cached = frozenset(key for key in jobs if cache.has(key))
    return Plan(campaign, segments, variants, jobs, cached)


def _product_for(
    campaign: CampaignSpec, creative: Creative, context: dict[str, Any], where: str
) -> str | None:
    """The brand product a variant shows: the creative's, else the segment's product column."""
    if creative.product:
        return creative.product
    value = context.get("segment_product")
    if not campaign.audience.product_column or value is None or pd.isna(value):
        return None
    if str(value) not in campaign.brand.products:
        raise AudienceError(
            f"{where}: column {campaign.audience.product_column!r} names product {str(value)!r}, "
            f"which is not in brand.products ({', '.join(sorted(campaign.brand.products))}); "
            "product images are chosen by name from the brand kit, never by path"
        )
    return str(value)


def _stages(campaign: CampaignSpec) -> dict[str, tuple[float, ...] | None]:
    """Each aspect class the placements use, with where its renders put the product
    (:func:`adgen.placements.product_stage`; None for ``crop`` and renderers that do not take
    a ``stage`` option, and when the campaign sets one)."""
    by_class: dict[str, list[Placement]] = {}
    for name, spec in zip(placement_classes(campaign), campaign.placements, strict=True):
        by_class.setdefault(name, []).append(spec.resolve())
    staged = campaign.renderer.name in STAGED_RENDERERS and "stage" not in \
        campaign.renderer.options
    return {name: product_stage(group) if staged and name != CROP else None
            for name, group in by_class.items()}


def _jobs(
    campaign: CampaignSpec, creative: Creative, prompt: str, negative: str,
    product: str | None, index: int, generation: int,
    stages: dict[str, tuple[float, ...] | None],
) -> dict[str, RenderJob]:
    """The variant's render job per aspect class. The class at the renderer's own size (and
    ``crop``) keeps the plain job, and its seed; the others derive their own seed from the
    class name. ``extend`` jobs outpaint the plain job's render."""
    base = _job(campaign, creative, prompt, negative, product, index, generation)
    renderer = campaign.renderer
    multiple = 64 if renderer.name.startswith("diffusers") else 8
    out: dict[str, RenderJob] = {}
    for name, stage in stages.items():
        extend = renderer.aspect == "extend"
        size = (base.width, base.height) if name == CROP else (
            extend_size(name, base.width, base.height) if extend
            else class_size(name, base.width, base.height, multiple=multiple))
        if stage is not None and product is not None and not extend:
            base = _job(campaign, creative, prompt, negative, product, index, generation,
                        stage=stage)
        if size == (base.width, base.height):
            out[name] = dataclasses.replace(base, aspect=name)
            continue
        seed = _job(campaign, creative, prompt, negative, product, index, generation,
                    aspect=name).seed
        source: dict[str, Any] = {}
        if extend:
            source = {"source_key": base.key, "source_image": str(
                RenderCache(campaign.output_dir / CACHE_DIR).image_path(base.key))}
        out[name] = dataclasses.replace(base, seed=seed, width=size[0], height=size[1],
                                        aspect=name, **source)
    return out


def _job(
    campaign: CampaignSpec, creative: Creative, prompt: str, negative: str,
    product: str | None, index: int, generation: int, *, aspect: str | None = None,
    stage: tuple[float, ...] | None = None,
) -> RenderJob:
    renderer = campaign.renderer
    product_path = campaign.brand.products[product] if product else None
    options = {k: v for k, v in renderer.options.items() if k not in RUNTIME_OPTIONS}
    if stage is not None:
        options["stage"] = stage
    options["palette"] = tuple(campaign.brand.colors)
    identity: tuple[object, ...] = (campaign.experiment.seed, creative.id, prompt, negative, index)
    if generation:
        identity += (generation,)
    if aspect is not None:
        identity += (aspect,)
    return RenderJob(
        renderer=renderer.name,
        model=renderer.model,
        prompt=prompt,
        negative_prompt=negative,
        seed=derive_seed(*identity),
        width=renderer.width,
        height=renderer.height,
        steps=renderer.steps,
        guidance=renderer.guidance,
        # a video creative is a clip with a video renderer, else motion over a rendered still
        kind="video" if renderer.name in VIDEO_RENDERERS else "image",
        product_image=str(product_path) if product_path else None,
        product_sha256=file_sha256(Path(product_path)) if product_path else None,
        options=tuple(sorted((k, _freeze(v)) for k, v in options.items())),
    )


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value
