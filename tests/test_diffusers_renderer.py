"""The diffusers renderer on tiny random pipelines: offline, CPU, 64 px."""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from adgen.errors import RenderError
from adgen.jobs import RenderJob
from adgen.renderers.diffusers_renderer import DiffusersRenderer
from adgen.testing import make_tiny_sd_pipeline

PROMPTS = ("a red bottle on a beach", "a blue bottle in the snow", "sunset", "studio, soft light")


def make_job(model: Path, prompt: str = PROMPTS[0], seed: int = 1, **fields: Any) -> RenderJob:
    values: dict[str, Any] = {"renderer": "diffusers", "model": str(model), "prompt": prompt,
                              "negative_prompt": "blurry", "seed": seed, "width": 64,
                              "height": 64, "steps": 2, "guidance": 7.5}
    return RenderJob(**{**values, **fields})


def pixels(image: Image.Image | None) -> np.ndarray:
    assert image is not None
    return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_sd_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="module")
def renderer(tiny: Path) -> DiffusersRenderer:
    return DiffusersRenderer(str(tiny), batch_size=4)


@pytest.fixture(scope="module")
def plain(tiny: Path) -> Any:
    pipe = StableDiffusionPipeline.from_pretrained(tiny)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def plain_render(pipe: Any, job: RenderJob) -> np.ndarray:
    """What a user gets from diffusers directly for the same job."""
    image = pipe(job.prompt, negative_prompt=job.negative_prompt,
                 generator=torch.Generator("cpu").manual_seed(job.seed),
                 num_inference_steps=job.steps, guidance_scale=job.guidance,
                 height=job.height, width=job.width).images[0]
    return np.asarray(image)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A textured 32x20 opaque product in a transparent margin, with a half-transparent edge."""
    rng = np.random.default_rng(7)
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[5:25, 4:36, :3] = rng.integers(0, 256, (20, 32, 3))
    rgba[5:25, 4:36, 3] = 255
    rgba[5:25, 36, :3], rgba[5:25, 36, 3] = 90, 128
    path = tmp_path_factory.mktemp("assets") / "product.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def test_images_match_a_plain_diffusers_call(renderer: DiffusersRenderer, plain: Any,
                                             tiny: Path) -> None:
    jobs = [make_job(tiny, PROMPTS[0], seed=1), make_job(tiny, PROMPTS[1], seed=2,
                                                         negative_prompt="")]
    results = renderer(jobs)
    for job, result in zip(jobs, results, strict=True):
        assert result.error is None and result.job_key == job.key
        assert result.image is not None and result.image.size == (64, 64)
        assert result.image.mode == "RGB" and not result.composite
        np.testing.assert_array_equal(pixels(result.image), plain_render(plain, job))


def test_each_image_depends_only_on_its_own_job(renderer: DiffusersRenderer, tiny: Path) -> None:
    jobs = [make_job(tiny, prompt, seed=10 + i) for i, prompt in enumerate(PROMPTS)]
    batch = renderer(jobs)
    for job, result in zip(jobs, batch, strict=True):
        np.testing.assert_array_equal(pixels(result.image), pixels(renderer([job])[0].image))
    assert not np.array_equal(pixels(batch[0].image), pixels(batch[1].image))
    other_seed = renderer([make_job(tiny, PROMPTS[0], seed=99)])[0]
    assert not np.array_equal(pixels(batch[0].image), pixels(other_seed.image))


@pytest.fixture
def pipe_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Record every StableDiffusionPipeline call (prompts and generator seeds)."""
    calls: list[dict[str, Any]] = []
    original = StableDiffusionPipeline.__call__

    @functools.wraps(original)
    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append({"prompt": list(kwargs["prompt"]),
                      "seeds": [g.initial_seed() for g in kwargs["generator"]]})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", spy)
    yield calls


