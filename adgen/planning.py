"""The render plan: segments × creatives × variant indices → variants and deduplicated jobs.

Seeds come from the experiment seed and the job's identity (creative, prompt, negative prompt,
variant index, and the aspect class for renders at a shape other than the renderer's own
``width`` x ``height``), so the same campaign gives the same seeds on any machine, adding a
segment leaves every other seed alone, and two segments whose prompts come out the same share
one render. A variant people rejected in review is planned with its next take (the output's
decisions, :mod:`adgen.review.decisions`), which gives it other seeds.

Each variant gets one render per aspect class its placements need (``renderer.aspect:
native``: rendered at that shape; ``extend``: the base render outpainted to it; ``crop``: one
render for all). The variant's ``renders`` column maps each class to its job key.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.audience.read import Audience, AudienceSource, read_audience
from adgen.audience.segments import Segments, segment_audience
from adgen.catalog.feeds import Catalog, read_catalog
from adgen.catalog.images import FetchLimits, ProductImages
from adgen.catalog.locales import (
    LOCALE_KEY,
    Translations,
    caption_source,
    check_translations,
    normalise_locale,
)
from adgen.errors import AssetError, AudienceError, CampaignError, CatalogError
from adgen.guardrails import check_columns, compile_blocked, text_problem
from adgen.jobs import RenderJob, derive_seed
from adgen.output.cache import RenderCache
from adgen.output.store import CACHE_DIR, open_store
from adgen.placements import Placement, aspect_class, class_size, extend_size, product_stage
from adgen.prompts import TemplateSet
from adgen.renderers import RUNTIME_OPTIONS, STAGED_RENDERERS, VIDEO_RENDERERS
from adgen.review.decisions import Decisions, Retake
from adgen.spec import AudienceSpec, CampaignSpec, Creative, GuardrailSpec

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
    "prompt", "negative_prompt", "captions", "headline", "cta", "product", "locale", "job_key",
    "renders", "blocked",
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
    products_left_out: dict[str, str] = field(default_factory=dict)
    takes: dict[str, int] = field(default_factory=dict)
    """The variants rendered again after a rejection, and their take (see
    :meth:`adgen.review.decisions.Decisions.takes`)."""

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
    return templates


def compile_captions(campaign: CampaignSpec, templates: TemplateSet, locales: set[str]
                     ) -> dict[tuple[str, str, str], str]:
    """Compile every caption template for every locale in use and return the template name of
    each (creative, caption, locale). A missing translation is a :class:`TemplateError` listing
    every (caption, locale) pair, unless ``locale.fallback`` is on."""
    spec = campaign.locale
    translations = Translations(spec.translations)
    names: dict[tuple[str, str, str], str] = {}
    missing: list[tuple[str, str]] = []
    for creative in campaign.creatives:
        for caption, source in creative.captions.items():
            plain = source if isinstance(source, str) else None
            for locale in sorted(locales):
                text = caption_source(source, locale, default=spec.default,
                                      translations=translations, fallback=spec.fallback)
                if text is None:
                    missing.append((f"{creative.id}.{caption}", locale))
                    continue
                name = f"{creative.id}.{caption}"
                if text != plain:
                    name += f"@{locale}"
                if name not in templates.names:
                    templates.add(name, text)
                names[(creative.id, caption, locale)] = name
    check_translations(missing)
    return names


def check_brand_assets(campaign: CampaignSpec) -> None:
    """Every brand file the campaign names must exist (contents are checked when loaded)."""
    brand = campaign.brand
    named = {"brand.logo": brand.logo, "brand.logo_light": brand.logo_light,
             "brand.font": brand.font, "brand.audio": brand.audio}
    named |= {f"brand.products.{k}": v for k, v in brand.products.items()}
    for name, path in named.items():
        if path is not None and not path.is_file():
            raise AssetError(f"{name}: file not found: {path}; fix the path in the campaign")


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
    generations: Mapping[SlotKey, int] | None = None,
) -> Plan:
    """Read and segment the audience, render every template, and build the deduplicated jobs.

    ``generations`` maps a variant *slot* ``(creative_id, segment_id, variant_index)`` to its
    generation: a slot at generation n > 0 gets fresh seeds and a new variant id (refreshes use
    it to replace retired variants). First checks that the output can be written
    (:meth:`~adgen.output.store.OutputStore.check_writable`), so ``validate``, ``plan`` and ``run``
    stop before any work when it cannot."""
    generations = generations or {}
    open_store(campaign.output_location).check_writable()
    check_brand_assets(campaign)
    templates = compile_templates(campaign)
    guard = campaign.guardrails
    blocked = compile_blocked(guard.blocked)
    data = _with_locales(campaign, read_audience(campaign.audience, audience))
    audience_spec = _with_locale_key(campaign)
    locale_column = campaign.locale.column
    segments = segment_audience(
        data, audience_spec,
        row_columns=[*guard.prompt_columns, *([locale_column] if locale_column else [])],
        secret=campaign.experiment.seed)
    contexts = segments.contexts()
    locales = [_segment_locale(campaign, context) for context in contexts]
    captions_by_locale = compile_captions(
        campaign, templates, {loc for loc, problem in locales if problem is None})
    check_columns(templates.used_variables, [str(c) for c in data.frame.columns],
                  allowed=guard.prompt_columns)
    extra = {"campaign": campaign.name, "brand_name": campaign.brand.name}
    available = [*segments.table.columns.drop("segment_id"), *extra, "product", LOCALE_KEY]
    templates.check_variables(
        available,
        hint=(
            f". Audience columns: {', '.join(map(str, data.frame.columns))}; add a column to "
            "audience.segment_by or audience.aggregates to use it"
        ),
    )
    products = Products(campaign, data.where)
    used = {c.id: sorted(templates.variables_of(c.id) - {"product", LOCALE_KEY})
            for c in campaign.creatives}
    # segments whose templates see the same values get the same texts: render those once
    # (per-customer audiences have many customers per product and locale)
    memo: dict[tuple[Any, ...], tuple[str, str, dict[str, str], str, str | None]] = {}
    job_memo: dict[tuple[Any, ...], dict[str, RenderJob]] = {}
    rows: list[dict[str, Any]] = []
    jobs: dict[str, RenderJob] = {}
    stages = _stages(campaign)
    review = campaign.review
    retakes = Decisions.load(open_store(campaign.output_location)).takes(
        comments=review is not None and review.comment_as_negative)
    if campaign.renderer.aspect == "extend" and campaign.renderer.name in VIDEO_RENDERERS:
        raise CampaignError(
            f"renderer.aspect 'extend' outpaints still pictures; the video renderer "
            f"{campaign.renderer.name!r} cannot: use aspect 'native' or 'crop'")
    for segment_id, context, (locale, locale_problem) in zip(
            segments.table["segment_id"], contexts, locales, strict=True):
        context |= extra
        context[LOCALE_KEY] = locale
        key_values = {k: context[k] for k in segments.keys}
        for creative in campaign.creatives:
            product = products.choose(creative, context)
            context["product"] = product.value
            text_key = (creative.id, locale, locale_problem, product.name, product.problem,
                        *(context.get(name) for name in used[creative.id]))
            if text_key not in memo:
                memo[text_key] = _texts(templates, creative, context, captions_by_locale,
                                        blocked, guard,
                                        locale_problem or product.problem)
            prompt, base_negative, captions, captions_json, base_problem = memo[text_key]
            for index in range(campaign.variants):
                generation = generations.get((creative.id, segment_id, index), 0)
                variant_id = variant_name(creative.id, segment_id, index, generation)
                retake = retakes.get(variant_id, Retake(0))
                negative, problem = _with_review_comments(base_negative, base_problem, retake,
                                                          blocked, guard)
                job_key = (text_key, index, generation, retake)
                if job_key not in job_memo:
                    job_memo[job_key] = _jobs(campaign, creative, prompt, negative, product,
                                              index, generation, stages, take=retake.take)
                renders = job_memo[job_key]
                job = next(iter(renders.values()))
                key = job.key
                if problem is None:
                    for each in renders.values():
                        jobs.setdefault(each.key, each)
                rows.append({
                    "variant_id": variant_id,
                    "segment_id": segment_id,
                    "segment": json.dumps(key_values, ensure_ascii=False, default=str),
                    "creative_id": creative.id,
                    "variant_index": index,
                    "generation": generation,
                    "seed": job.seed,
                    "prompt": prompt,
                    "negative_prompt": negative,
                    "captions": captions_json,
                    "headline": captions.get("headline", ""),
                    "cta": captions.get("cta", ""),
                    "product": product.name or "",
                    "locale": locale,
                    "job_key": "" if problem else key,
                    "renders": "{}" if problem else json.dumps(
                        {name: each.key for name, each in renders.items()}),
                    "blocked": problem or "",
                })
    variants = pd.DataFrame(rows, columns=VARIANT_COLUMNS)
    cache = RenderCache.of(campaign.output_location)
    cached = frozenset(key for key in jobs if cache.has(key))
    planned = set(variants["variant_id"])
    takes = {v: r.take for v, r in retakes.items() if v in planned}
    return Plan(campaign, segments, variants, jobs, cached, products.left_out(), takes)


def _with_review_comments(negative: str, problem: str | None, retake: Retake,
                          blocked: Sequence[tuple[str, re.Pattern[str]]], guard: GuardrailSpec
                          ) -> tuple[str, str | None]:
    """The negative prompt with the rejection comments added (``review.comment_as_negative``),
    checked by the guardrails like the campaign's own."""
    if not retake.negative or problem is not None:
        return negative, problem
    negative = f"{negative}, {retake.negative}" if negative else retake.negative
    return negative, text_problem({"negative_prompt": negative}, blocked,
                                  allow_pii=guard.allow_pii,
                                  max_prompt_chars=guard.max_prompt_chars,
                                  max_caption_chars=guard.max_caption_chars,
                                  phone_region=guard.phone_region)


