"""encode_image(): formats decode back, byte budgets are met, and impossible ones explained."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from adgen.errors import PostProcessError
from adgen.post import encode_image


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


def test_jpeg_is_progressive_and_high_quality():
    ramp = np.linspace(20, 230, 300)
    image = Image.fromarray(np.dstack([np.tile(ramp, (250, 1))] * 3).astype(np.uint8))
    decoded = decode(encode_image(image, "jpeg"))
    assert decoded.info.get("progressive") or decoded.info.get("progression")
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
