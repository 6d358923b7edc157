"""One resample per ad, within 1/255 of the resizes made before it (the example's pictures)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

import adgen
from adgen.assets import brand_style
from adgen.placements import PRESETS, resolve_placement
from adgen.post import compose, crop
from adgen.post.image import Caption
from adgen.renderers.offline import OfflineRenderer
from tests.conftest import REPO

Window = tuple[float, float, float, float]


def previous_render_window(image: Image.Image, window: Window, size: tuple[int, int]
                           ) -> Image.Image:
    """How the picture was framed before post/v5: Lanczos to shrink, bicubic to
    enlarge, reducing gap 3; past the edges, the whole backdrop scaled to ``size``."""
    width, height = image.size
    left, top, right, bottom = window
    scale = size[0] / (right - left)
    resampling = Image.Resampling.LANCZOS if scale <= 1.0 else Image.Resampling.BICUBIC
    src = (max(0.0, left), max(0.0, top), min(float(width), right), min(float(height), bottom))
    if left >= -1e-6 and top >= -1e-6 and right <= width + 1e-6 and bottom <= height + 1e-6:
        return image.resize(size, resampling, box=src, reducing_gap=3.0)
    small = crop.backdrop(image, window, size)
    canvas = small.resize(size, Image.Resampling.BICUBIC)
    dest = (round((src[0] - left) * scale), round((src[1] - top) * scale),
            round((src[2] - left) * scale), round((src[3] - top) * scale))
    part = image.resize((dest[2] - dest[0], dest[3] - dest[1]), resampling, box=src,
                        reducing_gap=3.0)
    canvas.paste(part, dest[:2])
    return canvas


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory):
    """The example campaign's first variant: its render, subject box, captions and brand."""
    out = tmp_path_factory.mktemp("out")
    campaign = adgen.load_campaign(REPO / "campaigns" / "northwind-spring.yaml",
                                   overrides=["variants=1", f"output={out}"])
    plan = adgen.plan(campaign)
    row = plan.variants.to_dict("records")[0]
    rendered = OfflineRenderer()([plan.jobs[row["job_key"]]])[0]
    captions = [Caption(k, v) for k, v in json.loads(row["captions"]).items()]
    return rendered, captions, brand_style(campaign)


FRAMED = ["story", "300x250", "728x90", "feed_square", "landscape", "160x600", "970x250"]


