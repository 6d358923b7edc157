"""The speed options on a CUDA GPU with full-size random architectures (no download needed).

Skipped unless torch sees a GPU. Each check is what a user relies on when turning an option on:
the same job gives the same picture, and the picture is the one the plain pipeline gives (within
the rounding of batched bf16 kernels).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from adgen.jobs import RenderJob
from adgen.renderers.diffusers_renderer import AUTO_BATCH_MAX, DiffusersRenderer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

MODEL = "random:sd-turbo"
PROMPTS = ("a glass bottle of olive oil on a marble counter", "a red sneaker on wet asphalt",
           "a ceramic mug on a wooden table", "a watch on black velvet", "a lamp", "a chair")


def make_job(seed: int, prompt: str = PROMPTS[0], size: int = 512) -> RenderJob:
    return RenderJob(renderer="diffusers", model=MODEL, prompt=prompt, negative_prompt="",
                     seed=seed, width=size, height=size, steps=1, guidance=0.0)


def pixels(image: Image.Image | None) -> np.ndarray:
    assert image is not None
    return np.asarray(image.convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def renderer() -> DiffusersRenderer:
    return DiffusersRenderer(MODEL, batch_size=4)


def test_full_size_batch_in_bf16(renderer: DiffusersRenderer) -> None:
    assert renderer.device == "cuda" and renderer.dtype in ("bfloat16", "float16")
    assert renderer.overlap  # the default on CUDA
    jobs = [make_job(100 + i, p) for i, p in enumerate(PROMPTS)]
    results = renderer(jobs)  # two chunks: the first finished while the second renders
    assert [r.job_key for r in results] == [j.key for j in jobs]
    images = [pixels(r.image) for r in results]
    assert all(r.error is None for r in results)
    assert all(image.shape == (512, 512, 3) for image in images)
    assert np.abs(images[0] - images[1]).mean() > 1
    again = renderer(jobs)
    for a, b in zip(results, again, strict=True):  # same jobs, same batches: same pictures
        np.testing.assert_array_equal(pixels(a.image), pixels(b.image))


def test_overlap_changes_no_pixel(renderer: DiffusersRenderer) -> None:
    serial = DiffusersRenderer(MODEL, batch_size=4, overlap=False)
    jobs = [make_job(200 + i, p) for i, p in enumerate(PROMPTS)]
    for a, b in zip(renderer(jobs), serial(jobs), strict=True):
        np.testing.assert_array_equal(pixels(a.image), pixels(b.image))


def test_auto_batch_fits_in_memory() -> None:
    auto = DiffusersRenderer(MODEL, batch_size="auto")
    size = auto._chunk_size(make_job(1))
    assert 1 <= size <= AUTO_BATCH_MAX
    results = auto([make_job(300 + i) for i in range(size + 1)])
    assert all(r.error is None for r in results)


def test_fused_qkv_and_channels_last_keep_the_picture(renderer: DiffusersRenderer) -> None:
    fast = DiffusersRenderer(MODEL, batch_size=4, fuse_qkv=True, channels_last=True)
    jobs = [make_job(400 + i, p) for i, p in enumerate(PROMPTS[:4])]
    for a, b in zip(fast(jobs), renderer(jobs), strict=True):
        assert np.abs(pixels(a.image) - pixels(b.image)).mean() < 4  # bf16 rounding only


def test_compiled_static_shapes_make_a_job_independent_of_its_batch() -> None:
    compiled = DiffusersRenderer(MODEL, batch_size=4, compile=True)
    jobs = [make_job(500 + i, p) for i, p in enumerate(PROMPTS[:4])]
    together = compiled(jobs)
    alone = compiled([jobs[2]])[0]  # padded to 4 with copies of itself
    np.testing.assert_array_equal(pixels(alone.image), pixels(together[2].image))


def test_tiny_vae_draft_is_the_right_size() -> None:
    draft = DiffusersRenderer(MODEL, batch_size=4, tiny_vae="random:taesd")
    result = draft([make_job(600, size=520)])[0]  # rendered at 520, a multiple of 8
    assert result.error is None and pixels(result.image).shape == (520, 520, 3)