def _texts(templates: TemplateSet, creative: Creative, context: dict[str, Any],
           captions_by_locale: Mapping[tuple[str, str, str], str],
           blocked: Sequence[tuple[str, re.Pattern[str]]], guard: GuardrailSpec,
           problem: str | None) -> tuple[str, str, dict[str, str], str, str | None]:
    """A variant's prompt, negative prompt, captions (and as JSON), and why it is blocked."""
    if problem is not None:
        empty = {name: "" for name in creative.captions}
        return "", "", empty, json.dumps(empty), problem
    prompt = templates.render(f"{creative.id}.prompt", context)
    negative = templates.render(f"{creative.id}.negative_prompt", context)
    locale = context[LOCALE_KEY]
    captions = {name: templates.render(captions_by_locale[(creative.id, name, locale)], context)
                for name in creative.captions}
    problem = text_problem({"prompt": prompt, "negative_prompt": negative, **captions}, blocked,
                           allow_pii=guard.allow_pii, max_prompt_chars=guard.max_prompt_chars,
                           max_caption_chars=guard.max_caption_chars,
                           phone_region=guard.phone_region)
    return prompt, negative, captions, json.dumps(captions, ensure_ascii=False), problem


def _with_locales(campaign: CampaignSpec, data: Audience) -> Audience:
    """The audience with every empty value of the locale column set to the default locale."""
    column = campaign.locale.column
    if column is None:
        return data
    frame = data.frame
    if column not in frame.columns:
        raise AudienceError(
            f"{data.where}: locale.column {column!r} is not a column (the audience has "
            f"{', '.join(map(str, frame.columns[:20]))}); fix locale.column in the campaign")
    values = frame[column].astype("string").str.strip()
    values = values.mask(values.isna() | (values == ""), campaign.locale.default)
    return Audience(frame.assign(**{column: values}), data.where, data.first_line)


