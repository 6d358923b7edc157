"""Crops keep the subject: window geometry for every preset, and the decoded output pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from adgen.placements import PRESETS
from adgen.post import compose
from adgen.post.crop import frame_picture, salient_window, subject_window

MARKERS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
SUBJECTS = {
    "centre": (96, 80, 160, 176),
    "top-left corner": (0, 0, 60, 50),
    "bottom-right edge": (200, 190, 256, 256),
    "wide": (8, 100, 248, 150),
    "tall": (110, 4, 146, 252),
}


def scene(subject: tuple[int, int, int, int], size: int = 256) -> Image.Image:
    """A grey gradient with the subject box drawn dark and a coloured marker in each corner."""
    ramp = np.linspace(90, 170, size, dtype=np.uint8)
    image = Image.fromarray(np.dstack([np.tile(ramp, (size, 1))] * 3))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = subject
    draw.rectangle((left, top, right - 1, bottom - 1), fill=(40, 40, 40))
    side = max(3, min(right - left, bottom - top) // 6)
    corners = [(left, top), (right - side, top), (left, bottom - side),
               (right - side, bottom - side)]
    for (x, y), rgb in zip(corners, MARKERS.values(), strict=True):
        draw.rectangle((x, y, x + side - 1, y + side - 1), fill=rgb)
    return image


def has_colour(image: Image.Image, rgb: tuple[int, int, int], tolerance: int = 40) -> bool:
    pixels = np.asarray(image.convert("RGB")).astype(int)
    return bool((np.abs(pixels - np.array(rgb)).max(axis=2) <= tolerance).any())


@pytest.mark.parametrize("placement", list(PRESETS.values()), ids=list(PRESETS))
@pytest.mark.parametrize("subject", list(SUBJECTS.values()), ids=list(SUBJECTS))
def test_window_contains_subject_at_the_placement_aspect(placement, subject):
    aspect = placement.width / placement.height
    window, padded = subject_window((256, 256), aspect, subject)
    left, top, right, bottom = window
    assert (right - left) / (bottom - top) == pytest.approx(aspect, rel=1e-6)
    assert left <= subject[0] + 1e-6 and top <= subject[1] + 1e-6
    assert right >= subject[2] - 1e-6 and bottom >= subject[3] - 1e-6
    inside = left >= -1e-6 and top >= -1e-6 and right <= 256 + 1e-6 and bottom <= 256 + 1e-6
    assert padded == (not inside)


def test_zoom_closes_in_on_the_subject_but_keeps_it():
    full, _ = subject_window((256, 256), 1.5, SUBJECTS["centre"], zoom=1.0)
    close, _ = subject_window((256, 256), 1.5, SUBJECTS["centre"], zoom=0.5)
    assert close[2] - close[0] < full[2] - full[0]
    assert close[0] <= 96 and close[2] >= 160 and close[1] <= 80 and close[3] >= 176


@pytest.mark.parametrize("placement", list(PRESETS.values()), ids=list(PRESETS))
def test_every_preset_keeps_all_four_subject_corners_in_the_output(placement):
    subject = SUBJECTS["centre"]
    result = compose(scene(subject), placement, subject_box=subject)
    assert result.image.size == placement.size
    assert result.image.mode == "RGB"
    mapped = result.checks["subject_box"]
    picture = result.checks["picture_box"]
    assert isinstance(mapped, tuple) and isinstance(picture, tuple)
    assert picture[0] <= mapped[0] and picture[1] <= mapped[1]
    assert mapped[2] <= picture[2] and mapped[3] <= picture[3]
    region = result.image.crop(mapped)
    for name, rgb in MARKERS.items():
        assert has_colour(region, rgb), f"{name} corner of the subject is missing"


@pytest.mark.parametrize("name", ["story", "iab_160x600", "landscape", "iab_728x90"])
def test_subject_too_big_for_the_aspect_is_padded_not_cut(name):
    subject = SUBJECTS["wide"] if PRESETS[name].height > PRESETS[name].width else SUBJECTS["tall"]
    result = compose(scene(subject), PRESETS[name], subject_box=subject)
    assert result.checks["padded"] is True
    for colour_name, rgb in MARKERS.items():
        assert has_colour(result.image, rgb), f"{colour_name} corner was cut off"


def test_padding_is_a_blurred_backdrop_not_a_flat_bar():
    subject = SUBJECTS["wide"]
    picture, framing = frame_picture(scene(subject), (90, 160), subject)
    assert framing.padded
    top_rows = np.asarray(picture)[:8].astype(int)
    assert top_rows.std() > 0.5  # the picture's blurred colours, not one flat fill
    assert top_rows.mean() > 60  # not black bars


def test_without_subject_box_smartcrop_follows_the_detail():
    image = Image.new("RGB", (300, 200), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    for i in range(0, 60, 6):  # a busy, saturated object on the right
        draw.rectangle((220 + i // 2, 40 + i, 290, 46 + i), fill=(230, 30 + 3 * i, 20))
    window = salient_window(image, 9 / 16)
    assert window[3] - window[1] == pytest.approx(200)
    assert (window[0] + window[2]) / 2 > 180


def test_resize_output_matches_a_plain_crop_when_nothing_moves():
    image = scene(SUBJECTS["centre"])
    picture, framing = frame_picture(image, (256, 256), SUBJECTS["centre"])
    assert framing.window == (0.0, 0.0, 256.0, 256.0)
    assert np.array_equal(np.asarray(picture), np.asarray(image))
