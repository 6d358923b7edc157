"""encode_image(): formats decode back, byte budgets are met, and impossible ones explained."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from adgen.errors import PostProcessError
from adgen.post import encode, encode_image


def noise(size: tuple[int, int] = (300, 250), seed: int = 0) -> Image.Image:
    """Detailed content that compresses badly (fine noise over a gradient)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 180, size[0])[None, :, None]
    pixels = ramp + rng.integers(0, 75, (size[1], size[0], 3))
    return Image.fromarray(pixels.astype(np.uint8))


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("fmt,name", [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")])
def test_each_format_decodes_to_the_same_size(fmt, name):
    image = noise()
    decoded = decode(encode_image(image, fmt))
    assert decoded.format == name and decoded.size == image.size


def test_jpeg_is_baseline_with_optimised_tables_and_high_quality():
    ramp = np.linspace(20, 230, 300)
    image = Image.fromarray(np.dstack([np.tile(ramp, (250, 1))] * 3).astype(np.uint8))
    data = encode_image(image, "jpeg")
    decoded = decode(data)
    assert not decoded.info.get("progressive") and b"\xff\xc0" in data  # SOF0: baseline
    plain = io.BytesIO()
    image.save(plain, "JPEG", quality=90)
    assert len(data) < len(plain.getvalue())  # optimised Huffman tables
    error = np.abs(np.asarray(decoded).astype(int) - np.asarray(image).astype(int)).mean()
    assert error < 1.5


def test_png_is_lossless():
    image = noise()
    assert np.array_equal(np.asarray(decode(encode_image(image, "png"))), np.asarray(image))


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_budget_lowers_quality_until_the_file_fits(fmt):
    image = noise()
    full = encode_image(image, fmt)
    budget = len(full) // 2
    data = encode_image(image, fmt, max_bytes=budget)
    assert len(data) <= budget < len(full)
    assert decode(data).size == image.size
    # binary search: the best quality that fits, so not far below the budget
    assert len(data) > budget * 0.7


def photo(size: tuple[int, int] = (480, 360), seed: int = 1) -> Image.Image:
    """Smooth regions, soft shapes and a little grain, as a render has."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]] / max(size)
    pixels = np.dstack([150 + 80 * np.sin(3 * x + c) * np.cos(2 * y - c) for c in (0, 1, 2)])
    for _ in range(12):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 0.75), rng.uniform(0.03, 0.15)
        pixels[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 255, 3)
    pixels += rng.normal(0, 1, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def counted_saves(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The qualities encode_image saves at, in order."""
    qualities: list[int] = []
    real = encode._save

    def spy(image: Image.Image, kind: str, quality: int) -> bytes:
        qualities.append(quality)
        return real(image, kind, quality)

    monkeypatch.setattr(encode, "_save", spy)
    return qualities


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_a_budget_just_missed_costs_two_encodes(fmt, monkeypatch):
    image = photo()
    budget = len(encode_image(image, fmt)) * 9 // 10
    qualities = counted_saves(monkeypatch)
    data = encode_image(image, fmt, max_bytes=budget)
    assert len(data) <= budget and len(qualities) == 2
    assert decode(data).size == image.size


@pytest.mark.parametrize("image", [photo(), noise((480, 360))], ids=["photo", "noise"])
@pytest.mark.parametrize("share", [0.8, 0.6, 0.45, 0.3, 0.1])
def test_budget_search_fills_the_budget_in_a_few_encodes(image, share, monkeypatch):
    sizes = {q: len(encode._save(image, "jpeg", q)) for q in range(30, 91)}
    budget = int(sizes[90] * share)
    best = max((q for q, n in sizes.items() if n <= budget), default=None)
    qualities = counted_saves(monkeypatch)
    if best is None:
        with pytest.raises(PostProcessError, match="quality 30"):
            encode_image(image, "jpeg", max_bytes=budget)
        assert len(qualities) <= 4
        return
    data = encode_image(image, "jpeg", max_bytes=budget)
    assert len(data) <= budget and 2 <= len(qualities) <= 4  # binary search took 7 or 8
    assert len(data) >= encode.FULL_ENOUGH * budget or len(data) == sizes[best]


def test_budget_already_met_changes_nothing():
    image = noise()
    assert encode_image(image, "jpeg", max_bytes=10**7) == encode_image(image, "jpeg")


def test_impossible_jpeg_budget_names_budget_best_size_and_fix():
    with pytest.raises(PostProcessError) as info:
        encode_image(noise(), "jpeg", max_bytes=2_000)
    message = str(info.value)
    assert re.match(r"cannot encode the 300x250 ad as JPEG within 2,000 bytes: the smallest "
                    r"file reached is [\d,]+ bytes \(quality 30\); raise the placement's "
                    r"max_bytes", message)


def test_png_over_budget_is_quantised_to_fit():
    image = noise()
    full = encode_image(image, "png")
    budget = len(full) // 2
    data = encode_image(image, "png", max_bytes=budget)
    assert len(data) <= budget
    assert decode(data).mode == "P"


def test_impossible_png_budget_is_explained():
    with pytest.raises(PostProcessError, match=r"as PNG within 1,000 bytes: the smallest file "
                                               r"reached is [\d,]+ bytes \(64 colours\)"):
        encode_image(noise(), "png", max_bytes=1_000)


def test_transparency_is_flattened_on_white_for_jpeg():
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    decoded = decode(encode_image(image, "jpeg"))
    pixel = decoded.getpixel((20, 20))
    assert decoded.mode == "RGB" and isinstance(pixel, tuple) and min(pixel) >= 250


def test_unknown_format_and_bad_budget_are_explained():
    with pytest.raises(PostProcessError, match="unknown image format 'gif'"):
        encode_image(noise(), "gif")  # type: ignore[arg-type]
    with pytest.raises(PostProcessError, match="byte budget 0 must be a positive"):
        encode_image(noise(), "jpeg", max_bytes=0)
