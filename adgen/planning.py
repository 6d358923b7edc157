"""The render plan: segments × creatives × variant indices → variants and deduplicated jobs.

Seeds come from the experiment seed and the job's identity (creative, prompt, negative prompt,
variant index), so the same campaign gives the same seeds on any machine, adding a segment leaves
every other seed alone, and two segments whose prompts come out the same share one render.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.audience import AudienceSource, Segments, read_audience, segment_audience
from adgen.errors import AssetError, AudienceError
from adgen.guardrails import check_columns, compile_blocked, text_problem
from adgen.jobs import RenderJob, derive_seed
from adgen.prompts import TemplateSet
from adgen.renderers import RUNTIME_OPTIONS, VIDEO_RENDERERS
from adgen.spec import CampaignSpec, Creative
from adgen.storage import join
from adgen.store import RenderCache

CACHE_DIR = ".cache"

SlotKey = tuple[str, str, int]
"""A variant slot: ``(creative_id, segment_id, variant_index)``; refreshes replace the variant
in a slot by its next generation."""


def variant_name(creative_id: str, segment_id: str, index: int, generation: int) -> str:
    """A variant's id, ``hero-s1a2b3c4d5-v0`` (``…-v0-g2`` from generation 2). Ids are names for
    files and CRMs: code reads the variant's parts from their own columns, never from the id."""
    slot = f"{creative_id}-{segment_id}-v{index}"
    return f"{slot}-g{generation}" if generation else slot

VARIANT_COLUMNS = [
    "variant_id", "segment_id", "segment", "creative_id", "variant_index", "generation", "seed",
    "prompt", "negative_prompt", "captions", "headline", "cta", "product", "job_key", "blocked",
]


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
        return [job for key, job in self.jobs.items() if key not in self.cached]

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


@functools.lru_cache(maxsize=256)
def _file_sha256(path: Path, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_sha256(path: Path) -> str:
    """Content hash of a file (cached while the file is unchanged)."""
    return _file_sha256(path, path.stat().st_mtime_ns)


def make_plan(
    campaign: CampaignSpec, audience: AudienceSource | None = None, *,
    generations: Mapping[SlotKey, int] | None = None,
) -> Plan:
    """Read and segment the audience, render every template, and build the deduplicated jobs.

    ``generations`` maps a variant *slot* ``(creative_id, segment_id, variant_index)`` to its
    generation: a slot at generation n > 0 gets fresh seeds and a new variant id (refreshes use
    it to replace retired variants)."""
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
                generation = generations.get((creative.id, segment_id, index), 0)
                job = _job(campaign, creative, prompt, negative, product, index, generation)
                if problem is None:
                    jobs.setdefault(job.key, job)
                rows.append({
                    "variant_id": variant_name(creative.id, segment_id, index, generation),
                    "segment_id": segment_id,
                    "segment": json.dumps(key_values, ensure_ascii=False, default=str),
                    "creative_id": creative.id,
                    "variant_index": index,
                    "generation": generation,
                    "seed": job.seed,
                    "prompt": prompt,
                    "negative_prompt": negative,
                    "captions": json.dumps(captions, ensure_ascii=False),
                    "headline": captions.get("headline", ""),
                    "cta": captions.get("cta", ""),
                    "product": product or "",
                    "job_key": "" if problem else job.key,
                    "blocked": problem or "",
                })
    variants = pd.DataFrame(rows, columns=VARIANT_COLUMNS)
    cache = RenderCache(join(campaign.output_location, CACHE_DIR))
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


def _job(
    campaign: CampaignSpec, creative: Creative, prompt: str, negative: str,
    product: str | None, index: int, generation: int,
) -> RenderJob:
    renderer = campaign.renderer
    product_path = campaign.brand.products[product] if product else None
    options = {k: v for k, v in renderer.options.items() if k not in RUNTIME_OPTIONS}
    options["palette"] = tuple(campaign.brand.colors)
    identity: tuple[object, ...] = (campaign.experiment.seed, creative.id, prompt, negative, index)
    if generation:
        identity += (generation,)
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