def _with_locale_key(campaign: CampaignSpec) -> AudienceSpec:
    """The audience spec, with the locale column among the segment keys (a segment has one
    locale) when the audience is segmented."""
    spec, column = campaign.audience, campaign.locale.column
    if column is None or not spec.segment_by or column in spec.segment_by:
        return spec
    return spec.model_copy(update={"segment_by": [*spec.segment_by, column]})


def _segment_locale(campaign: CampaignSpec, context: dict[str, Any]) -> tuple[str, str | None]:
    """A segment's locale, and why its variants cannot be made (an unknown locale) or None."""
    spec = campaign.locale
    raw = context.get(spec.column) if spec.column else spec.value
    if raw is None or (not isinstance(raw, str) and pd.isna(raw)) or not str(raw).strip():
        return spec.default, None
    try:
        return normalise_locale(str(raw)), None
    except ValueError as exc:
        if spec.fallback:
            return spec.default, None
        return spec.default, f"{exc} in column {spec.column!r}"


@dataclass(frozen=True)
class ProductChoice:
    """The product a variant shows: its name (brand product or catalog id), the image to
    compose and its hash, what templates see as ``product``, and why it cannot be used."""

    name: str | None = None
    image: Path | None = None
    sha256: str | None = None
    value: Any = ""
    problem: str | None = None


