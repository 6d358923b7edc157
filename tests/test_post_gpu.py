"""The device post path (``backend.post: gpu``) run on the CPU: the same ads as Pillow's."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from adgen.errors import PostProcessError
from adgen.placements import PRESETS
from adgen.post import compose, crop, gpu, resample
from adgen.post.image import Caption, LogoStyle, compose_layers

CAPTIONS = [Caption("headline", "Fresh spring colours, made to last"),
            Caption("subline", "Free returns"), Caption("cta", "Shop the drop")]
COLORS = ["#0B3D91", "#F2A900"]


def render(seed: int = 0) -> Image.Image:
    """A render-like picture: a soft gradient, a floor, a product, some texture."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, 640)[:, None, None]
    pixels = (np.array([235, 200, 170]) * (1 - y) + np.array([90, 110, 160]) * y) \
        * np.ones((1, 512, 1)) + rng.normal(0, 6, (640, 512, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 470, 512, 640), fill=(80, 60, 50))
    draw.rounded_rectangle((200, 180, 320, 500), radius=24, fill=(30, 120, 90))
    return image.filter(ImageFilter.GaussianBlur(1))


SUBJECT = (200, 180, 320, 500)


def assert_same_decisions(got: dict[str, object], expected: dict[str, object]) -> None:
    """The same layout, colours, scrims and logo; measured contrasts within 0.05 (the pixels
    they are read from may differ by a level)."""
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if key.startswith("contrast_"):
            assert got[key] == pytest.approx(value, abs=0.05), key
        else:
            assert got[key] == value, key


@pytest.fixture(scope="module")
def logo(tmp_path_factory: pytest.TempPathFactory) -> LogoStyle:
    path = tmp_path_factory.mktemp("brand") / "logo.png"
    image = Image.new("RGBA", (300, 100), (0, 0, 0, 0))
    ImageDraw.Draw(image).rounded_rectangle((5, 5, 295, 95), radius=20, fill=(20, 30, 60, 255))
    image.save(path)
    return LogoStyle(path)


