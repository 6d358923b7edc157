"""The diffusers video renderer on tiny random pipelines: offline, CPU, 32 px, 4-9 frames."""

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
from diffusers import AnimateDiffPipeline, LTXImageToVideoPipeline
from PIL import Image

from adgen.errors import RenderError
from adgen.jobs import Rendered, RenderJob
from adgen.renderers.diffusers_video import DiffusersVideoRenderer
from adgen.testing import (
    make_tiny_animatediff_pipeline,
    make_tiny_ltx_pipeline,
    make_tiny_sd_pipeline,
)

PROMPTS = ("a red bottle on a beach", "a blue bottle in the snow", "sunset")


def make_job(model: Path, prompt: str = PROMPTS[0], seed: int = 1, **fields: Any) -> RenderJob:
    values: dict[str, Any] = {"renderer": "diffusers-video", "model": str(model),
                              "prompt": prompt, "negative_prompt": "blurry", "seed": seed,
                              "width": 32, "height": 32, "steps": 2, "guidance": 7.5,
                              "kind": "video"}
    return RenderJob(**{**values, **fields})


def frames_of(result: Rendered) -> np.ndarray:
    """The result's frames as one (F, H, W, 3) uint8 array."""
    assert result.error is None and result.frames is not None
    assert all(frame.mode == "RGB" for frame in result.frames)
    return np.stack([np.asarray(frame) for frame in result.frames])


def plain_video(pipe: Any, job: RenderJob, num_frames: int, **extra: Any) -> np.ndarray:
    """What a user gets from diffusers directly for the same job (PIL frames, the default)."""
    frames = pipe(prompt=job.prompt, negative_prompt=job.negative_prompt, num_frames=num_frames,
                  generator=torch.Generator("cpu").manual_seed(job.seed),
                  num_inference_steps=job.steps, guidance_scale=job.guidance,
                  height=job.height, width=job.width, **extra).frames[0]
    return np.stack([np.asarray(frame) for frame in frames])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_animatediff_pipeline(tmp_path_factory.mktemp("models") / "tiny-animatediff")


@pytest.fixture(scope="module")
def renderer(tiny: Path) -> DiffusersVideoRenderer:
    return DiffusersVideoRenderer(str(tiny), num_frames=4, fps=8)


@pytest.fixture(scope="module")
def plain(tiny: Path) -> Any:
    pipe = AnimateDiffPipeline.from_pretrained(tiny)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_frames_match_a_plain_diffusers_call(renderer: DiffusersVideoRenderer, plain: Any,
                                             tiny: Path) -> None:
    jobs = [make_job(tiny, PROMPTS[0], seed=1),
            make_job(tiny, PROMPTS[1], seed=2, negative_prompt="")]
    results = renderer(jobs)
    for job, result in zip(jobs, results, strict=True):
        assert result.job_key == job.key and result.fps == 8.0 and not result.composite
        frames = frames_of(result)
        assert frames.shape == (4, 32, 32, 3)
        np.testing.assert_array_equal(frames, plain_video(plain, job, 4))
        assert result.image is not None
        np.testing.assert_array_equal(np.asarray(result.image), frames[0])
        assert not np.array_equal(frames[0], frames[-1])  # it moves
    assert not np.array_equal(frames_of(results[0]), frames_of(results[1]))


def test_job_options_set_frame_count_and_fps(renderer: DiffusersVideoRenderer, plain: Any,
                                             tiny: Path) -> None:
    job = make_job(tiny, seed=3, options=(("fps", 12.5), ("num_frames", 6)))
    result = renderer([job])[0]
    assert result.fps == 12.5 and result.frames is not None and len(result.frames) == 6
    np.testing.assert_array_equal(frames_of(result), plain_video(plain, job, 6))


def test_each_video_depends_only_on_its_own_job(renderer: DiffusersVideoRenderer,
                                                tiny: Path) -> None:
    jobs = [make_job(tiny, prompt, seed=10 + i) for i, prompt in enumerate(PROMPTS)]
    together = renderer(jobs)
    for job, result in zip(jobs, together, strict=True):
        np.testing.assert_array_equal(frames_of(result), frames_of(renderer([job])[0]))
    other_seed = renderer([make_job(tiny, PROMPTS[0], seed=99)])[0]
    assert not np.array_equal(frames_of(together[0]), frames_of(other_seed))