class Products:
    """Chooses each variant's product from the brand kit or the campaign's catalog."""

    def __init__(self, campaign: CampaignSpec, where: str) -> None:
        self.campaign, self.where = campaign, where
        self.catalog: Catalog | None = None
        self.images: ProductImages | None = None
        self.failed: dict[str, str] = {}
        self._chosen: dict[str, ProductChoice] = {}
        spec = campaign.catalog
        if spec is not None:
            self.catalog = read_catalog(spec.path, format=spec.format, columns=spec.columns,
                                        keep=spec.availability)
            self.images = ProductImages(
                campaign.output_dir / CACHE_DIR / "catalog", spec.path.parent,
                limits=FetchLimits(**spec.images.model_dump()), matte=spec.matte,
                matte_model=spec.matte_model)

    def left_out(self) -> dict[str, str]:
        """Catalog products left out, with the reason (feed problems and failed images)."""
        return {**(self.catalog.excluded if self.catalog else {}), **self.failed}

    def choose(self, creative: Creative, context: dict[str, Any]) -> ProductChoice:
        """The creative's product, else the segment's product column's."""
        name = creative.product
        if not name:
            value = context.get("segment_product")
            if not self.campaign.audience.product_column or value is None or pd.isna(value):
                return ProductChoice()
            name = str(value)
        if name not in self._chosen:
            self._chosen[name] = self._choose(name)
        return self._chosen[name]

    def _choose(self, name: str) -> ProductChoice:
        brand = self.campaign.brand.products
        if name in brand:
            return ProductChoice(name, brand[name], file_sha256(brand[name]), name)
        if self.catalog is None or self.images is None:
            raise AudienceError(
                f"{self.where}: column {self.campaign.audience.product_column!r} names product "
                f"{name!r}, which is not in brand.products ({', '.join(sorted(brand))}); "
                "product images are chosen by name from the brand kit, never by path"
            )
        return self._from_catalog(name)

    def _from_catalog(self, product_id: str) -> ProductChoice:
        assert self.catalog is not None and self.images is not None
        product = self.catalog.get(product_id)
        if product is None:
            reason = self.catalog.excluded.get(product_id) or self.failed.get(product_id)
            why = f"left out: {reason}" if reason else "not in the catalog"
            return ProductChoice(product_id, problem=f"product {product_id!r} {why}")
        try:
            cutout = self.images.cutout(product)
        except CatalogError as exc:
            self.failed[product_id] = str(exc)
            return ProductChoice(product_id, problem=f"product {product_id!r} left out: {exc}")
        return ProductChoice(product_id, cutout.path, cutout.sha256, product.context())


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
    product: ProductChoice, index: int, generation: int,
    stages: dict[str, tuple[float, ...] | None], *, take: int = 0,
) -> dict[str, RenderJob]:
    """The variant's render job per aspect class. The class at the renderer's own size (and
    ``crop``) keeps the plain job, and its seed; the others derive their own seed from the
    class name. ``extend`` jobs outpaint the plain job's render. A ``take`` after a rejection
    gives every render of the variant another seed."""
    base = _job(campaign, creative, prompt, negative, product, index, generation, take=take)
    renderer = campaign.renderer
    multiple = 64 if renderer.name.startswith("diffusers") else 8
    out: dict[str, RenderJob] = {}
    for name, stage in stages.items():
        extend = renderer.aspect == "extend"
        size = (base.width, base.height) if name == CROP else (
            extend_size(name, base.width, base.height) if extend
            else class_size(name, base.width, base.height, multiple=multiple))
        if stage is not None and product.image is not None and not extend:
            base = _job(campaign, creative, prompt, negative, product, index, generation,
                        stage=stage, take=take)
        if size == (base.width, base.height):
            out[name] = dataclasses.replace(base, aspect=name)
            continue
        seed = _job(campaign, creative, prompt, negative, product, index, generation,
                    aspect=name, take=take).seed
        out[name] = dataclasses.replace(base, seed=seed, width=size[0], height=size[1],
                                        aspect=name, source_key=base.key if extend else None)
    return out


def _job(
    campaign: CampaignSpec, creative: Creative, prompt: str, negative: str,
    product: ProductChoice, index: int, generation: int, *, aspect: str | None = None,
    stage: tuple[float, ...] | None = None, take: int = 0,
) -> RenderJob:
    renderer = campaign.renderer
    options = {k: v for k, v in renderer.options.items() if k not in RUNTIME_OPTIONS}
    options["palette"] = tuple(campaign.brand.colors)
    if stage is not None:
        options["stage"] = stage
    identity: tuple[object, ...] = (campaign.experiment.seed, creative.id, prompt, negative, index)
    if generation:
        identity += (generation,)
    if take:
        identity += ("take", take)
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
        product_image=str(product.image) if product.image else None,
        product_sha256=product.sha256,
        options=tuple(sorted((k, _freeze(v)) for k, v in options.items())),
    )


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value
