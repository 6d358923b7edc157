"""Layouts that leave the product alone, on every placement, and the check that says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw

import adgen
from adgen.assets import brand_style
from adgen.guardrails import brand_violations, over_subject
from adgen.placements import PRESETS, aspect_class, resolve_placement
from adgen.planning import placement_classes
from adgen.post.image import Caption, compose, compose_layers
from adgen.renderers.offline import OfflineRenderer
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "campaigns").glob("*.yaml"))
EVERY = ["feed_square", "feed_portrait", "story", "reel", "landscape", "display_1.91",
         "300x250", "336x280", "160x600", "300x600", "970x250", "728x90", "320x100", "320x50"]
SHORT = [Caption("headline", "Back for more"), Caption("cta", "Shop now")]
LIMIT = 0.03
"""The share of the product's box that text or the logo may cover in these tests."""


def _checks(result: adgen.post.Composed) -> dict:
    return {**result.checks, "logo_box": result.logo_box, "caption_boxes": result.caption_boxes}


def _assert_product_alone(result: adgen.post.Composed, where: str) -> None:
    checks = _checks(result)
    subject = checks["subject_box"]
    assert subject is not None, where
    covered = over_subject(checks)
    assert all(share <= LIMIT for share in covered.values()), (where, covered)
    width, height = result.image.size
    assert 0 <= subject[0] < subject[2] <= width and 0 <= subject[1] < subject[3] <= height


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_campaigns_keep_text_and_logo_off_the_product(path: Path, tmp_path: Path
                                                               ) -> None:
    """Every product variant of every example campaign, rendered offline at each aspect class
    its placements use (plus every other placement at its own class), composed: no caption
    plate or logo covers more than 3% of the product's box, and the product stays whole."""
    campaign = adgen.load_campaign(path, overrides=[  # a catalog plan caches its cut-outs
        "variants=1", "experiment.weights=null", f"output={tmp_path / 'out'}"])
    plan = adgen.plan(campaign)
    style = brand_style(campaign)
    renderer = OfflineRenderer()
    seen_products: set[str] = set()
    classes = dict(zip([s.placement for s in campaign.placements],
                       placement_classes(campaign), strict=True))
    for row in plan.variants.to_dict("records"):
        if not row["product"] or row["product"] in seen_products or row["blocked"]:
            continue
        seen_products.add(row["product"])
        renders = json.loads(row["renders"])
        captions = [Caption(k, v) for k, v in json.loads(row["captions"]).items()]
        for name in sorted(set(classes) | {"story", "160x600", "970x250", "landscape"}):
            placement = resolve_placement(name)
            key = renders.get(classes.get(name, aspect_class(placement)), row["job_key"])
            rendered = renderer([plan.jobs[key]])[0]
            result = compose(rendered.image, placement, subject_box=rendered.subject_box,
                             logo=style.logo, captions=captions, colors=style.colors)
            _assert_product_alone(result, f"{path.stem} {row['product']} {name}")


BANNERS = ["300x600", "160x600", "970x250"]
"""Placements every example campaign must fit besides its own: tall, narrow and wide."""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_campaigns_fit_their_placements_and_the_banners_in_every_language(
        path: Path, tmp_path: Path) -> None:
    """Preflight (every caption of every variant fitted in every placement, at the minimum
    size, with the real logo) passes for each example campaign with its own placements plus
    300x600, 160x600 and 970x250, and its plan has variants in every language it has captions
    for (the catalog: English, German, Arabic, Japanese)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    own = [p if isinstance(p, str) else p["placement"] for p in raw["placements"]]
    names = {resolve_placement(p).name for p in own}
    extra = [b for b in BANNERS if resolve_placement(b).name not in names]
    placements = json.dumps(raw["placements"] + extra)
    campaign = adgen.load_campaign(path, overrides=[f"placements={placements}",
                                                    f"output={tmp_path / 'out'}"])
    assert names | {resolve_placement(b).name for b in BANNERS} == {
        resolve_placement(p.placement).name for p in campaign.placements}
    plan = adgen.validate(campaign)  # a caption that does not fit raises, naming it
    languages = {language for creative in raw["creatives"]
                 for caption in creative.get("captions", {}).values() if isinstance(caption, dict)
                 for language in caption}
    ready = plan.variants[plan.variants["blocked"] == ""]
    assert len(ready) > 0
    planned = {locale.split("_")[0] for locale in ready["locale"] if locale}
    assert languages <= planned, (languages, planned)


def _big_product() -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A square render that a product fills most of (80% of each side)."""
    image = Image.new("RGB", (1024, 1024), (70, 90, 140))
    draw = ImageDraw.Draw(image)
    for y in range(0, 1024, 32):
        draw.line((0, y, 1024, y), fill=(90, 110, 160), width=6)
    box = (102, 110, 922, 930)
    draw.rounded_rectangle(box, radius=60, fill=(220, 180, 40))
    return image, box