def test_batches_go_through_the_pipeline_in_chunks(tiny: Path, renderer: DiffusersRenderer,
                                                   pipe_calls: list[dict[str, Any]]) -> None:
    batched = DiffusersRenderer(str(tiny), batch_size=4, batch_invariant=False)
    jobs = [make_job(tiny, PROMPTS[i % 4], seed=20 + i) for i in range(6)]
    results = batched(jobs)
    assert [c["seeds"] for c in pipe_calls] == [[20, 21, 22, 23], [24, 25]]
    assert pipe_calls[0]["prompt"] == list(PROMPTS)
    # batched kernels round differently from single ones: at most one level, on few pixels
    alone = renderer(jobs)
    for together, single in zip(results, alone, strict=True):
        diff = np.abs(pixels(together.image).astype(int) - pixels(single.image).astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_sizes_not_multiple_of_8_are_rendered_and_cropped(renderer: DiffusersRenderer,
                                                          tiny: Path) -> None:
    result = renderer([make_job(tiny, width=60, height=44)])[0]
    assert result.error is None and result.image is not None and result.image.size == (60, 44)


def test_product_pixels_are_unchanged(renderer: DiffusersRenderer, tiny: Path,
                                      product: Path) -> None:
    options = (("product_scale", 33 / 64),)  # the 33 px wide product fits as it is
    jobs = [make_job(tiny, p, seed=3 + i, product_image=str(product), options=options)
            for i, p in enumerate(PROMPTS[:2])]
    results = renderer(jobs)
    source = np.asarray(Image.open(product).convert("RGBA"))[5:25, 4:37]  # trimmed to visible
    # centred across, 60% down the free height: (64 - 20) * 0.6 = 26
    for result in results:
        assert result.error is None and result.composite
        assert result.subject_box == (16, 26, 49, 46)
        out = pixels(result.image)
        placed = out[26:46, 16:49]
        opaque = source[..., 3] == 255
        np.testing.assert_array_equal(placed[opaque], source[..., :3][opaque])
        outside = np.ones((64, 64), bool)
        outside[26:46, 16:49] = False
        assert (out[outside] == 127).all(axis=-1).mean() < 0.2  # the scene was generated
    assert not np.array_equal(pixels(results[0].image), pixels(results[1].image))


def test_product_with_an_inpainting_model(tmp_path: Path, tiny: Path, product: Path) -> None:
    inpaint = make_tiny_sd_pipeline(tmp_path / "tiny-inpaint", inpainting=True)
    renderer = DiffusersRenderer(str(tiny), inpaint_model=str(inpaint))
    job = make_job(tiny, product_image=str(product), width=96, height=64,
                   options=(("product_scale", 33 / 96),))
    result = renderer([job])[0]
    assert result.image is not None and result.image.size == (96, 64)
    left, top, right, bottom = result.subject_box or (0, 0, 0, 0)
    assert (left, top, right, bottom) == (32, 26, 65, 46)
    source = np.asarray(Image.open(product).convert("RGBA"))[5:25, 4:37]
    opaque = source[..., 3] == 255
    placed = pixels(result.image)[top:bottom, left:right]
    np.testing.assert_array_equal(placed[opaque], source[..., :3][opaque])
    with pytest.raises(RenderError, match="inpainting model"):
        DiffusersRenderer(str(inpaint))([make_job(inpaint)])


def test_a_bad_product_image_fails_only_its_job(renderer: DiffusersRenderer, tiny: Path,
                                                product: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    jobs = [make_job(tiny, product_image=str(missing)), make_job(tiny, product_image=str(product))]
    bad, good = renderer(jobs)
    assert bad.image is None and bad.error is not None
    assert f"product image {str(missing)!r} does not exist" in bad.error
    assert good.error is None and good.image is not None


def broken_copy(tiny: Path, folder: Path, bias: float) -> Path:
    """The tiny pipeline with its VAE decoder's last bias set to ``bias`` (NaN, or very low)."""
    pipe = StableDiffusionPipeline.from_pretrained(tiny)
    with torch.no_grad():
        pipe.vae.decoder.conv_out.weight.zero_()
        pipe.vae.decoder.conv_out.bias.fill_(bias)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def test_nan_images_are_reported_per_job(tmp_path: Path, tiny: Path) -> None:
    renderer = DiffusersRenderer(str(broken_copy(tiny, tmp_path / "nan", float("nan"))),
                                 retry_blank=2)
    results = renderer([make_job(tiny, seed=5), make_job(tiny, seed=40)])
    assert [r.image for r in results] == [None, None]
    assert results[0].error == ("unusable image (seed 5: NaN pixels; seed 6: NaN pixels; "
                                "seed 7: NaN pixels): try another prompt, seed or model")
    assert results[1].error is not None and "seed 42: NaN pixels" in results[1].error


def test_black_images_are_reported(tmp_path: Path, tiny: Path) -> None:
    renderer = DiffusersRenderer(str(broken_copy(tiny, tmp_path / "black", -10.0)))
    result = renderer([make_job(tiny, seed=5)])[0]
    assert result.image is None
    assert result.error == ("unusable image (seed 5: all black): try another prompt, seed or "
                            "model; set retry_blank=N to retry with the next seeds")


def test_blank_images_are_retried_with_the_next_seed(monkeypatch: pytest.MonkeyPatch, tiny: Path,
                                                     renderer: DiffusersRenderer,
                                                     plain: Any) -> None:
    original = StableDiffusionPipeline.__call__

    @functools.wraps(original)
    def nan_for_seed_8(self: Any, *args: Any, **kwargs: Any) -> Any:
        output = original(self, *args, **kwargs)
        for i, generator in enumerate(kwargs["generator"]):
            if generator.initial_seed() == 8:
                output.images[i][:] = np.nan
        return output

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", nan_for_seed_8)
    jobs = [make_job(tiny, seed=8), make_job(tiny, seed=30)]
    retrying = DiffusersRenderer(str(tiny), retry_blank=1)
    first, second = retrying(jobs)
    monkeypatch.undo()
    np.testing.assert_array_equal(pixels(first.image), plain_render(plain, make_job(tiny, seed=9)))
    np.testing.assert_array_equal(pixels(second.image), plain_render(plain, jobs[1]))
    monkeypatch.setattr(StableDiffusionPipeline, "__call__", nan_for_seed_8)
    assert renderer(jobs)[0].error == ("unusable image (seed 8: NaN pixels): try another prompt, "
                                       "seed or model; set retry_blank=N to retry with the next "
                                       "seeds")


def test_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(RenderError) as info:
        DiffusersRenderer(str(tmp_path / "no-such-model"))
    assert str(info.value) == (
        f"model folder {str(tmp_path / 'no-such-model')!r} does not exist; set model to a folder "
        f"saved with save_pretrained, or to a Hugging Face Hub id such as 'stabilityai/sd-turbo'")


def test_hub_id_not_in_the_cache_offline() -> None:
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 set before huggingface_hub is imported")
    with pytest.raises(RenderError) as info:
        DiffusersRenderer("adgen-tests/no-such-model")
    message = str(info.value)
    assert message.startswith("cannot load diffusers model 'adgen-tests/no-such-model': there is "
                              "no local folder 'adgen-tests/no-such-model' and the Hugging Face "
                              "Hub id 'adgen-tests/no-such-model' could not be loaded")
    assert "HF_HUB_OFFLINE is set, so nothing is downloaded" in message


def test_pickled_weights_are_refused(tmp_path: Path, plain: Any) -> None:
    plain.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    with pytest.raises(RenderError) as info:
        DiffusersRenderer(str(tmp_path / "pickled"))
    message = str(info.value)
    assert message.startswith(f"model folder {str(tmp_path / 'pickled')!r} holds only pickled "
                              f"weights in {tmp_path / 'pickled'}")
    assert "adgen loads safetensors only" in message
    assert "save_pretrained(new_folder, safe_serialization=True)" in message


def test_missing_model_and_unknown_options(tiny: Path) -> None:
    with pytest.raises(RenderError, match=r"needs a model: set renderer\.model in the campaign"):
        DiffusersRenderer()
    with pytest.raises(RenderError) as info:
        DiffusersRenderer(str(tiny), batchsize=8, steps=3)
    assert str(info.value) == (
        "unknown diffusers renderer option(s) batchsize, steps; the known options are: "
        "attention, batch_invariant, batch_size, channels_last, compile, cpu_offload, cuda_graphs, "
        "device, dtype, fuse_qkv, inpaint_model, model, overlap, retry_blank, tiny_vae, "
        "vae_slicing, vae_tiling, variant")
    with pytest.raises(RenderError, match="attention must be one of sdpa, eager, xformers"):
        DiffusersRenderer(str(tiny), attention="flash")


def test_speed_options_keep_the_picture(tiny: Path, renderer: DiffusersRenderer) -> None:
    fast = DiffusersRenderer(str(tiny), attention="eager", channels_last=True, vae_slicing=True,
                             batch_invariant=False)
    jobs = [make_job(tiny, seed=1), make_job(tiny, seed=2)]
    for a, b in zip(fast(jobs), renderer(jobs), strict=True):
        diff = np.abs(pixels(a.image).astype(int) - pixels(b.image).astype(int))
        assert diff.max() <= 1


def test_renderer_pickles_as_its_settings(renderer: DiffusersRenderer, tiny: Path) -> None:
    data = pickle.dumps(renderer)
    assert len(data) < 2000  # settings, not weights: the copy loads its pipeline itself
    copy = pickle.loads(data)
    assert isinstance(copy, DiffusersRenderer) and copy.batch_size == 4
    job = make_job(tiny, seed=77)
    np.testing.assert_array_equal(pixels(copy([job])[0].image), pixels(renderer([job])[0].image))