@pytest.fixture
def pipe_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Record every AnimateDiffPipeline call (prompts and generator seeds)."""
    calls: list[dict[str, Any]] = []
    original = AnimateDiffPipeline.__call__

    @functools.wraps(original)
    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append({"prompt": list(kwargs["prompt"]), "num_frames": kwargs["num_frames"],
                      "seeds": [g.initial_seed() for g in kwargs["generator"]]})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AnimateDiffPipeline, "__call__", spy)
    yield calls


def test_batches_go_through_the_pipeline_in_chunks(tiny: Path, renderer: DiffusersVideoRenderer,
                                                   pipe_calls: list[dict[str, Any]]) -> None:
    batched = DiffusersVideoRenderer(str(tiny), num_frames=4, batch_size=2)
    jobs = [make_job(tiny, PROMPTS[i], seed=20 + i) for i in range(3)]
    results = batched(jobs)
    assert pipe_calls == [{"prompt": list(PROMPTS[:2]), "num_frames": 4, "seeds": [20, 21]},
                          {"prompt": [PROMPTS[2]], "num_frames": 4, "seeds": [22]}]
    # batched kernels round differently from single ones: at most a level or two
    for together, alone in zip(results, renderer(jobs), strict=True):
        diff = np.abs(frames_of(together).astype(int) - frames_of(alone).astype(int))
        assert diff.max() <= 2 and (diff > 0).mean() < 0.05


def test_sizes_are_rounded_up_and_cropped_back(renderer: DiffusersVideoRenderer, plain: Any,
                                               tiny: Path) -> None:
    job = make_job(tiny, seed=4, width=36, height=28)
    frames = frames_of(renderer([job])[0])
    assert frames.shape == (4, 28, 36, 3)
    rounded = make_job(tiny, seed=4, width=40, height=32)  # the next multiples of 8
    np.testing.assert_array_equal(frames, plain_video(plain, rounded, 4)[:, 2:30, 2:38])


def test_nan_and_black_videos_are_reported_per_job(monkeypatch: pytest.MonkeyPatch, tiny: Path,
                                                   renderer: DiffusersVideoRenderer) -> None:
    original = AnimateDiffPipeline.__call__

    @functools.wraps(original)
    def spoil(self: Any, *args: Any, **kwargs: Any) -> Any:
        output = original(self, *args, **kwargs)
        seed = kwargs["generator"][0].initial_seed()
        if seed == 8:
            output.frames[0][2, 5, 5, 1] = np.nan  # one NaN pixel in one frame
        elif seed == 9:
            output.frames[0][:] = 0.0
        return output

    monkeypatch.setattr(AnimateDiffPipeline, "__call__", spoil)
    nan, black, good = renderer([make_job(tiny, seed=8), make_job(tiny, seed=9),
                                 make_job(tiny, seed=10)])
    assert nan.image is None and nan.frames is None
    assert nan.error == "unusable video (seed 8: NaN pixels): try another prompt, seed or model"
    assert black.error == "unusable video (seed 9: all black): try another prompt, seed or model"
    assert good.error is None and len(good.frames or []) == 4


def test_missing_model_folder(tmp_path: Path) -> None:
    with pytest.raises(RenderError) as info:
        DiffusersVideoRenderer(str(tmp_path / "no-such-model"))
    assert str(info.value) == (
        f"model folder {str(tmp_path / 'no-such-model')!r} does not exist; set model to a folder "
        f"saved with save_pretrained, or to a Hugging Face Hub id such as "
        f"'Wan-AI/Wan2.1-T2V-1.3B-Diffusers'")


def test_missing_model_and_unknown_options(tiny: Path) -> None:
    with pytest.raises(RenderError, match=r"needs a model: set renderer\.model in the campaign"):
        DiffusersVideoRenderer()
    with pytest.raises(RenderError) as info:
        DiffusersVideoRenderer(str(tiny), frames=8, steps=3)
    assert str(info.value) == (
        "unknown diffusers-video renderer option(s) frames, steps; the known options are: "
        "batch_size, compile, device, dtype, fps, model, num_frames, variant")
    with pytest.raises(RenderError) as info:
        DiffusersVideoRenderer(str(tiny), num_frames=0)
    assert str(info.value) == "num_frames must be a whole number of 1 or more, not 0"
    with pytest.raises(RenderError) as info:
        DiffusersVideoRenderer(str(tiny), fps=-1)
    assert str(info.value) == "fps must be a number of frames per second above 0, not -1"


def test_bad_job_options_are_reported(renderer: DiffusersVideoRenderer, tiny: Path) -> None:
    with pytest.raises(RenderError) as info:
        renderer([make_job(tiny, options=(("num_frames", "8"),))])
    assert str(info.value) == ("the job option num_frames must be a whole number of 1 or more, "
                               "not '8'")


def test_pickled_weights_are_refused(tmp_path: Path, plain: Any) -> None:
    plain.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    with pytest.raises(RenderError) as info:
        DiffusersVideoRenderer(str(tmp_path / "pickled"))
    assert str(info.value).startswith(f"model folder {str(tmp_path / 'pickled')!r} holds only "
                                      f"pickled weights in ")
    assert "adgen loads safetensors only" in str(info.value)


def test_an_image_model_is_refused(tmp_path: Path) -> None:
    still = make_tiny_sd_pipeline(tmp_path / "tiny-sd")
    with pytest.raises(RenderError) as info:
        DiffusersVideoRenderer(str(still))
    assert str(info.value) == (
        f"model {str(still)!r} loads as StableDiffusionPipeline, which renders still images, not "
        f"videos; use the 'diffusers' renderer for it, or set model to a text-to-video model "
        f"such as 'Wan-AI/Wan2.1-T2V-1.3B-Diffusers'")


def test_a_text_to_video_model_refuses_product_jobs(renderer: DiffusersVideoRenderer, tiny: Path,
                                                    tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"is a text-to-video model, so it cannot start a video "
                                          r"from the product image"):
        renderer([make_job(tiny, product_image=str(tmp_path / "bottle.png"))])


def test_renderer_pickles_as_its_settings(renderer: DiffusersVideoRenderer, tiny: Path) -> None:
    data = pickle.dumps(renderer)
    assert len(data) < 2000  # settings, not weights: the copy loads its pipeline itself
    copy = pickle.loads(data)
    assert isinstance(copy, DiffusersVideoRenderer)
    assert (copy.num_frames, copy.fps, copy.batch_size) == (4, 8, 1)
    job = make_job(tiny, seed=77)
    np.testing.assert_array_equal(frames_of(copy([job])[0]), frames_of(renderer([job])[0]))


# -- image-to-video ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A textured 32x20 opaque product in a transparent margin."""
    rng = np.random.default_rng(7)
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[5:25, 4:36, :3] = rng.integers(0, 256, (20, 32, 3))
    rgba[5:25, 4:36, 3] = 255
    path = tmp_path_factory.mktemp("assets") / "product.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path


