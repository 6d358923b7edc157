"""Video frames as yuv420p planes: the colours ffmpeg's own BT.709 conversion gives, layers
blended as in RGB, windows warped to the subpixel with the chroma where it belongs."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from adgen.post import crop
from adgen.post.planes import Frame, Overlay, Planes
from adgen.post.video import ffmpeg_exe


def picture(size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 30, 150, 120), fill=(220, 30, 40))
    draw.ellipse((170, 90, 300, 220), fill=(20, 160, 90))
    return image


def ffmpeg_planes(rgb: np.ndarray) -> list[np.ndarray]:
    """ffmpeg's yuv420p planes of an RGB picture (BT.709, limited range), as before post/v6."""
    height, width = rgb.shape[:2]
    raw = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt",
         "rgb24", "-s", f"{width}x{height}", "-i", "-", "-vf",
         "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p", "-f", "rawvideo", "-"],
        input=rgb.tobytes(), capture_output=True, check=True).stdout
    return split(np.frombuffer(raw, np.uint8), (width, height))


def split(data: np.ndarray, size: tuple[int, int]) -> list[np.ndarray]:
    width, height = size
    luma, chroma = width * height, width * height // 4
    return [data[:luma].reshape(height, width),
            data[luma:luma + chroma].reshape(height // 2, width // 2),
            data[luma + chroma:].reshape(height // 2, width // 2)]


def to_rgb(frame: Frame) -> np.ndarray:
    """A frame decoded back to RGB by ffmpeg, as a player would."""
    height, width = frame.y.shape
    raw = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt",
         "yuv420p", "-s", f"{width}x{height}", "-i", "-", "-vf",
         "scale=in_color_matrix=bt709:in_range=tv", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"],
        input=frame.data.tobytes(), capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3).astype(int)


def test_planes_are_ffmpeg_s_bt709_conversion() -> None:
    rgb = np.asarray(picture())
    ours = Planes.of(rgb)
    theirs = ffmpeg_planes(rgb)
    luma = np.abs(ours.y.astype(int) - theirs[0])
    assert luma.max() <= 1 and luma.mean() < 0.3  # rounding
    for mine, reference in zip((ours.u, ours.v), theirs[1:], strict=True):
        chroma = np.abs(mine.astype(int) - reference)  # ffmpeg sites chroma a little left
        assert chroma.mean() < 0.6 and np.percentile(chroma, 99) <= 6
    assert ours.y.min() >= 16 and ours.y.max() <= 235  # limited range


def test_a_frame_is_one_yuv420p_buffer_that_decodes_to_the_picture() -> None:
    image = picture()
    frame = Frame.of(Planes.of(image))
    assert frame.data.shape == (320 * 240 * 3 // 2,)
    assert np.shares_memory(frame.y, frame.data) and np.shares_memory(frame.v, frame.data)
    decoded = to_rgb(frame)
    assert np.abs(decoded - np.asarray(image, dtype=int)).mean() < 2.5  # chroma at half size


def test_odd_pictures_convert_with_their_last_row_and_column() -> None:
    planes = Planes.of(picture((321, 239)))
    assert planes.size == (321, 239) and planes.u.shape == planes.v.shape == (120, 161)


def layer(size: tuple[int, int]) -> Image.Image:
    """A caption-like layer: a translucent plate and antialiased white text."""
    out = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(out)
    draw.rounded_rectangle((31, 41, 210, 101), radius=12, fill=(240, 170, 0, 200))
    draw.text((45, 55), "Shop now", fill=(255, 255, 255, 255), font_size=28)
    return out


@pytest.mark.parametrize("strength", [1.0, 0.4])
def test_an_overlay_blends_as_alpha_compositing_in_rgb(strength: float) -> None:
    base = picture()
    over = layer(base.size)
    faded = over.copy()
    faded.putalpha(over.getchannel("A").point(lambda a: round(a * strength)))
    expected = np.asarray(Image.alpha_composite(base.convert("RGBA"), faded).convert("RGB"))
    frame = Frame.of(Planes.of(base))
    overlay = Overlay.of(over)
    assert overlay is not None and overlay.box == (30, 40, 212, 102)  # even, around the ink
    overlay.over(frame, strength)
    reference = Frame.of(Planes.of(expected))
    luma = np.abs(frame.y.astype(int) - reference.y.astype(int))
    assert luma.max() <= 2
    for mine, theirs in ((frame.u, reference.u), (frame.v, reference.v)):
        chroma = np.abs(mine.astype(int) - theirs.astype(int))
        # where alpha and a textured background both vary inside a 2x2 block, the average of
        # the blends and the blend of the averages part (as any 4:2:0 blend does)
        assert chroma.mean() < 0.2 and np.percentile(chroma, 99.5) <= 2 and chroma.max() <= 12
    untouched = np.ones(frame.y.shape, bool)
    untouched[40:102, 30:212] = False
    assert np.array_equal(frame.y[untouched], Planes.of(base).y[untouched])


def test_an_empty_layer_has_no_overlay() -> None:
    assert Overlay.of(None) is None
    assert Overlay.of(Image.new("RGBA", (64, 48), (255, 0, 0, 0))) is None


def test_a_warped_window_is_the_resampled_picture_with_its_chroma_in_place() -> None:
    """The window's luma is crop's bilinear resample; a sharp vertical edge at a fractional
    position shows in the chroma exactly where it shows in the luma."""
    image = Image.new("RGB", (400, 300), (30, 40, 200))
    image.paste((230, 200, 20), (173, 0, 400, 300))
    window = (100.37, 50.2, 260.37, 170.2)
    frame = Frame((640, 480))
    frame.warp(Planes.of(image), window, (0, 0, 640, 480))
    expected = Planes.of(crop.render_window(image, window, (640, 480), fast=True))
    assert np.abs(frame.y.astype(int) - expected.y.astype(int)).max() <= 2
    edge = (173 - window[0]) * 4  # output pixels
    luma = frame.y[240].astype(float)
    chroma = frame.u[120].astype(float)
    luma_at = np.interp(0.5, (luma - luma[0]) / (luma[-1] - luma[0]), np.arange(640)) + 0.5
    chroma_at = 2 * (np.interp(0.5, (chroma - chroma[0]) / (chroma[-1] - chroma[0]),
                               np.arange(320)) + 0.5)
    assert abs(luma_at - edge) < 0.3 and abs(chroma_at - edge) < 1.0


def test_a_window_warped_into_part_of_a_frame_leaves_the_rest() -> None:
    panel = Planes.of(Image.new("RGB", (320, 240), (11, 61, 145)))
    frame = Frame.of(panel)
    box = (0, 0, 157, 240)  # an odd right edge: its chroma column is the picture's
    frame.warp(Planes.of(picture()), (20.0, 10.0, 180.5, 255.2), box)
    assert np.array_equal(frame.y[:, 157:], panel.y[:, 157:])
    assert np.array_equal(frame.u[:, 79:], panel.u[:, 79:])
    assert not np.array_equal(frame.y[:, :157], panel.y[:, :157])


def test_a_crossfade_goes_from_the_frame_to_the_card() -> None:
    picture_planes = Planes.of(picture())
    card = Planes.of(Image.new("RGB", (320, 240), (11, 61, 145)))
    for strength, expected in ((0.0, picture_planes.y), (1.0, card.y)):
        frame = Frame.of(picture_planes)
        frame.fade_to(card, strength)
        assert np.abs(frame.y.astype(int) - expected.astype(int)).max() <= 1
    frame = Frame.of(picture_planes)
    frame.fade_to(card, 0.5)
    middle = (picture_planes.y.astype(float) + card.y) / 2
    assert np.abs(frame.y - middle).max() <= 1
