"""Bundled full-size architectures with random weights, proved on a CPU at reduced size."""

from __future__ import annotations

import os
import pickle
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from adgen.archs import ARCHS, arch_spec, build_component, build_pipeline, parse_random_model
from adgen.errors import RenderError
from adgen.jobs import RenderJob
from adgen.renderers import backend_batch_size
from adgen.renderers.diffusers_renderer import DiffusersRenderer
from adgen.renderers.diffusers_video import DiffusersVideoRenderer

PROMPTS = ("a red bottle on a beach", "a blue bottle in the snow", "sunset", "studio, soft light",
           "a mug of coffee")


def make_job(model: str, seed: int, prompt: str = PROMPTS[0], size: int = 64,
             **fields: Any) -> RenderJob:
    values: dict[str, Any] = {"renderer": "diffusers", "model": model, "prompt": prompt,
                              "negative_prompt": "", "seed": seed, "width": size, "height": size,
                              "steps": 1, "guidance": 0.0}
    return RenderJob(**{**values, **fields})


def pixels(image: Image.Image | None) -> np.ndarray:
    assert image is not None
    return np.asarray(image.convert("RGB")).astype(int)


def params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def sd() -> DiffusersRenderer:
    return DiffusersRenderer("random:sd-turbo:tiny", batch_size=2)


def configs(name: str, tiny: bool) -> dict[str, dict[str, Any]]:
    return {part: {**entry.get("config", {}), **(entry.get("tiny", {}) if tiny else {})}
            for part, entry in arch_spec(name)["components"].items()}


@pytest.mark.parametrize("tiny", [False, True])
def test_configs_fit_together(tiny: bool) -> None:
    sd, xl, ltx = configs("sd-turbo", tiny), configs("sdxl-turbo", tiny), configs("ltx-video", tiny)
    assert sd["unet"]["cross_attention_dim"] == sd["text_encoder"]["hidden_size"]
    # SDXL cross-attends to both text encoders' hidden states, concatenated
    assert xl["unet"]["cross_attention_dim"] == (xl["text_encoder"]["hidden_size"]
                                                 + xl["text_encoder_2"]["hidden_size"])
    # ... and adds the pooled projection of the second to 6 embedded size/crop numbers
    assert xl["unet"]["projection_class_embeddings_input_dim"] == (
        xl["text_encoder_2"]["projection_dim"] + 6 * xl["unet"]["addition_time_embed_dim"])
    assert ltx["transformer"]["in_channels"] == ltx["vae"]["latent_channels"]
    assert ltx["transformer"]["caption_channels"] == ltx["text_encoder"]["d_model"]
    for spec in (sd, xl):  # the shrunk models keep the 8x VAE and the UNet's block layout
        assert len(spec["vae"]["block_out_channels"]) == 4
        assert len(spec["unet"]["block_out_channels"]) == len(spec["unet"]["down_block_types"])
    assert sd["unet"]["down_block_types"] == configs("sd-turbo", not tiny)["unet"][
        "down_block_types"]


def test_full_size_models_have_the_published_parameter_counts() -> None:
    """Built on the meta device (no memory, no compute): the sizes users know these models by."""
    counts = {(name, part): params(build_component(name, part, device="meta"))
              for name, part in [("sd-turbo", "unet"), ("sd-turbo", "text_encoder"),
                                 ("sd-turbo", "vae"), ("sdxl-turbo", "unet"),
                                 ("ltx-video", "transformer")]}
    assert 865e6 < counts["sd-turbo", "unet"] < 867e6           # SD 2.1: 866M
    assert 339e6 < counts["sd-turbo", "text_encoder"] < 341e6   # OpenCLIP ViT-H text: 340M
    assert 83e6 < counts["sd-turbo", "vae"] < 84e6              # SD VAE: 83.7M
    assert 2.56e9 < counts["sdxl-turbo", "unet"] < 2.58e9       # SDXL: 2.57B
    assert 1.9e9 < counts["ltx-video", "transformer"] < 2.0e9   # LTX-Video: 1.9B


def test_random_model_ids() -> None:
    assert parse_random_model("random:sdxl-turbo") == ("sdxl-turbo", False)
    assert parse_random_model("random:ltx-video:tiny") == ("ltx-video", True)
    assert parse_random_model("stabilityai/sd-turbo") is None
    with pytest.raises(RenderError) as info:
        parse_random_model("random:sd-turbo:huge")
    assert str(info.value) == (
        f"model 'random:sd-turbo:huge' names no bundled architecture: use random:NAME or "
        f"random:NAME:tiny with NAME one of {', '.join(ARCHS)}")
    with pytest.raises(RenderError, match="unknown architecture 'flux'"):
        arch_spec("flux")
    with pytest.raises(RenderError) as info:
        DiffusersRenderer("random:ltx-video:tiny")
    assert str(info.value) == (
        "model 'random:ltx-video:tiny' is a video architecture: render it with the "
        "diffusers-video renderer, or use random:sd-turbo or random:sdxl-turbo here")