@pytest.fixture(scope="module")
def tiny_i2v(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_ltx_pipeline(tmp_path_factory.mktemp("models") / "tiny-ltx-i2v",
                                  image_to_video=True)


def test_image_to_video_starts_from_the_product(tiny_i2v: Path, product: Path) -> None:
    renderer = DiffusersVideoRenderer(str(tiny_i2v), num_frames=5, fps=24)
    assert renderer.image_to_video
    job = make_job(tiny_i2v, seed=5, guidance=3.0, width=64, height=32,
                   product_image=str(product), options=(("product_scale", 0.5),))
    result = renderer([job])[0]
    frames = frames_of(result)
    assert frames.shape == (5, 32, 64, 3) and result.fps == 24.0 and result.composite
    # the product (trimmed to 32x20) fits 32x16 as 26x16: centred across, 60% down the rest
    assert result.subject_box == (19, 10, 45, 26)
    canvas = Image.new("RGB", (64, 32), (127, 127, 127))
    visible = Image.open(product).convert("RGBA").crop((4, 5, 36, 25))
    fitted = visible.resize((26, 16), Image.Resampling.LANCZOS)
    canvas.paste(fitted, (19, 10), mask=fitted.getchannel("A"))
    pipe = LTXImageToVideoPipeline.from_pretrained(tiny_i2v)
    pipe.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(frames, plain_video(pipe, job, 5, image=canvas))


def test_image_to_video_needs_a_product(tiny_i2v: Path, product: Path, tmp_path: Path) -> None:
    renderer = DiffusersVideoRenderer(str(tiny_i2v), num_frames=5)
    with pytest.raises(RenderError, match="is an image-to-video model: every job needs a product "
                                          "image to start from"):
        renderer([make_job(tiny_i2v)])
    with pytest.raises(RenderError) as info:  # LTX takes multiples of 32 px only
        renderer([make_job(tiny_i2v, width=40, product_image=str(product))])
    assert str(info.value).startswith(
        f"model {str(tiny_i2v)!r} (LTXImageToVideoPipeline) refused to render 40x32 px, 5 "
        f"frames in 2 steps: `height` and `width` have to be divisible by 32")
    assert str(info.value).endswith("Change the creative's size or the num_frames option to "
                                    "what the model supports")
    missing = tmp_path / "missing.png"
    bad, good = renderer([make_job(tiny_i2v, product_image=str(missing)),
                          make_job(tiny_i2v, product_image=str(product))])
    assert bad.frames is None and bad.error is not None
    assert bad.error.startswith(f"product image {str(missing)!r}")
    assert good.error is None and len(good.frames or []) == 5
