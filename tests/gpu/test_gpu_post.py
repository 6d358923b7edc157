"""The device post path on a CUDA GPU: the Pillow path's ads, JPEG by nvJPEG when it works.

Skipped unless torch sees a GPU; the nvJPEG check also needs a torchvision built for this torch.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from adgen.placements import PRESETS
from adgen.post import compose, gpu
from adgen.post.image import Caption, LogoStyle

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CAPTIONS = [Caption("headline", "Fresh spring colours"), Caption("cta", "Shop now")]


def render() -> Image.Image:
    rng = np.random.default_rng(1)
    pixels = rng.normal(150, 30, (1024, 1024, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    ImageDraw.Draw(image).rounded_rectangle((400, 300, 620, 820), radius=30, fill=(30, 120, 90))
    return image


@pytest.mark.parametrize("name", ["story", "feed_square", "iab_300x250", "iab_728x90"])
def test_ads_made_on_the_gpu_match_pillow_s(name: str, tmp_path) -> None:
    logo_path = tmp_path / "logo.png"
    Image.new("RGBA", (200, 80), (20, 30, 60, 255)).save(logo_path)
    image, placement = render(), PRESETS[name]
    args = {"subject_box": (400, 300, 620, 820), "logo": LogoStyle(logo_path),
            "captions": CAPTIONS, "colors": ["#0B3D91", "#F2A900"]}
    expected = compose(image, placement, **args)
    ad = gpu.compose_on(gpu.to_tensor(image, "cuda"), image, placement, **args)
    assert ad.pixels.is_cuda
    difference = np.abs(np.asarray(ad.image(), dtype=float)
                        - np.asarray(expected.image, dtype=float))
    assert difference.mean() <= 1.0
    assert ad.logo_box == expected.logo_box and ad.caption_boxes == expected.caption_boxes


def test_jpeg_is_encoded_on_the_gpu_within_the_budget() -> None:
    pixels = gpu.to_tensor(render(), "cuda")
    if gpu.device_jpeg(pixels) is None:
        pytest.skip("torchvision (nvJPEG) is not installed for this torch")
    full = gpu.encode_on(pixels, "jpeg")
    data = gpu.encode_on(pixels, "jpeg", max_bytes=len(full) * 2 // 3)
    assert len(data) <= len(full) * 2 // 3
    assert Image.open(io.BytesIO(data)).size == (1024, 1024)
