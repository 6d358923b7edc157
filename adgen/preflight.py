"""Preflight: everything that can be checked before a single render, checked at once.

``validate``, ``plan`` and the start of ``run`` call :func:`preflight`. Campaign-wide problems
(no variant left after the guardrails, unknown renderer options, an undecodable jingle or
product image, impossible video timing) stop everything; problems of one variant × placement
(a caption that does not fit its box even at the minimum size, a glyph no font has, a byte budget
that even a flat picture cannot meet) are listed per asset: ``validate`` reports them all, ``run``
renders only what passed and marks the rest ``failed``.

Captions are fitted on a flat picture in the brand colour, with the real logo, so a caption that
fails here fails on every picture; one that passes may still fail on a busy picture, and is then
failed by the run itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from PIL import Image

from adgen.assets import BrandStyle
from adgen.errors import AdgenError, CampaignError, listed
from adgen.planning import Plan
from adgen.post.encode import encode_image
from adgen.post.image import Caption, compose, load_brand_image
from adgen.post.video import VideoSpec, _audio
from adgen.renderers import renderer_class
from adgen.spec import CampaignSpec, PlacementSpec, VideoOptions


@dataclass
class Preflight:
    """``problems``: campaign-wide, nothing can run. ``failing``: (variant_id, placement
    index) → why that asset cannot be made."""

    problems: list[str] = field(default_factory=list)
    failing: dict[tuple[str, int], str] = field(default_factory=dict)

    def lines(self, campaign: CampaignSpec) -> list[str]:
        """One line per problem (per-asset problems grouped by reason, variants capped)."""
        names = [p.resolve().name for p in campaign.placements]
        by_reason: dict[str, list[str]] = {}
        for (variant_id, index), reason in self.failing.items():
            by_reason.setdefault(reason, []).append(f"{variant_id}/{names[index]}")
        return [*self.problems, *(
            f"{reason} [{len(assets)} asset(s): {listed(assets, 5)}]"
            for reason, assets in by_reason.items())]

    def raise_problems(self) -> None:
        if self.problems:
            raise CampaignError("\n".join(self.problems))


def preflight(plan: Plan, style: BrandStyle) -> Preflight:
    """Check ``plan`` with the brand ``style``."""
    campaign = plan.campaign
    result = Preflight()
    result.problems += _campaign_problems(campaign)
    variants = plan.variants
    blocked = variants[variants["blocked"] != ""]
    if len(blocked) == len(variants):
        reasons = listed(sorted(set(blocked["blocked"])), 5, "; ")
        result.problems.append(
            f"the guardrails block every variant ({len(variants)}), so nothing would be made: "
            f"{reasons}; change the templates or guardrails.blocked")
    creatives = {c.id: c for c in campaign.creatives}
    tried: dict[tuple[str, str, int, str], str | None] = {}
    for row in variants[variants["blocked"] == ""].to_dict("records"):
        creative = creatives[str(row["creative_id"])]
        for index, spec in enumerate(campaign.placements):
            lang = str(row.get("locale") or "en")
            key = (creative.id, str(row["captions"]), index, lang)
            if key not in tried:
                tried[key] = _asset_problem(campaign, style, creative.kind, spec,
                                            creative.video, str(row["captions"]), lang)
            if tried[key] is not None:
                result.failing[(str(row["variant_id"]), index)] = str(tried[key])
    return result


def _campaign_problems(campaign: CampaignSpec) -> list[str]:
    problems = []
    renderer = campaign.renderer
    known = known_options(renderer.name)
    unknown = sorted(set(renderer.options) - known)
    if unknown:
        problems.append(f"renderer.options: unknown option(s) {listed(unknown)} for renderer "
                        f"{renderer.name!r}; it accepts {listed(sorted(known))}")
    batch = renderer.options.get("batch_size", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 1024:
        problems.append(f"renderer.options.batch_size: {batch!r} must be a whole number from 1 "
                        "to 1024")
    brand = campaign.brand
    for name, path in brand.products.items():
        try:
            load_brand_image(path, what=f"brand.products.{name}")
        except AdgenError as exc:
            problems.append(str(exc))
    if any(c.kind == "video" for c in campaign.creatives):
        try:
            _audio(brand.audio)
        except AdgenError as exc:
            problems.append(f"brand.audio: {exc}")
        for creative in campaign.creatives:
            if creative.kind == "video":
                try:
                    VideoSpec(**creative.video.model_dump())
                except AdgenError as exc:
                    problems.append(f"creative {creative.id!r}: {exc}")
    return problems


def known_options(renderer: str) -> set[str]:
    """The ``renderer.options`` names a renderer accepts (its class declares them)."""
    return set(renderer_class(renderer).options)


def _asset_problem(campaign: CampaignSpec, style: BrandStyle, kind: str,
                   spec: PlacementSpec, video: VideoOptions, captions_json: str,
                   lang: str = "en") -> str | None:
    """Why one creative's captions cannot make an asset for one placement, or None."""
    placement = spec.resolve()
    captions = [Caption(r, t, lang) for r, t in json.loads(captions_json).items()]
    if campaign.provenance.visible_label:
        captions.append(Caption("label", campaign.provenance.label))
    # a flat picture already at the placement's size: framing it is a copy, not a resize
    flat = Image.new("RGB", placement.size, style.colors[0])
    try:
        composed = compose(flat, placement, logo=style.logo, captions=captions,
                           colors=style.colors, font=style.font)
        if kind == "video":
            VideoSpec(**video.model_dump(), max_bytes=placement.max_bytes,
                      max_duration=spec.max_duration)
        elif placement.max_bytes is not None:
            encode_image(composed.image, spec.format, max_bytes=placement.max_bytes)
    except AdgenError as exc:
        return str(exc).splitlines()[0]
    return None
