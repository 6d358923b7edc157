"""Slow checks of the diffusers renderer with real weights on a CUDA GPU.

Skipped unless torch sees a GPU. The model is ``ADGEN_GPU_MODEL`` (default
``stabilityai/sd-turbo``); it must be in the Hugging Face cache or downloadable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from adgen.errors import RenderError
from adgen.jobs import RenderJob
from adgen.renderers.diffusers_renderer import DiffusersRenderer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

MODEL = os.environ.get("ADGEN_GPU_MODEL", "stabilityai/sd-turbo")
PROMPTS = ("a glass bottle of olive oil on a marble counter, morning light",
           "a red sneaker on wet asphalt at night, neon reflections",
           "a ceramic mug on a wooden table by a window",
           "a watch on black velvet, studio lighting")


def make_job(prompt: str, seed: int, size: int = 512, **fields: Any) -> RenderJob:
    return RenderJob(renderer="diffusers", model=MODEL, prompt=prompt, negative_prompt="",
                     seed=seed, width=size, height=size, steps=1, guidance=0.0, **fields)


def pixels(image: Image.Image | None) -> np.ndarray:
    assert image is not None
    return np.asarray(image.convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def renderer() -> DiffusersRenderer:
    try:
        return DiffusersRenderer(MODEL, batch_size=4)
    except RenderError as exc:
        pytest.skip(f"model {MODEL} cannot be loaded: {exc}")


def test_batch_of_real_images(renderer: DiffusersRenderer) -> None:
    assert renderer.device == "cuda" and renderer.dtype in ("bfloat16", "float16")
    jobs = [make_job(prompt, seed=100 + i) for i, prompt in enumerate(PROMPTS)]
    results = renderer(jobs)
    images = [pixels(r.image) for r in results]
    assert all(r.error is None for r in results)
    assert all(image.shape == (512, 512, 3) and image.std() > 10 for image in images)
    assert np.abs(images[0] - images[1]).mean() > 10
    alone = pixels(renderer([jobs[2]])[0].image)
    assert np.abs(alone - images[2]).mean() < 4  # batched GPU kernels round a little differently


def test_batch_invariant_mode_is_exact(renderer: DiffusersRenderer) -> None:
    exact = DiffusersRenderer(MODEL, batch_size=4, batch_invariant=True)
    jobs = [make_job(prompt, seed=200 + i) for i, prompt in enumerate(PROMPTS[:3])]
    together = exact(jobs)
    np.testing.assert_array_equal(pixels(together[1].image), pixels(exact([jobs[1]])[0].image))


def test_product_pixels_survive_on_gpu(renderer: DiffusersRenderer, tmp_path: Path) -> None:
    product = Image.new("RGBA", (300, 400), (0, 0, 0, 0))
    draw = ImageDraw.Draw(product)
    draw.rounded_rectangle((50, 60, 250, 390), radius=40, fill=(200, 40, 40, 255))
    draw.rectangle((120, 10, 180, 70), fill=(30, 30, 30, 255))
    product.save(tmp_path / "bottle.png")
    job = make_job("a bottle on a sunny beach, product photo", seed=7, size=512,
                   product_image=str(tmp_path / "bottle.png"))
    result = renderer([job])[0]
    assert result.error is None and result.composite and result.subject_box is not None
    left, top, right, bottom = result.subject_box
    placed = Image.open(tmp_path / "bottle.png").crop((50, 10, 251, 391))  # its visible part
    placed = placed.resize((right - left, bottom - top), Image.Resampling.LANCZOS)
    opaque = np.asarray(placed.getchannel("A")) == 255
    out = pixels(result.image)[top:bottom, left:right]
    np.testing.assert_array_equal(out[opaque], np.asarray(placed.convert("RGB"))[opaque])
    assert np.abs(pixels(result.image)[:top] - 127).mean() > 5  # a scene, not the grey canvas