@pytest.mark.parametrize("name", FRAMED)
def test_one_resample_per_ad_within_1_255_of_before_and_the_same_layout(
        example, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered, captions, style = example
    placement = resolve_placement(name)
    whole: list[tuple[int, int]] = []
    real = crop.render_window

    def counted(image, window, size, *, fast=False, region=None, edges=None):
        if region is None and image is not None and image.size == rendered.image.size:
            whole.append(size)
        return real(image, window, size, fast=fast, region=region, edges=edges)

    monkeypatch.setattr(crop, "render_window", counted)
    new = compose(rendered.image, placement, subject_box=rendered.subject_box,
                  logo=style.logo, captions=captions, colors=style.colors)
    assert len(whole) == 1  # tried layouts read only the pixels behind the logo

    def before(image, window, size, *, fast=False, region=None, edges=None):
        full = previous_render_window(image, window, size)
        return full.crop(region) if region is not None else full

    monkeypatch.setattr(crop, "render_window", before)
    old = compose(rendered.image, placement, subject_box=rendered.subject_box,
                  logo=style.logo, captions=captions, colors=style.colors)
    difference = np.abs(np.asarray(new.image, dtype=float) - np.asarray(old.image, dtype=float))
    assert difference.mean() <= 1.0, f"{name}: mean difference {difference.mean():.2f}/255"
    assert new.checks["subject_box"] == old.checks["subject_box"]
    assert new.logo_box == old.logo_box and new.caption_boxes == old.caption_boxes
    for key in ("framing", "arrangement", "layout", "picture_box", "padded", "logo_variant"):
        assert new.checks.get(key) == old.checks.get(key), key


def textured(size: tuple[int, int] = (400, 300)) -> Image.Image:
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(noise).filter(ImageFilter.GaussianBlur(1.5))


@pytest.mark.parametrize("window", [(37.3, 21.7, 301.9, 220.0), (0.0, 0.0, 400.0, 300.0),
                                    (-60.5, -80.25, 420.0, 280.75), (100.4, 80.2, 160.6, 125.3)],
                         ids=["inside", "whole", "padded", "enlarged"])
@pytest.mark.parametrize("size", [(180, 150), (1080, 1350)])
def test_a_region_alone_has_the_pixels_of_the_whole(window, size) -> None:
    image = textured()
    whole = np.asarray(crop.render_window(image, window, size), dtype=int)
    for region in [(0, 0, 40, 30), (size[0] - 50, 10, size[0], 70),
                   (size[0] // 3, size[1] // 2, size[0] // 3 + 61, size[1] // 2 + 33)]:
        part = np.asarray(crop.render_window(image, window, size, region=region), dtype=int)
        assert part.shape == (region[3] - region[1], region[2] - region[0], 3)
        expected = whole[region[1]:region[3], region[0]:region[2]]
        assert np.abs(part - expected).max() <= 2 and np.abs(part - expected).mean() < 0.2


def test_the_story_tries_its_layouts_without_resampling_the_picture_for_each(
        example, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tall subject in a story: the full-bleed layout fails, the staged one is kept; each
    cost only the pixels behind its logo, and the kept one one resample."""
    _, captions, style = example
    image = Image.new("RGB", (1024, 1024), (200, 190, 170))
    subject = (380, 120, 640, 980)
    image.paste((40, 90, 60), subject)
    sizes: list[tuple[int, int]] = []
    real = crop.render_window

    def counted(image, window, size, *, fast=False, region=None, edges=None):
        box = region or (0, 0, *size)
        sizes.append((box[2] - box[0], box[3] - box[1]))
        return real(image, window, size, fast=fast, region=region, edges=edges)

    monkeypatch.setattr(crop, "render_window", counted)
    result = compose(image, PRESETS["story"], subject_box=subject, logo=style.logo,
                     captions=captions, colors=style.colors)
    assert result.checks["framing"] != "as rendered"
    assert sizes.count((1080, 1920)) == 1
    assert sum(w * h for w, h in sizes) < 1.2 * 1080 * 1920


def pillow(image: Image.Image, window: Window, size: tuple[int, int], *, fast: bool = False
           ) -> np.ndarray:
    """Pillow's antialiased resize of the window: what every resample was before post/v6."""
    resampling = Image.Resampling.BILINEAR if fast else Image.Resampling.BICUBIC
    return np.asarray(image.resize(size, resampling, box=window, reducing_gap=1.5), dtype=int)


ENLARGED = [((37.3, 21.7, 301.9, 220.0), (900, 675)),  # a window in the middle, x3.4
            ((0.0, 40.5, 225.0, 290.5), (1080, 1200)),  # from the left edge
            ((12.25, 0.0, 181.0, 300.0), (576, 1024)),  # full height: 300/1024 (a 75/256 step)
            ((101.7, 0.0, 270.45, 300.0), (1080, 1920)),  # 5/32: a simple fraction of a step
            ((3.3, 2.2, 396.1, 297.1), (380, 288))]  # a mild shrink (x1.03)


@pytest.mark.parametrize(("window", "size"), ENLARGED)
def test_enlargements_are_within_half_a_level_of_pillow_s_bicubic(window, size) -> None:
    image = textured()
    out = np.asarray(crop.render_window(image, window, size), dtype=int)
    assert out.shape == (size[1], size[0], 3)
    difference = np.abs(out - pillow(image, window, size))
    assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 3


@pytest.mark.parametrize(("window", "size"), ENLARGED)
def test_an_enlarged_region_alone_has_the_pixels_of_the_whole(window, size) -> None:
    image = textured()
    whole = np.asarray(crop.render_window(image, window, size), dtype=int)
    for region in [(0, 0, 37, 29), (size[0] - 41, size[1] - 23, size[0], size[1]),
                   (size[0] // 3 + 1, size[1] // 2 - 7, size[0] // 3 + 90, size[1] // 2 + 40)]:
        part = np.asarray(crop.render_window(image, window, size, region=region), dtype=int)
        expected = whole[region[1]:region[3], region[0]:region[2]]
        assert np.abs(part - expected).max() <= 1, region


def test_a_subpixel_shift_of_the_window_moves_the_picture_by_that_much() -> None:
    """An edge at x = 100 in the source lands where the window's arithmetic puts it, to a
    tenth of an output pixel, whatever the window's fraction (the grid is aligned)."""
    image = Image.new("RGB", (300, 200), (20, 20, 20))
    image.paste((230, 230, 230), (100, 0, 300, 200))
    for left in (10.0, 10.3, 10.55, 10.8):
        window = (left, 20.0, left + 150.0, 120.0)
        row = np.asarray(crop.render_window(image, window, (960, 640)), dtype=float)[320, :, 0]
        level = (row - 20) / 210  # 0 left of the edge, 1 right of it
        crossing = np.argmax(level >= 0.5)
        before, after = level[crossing - 1], level[crossing]
        edge = crossing - 1 + (0.5 - before) / (after - before) + 0.5  # in pixel edges
        assert abs(edge - (100 - left) * 960 / 150) < 0.1, left


def test_fast_resamples_are_within_a_level_of_pillow_s_bilinear() -> None:
    image = textured()
    for window, size in [((37.3, 21.7, 301.9, 220.0), (640, 480)),
                         ((10.2, 30.1, 390.7, 290.6), (320, 218))]:  # a x1.19 shrink
        out = np.asarray(crop.render_window(image, window, size, fast=True), dtype=int)
        difference = np.abs(out - pillow(image, window, size, fast=True))
        assert difference.mean() < 0.5 and difference.max() <= 4