def test_weights_depend_only_on_the_seed() -> None:
    a, b = (build_component("sd-turbo", "unet", tiny=True, seed=3) for _ in range(2))
    c = build_component("sd-turbo", "unet", tiny=True, seed=4)
    first = next(iter(a.parameters()))
    assert torch.equal(first, next(iter(b.parameters())))
    assert not torch.equal(first, next(iter(c.parameters())))


def test_sd_turbo_renders_deterministic_images(sd: DiffusersRenderer) -> None:
    jobs = [make_job(sd.model, seed=10 + i, prompt=p) for i, p in enumerate(PROMPTS[:3])]
    results = sd(jobs)
    images = [pixels(r.image) for r in results]
    assert all(r.error is None for r in results)
    assert all(image.shape == (64, 64, 3) and image.std() > 1 for image in images)
    assert np.abs(images[0] - images[1]).mean() > 1  # seeds and prompts differ
    again = sd([jobs[2]])[0]  # CPU default: batch invariant, so bit-identical alone
    np.testing.assert_array_equal(pixels(again.image), images[2])
    copy = pickle.loads(pickle.dumps(sd))  # a Ray actor builds the same weights from the seed
    np.testing.assert_array_equal(pixels(copy([jobs[0]])[0].image), images[0])


def test_overlapped_chunks_give_the_same_pictures(sd: DiffusersRenderer) -> None:
    jobs = [make_job(sd.model, seed=20 + i, prompt=p) for i, p in enumerate(PROMPTS)]
    serial = DiffusersRenderer(sd.model, batch_size=2, batch_invariant=False, overlap=False)
    overlapped = DiffusersRenderer(sd.model, batch_size=2, batch_invariant=False, overlap=True)
    first, second = serial(jobs), overlapped(jobs)
    assert [r.job_key for r in second] == [job.key for job in jobs]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(pixels(a.image), pixels(b.image))


def test_static_shapes_pad_the_last_chunk(sd: DiffusersRenderer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = DiffusersRenderer(sd.model, batch_size=4, batch_invariant=False)
    renderer.static_shapes = True  # what compile/cuda_graphs set, without compiling on a CPU
    pipe = renderer._t2i
    calls: list[int] = []
    original = type(pipe).__call__

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(kwargs["prompt"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    jobs = [make_job(sd.model, seed=30 + i, prompt=p) for i, p in enumerate(PROMPTS)]
    results = renderer(jobs)
    assert calls == [4, 4]  # 5 jobs: a full chunk, then 1 job padded to 4
    assert [r.job_key for r in results] == [job.key for job in jobs]
    assert all(r.error is None and r.image is not None for r in results)


def test_sdxl_turbo_renders_with_two_text_encoders() -> None:
    renderer = DiffusersRenderer("random:sdxl-turbo:tiny")
    assert renderer._t2i.text_encoder_2 is not None
    results = renderer([make_job(renderer.model, seed=1, steps=2),
                        make_job(renderer.model, seed=2, steps=2)])
    images = [pixels(r.image) for r in results]
    assert all(image.shape == (64, 64, 3) for image in images)
    assert np.abs(images[0] - images[1]).mean() > 1


def test_tiny_vae_drafts(sd: DiffusersRenderer) -> None:
    draft = DiffusersRenderer(sd.model, tiny_vae="random:taesd:tiny")
    assert type(draft._t2i.vae).__name__ == "AutoencoderTiny"
    job = make_job(sd.model, seed=5, size=72)  # not a multiple of 64: rendered larger, cropped
    result = draft([job])[0]
    assert result.error is None and pixels(result.image).shape == (72, 72, 3)
    assert np.abs(pixels(result.image) - pixels(sd([job])[0].image)).mean() > 1


def test_batch_size_auto_and_bad_values(sd: DiffusersRenderer) -> None:
    auto = DiffusersRenderer(sd.model, batch_size="auto")
    assert auto.auto_batch and auto._chunk_size(make_job(sd.model, seed=1)) == 4  # off CUDA
    assert backend_batch_size({"batch_size": "auto"}) == 128
    assert backend_batch_size({}) == 4
    with pytest.raises(RenderError) as info:
        DiffusersRenderer(sd.model, batch_size="big")
    assert str(info.value) == "batch_size must be a whole number of 1 or more, or 'auto', not 'big'"


def test_ltx_video_arch_renders_clips() -> None:
    spec = arch_spec("ltx-video")
    assert spec["pipeline"] == "LTXPipeline" and spec["num_frames"] % 8 == 1
    renderer = DiffusersVideoRenderer("random:ltx-video:tiny", num_frames=9, fps=8)
    job = RenderJob(renderer="diffusers-video", model=renderer.model, prompt="a sneaker",
                    negative_prompt="", seed=3, width=64, height=64, steps=2, guidance=1.0,
                    kind="video")
    result = renderer([job])[0]
    assert result.error is None and result.frames is not None
    assert len(result.frames) == 9 and result.frames[0].size == (64, 64)
    assert pixels(result.frames[0]).std() > 1


def test_pipeline_classes_match_the_real_models() -> None:
    pipe = build_pipeline("sdxl-turbo", tiny=True)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert pipe.vae_scale_factor == 8
    assert type(pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert pipe.scheduler.config.timestep_spacing == "trailing"
