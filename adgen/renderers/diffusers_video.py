"""Text-to-video (and image-to-video) with a diffusers pipeline.

The renderer loads any video pipeline diffusers can load from one Hub id or folder (AnimateDiff,
CogVideoX, LTX-Video, Wan, ...) once, in ``__init__``, and is then called on batches of jobs that
share a ``batch_key``. Each video depends only on its own job: every job gets its own CPU
``torch.Generator`` seeded with ``job.seed``. With an image-to-video pipeline, a job's product
image, laid out on a plain canvas, is the video's starting picture.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from adgen.archs import build_pipeline, parse_random_model
from adgen.errors import AssetError, RenderError
from adgen.jobs import Box, Rendered, RenderJob
from adgen.renderers.base import SourceReader, keyword_options
from adgen.renderers.diffusers_renderer import (
    PipelineRenderer,
    _from_pretrained,
    _layout_product,
    _Output,
    _pick_device,
    _pick_dtype,
    _problem,
    _Scene,
)

__all__ = ["DiffusersVideoRenderer"]

EXAMPLE_MODEL = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
"""The Hub id error messages suggest: a small text-to-video model in diffusers format."""

_CALL_PARAMETERS = ("prompt", "num_frames", "height", "width", "num_inference_steps",
                    "guidance_scale", "generator", "output_type")
"""What the renderer passes to every pipeline call (``negative_prompt`` only where taken)."""


@dataclass(frozen=True)
class _Video:
    """One job's decoded frames as floats in [0, 1] (F, H, W, 3) at render size."""

    frames: np.ndarray