@pytest.mark.parametrize("name", EVERY)
def test_a_product_filling_the_square_render_is_never_covered(name: str, logo: Path) -> None:
    image, box = _big_product()
    placement = resolve_placement(name)
    captions = SHORT if placement.height <= 100 else [  # 320x50 banners take short ones
        Caption("headline", "We saved a new mug for you"), Caption("cta", "Come back for 15% off")]
    result = compose(image, placement, subject_box=box,
                     logo=adgen.post.LogoStyle(logo, position="bottom-left"),
                     captions=captions, colors=["#102A43", "#D64545"])
    _assert_product_alone(result, name)
    assert result.image.size == placement.size
    if placement.safe.bottom:  # stories: everything inside the safe area
        safe = placement.safe.box(*placement.size)
        for frame in [result.checks["plate_cta"], result.logo_box,
                      *result.caption_boxes.values()]:
            assert safe[0] <= frame[0] and safe[1] <= frame[1]
            assert frame[2] <= safe[2] and frame[3] <= safe[3]


def test_story_keeps_the_whole_big_product_visible_and_moves_it_between_the_captions(
        logo: Path) -> None:
    image, box = _big_product()
    result = compose(image, PRESETS["story"], subject_box=box, logo=adgen.post.LogoStyle(logo),
                     captions=SHORT, colors=["#102A43", "#D64545"])
    subject = result.checks["subject_box"]
    assert result.checks["framing"] == "staged"  # moved and scaled down between the captions
    assert result.caption_boxes["headline"][3] <= subject[1]
    # the product's own pixels are all in the ad: its box's colour fills the subject box
    inside = result.image.crop((subject[0] + 8, subject[1] + 8, subject[2] - 8,
                                subject[3] - 8)).getcolors(1 << 20)
    main = max(inside)[1]
    assert abs(main[0] - 220) < 8 and abs(main[1] - 180) < 8


def test_video_frames_keep_the_layout_off_the_product(logo: Path) -> None:
    image, box = _big_product()
    layers = compose_layers(image, PRESETS["story"], subject_box=box,
                            logo=adgen.post.LogoStyle(logo), captions=SHORT, colors=["#102A43"])
    _assert_product_alone(layers.composed, "story video")
    subject = layers.composed.checks["subject_box"]
    for layer in [layers.logo, *layers.captions.values()]:
        assert layer is not None
        alpha = layer.getchannel("A").crop(subject)
        assert alpha.getbbox() is None  # nothing painted over the product on any layer


def test_the_brand_check_measures_text_and_logo_over_the_product() -> None:
    checks = {"subject_box": (100, 100, 300, 300), "logo_box": (280, 280, 330, 330),
              "caption_boxes": {"headline": (0, 0, 400, 90), "cta": (120, 200, 280, 240)},
              "plate_cta": (110, 190, 290, 250)}
    assert over_subject(checks) == {"cta": 0.27, "logo": 0.01}
    problems = brand_violations(checks, PRESETS["feed_square"], has_logo=True, min_contrast=0)
    assert "cta text over the product (27% of it covered)" in problems
    assert not any("logo over" in p for p in problems)  # 1% is within the tolerance
    assert over_subject({"subject_box": None, "caption_boxes": {"cta": (0, 0, 9, 9)}}) == {}


@pytest.fixture
def logo(tmp_path: Path) -> Path:
    from tests.conftest import draw_logo

    return draw_logo(tmp_path / "logo.png")
