"""Colour emoji in captions: drawn from the bundled Noto Color Emoji, in images and in video."""

from __future__ import annotations

import io
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

from adgen.placements import PRESETS
from adgen.post import Caption, check_captions_drawable, compose
from adgen.post import text as t
from adgen.post.video import VideoSpec, still_to_video

SALE = "Summer sale \u2600\ufe0f\U0001f3d6\ufe0f"  # Summer sale ☀️🏖️
BRAND = ["#0B3D91", "#F2A900"]
BRAND_RGB = [(11, 61, 145), (242, 169, 0)]


def colourful(pixels: np.ndarray) -> int:
    """How many pixels are saturated and far from both brand colours (emoji colours: the
    umbrella's red, the sea's cyan, the sand...)."""
    rgb = pixels.reshape(-1, 3).astype(int)
    saturation = rgb.max(axis=1) - rgb.min(axis=1)
    far = np.ones(len(rgb), dtype=bool)
    for brand in BRAND_RGB:
        far &= np.abs(rgb - np.array(brand)).sum(axis=1) > 90
    return int(((saturation > 80) & far).sum())


def grey_picture() -> Image.Image:
    return Image.new("RGB", (320, 320), (128, 128, 128))


def test_emoji_are_covered_and_go_to_the_colour_font():
    chain = t.font_chain(None, bold=True)
    assert t.missing_characters(SALE, chain) == []
    runs = t.split_runs(SALE, chain)
    assert [text for text, _ in runs] == ["Summer sale ", "\u2600\ufe0f\U0001f3d6\ufe0f"]
    assert [face.color for _, face in runs] == [False, True]
    # without U+FE0F a sun is text (DejaVu has it); the symbols of DejaVu stay text
    assert not t.split_runs("\u2600 \u00a9", chain)[0][1].color
    check_captions_drawable([Caption("headline", SALE)], None)


def test_emoji_scale_with_the_text_size():
    chain = t.font_chain(None)
    small, big = t.measure("\U0001f3d6", chain, 20), t.measure("\U0001f3d6", chain, 80)
    assert 15 < small < 40 and abs(big / small - 4) < 0.1


def test_caption_with_emoji_has_colour_pixels_in_its_box_in_an_image():
    placement = PRESETS["iab_300x250"]
    result = compose(grey_picture(), placement, captions=[Caption("headline", SALE),
                                                          Caption("cta", "Shop now")],
                     colors=BRAND)
    buffer = io.BytesIO()
    result.image.save(buffer, "PNG")
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    box = result.caption_boxes["headline"]
    safe = placement.safe.box(*placement.size)
    assert safe[0] <= box[0] and safe[1] <= box[1] and box[2] <= safe[2] and box[3] <= safe[3]
    inside = decoded[box[1]:box[3], box[0]:box[2]]
    assert colourful(inside) > 40
    # the control: the same caption without emoji has none of these colours
    plain = compose(grey_picture(), placement, captions=[Caption("headline", "Summer sale"),
                                                         Caption("cta", "Shop now")],
                    colors=BRAND)
    pbox = plain.caption_boxes["headline"]
    assert colourful(np.asarray(plain.image)[pbox[1]:pbox[3], pbox[0]:pbox[2]]) == 0


def test_caption_with_emoji_has_colour_pixels_in_a_video_frame(tmp_path: Path):
    placement = PRESETS["feed_square"]
    spec = VideoSpec(duration=1.5, fps=8, end_card=0.25, caption_in=0.0, motion="none",
                     fade=0.0)
    result = still_to_video(grey_picture(), placement, captions=[Caption("headline", SALE)],
                            colors=BRAND, spec=spec)
    path = tmp_path / "ad.mp4"
    path.write_bytes(result.data)
    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]
    boxes = result.checks["caption_boxes"]
    assert isinstance(boxes, dict)
    box = boxes["headline"]
    frame = frames[4]  # mid-clip, before the end card
    assert colourful(frame[box[1]:box[3], box[0]:box[2]]) > 40