class DiffusersVideoRenderer(PipelineRenderer):
    """Render :class:`RenderJob` batches as videos with a diffusers text-to-video pipeline.

    ``model`` is a Hugging Face Hub id (``"Wan-AI/Wan2.1-T2V-1.3B-Diffusers"``) or a folder saved
    with ``save_pretrained``; only safetensors weights are loaded. ``device`` and ``dtype`` are
    chosen as by the image renderer (CUDA + bfloat16, MPS + float16, else CPU + float32).
    Each video has ``num_frames`` frames (the job option ``num_frames`` wins) played at ``fps``
    (job option ``fps``); models may round the frame count to what they support (Wan, LTX and
    CogVideoX take 4k+1 or 8k+1). Jobs go through the pipeline ``batch_size`` at a time; keep 1
    for videos that are bit-identical whatever batch they came in. ``compile`` runs the
    transformer/UNet and the VAE decoder through ``torch.compile`` with static shapes.
    ``model`` may be ``random:ltx-video`` (or ``random:ltx-video:tiny``): the bundled LTX-Video
    architecture with random weights (:mod:`adgen.archs`), for benchmarks offline.

    The result's ``frames`` are RGB images of the job's size, ``image`` is the first one.
    A video with NaN pixels or only black frames is never returned: its job gets
    ``Rendered(error=...)``. With an image-to-video pipeline (``image`` in its call), jobs must
    have a product image; it is laid out as by the image renderer and passed as ``image``.
    ``sources`` is unused: clips are never extended (the planner refuses ``aspect: extend``).
    """

    name = "diffusers-video"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        variant: str | None = None,
        num_frames: int = 16,
        fps: int = 8,
        batch_size: int = 1,
        compile: bool = False,
        sources: SourceReader | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            known = {"model", *DiffusersVideoRenderer.options}
            raise RenderError(
                f"unknown diffusers-video renderer option(s) {', '.join(sorted(unknown))}; "
                f"the known options are: {', '.join(sorted(known))}")
        self._kwargs: dict[str, Any] = {
            k: v for k, v in locals().items() if k not in ("self", "unknown", "__class__")}
        _check_frames(num_frames, "num_frames")
        _check_fps(fps, "fps")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise RenderError(f"batch_size must be a whole number of 1 or more, not "
                              f"{batch_size!r}")
        self.model = _require_model(model)
        self.device = _pick_device(device)
        self.dtype = _pick_dtype(dtype, self.device)
        self.num_frames = num_frames
        self.fps = fps
        self.batch_size = batch_size
        self.compile = compile
        self._variant = variant
        self._pipe = self._load()
        self._call_parameters = inspect.signature(self._pipe.__call__).parameters
        self.image_to_video = "image" in self._call_parameters

    options = keyword_options(__init__)  # the renderer.options it takes

    def __repr__(self) -> str:
        return (f"DiffusersVideoRenderer(model={self.model!r}, device={self.device!r}, "
                f"dtype={self.dtype!r}, num_frames={self.num_frames}, fps={self.fps})")

    # -- rendering ---------------------------------------------------------------------------

    def _render_chunk(self, jobs: list[RenderJob]) -> list[Rendered]:
        """Render the jobs of one chunk in one pipeline call; a bad job fails alone."""
        # 1. lay out the products (image-to-video only); a bad product image fails its job only
        size = _render_size(jobs[0], self._pipe)
        results: dict[int, Rendered] = {}
        scenes: dict[int, _Scene] = {}
        if self.image_to_video:
            for i, job in enumerate(jobs):
                try:
                    scenes[i] = _layout_product(job, size, _spatial_step(self._pipe))
                except (AssetError, RenderError) as exc:
                    results[i] = Rendered(job.key, None, error=str(exc))
        # 2. generate the others
        pending = [i for i in range(len(jobs)) if i not in results]
        if pending:
            videos = self._call_pipe([jobs[i] for i in pending], size,
                                     [scenes[i] for i in pending if i in scenes])
            # 3. check each video and turn its frames into pictures of the job's size
            for i, video in zip(pending, videos, strict=True):
                results[i] = self._finish(jobs[i], video, scenes.get(i))
        return [results[i] for i in range(len(jobs))]

    def _call_pipe(self, jobs: list[RenderJob], size: tuple[int, int],
                   scenes: list[_Scene]) -> list[_Video]:
        """One pipeline call: a list of prompts and one CPU generator per video."""
        import torch

        job = jobs[0]
        width, height = size
        kwargs: dict[str, Any] = {
            "prompt": [j.prompt for j in jobs],
            "generator": [torch.Generator("cpu").manual_seed(j.seed) for j in jobs],
            "num_inference_steps": job.steps, "guidance_scale": job.guidance,
            "height": height, "width": width, "num_frames": self._frames_of(job),
            "output_type": "np",
        }
        if "negative_prompt" in self._call_parameters:
            kwargs["negative_prompt"] = [j.negative_prompt for j in jobs]
        if scenes:
            kwargs["image"] = [s.canvas for s in scenes]
        try:
            output = self._pipe(**kwargs)
        except ValueError as exc:  # diffusers' input checks: sizes, frame counts, ...
            raise RenderError(
                f"model {self.model!r} ({type(self._pipe).__name__}) refused to render "
                f"{width}x{height} px, {kwargs['num_frames']} frames in {job.steps} steps: "
                f"{exc} Change the creative's size or the num_frames option to what the "
                f"model supports") from exc
        videos = np.asarray(output.frames, dtype=np.float32)
        if videos.ndim != 5 or videos.shape[0] != len(jobs) or videos.shape[-1] != 3:
            raise RenderError(
                f"model {self.model!r} ({type(self._pipe).__name__}) returned frames of shape "
                f"{videos.shape} for {len(jobs)} video(s), not (videos, frames, height, width, 3); "
                f"adgen's video renderer supports the diffusers video pipelines whose "
                f"output.frames hold one video per prompt")
        return [_Video(videos[i]) for i in range(len(jobs))]

    def _finish(self, job: RenderJob, video: _Video, scene: _Scene | None) -> Rendered:
        """Check the video, convert its frames to RGB images and crop them to the job's size."""
        problem = _problem(_Output(video.frames, nsfw=False))
        if problem is not None:
            hint = ("try dtype bfloat16 or float32 (float16 can overflow in the VAE)"
                    if self.dtype == "float16" else "try another prompt, seed or model")
            return Rendered(job.key, None, error=f"unusable video (seed {job.seed}: {problem}): "
                                                 f"{hint}")
        height, width = video.frames.shape[1:3]
        left, top = (width - job.width) // 2, (height - job.height) // 2
        crop = (left, top, left + job.width, top + job.height)
        frames = [Image.fromarray(_to_uint8(frame), "RGB").crop(crop) for frame in video.frames]
        fps = float(self._fps_of(job))
        if scene is None:
            return Rendered(job.key, frames[0], frames=frames, fps=fps)
        box: Box = (scene.box[0] - left, scene.box[1] - top, scene.box[2] - left,
                    scene.box[3] - top)
        return Rendered(job.key, frames[0], subject_box=box, composite=True, frames=frames,
                        fps=fps)

    # -- jobs --------------------------------------------------------------------------------

    def _frames_of(self, job: RenderJob) -> int:
        frames = job.option("num_frames", self.num_frames)
        _check_frames(frames, "the job option num_frames")
        return int(frames)

    def _fps_of(self, job: RenderJob) -> float:
        fps = job.option("fps", self.fps)
        _check_fps(fps, "the job option fps")
        return float(fps)

    def _check_batch(self, jobs: list[RenderJob]) -> None:
        super()._check_batch(jobs)
        for job in jobs:
            has_product = job.product_image is not None
            if has_product and not self.image_to_video:
                raise RenderError(
                    f"model {self.model!r} ({type(self._pipe).__name__}) is a text-to-video "
                    f"model, so it cannot start a video from the product image "
                    f"{job.product_image!r}; remove the creative's product, or set model to an "
                    f"image-to-video model (e.g. 'Wan-AI/Wan2.1-I2V-14B-480P-Diffusers')")
            if self.image_to_video and not has_product:
                raise RenderError(
                    f"model {self.model!r} ({type(self._pipe).__name__}) is an image-to-video "
                    f"model: every job needs a product image to start from, and the job with "
                    f"prompt {job.prompt!r} has none; give the creative a product, or set model "
                    f"to a text-to-video model such as {EXAMPLE_MODEL!r}")

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> Any:
        """Load the pipeline once, check it renders videos from prompts, move it to the device."""
        import diffusers

        random = parse_random_model(self.model)
        if random is not None:
            pipe = build_pipeline(random[0], tiny=random[1], device=self.device, dtype=self.dtype)
        else:
            pipe = _from_pretrained(diffusers.DiffusionPipeline, self.model, self.dtype,
                                    self._variant, example=EXAMPLE_MODEL)
        takes = inspect.signature(pipe.__call__).parameters
        missing = [name for name in _CALL_PARAMETERS if name not in takes]
        if missing == ["num_frames"]:
            raise RenderError(
                f"model {self.model!r} loads as {type(pipe).__name__}, which renders still "
                f"images, not videos; use the 'diffusers' renderer for it, or set model to a "
                f"text-to-video model such as {EXAMPLE_MODEL!r}")
        if missing:
            raise RenderError(
                f"model {self.model!r} loads as {type(pipe).__name__}, whose call takes no "
                f"{', '.join(missing)}; the diffusers-video renderer needs a prompt-driven video "
                f"pipeline (AnimateDiff, CogVideoX, LTX-Video, Wan, ...) such as "
                f"{EXAMPLE_MODEL!r}")
        pipe.to(self.device)
        if self.compile:
            denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
            for module in (denoiser, getattr(pipe.vae, "decoder", None)):
                if module is not None:
                    module.compile(dynamic=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe


# -- options, sizes and frames ------------------------------------------------------------------


def _require_model(model: str | os.PathLike[str] | None) -> str:
    if model is None or not str(model).strip():
        raise RenderError(
            f"the diffusers-video renderer needs a model: set renderer.model in the campaign (or "
            f"pass DiffusersVideoRenderer(model=...)) to a Hugging Face Hub id such as "
            f"{EXAMPLE_MODEL!r} or to a folder saved with save_pretrained")
    return str(model)


def _check_frames(value: Any, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RenderError(f"{what} must be a whole number of 1 or more, not {value!r}")


def _check_fps(value: Any, what: str) -> None:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value <= 0):
        raise RenderError(f"{what} must be a number of frames per second above 0, not {value!r}")


def _spatial_step(pipe: Any) -> int:
    """The multiple of pixels the pipeline's sizes must be: VAE downscale times patch size."""
    factor = next((int(getattr(pipe, name)) for name in (
        "vae_scale_factor_spatial", "vae_spatial_compression_ratio", "vae_scale_factor")
        if isinstance(getattr(pipe, name, None), int)), 8)
    transformer = getattr(pipe, "transformer", None)
    patch = getattr(getattr(transformer, "config", None), "patch_size", None) or 1
    patch = patch[-1] if isinstance(patch, list | tuple) else patch
    return max(8, factor * int(patch))


def _render_size(job: RenderJob, pipe: Any) -> tuple[int, int]:
    """The job's size rounded up to what the pipeline accepts (cropped back afterwards)."""
    step = _spatial_step(pipe)
    return math.ceil(job.width / step) * step, math.ceil(job.height / step) * step


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] to bytes, rounded as diffusers' ``numpy_to_pil`` does."""
    return (frame * 255).round().astype(np.uint8)
