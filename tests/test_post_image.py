"""compose(): sizes, logo pixels and variants, caption boxes, contrast, errors, scripts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from adgen.errors import AssetError, PostProcessError
from adgen.placements import PRESETS, Placement
from adgen.post import (
    Caption,
    Composed,
    LogoStyle,
    check_captions_drawable,
    color,
    compose,
    load_brand_image,
)
from adgen.post.logo import POSITIONS

CAPTIONS = [Caption("headline", "Summer sale"), Caption("subline", "Free shipping"),
            Caption("cta", "Shop now")]
LOGO_RGB = (220, 30, 30)


def solid(rgb: tuple[int, int, int], size: int = 256) -> Image.Image:
    return Image.new("RGB", (size, size), rgb)


def gradient(size: int = 256) -> Image.Image:
    ramp = np.linspace(30, 230, size, dtype=np.uint8)
    return Image.fromarray(np.dstack([np.tile(ramp[:, None], (1, size))] * 3))


def stripes(size: int = 256, width: int = 6) -> Image.Image:
    """Black and white stripes: neither black nor white text can reach 4.5:1 on them."""
    row = ((np.arange(size) // width) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.dstack([np.tile(row, (size, 1))] * 3))


def write_logo(path: Path, rgb: tuple[int, int, int] = LOGO_RGB) -> Path:
    """An opaque 120x60 bar inside a transparent border (trimmed away on load)."""
    image = Image.new("RGBA", (160, 100), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((20, 20, 139, 79), fill=(*rgb, 255))
    image.save(path)
    return path


Box = tuple[int, int, int, int]


def box_check(result: Composed, key: str) -> Box:
    """A box that compose recorded in its checks."""
    value = result.checks[key]
    assert isinstance(value, tuple) and len(value) == 4
    return value


def text_check(result: Composed, key: str) -> str:
    value = result.checks[key]
    assert isinstance(value, str)
    return value


def number_check(result: Composed, key: str) -> float:
    value = result.checks[key]
    assert isinstance(value, int | float)
    return value


def logo_box(result: Composed) -> Box:
    assert result.logo_box is not None
    return result.logo_box


def inside(box, outer) -> bool:
    return outer[0] <= box[0] and outer[1] <= box[1] and box[2] <= outer[2] and box[3] <= outer[3]


def ring_contrast(image: Image.Image, box, text_hex: str, width: int = 2) -> float:
    """Contrast of the text colour against the pixels just around the caption's ink box
    (2nd percentile, as adgen measures it)."""
    left, top, right, bottom = box
    outer = (max(0, left - width), max(0, top - width), min(image.width, right + width),
             min(image.height, bottom + width))
    pixels = np.asarray(image.crop(outer)).astype(np.uint8)
    mask = np.ones(pixels.shape[:2], dtype=bool)
    mask[top - outer[1]:bottom - outer[1], left - outer[0]:right - outer[0]] = False
    rgb = color.parse_color(text_hex)
    return color.text_contrast(rgb, color.luminance(pixels[mask]))


@pytest.fixture
def logo(tmp_path: Path) -> LogoStyle:
    return LogoStyle(write_logo(tmp_path / "logo.png"))


@pytest.mark.parametrize("placement", list(PRESETS.values()), ids=list(PRESETS))
def test_every_preset_gets_its_exact_size_with_logo_and_captions_in_the_safe_area(
        placement, logo):
    result = compose(gradient(), placement, subject_box=(100, 100, 156, 156), logo=logo,
                     captions=CAPTIONS, colors=["#0B5D4B", "#F2C14E"])
    assert result.image.size == placement.size and result.image.mode == "RGB"
    safe = placement.safe.box(placement.width, placement.height)
    assert result.logo_box is not None and inside(result.logo_box, safe)
    assert {"headline", "cta"} <= set(result.caption_boxes)
    for role, box in result.caption_boxes.items():
        assert inside(box, safe), f"{role} {box} leaves the safe area {safe}"
    boxes = [result.logo_box, *result.caption_boxes.values()]
    for i, a in enumerate(boxes):  # nothing drawn on top of anything else
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_story_keeps_text_and_logo_out_of_the_top_14_and_bottom_35_percent(logo):
    story = PRESETS["story"]
    result = compose(gradient(), story, logo=logo, captions=CAPTIONS)
    top, bottom = round(0.14 * 1920), 1920 - round(0.35 * 1920)
    for box in [result.logo_box, *result.caption_boxes.values()]:
        assert box is not None and box[1] >= top and box[3] <= bottom


@pytest.mark.parametrize("position", POSITIONS)
def test_logo_pixels_are_where_the_position_says(position, tmp_path):
    style = LogoStyle(write_logo(tmp_path / "logo.png"), position=position, size=0.2,
                      margin=0.05)
    result = compose(solid((235, 235, 235)), PRESETS["feed_square"], logo=style)
    left, top, right, bottom = logo_box(result)
    margin = round(0.05 * 1080)
    assert (right - left, bottom - top) == (216, 108)  # 20% of 1080 wide, logo aspect 2:1
    vertical, horizontal = position.split("-")
    assert top == margin if vertical == "top" else bottom == 1080 - margin
    expected_left = {"left": margin, "right": 1080 - margin - 216, "center": (1080 - 216) // 2}
    assert left == expected_left[horizontal]
    pixels = np.asarray(result.image).astype(int)
    logo = pixels[top + 2:bottom - 2, left + 2:right - 2]
    assert np.abs(logo - np.array(LOGO_RGB)).max() <= 2
    outside = np.ones(pixels.shape[:2], dtype=bool)
    outside[top:bottom, left:right] = False
    assert np.abs(pixels[outside] - 235).max() == 0  # nothing else was drawn
    assert result.checks["logo_variant"] == "dark" and result.checks["logo_plate"] is False


def test_logo_keeps_its_alpha(tmp_path):
    path = tmp_path / "ring.png"
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((0, 0, 99, 99), outline=(250, 250, 250, 255), width=10)
    image.save(path)
    result = compose(solid((30, 90, 200)), PRESETS["feed_square"], logo=LogoStyle(path))
    left, top, right, bottom = logo_box(result)
    centre = result.image.getpixel(((left + right) // 2, (top + bottom) // 2))
    assert centre == (30, 90, 200)  # the transparent hole shows the picture
    assert result.checks["logo_plate"] is False


def test_dark_background_uses_the_light_logo(tmp_path):
    style = LogoStyle(write_logo(tmp_path / "dark.png", (20, 20, 60)),
                      light_path=write_logo(tmp_path / "light.png", (250, 250, 250)))
    result = compose(solid((10, 10, 10)), PRESETS["feed_square"], logo=style)
    assert result.checks["logo_variant"] == "light" and result.checks["logo_plate"] is False
    left, top, right, bottom = logo_box(result)
    assert result.image.getpixel(((left + right) // 2, (top + bottom) // 2)) == (250, 250, 250)
    assert number_check(result, "contrast_logo") >= 3


def test_dark_background_without_light_logo_gets_a_plate(tmp_path):
    style = LogoStyle(write_logo(tmp_path / "dark.png", (20, 20, 60)))
    result = compose(solid((10, 10, 10)), PRESETS["feed_square"], logo=style)
    assert result.checks["logo_variant"] == "dark" and result.checks["logo_plate"] is True
    left, top, right, bottom = logo_box(result)
    assert result.image.getpixel(((left + right) // 2, (top + bottom) // 2)) == (20, 20, 60)
    assert result.image.getpixel(((left + right) // 2, top - 3)) == (255, 255, 255)  # plate
    assert number_check(result, "contrast_logo") >= 3


def test_light_background_keeps_the_dark_logo_without_plate(tmp_path):
    style = LogoStyle(write_logo(tmp_path / "dark.png", (20, 20, 60)),
                      light_path=write_logo(tmp_path / "light.png", (250, 250, 250)))
    result = compose(solid((240, 240, 240)), PRESETS["iab_300x250"], logo=style)
    assert result.checks["logo_variant"] == "dark" and result.checks["logo_plate"] is False


@pytest.mark.parametrize("background", [solid((128, 128, 128)), solid((230, 200, 40)),
                                        gradient(), stripes()],
                         ids=["grey", "yellow", "gradient", "stripes"])
def test_caption_contrast_is_at_least_4_5_on_the_output_pixels(background):
    result = compose(background, PRESETS["feed_square"], captions=CAPTIONS, colors=["#0B5D4B"])
    for role, box in result.caption_boxes.items():
        if role == "cta":
            continue  # on its own plate, checked below
        measured = ring_contrast(result.image, box, text_check(result, f"color_{role}"))
        assert measured >= 4.5, f"{role}: {measured:.2f}"
        assert number_check(result, f"contrast_{role}") >= 4.5
        assert result.checks[f"color_{role}"] in ("#000000", "#ffffff")
    plate_box = box_check(result, "plate_cta")
    plate = result.image.getpixel((plate_box[0] + 3, (plate_box[1] + plate_box[3]) // 2))
    assert plate == (11, 93, 75)
    assert color.contrast(color.parse_color(text_check(result, "color_cta")), plate) >= 4.5


def test_stripes_need_a_scrim_and_it_is_recorded():
    result = compose(stripes(), PRESETS["feed_square"], captions=[Caption("headline", "Sale")])
    assert result.checks["scrim"] is True and result.checks["scrim_headline"] is True
    plain = compose(solid((240, 240, 240)), PRESETS["feed_square"],
                    captions=[Caption("headline", "Sale")])
    assert plain.checks["scrim"] is False and plain.checks["color_headline"] == "#000000"


def test_drawn_text_stays_inside_its_box():
    background = (200, 220, 240)
    result = compose(solid(background), PRESETS["iab_300x250"],
                     captions=[Caption("headline", "Summer hydration, zero plastic")])
    diff = np.abs(np.asarray(result.image).astype(int) - np.array(background)).max(axis=2)
    ys, xs = np.nonzero(diff)
    ink = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert inside(ink, result.caption_boxes["headline"])


def test_headline_avoids_the_subject_when_there_is_room():
    image = gradient()
    ImageDraw.Draw(image).rectangle((90, 110, 166, 250), fill=(200, 40, 40))
    result = compose(image, PRESETS["feed_square"], subject_box=(90, 110, 166, 250),
                     captions=[Caption("headline", "Summer sale")])
    subject = box_check(result, "subject_box")
    assert result.caption_boxes["headline"][3] <= subject[1]


def test_story_text_goes_around_a_wide_subject_rather_than_over_it():
    """A product across the whole width of a square render: in a story the headline goes
    above it and the button below it, inside the safe area, neither over the product."""
    image = Image.new("RGB", (1024, 1024), (225, 228, 235))
    subject_box = (60, 450, 1020, 640)
    ImageDraw.Draw(image).rectangle(subject_box, fill=(200, 40, 40))
    result = compose(image, PRESETS["story"], subject_box=subject_box,
                     captions=[Caption("headline", "Your spring run starts here"),
                               Caption("cta", "Shop the drop")])
    subject = box_check(result, "subject_box")
    cta = result.checks["plate_cta"]
    headline = result.caption_boxes["headline"]
    assert headline[3] <= subject[1] and subject[3] <= cta[1]
    assert cta[3] <= PRESETS["story"].safe.box(1080, 1920)[3]


@pytest.mark.parametrize("name,kind", [("iab_728x90", "wide"), ("iab_320x50", "wide"),
                                       ("iab_970x250", "wide"), ("iab_160x600", "tall"),
                                       ("iab_300x600", "tall"), ("story", "full")])
def test_very_wide_and_tall_placements_get_a_picture_and_a_brand_panel(name, kind, logo):
    placement = PRESETS[name]
    result = compose(gradient(), placement, logo=logo, captions=CAPTIONS, colors=["#0B5D4B"])
    assert result.checks["layout"] == kind
    if kind == "full":
        return
    picture = box_check(result, "picture_box")
    assert picture[0] == 0 and picture[1] == 0
    panel = (picture[2], 0, placement.width, placement.height) if kind == "wide" else (
        0, picture[3], placement.width, placement.height)
    for box in [result.logo_box, *result.caption_boxes.values()]:
        assert inside(box, panel)
    corner = (placement.width - 1, placement.height - 1)
    assert result.image.getpixel(corner) == (11, 93, 75)  # the brand colour


def test_small_banner_leaves_out_secondary_captions_and_says_so(logo):
    captions = [Caption("headline", "Summer sale"),
                Caption("subline", "Refill anywhere, keeps cold for a whole day"),
                Caption("cta", "Shop now")]
    result = compose(gradient(), PRESETS["iab_320x50"], logo=logo, captions=captions)
    assert result.checks["omitted"] == ["subline"]
    assert set(result.caption_boxes) == {"headline", "cta"}


def test_too_long_caption_raises_with_role_length_placement_and_fix():
    text = "Our biggest summer sale ever " * 10
    with pytest.raises(PostProcessError) as info:
        compose(gradient(), PRESETS["iab_300x250"], captions=[Caption("headline", text)])
    message = str(info.value)
    assert message.startswith(
        f"caption 'headline' ({len(text.strip())} characters) does not fit placement "
        "'iab_300x250' (300x250)"
    )
    assert "shorten it to about" in message and "drop this placement" in message


@pytest.mark.parametrize("text", ["تخفيضات الصيف", "מבצע קיץ", "夏日特惠 20%", "여름 세일",
                                  "Été à Noël — Łódź"])
def test_scripts_are_drawn(text):
    background = (240, 240, 240)
    result = compose(solid(background), PRESETS["feed_square"],
                     captions=[Caption("headline", text)])
    box = result.caption_boxes["headline"]
    region = np.asarray(result.image.crop(box)).astype(int)
    assert (np.abs(region - np.array(background)).max(axis=2) > 100).mean() > 0.05


def test_undrawable_characters_are_reported_not_drawn_as_boxes():
    captions = [Caption("headline", "Sale"), Caption("cta", "Buy \ue000 now \u0378")]
    expected = ("caption 'cta' has characters that no available font can draw: "
                "U+E000 (private use) at position 4, U+0378 (unassigned) at position 10; "
                "remove them, or set a brand font that has them")
    with pytest.raises(PostProcessError, match=re.escape(expected)):
        check_captions_drawable(captions)
    with pytest.raises(PostProcessError, match=re.escape(expected)):
        compose(gradient(), PRESETS["feed_square"], captions=captions)


def test_missing_logo_is_an_asset_error_naming_the_file(tmp_path):
    path = tmp_path / "brand" / "logo.png"
    with pytest.raises(AssetError, match=re.escape(f"logo '{path}' does not exist")):
        load_brand_image(path, what="logo")
    with pytest.raises(AssetError, match=re.escape(f"logo '{path}' does not exist")):
        compose(gradient(), PRESETS["feed_square"], logo=LogoStyle(path))


def test_corrupt_or_empty_logo_is_an_asset_error_naming_the_file(tmp_path):
    broken = tmp_path / "logo.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(AssetError, match=re.escape(f"logo '{broken}' is not a readable image")):
        load_brand_image(broken, what="logo")
    empty = tmp_path / "empty.png"
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(empty)
    with pytest.raises(AssetError, match=re.escape(f"light logo '{empty}' is fully transparent")):
        load_brand_image(empty, what="light logo")


def test_loaded_logo_is_rgba_and_trimmed(tmp_path):
    image = load_brand_image(write_logo(tmp_path / "logo.png"), what="logo")
    assert image.mode == "RGBA" and image.size == (120, 60)


def test_bad_inputs_are_explained():
    with pytest.raises(PostProcessError, match="two captions share the role 'headline'"):
        compose(gradient(), PRESETS["feed_square"],
                captions=[Caption("headline", "a"), Caption("headline", "b")])
    with pytest.raises(PostProcessError, match="brand colour 'brandblue' is not a colour"):
        compose(gradient(), PRESETS["feed_square"], colors=["brandblue"])
    with pytest.raises(PostProcessError, match="logo position 'middle'"):
        LogoStyle(Path("logo.png"), position="middle")  # type: ignore[arg-type]


def test_custom_sizes_and_non_rgb_inputs_work(logo):
    placement = Placement("custom_640x480", 640, 480)
    result = compose(gradient().convert("L"), placement, logo=logo, captions=CAPTIONS)
    assert result.image.size == (640, 480) and result.image.mode == "RGB"


def test_button_stands_out_from_a_picture_of_its_own_colour():
    dark = solid((25, 25, 30))
    default = compose(dark, PRESETS["feed_square"], captions=[Caption("cta", "Discover")])
    assert text_check(default, "plate_color_cta") == "#ffffff"  # unbranded: recoloured
    branded = compose(dark, PRESETS["feed_square"], captions=[Caption("cta", "Discover")],
                      colors=["#1F2A44"])
    assert text_check(branded, "plate_color_cta") == "#1f2a44"  # the brand colour stays...
    left, top, right, _ = box_check(branded, "plate_cta")
    assert branded.image.getpixel(((left + right) // 2, top + 1)) == (255, 255, 255)  # outlined
    assert branded.image.getpixel(((left + right) // 2, top + 8)) == (31, 42, 68)