def stripes() -> Image.Image:
    """Neither black nor white text reaches 4.5:1 on these: scrims are painted."""
    row = ((np.arange(512) // 6) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.dstack([np.tile(row, (512, 1))] * 3))


@pytest.mark.parametrize("name", ["story", "feed_square", "landscape", "iab_300x250",
                                  "iab_728x90", "iab_160x600"])
@pytest.mark.parametrize("subject", [SUBJECT, None], ids=["subject", "smartcrop"])
def test_the_device_path_makes_the_pillow_ad_within_1_255(name, subject, logo) -> None:
    image = render()
    placement = PRESETS[name]
    expected = compose(image, placement, subject_box=subject, logo=logo, captions=CAPTIONS,
                       colors=COLORS)
    ad = gpu.compose_on(gpu.to_tensor(image), image, placement, subject_box=subject,
                        logo=logo, captions=CAPTIONS, colors=COLORS)
    assert ad.pixels.dtype == torch.uint8 and tuple(ad.pixels.shape) == (3, *placement.size[::-1])
    difference = np.abs(np.asarray(ad.image(), dtype=float)
                        - np.asarray(expected.image, dtype=float))
    assert difference.mean() <= 1.0
    assert_same_decisions(ad.checks, expected.checks)
    assert ad.logo_box == expected.logo_box and ad.caption_boxes == expected.caption_boxes


def test_scrims_and_a_padded_story_match_too(logo) -> None:
    image = stripes()
    tall = (150, 20, 360, 500)  # too tall for the story's aspect: the window is padded
    expected = compose(image, PRESETS["story"], subject_box=tall, logo=logo,
                       captions=CAPTIONS, colors=COLORS)
    assert expected.checks["scrim"] and expected.checks["padded"]
    ad = gpu.compose_on(gpu.to_tensor(image), image, PRESETS["story"], subject_box=tall,
                        logo=logo, captions=CAPTIONS, colors=COLORS)
    difference = np.abs(np.asarray(ad.image(), dtype=float)
                        - np.asarray(expected.image, dtype=float))
    assert difference.mean() <= 1.0
    assert_same_decisions(ad.checks, expected.checks)


@pytest.mark.parametrize("name", ["story", "iab_970x250", "iab_300x600"])
def test_layers_read_from_a_sparse_canvas_are_the_full_ones(name, logo) -> None:
    for image in (render(3), stripes()):
        full = compose_layers(image, PRESETS[name], subject_box=SUBJECT, logo=logo,
                              captions=CAPTIONS, colors=COLORS)
        sparse = compose_layers(image, PRESETS[name], subject_box=SUBJECT, logo=logo,
                                captions=CAPTIONS, colors=COLORS, sparse=True)
        assert_same_decisions(sparse.composed.checks, full.composed.checks)
        assert full.logo is not None and sparse.logo is not None
        assert np.array_equal(np.asarray(sparse.logo), np.asarray(full.logo))
        assert sparse.captions.keys() == full.captions.keys()
        for role, layer in full.captions.items():
            assert np.array_equal(np.asarray(sparse.captions[role]), np.asarray(layer)), role


def test_an_unalignable_window_falls_back_to_pillow(logo, monkeypatch) -> None:
    image = render()
    expected = compose(image, PRESETS["landscape"], subject_box=SUBJECT, logo=logo,
                       captions=CAPTIONS, colors=COLORS)
    monkeypatch.setattr(gpu, "grid", lambda *args, **kwargs: None)
    ad = gpu.compose_on(gpu.to_tensor(image), image, PRESETS["landscape"],
                        subject_box=SUBJECT, logo=logo, captions=CAPTIONS, colors=COLORS)
    difference = np.abs(np.asarray(ad.image(), dtype=int) - np.asarray(expected.image, dtype=int))
    assert difference.max() <= 2  # the Pillow picture, composited in torch


@pytest.mark.parametrize("window", [(37.3, 21.7, 301.9, 220.0), (0.0, 0.0, 512.0, 640.0),
                                    (120.25, 300.5, 180.75, 350.0), (3.2, 1.1, 500.0, 600.0)])
@pytest.mark.parametrize("size", [(150, 120), (900, 700)])
def test_torch_grid_resamples_like_pillow(window, size) -> None:
    image = render()
    plan = resample.grid(image.size, window, size)
    expected = np.asarray(resample.resample(image, window, size), dtype=float)
    assert plan is not None
    out = plan.run(gpu.to_tensor(image).unsqueeze(0).float())[0]
    out = out.round().clamp(0, 255).permute(1, 2, 0).numpy()
    assert out.shape == expected.shape
    assert np.abs(out - expected).mean() < 0.5


def test_grids_align_for_most_windows() -> None:
    rng = np.random.default_rng(2)
    found = 0
    for _ in range(200):
        left, top = rng.uniform(0, 200), rng.uniform(0, 200)
        width = rng.uniform(100, 300)
        found += resample.grid((512, 640), (left, top, left + width, top + width * 1.2),
                               (int(rng.integers(100, 1200)), int(rng.integers(100, 1500)))
                               ) is not None
    assert found >= 190  # the rest (steps near simple fractions) fall back to Pillow


def test_laying_a_layer_over_is_alpha_compositing() -> None:
    base = render().convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).ellipse((50, 60, 300, 240), fill=(250, 30, 30, 170))
    ImageDraw.Draw(layer).text((60, 300), "Sale", fill=(255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(base, layer).convert("RGB"), dtype=int)
    canvas = gpu.to_tensor(base.convert("RGB")).unsqueeze(0).float()
    gpu.lay_over(canvas, layer)
    got = canvas[0].round().permute(1, 2, 0).numpy().astype(int)
    assert np.abs(got - expected).max() <= 1


def test_encoding_off_cuda_is_pillow_s(logo) -> None:
    image = render()
    ad = gpu.compose_on(gpu.to_tensor(image), image, PRESETS["iab_300x250"],
                        subject_box=SUBJECT, logo=logo, captions=CAPTIONS, colors=COLORS)
    data = gpu.encode_on(ad.pixels, "jpeg", max_bytes=150_000)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "JPEG" and decoded.size == (300, 250)
    assert gpu.encode_on(ad.pixels, "png")[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(PostProcessError, match="byte budget 0 must be a positive number"):
        gpu.encode_on(ad.pixels, "jpeg", max_bytes=0)


def test_a_device_jpeg_encoder_meets_the_budget_through_the_same_search(monkeypatch) -> None:
    image = render().resize((480, 600))
    pixels = gpu.to_tensor(image)
    qualities: list[int] = []

    def fake_device_encoder(tensor: torch.Tensor):
        def save(quality: int) -> bytes:
            qualities.append(quality)
            buffer = io.BytesIO()
            gpu.to_image(tensor).save(buffer, "JPEG", quality=quality)
            return buffer.getvalue()
        return save

    monkeypatch.setattr(gpu, "device_jpeg", fake_device_encoder)
    full = gpu.encode_on(pixels, "jpeg")
    budget = len(full) * 2 // 3
    qualities.clear()
    data = gpu.encode_on(pixels, "jpeg", max_bytes=budget)
    assert len(data) <= budget and 2 <= len(qualities) <= 4 and qualities[0] == 90
    assert Image.open(io.BytesIO(data)).size == image.size


def test_without_torchvision_jpeg_is_encoded_by_pillow(monkeypatch) -> None:
    gpu._nvjpeg.cache_clear()
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    try:
        assert gpu._nvjpeg() is None
        assert gpu.device_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8)) is None
    finally:
        gpu._nvjpeg.cache_clear()


def test_the_backdrop_of_a_padded_window_is_crop_s(logo) -> None:
    image = render()
    window = (-200.0, -100.0, 700.0, 700.0)
    expected = np.asarray(crop.render_window(image, window, (450, 400)), dtype=float)
    got = gpu.picture(gpu.to_tensor(image), image, window, (450, 400))
    out = got[0].round().clamp(0, 255).permute(1, 2, 0).numpy()
    assert np.abs(out - expected).mean() < 0.5
