"""Text-to-image and product-preserving inpainting with a diffusers pipeline.

The renderer loads its pipeline once, in ``__init__``, and is then called on batches of jobs that
share a ``batch_key``. Each image depends only on its own job: every job gets its own CPU
``torch.Generator`` seeded with ``job.seed``. Jobs with a ``product_image`` are inpainted around
the product, whose pixels are pasted back unchanged over the result.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adgen.archs import arch_spec, build_component, build_pipeline, parse_random_model
from adgen.errors import AssetError, RenderError
from adgen.jobs import Box, Rendered, RenderJob
from adgen.post.logo import load_brand_image
from adgen.renderers.base import SourceReader, keyword_options, read_source, source_offset

__all__ = ["DiffusersRenderer"]

ATTENTION = ("sdpa", "eager", "xformers")
"""Attention implementations: PyTorch's fused SDPA (default), plain math, or xformers."""

AUTO_BATCH_MAX = 32
"""The largest chunk ``batch_size="auto"`` picks (larger batches no longer speed a GPU up)."""

PRODUCT_SCALE = 0.6
"""Default share of the canvas width and height the product may fill (``product_scale``)."""

PRODUCT_ANCHOR = (0.5, 0.6)
"""Default placement of the product in the free space, as x, y shares (``product_anchor``)."""

_PICKLED = frozenset({".bin", ".ckpt", ".pt", ".pth", ".pkl"})
_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
_TILING_PIXELS = 2048 * 2048
_SLICING_PIXELS = 2 * 1024 * 1024
_DECODE_BYTES_PER_PIXEL = 1536  # VAE decode working memory per output pixel in 16-bit (estimate)
_AUTO_MEMORY_SHARE = 0.8  # share of the free GPU memory batch_size="auto" plans to use
_BACKGROUND = (127, 127, 127)


@dataclass(frozen=True)
class _Scene:
    """The inpainting inputs of one product job at render size, and where the product goes."""

    canvas: Image.Image
    mask: Image.Image
    product: Image.Image
    box: Box
    subject: Box | None = None
    """Where the subject is, when it is not ``box`` (extend jobs: the source's subject)."""


@dataclass(frozen=True)
class _Output:
    """One decoded image as floats in [0, 1] (H, W, 3), and whether a safety checker blanked it."""

    pixels: np.ndarray
    nsfw: bool


@dataclass
class _Raw:
    """One pipeline call's images on their way to the host: bytes (N, H, W, 3), whether each is
    finite and its brightest value, copied without blocking; ``done`` is set when they are.
    ``device``: the same bytes where the pipeline made them (for ``Rendered.pixels``)."""

    pixels: Any
    finite: Any
    peak: Any
    nsfw: list[bool]
    done: Any = None
    device: Any = None

    def images(self) -> list[tuple[np.ndarray, str | None, Any]]:
        """Wait for the copy; each image's pixels, why it is unusable (None: usable) and its
        bytes on the device (HxWx3)."""
        if self.done is not None:
            self.done.synchronize()
        pixels, finite, peak = self.pixels.numpy(), self.finite.numpy(), self.peak.numpy()
        device = self.device if self.device is not None else self.pixels
        return [(pixels[i], _problem_text(self.nsfw[i], not finite[i], float(peak[i]) * 255 < 0.5),
                 device[i]) for i in range(len(pixels))]


@dataclass
class _Attempt:
    """A chunk on its way through the GPU: its jobs, product scenes, the results known so far,
    and the pending jobs' first pipeline calls."""

    pipe: Any
    jobs: list[RenderJob]
    size: int
    scenes: dict[int, _Scene]
    results: dict[int, Rendered]
    pending: list[int]
    raws: list[_Raw] = field(default_factory=list)


def _rebuild(cls: type[PipelineRenderer], kwargs: dict[str, Any]) -> PipelineRenderer:
    return cls(**kwargs)


class PipelineRenderer:
    """What the diffusers renderers share: they pickle as their constructor arguments (a copy
    loads its own pipeline, e.g. inside a Ray actor) and render a batch chunk by chunk."""

    batch_size: int
    _kwargs: dict[str, Any]

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the constructor arguments: unpickling loads the pipeline again."""
        return (_rebuild, (type(self), dict(self._kwargs)))

    def __call__(self, jobs: Sequence[RenderJob]) -> list[Rendered]:
        """Render ``jobs`` (sharing one ``batch_key``); one :class:`Rendered` per job, in order."""
        # 1. check the batch
        jobs = list(jobs)
        self._check_batch(jobs)
        results: list[Rendered] = []
        # 2. render it chunk by chunk
        for start in range(0, len(jobs), self.batch_size):
            results.extend(self._render_chunk(jobs[start:start + self.batch_size]))
        return results

    def _check_batch(self, jobs: list[RenderJob]) -> None:
        if len({job.batch_key for job in jobs}) > 1:
            raise ValueError("a renderer batch must share one batch_key; group jobs by batch_key")
        for job in jobs:
            if job.width < 8 or job.height < 8 or job.steps < 1:
                raise RenderError(f"cannot render {job.width}x{job.height} px in {job.steps} "
                                  f"steps: sizes must be 8 px or more and steps 1 or more")

    def _render_chunk(self, jobs: list[RenderJob]) -> list[Rendered]:
        raise NotImplementedError


class DiffusersRenderer(PipelineRenderer):
    """Render :class:`RenderJob` batches with a diffusers text-to-image pipeline.

    ``model`` is a Hugging Face Hub id (``"stabilityai/sd-turbo"``) or a folder saved with
    ``save_pretrained``; only safetensors weights are loaded. ``device`` and ``dtype`` default to
    CUDA with bfloat16 (float16 where bfloat16 is unsupported), then MPS with float16, then CPU
    with float32. Jobs go through the pipeline ``batch_size`` at a time, except when
    ``batch_invariant`` (default: on CPU only): then each job is its own pipeline call, so its
    image is bit-identical whatever batch it came in (batched kernels round differently).

    ``model`` may also be ``random:sd-turbo``, ``random:sdxl-turbo`` (or ``random:NAME:tiny``):
    a bundled architecture with random weights (:mod:`adgen.archs`), for benchmarks offline.

    Speed options, each switchable: ``batch_size="auto"`` (the chunk that fits in free GPU
    memory, measured on one image, at most :data:`AUTO_BATCH_MAX`), ``attention`` (``"sdpa"``:
    flash/memory-efficient kernels; ``"eager"``, ``"xformers"``), ``fuse_qkv`` (one matmul for
    q, k and v), ``channels_last``, ``compile`` (``torch.compile`` of the UNet/transformer and
    the VAE decoder with static shapes: chunks are padded to ``batch_size``, so nothing
    recompiles), ``cuda_graphs`` (``compile`` replayed as CUDA graphs),
    ``overlap`` (default on CUDA: a chunk's pictures are copied off the GPU, checked and cropped
    on a CPU thread while the next chunk renders), ``vae_slicing`` (auto: on when a call's decode
    would not fit), ``vae_tiling`` (auto: on above 2048x2048), ``tiny_vae`` (an
    ``AutoencoderTiny`` id or folder, or ``random:taesd``, for drafts) and ``cpu_offload`` (model
    CPU offload for small cards; needs ``accelerate``).

    An all-black or NaN image is never returned: its job gets ``Rendered(error=...)``, or, with
    ``retry_blank=N``, is rendered again with seeds ``seed+1`` .. ``seed+N`` first.
    Product jobs use the inpainting pipeline of the same components, or of ``inpaint_model``.
    """

    name = "diffusers"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        variant: str | None = None,
        batch_size: int | str = 4,
        batch_invariant: bool | None = None,
        attention: str = "sdpa",
        fuse_qkv: bool = False,
        channels_last: bool = False,
        compile: bool = False,
        cuda_graphs: bool = False,
        overlap: bool | None = None,
        vae_slicing: bool | None = None,
        vae_tiling: bool | None = None,
        tiny_vae: str | None = None,
        cpu_offload: bool = False,
        retry_blank: int = 0,
        inpaint_model: str | None = None,
        sources: SourceReader | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            known = sorted({"model", *DiffusersRenderer.options})
            raise RenderError(
                f"unknown diffusers renderer option(s) {', '.join(sorted(unknown))}; "
                f"the known options are: {', '.join(known)}")
        self._kwargs: dict[str, Any] = {
            k: v for k, v in locals().items() if k not in ("self", "unknown", "__class__")}
        self.sources = sources
        _check_options(batch_size, retry_blank, attention)
        self.model = _require_model(model)
        self.device = _pick_device(device)
        self.dtype = _pick_dtype(dtype, self.device)
        self.batch_size: int = 4 if batch_size == "auto" else int(batch_size)
        self.auto_batch = batch_size == "auto"
        self.batch_invariant = self.device == "cpu" if batch_invariant is None else batch_invariant
        self.overlap = self.device.startswith("cuda") if overlap is None else overlap
        self.static_shapes = compile or cuda_graphs
        self._auto_sizes: dict[tuple[Any, ...], int] = {}
        self.retry_blank = retry_blank
        self.vae_slicing = vae_slicing
        self.vae_tiling = vae_tiling
        self.cpu_offload = cpu_offload
        if cpu_offload and self.device == "cpu":
            raise RenderError("cpu_offload moves models between the CPU and a GPU; it needs "
                              "device cuda (or leave cpu_offload off on the CPU)")
        self._speed: dict[str, Any] = {
            "attention": attention, "fuse_qkv": fuse_qkv, "channels_last": channels_last,
            "compile": compile or cuda_graphs, "cuda_graphs": cuda_graphs, "tiny_vae": tiny_vae}
        self._variant = variant
        self._t2i = self._load("text2image", self.model)
        self._inpaint: Any = self._load("inpainting", inpaint_model) if inpaint_model else None
        self._offloaded: Any = None

    options = keyword_options(__init__)  # the renderer.options it takes

    def __repr__(self) -> str:
        return (f"DiffusersRenderer(model={self.model!r}, device={self.device!r}, "
                f"dtype={self.dtype!r}, batch_size={self.batch_size})")

    # -- rendering ---------------------------------------------------------------------------

    def _check_batch(self, jobs: list[RenderJob]) -> None:
        super()._check_batch(jobs)
        for job in jobs:
            if job.kind != "image":
                raise RenderError(f"the diffusers renderer renders images, not {job.kind!r}; "
                                  f"use a video renderer for this creative")

    def __call__(self, jobs: Sequence[RenderJob]) -> list[Rendered]:
        """Render ``jobs`` (sharing one ``batch_key``) chunk by chunk; with ``overlap``, each
        chunk's pictures are finished on a CPU thread while the next chunk renders."""
        # 1. check the batch and cut it into chunks (sized from free memory with "auto")
        jobs = list(jobs)
        self._check_batch(jobs)
        if not jobs:
            return []
        size = self._chunk_size(jobs[0])
        chunks = [jobs[s:s + size] for s in range(0, len(jobs), size)]
        if not self.overlap or len(chunks) == 1:
            return [r for chunk in chunks for r in self._render_chunk(chunk, size)]
        # 2. start chunk k+1 on the GPU before finishing chunk k
        results: list[Rendered] = []
        with ThreadPoolExecutor(1, thread_name_prefix="adgen-finish") as pool:
            previous: tuple[_Attempt, Future[None]] | None = None
            for chunk in chunks:
                attempt = self._start(chunk, size)
                current = (attempt, pool.submit(self._collect, attempt))
                if previous is not None:
                    results.extend(self._complete(*previous))
                previous = current
            assert previous is not None
            results.extend(self._complete(*previous))
        return results

    def _render_chunk(self, jobs: list[RenderJob], size: int | None = None) -> list[Rendered]:
        """Render jobs of one chunk, retrying blank ones with the next seeds."""
        attempt = self._start(jobs, size or len(jobs))
        collected: Future[None] = Future()
        self._collect(attempt)
        collected.set_result(None)
        return self._complete(attempt, collected)

    def _start(self, jobs: list[RenderJob], size: int) -> _Attempt:
        """Lay out the products (a bad product image fails its job only) and launch the
        first pipeline call(s) of the chunk's other jobs."""
        inpaint = jobs[0].product_image is not None or jobs[0].source_key is not None
        pipe = self._inpainting_pipe() if inpaint else self._t2i_pipe()
        attempt = _Attempt(pipe, jobs, size, {}, {}, [])
        if inpaint:  # products, or the source render of extend jobs
            for i, job in enumerate(jobs):
                try:
                    shape = _render_size(job, pipe)
                    attempt.scenes[i] = (
                        _extend_scene(job, shape, pipe.vae_scale_factor, self.sources)
                        if job.source_key is not None
                        else _layout_product(job, shape, pipe.vae_scale_factor))
                except (RenderError, AssetError, OSError) as exc:
                    attempt.results[i] = Rendered(job.key, None, error=str(exc))
        attempt.pending = [i for i in range(len(jobs)) if i not in attempt.results]
        if attempt.pending:
            attempt.raws = self._generate(pipe, [jobs[i] for i in attempt.pending],
                                          [jobs[i].seed for i in attempt.pending],
                                          [attempt.scenes.get(i) for i in attempt.pending], size)
        return attempt

    def _collect(self, attempt: _Attempt) -> None:
        """Wait for the first call's pictures and finish the usable ones (CPU work only)."""
        images = [image for raw in attempt.raws for image in raw.images()]
        attempt.raws = []
        still = []
        for i, (pixels, problem, device) in zip(attempt.pending, images, strict=True):
            if problem is None:
                attempt.results[i] = self._finish(attempt.jobs[i], pixels, attempt.scenes.get(i),
                                                  device)
            else:
                attempt.results[i] = Rendered(attempt.jobs[i].key, None,
                                              error=f"seed {attempt.jobs[i].seed}: {problem}")
                still.append(i)
        attempt.pending = still

    def _complete(self, attempt: _Attempt, collected: Future[None]) -> list[Rendered]:
        """Retry the unusable pictures with the next seeds; report what never worked."""
        collected.result()
        jobs, pending = attempt.jobs, attempt.pending
        problems = {i: [str(attempt.results[i].error)] for i in pending}
        for offset in range(1, self.retry_blank + 1):
            if not pending:
                break
            raws = self._generate(attempt.pipe, [jobs[i] for i in pending],
                                  [jobs[i].seed + offset for i in pending],
                                  [attempt.scenes.get(i) for i in pending], attempt.size)
            images = [image for raw in raws for image in raw.images()]
            still = []
            for i, (pixels, problem, device) in zip(pending, images, strict=True):
                if problem is None:
                    attempt.results[i] = self._finish(jobs[i], pixels, attempt.scenes.get(i),
                                                      device)
                else:
                    problems[i].append(f"seed {jobs[i].seed + offset}: {problem}")
                    still.append(i)
            pending = still
        for i in pending:
            attempt.results[i] = Rendered(jobs[i].key, None,
                                          error=_blank_message(problems[i], self))
        return [attempt.results[i] for i in range(len(jobs))]

    def _generate(self, pipe: Any, jobs: list[RenderJob], seeds: list[int],
                  scenes: list[_Scene | None], size: int) -> list[_Raw]:
        """Run the pipeline on ``jobs`` (one call, or one per job when batch invariant)."""
        everyone = list(range(len(jobs)))
        if self.batch_invariant:
            return [self._call_pipe(pipe, [jobs[i]], [seeds[i]], [scenes[i]], 1)
                    for i in everyone]
        return [self._call_pipe(pipe, jobs, seeds, scenes, size)]

    def _call_pipe(self, pipe: Any, jobs: list[RenderJob], seeds: list[int],
                   scenes: list[_Scene | None], size: int) -> _Raw:
        """One pipeline call: a list of prompts and one CPU generator per image. With static
        shapes the call is padded to ``size`` images (copies of the last job, dropped after)."""
        import torch

        count = len(jobs)
        if self.static_shapes and count < size:
            extra = size - count
            jobs, seeds, scenes = ([*jobs, *[jobs[-1]] * extra], [*seeds, *[seeds[-1]] * extra],
                                   [*scenes, *[scenes[-1]] * extra])
        job = jobs[0]
        width, height = _render_size(job, pipe)
        self._configure_vae(pipe, len(jobs), width, height)
        kwargs: dict[str, Any] = {
            "prompt": [j.prompt for j in jobs],
            "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds],
            "num_inference_steps": job.steps, "guidance_scale": job.guidance,
            "height": height, "width": width, "output_type": "pt",
        }
        if "negative_prompt" in inspect.signature(pipe.__call__).parameters:
            kwargs["negative_prompt"] = [j.negative_prompt for j in jobs]
        if scenes[0] is not None:
            kwargs["image"] = [s.canvas for s in scenes if s is not None]
            kwargs["mask_image"] = [s.mask for s in scenes if s is not None]
            kwargs["strength"] = 1.0
        output = pipe(**kwargs)
        nsfw = getattr(output, "nsfw_content_detected", None) or [False] * len(jobs)
        return _to_host(output.images[:count], [bool(flag) for flag in nsfw[:count]])

    def _finish(self, job: RenderJob, pixels: np.ndarray, scene: _Scene | None,
                device: Any = None) -> Rendered:
        """Crop to the job's size and paste the product back, pixel for pixel. Without a
        product, the picture stays on the device too (``device``: its HxWx3 bytes there)."""
        image = Image.fromarray(pixels, "RGB")
        left = (image.width - job.width) // 2
        top = (image.height - job.height) // 2
        if scene is not None:
            image.paste(scene.product, scene.box[:2], mask=scene.product.getchannel("A"))
        image = image.crop((left, top, left + job.width, top + job.height))
        if scene is None:
            kept = None if device is None else device[top:top + job.height,
                                                      left:left + job.width].permute(2, 0, 1)
            return Rendered(job.key, image, pixels=kept)
        subject = scene.subject or scene.box
        box = (subject[0] - left, subject[1] - top, subject[2] - left, subject[3] - top)
        return Rendered(job.key, image, subject_box=box, composite=job.product_image is not None)

    def _chunk_size(self, job: RenderJob) -> int:
        """``batch_size``, or with "auto" the chunk that fits in free GPU memory (probed once
        per size with one image; 4 off CUDA)."""
        if not self.auto_batch:
            return self.batch_size
        if not self.device.startswith("cuda"):
            return self.batch_size
        key = (job.width, job.height, job.steps, job.guidance, job.product_image is not None)
        if key not in self._auto_sizes:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            self._render_chunk([job], 1)
            torch.cuda.synchronize(self.device)
            per_image = max(1, torch.cuda.max_memory_allocated(self.device) - before)
            free = _free_memory(self.device)
            self._auto_sizes[key] = max(1, min(AUTO_BATCH_MAX,
                                               int(free * _AUTO_MEMORY_SHARE // per_image)))
        return self._auto_sizes[key]

    def _configure_vae(self, pipe: Any, count: int, width: int, height: int) -> None:
        """Slice the VAE decode for big batches and tile it for huge images (or as asked)."""
        vae = pipe.vae
        slicing = self.vae_slicing
        if slicing is None and self.device.startswith("cuda"):
            need = count * width * height * _DECODE_BYTES_PER_PIXEL
            slicing = count > 1 and need * (2 if self.dtype == "float32" else 1) > _free_memory(
                self.device)
        elif slicing is None:
            slicing = count > 1 and count * width * height > _SLICING_PIXELS
        tiling = self.vae_tiling if self.vae_tiling is not None else width * height > _TILING_PIXELS
        if hasattr(vae, "use_slicing"):
            vae.use_slicing = slicing
        if hasattr(vae, "use_tiling"):
            vae.use_tiling = tiling

    # -- loading -----------------------------------------------------------------------------

    def _t2i_pipe(self) -> Any:
        unet = getattr(self._t2i, "unet", None)
        if unet is not None and unet.config.in_channels == 9:
            raise RenderError(
                f"model {self.model!r} is an inpainting model (its UNet takes "
                f"{unet.config.in_channels} input channels), so it cannot render jobs without a "
                f"product image; set model to a text-to-image model and pass it as "
                f"inpaint_model instead")
        return self._with_offload(self._t2i)

    def _inpainting_pipe(self) -> Any:
        if self._inpaint is None:
            from diffusers import AutoPipelineForInpainting

            try:
                self._inpaint = AutoPipelineForInpainting.from_pipe(self._t2i)
            except ValueError as exc:
                raise RenderError(
                    f"model {self.model!r} has no inpainting pipeline for product images "
                    f"({exc}); set inpaint_model to an inpainting model") from exc
            self._inpaint.set_progress_bar_config(disable=True)
        return self._with_offload(self._inpaint)

    def _with_offload(self, pipe: Any) -> Any:
        """With ``cpu_offload``, hook model offloading onto the pipeline about to run."""
        if self.cpu_offload and self._offloaded is not pipe:
            try:
                pipe.enable_model_cpu_offload(device=self.device)
            except (ImportError, RuntimeError, ValueError) as exc:
                raise RenderError(f"cpu_offload failed ({exc}); install accelerate "
                                  f"(pip install accelerate) or set cpu_offload to false") from exc
            self._offloaded = pipe
        return pipe

    def _load(self, task: str, model: str) -> Any:
        """Load a pipeline for ``task`` once and apply the speed options."""
        import diffusers

        cls = {"text2image": diffusers.AutoPipelineForText2Image,
               "inpainting": diffusers.AutoPipelineForInpainting}[task]
        build_on = "cpu" if self.cpu_offload else self.device
        random = parse_random_model(model)
        if random is not None and arch_spec(random[0]).get("video"):
            raise RenderError(f"model {model!r} is a video architecture: render it with the "
                              f"diffusers-video renderer, or use random:sd-turbo or "
                              f"random:sdxl-turbo here")
        if random is not None:
            pipe = build_pipeline(random[0], tiny=random[1], device=build_on, dtype=self.dtype)
            if task == "inpainting":
                pipe = cls.from_pipe(pipe)
        else:
            pipe = _from_pretrained(cls, model, self.dtype, self._variant)
        tiny_vae = self._speed["tiny_vae"]
        random_vae = parse_random_model(tiny_vae) if tiny_vae else None
        if random_vae is not None:
            pipe.vae = build_component(random_vae[0], "vae", tiny=random_vae[1], device=build_on,
                                       dtype=self.dtype)
        elif tiny_vae:
            pipe.vae = _from_pretrained(diffusers.AutoencoderTiny, tiny_vae, self.dtype, None)
        _apply_speed_options(pipe, self._speed)
        if not self.cpu_offload:
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe


# -- options, devices, loading ------------------------------------------------------------------


def _check_options(batch_size: int | str, retry_blank: int, attention: str) -> None:
    if batch_size != "auto" and (not isinstance(batch_size, int) or isinstance(batch_size, bool)
                                 or batch_size < 1):
        raise RenderError(f"batch_size must be a whole number of 1 or more, or 'auto', not "
                          f"{batch_size!r}")
    if not isinstance(retry_blank, int) or retry_blank < 0:
        raise RenderError(f"retry_blank must be a whole number of 0 or more, not {retry_blank!r}")
    if attention not in ATTENTION:
        raise RenderError(f"attention must be one of {', '.join(ATTENTION)}, not {attention!r}")


def _require_model(model: str | os.PathLike[str] | None) -> str:
    if model is None or not str(model).strip():
        raise RenderError(
            "the diffusers renderer needs a model: set renderer.model in the campaign (or pass "
            "DiffusersRenderer(model=...)) to a Hugging Face Hub id such as "
            "'stabilityai/sd-turbo' or to a folder saved with save_pretrained")
    return str(model)


def _pick_device(device: str | None) -> str:
    """The asked device, checked; else CUDA, then MPS, then the CPU."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    present = {"cuda": torch.cuda.is_available(), "mps": mps is not None and mps.is_available(),
               "cpu": True}
    if device is None:
        return next(kind for kind, usable in present.items() if usable)
    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise RenderError(f"device {device!r} is not a torch device; use cpu, cuda, cuda:N "
                          f"or mps") from exc
    if not present.get(kind, True):
        raise RenderError(f"device {device!r} was asked for but torch cannot use it here; "
                          f"leave device unset to pick the best one present, or use cpu")
    return device


def _pick_dtype(dtype: str | None, device: str) -> str:
    import torch

    if dtype is None:
        if device.startswith("cuda"):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float16" if device.startswith("mps") else "float32"
    if str(dtype).lower() not in _DTYPES:
        raise RenderError(f"dtype {dtype!r} is not supported; use one of "
                          f"{', '.join(sorted(set(_DTYPES.values())))}")
    return _DTYPES[str(dtype).lower()]


def _looks_like_path(model: str) -> bool:
    """A Hub id is ``name`` or ``owner/name``; anything else is meant as a local path."""
    return (model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1
            or Path(model).expanduser().exists())


def _check_local(model: str, example: str = "stabilityai/sd-turbo") -> None:
    """Refuse missing folders and weights that exist only as pickles (they can run code).

    ``example`` is the Hub id the message suggests (a model of the caller's kind).
    """
    path = Path(model).expanduser()
    if path.is_file():
        kind = ("a pickled checkpoint" if path.suffix in _PICKLED else
                "a single-file checkpoint" if path.suffix == ".safetensors" else "a file")
        raise RenderError(
            f"model {model!r} is {kind}, not a diffusers model folder; adgen loads folders of "
            f"safetensors weights saved with save_pretrained: convert it (diffusers' "
            f"from_single_file, then save_pretrained(folder, safe_serialization=True)) and set "
            f"model to that folder")
    if not path.is_dir():
        if _looks_like_path(model):
            raise RenderError(f"model folder {model!r} does not exist; set model to a folder "
                              f"saved with save_pretrained, or to a Hugging Face Hub id such as "
                              f"{example!r}")
        return
    for folder in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLED)
        if pickled and not any(folder.glob("*.safetensors")):
            raise RenderError(
                f"model folder {model!r} holds only pickled weights in {folder} "
                f"({', '.join(pickled)}); adgen loads safetensors only, because pickled weights "
                f"can run code when loaded. Convert it to safetensors: load it once where you "
                f"trust it and save it with save_pretrained(new_folder, safe_serialization=True), "
                f"then set model to new_folder")


def _from_pretrained(cls: Any, model: str, dtype: str, variant: str | None, *,
                     example: str = "stabilityai/sd-turbo") -> Any:
    """``cls.from_pretrained`` of safetensors weights, with load failures as RenderError."""
    import torch

    _check_local(model, example)
    local = Path(model).expanduser()
    source = str(local) if local.is_dir() else model
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            return cls.from_pretrained(source, torch_dtype=getattr(torch, dtype), variant=variant,
                                       use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        raise RenderError(_load_failure(model, variant, exc)) from exc


def _load_failure(model: str, variant: str | None, exc: Exception) -> str:
    reason = " ".join(str(exc).split())[:400]
    local = Path(model).expanduser()
    if local.is_dir():
        return (f"cannot load the diffusers model in folder {model!r}: {reason}. The folder "
                f"should be saved with save_pretrained (model_index.json and safetensors weights"
                f"{f' of variant {variant!r}' if variant else ''})")
    from huggingface_hub import constants

    where = ("HF_HUB_OFFLINE is set, so nothing is downloaded: unset it, or run "
             f"`hf download {model}` where you are online" if constants.HF_HUB_OFFLINE else
             "check the id's spelling, your network and, for gated models, `hf auth login`")
    return (f"cannot load diffusers model {model!r}: there is no local folder {model!r} and "
            f"the Hugging Face Hub id {model!r} could not be loaded from the cache "
            f"({constants.HF_HUB_CACHE}) or the Hub: {where}; or set model to a folder saved "
            f"with save_pretrained. ({reason})")


def _apply_speed_options(pipe: Any, speed: dict[str, Any]) -> None:
    import torch

    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if speed["attention"] == "eager":
        from diffusers.models.attention_processor import AttnProcessor

        for module in (denoiser, pipe.vae):
            if module is not None and hasattr(module, "set_attn_processor"):
                module.set_attn_processor(AttnProcessor())
    elif speed["attention"] == "xformers":
        try:
            pipe.enable_xformers_memory_efficient_attention()
        except (ImportError, ModuleNotFoundError, ValueError) as exc:
            raise RenderError(f"attention 'xformers' is not available ({exc}); install xformers "
                              f"or use attention 'sdpa'") from exc
    if speed["fuse_qkv"]:
        if not hasattr(pipe, "fuse_qkv_projections"):
            raise RenderError(f"fuse_qkv is not available for {type(pipe).__name__}; set "
                              f"fuse_qkv to false")
        pipe.fuse_qkv_projections()
    if speed["channels_last"]:
        for module in (denoiser, pipe.vae):
            if module is not None:
                module.to(memory_format=torch.channels_last)
    if speed["compile"]:
        mode = "reduce-overhead" if speed["cuda_graphs"] else None
        decoder = getattr(pipe.vae, "decoder", None)
        for module in (denoiser, decoder):
            if module is not None:
                module.compile(dynamic=False, mode=mode)


# -- jobs, products and checks ------------------------------------------------------------------


def _render_size(job: RenderJob, pipe: Any) -> tuple[int, int]:
    """The job's size rounded up to what the pipeline accepts (cropped back afterwards)."""
    step = max(8, int(getattr(pipe, "vae_scale_factor", 8)))
    return math.ceil(job.width / step) * step, math.ceil(job.height / step) * step


def _load_product(path: str) -> Image.Image:
    """The product as RGBA, trimmed to its visible pixels."""
    return load_brand_image(Path(path), what="product image")


@functools.lru_cache(maxsize=16)
def _fitted_product(path: str, stamp: int, width: float, height: float) -> Image.Image:
    """The product scaled to fit ``width`` x ``height`` (cached: campaigns reuse a product)."""
    product = _load_product(path)
    fit = min(width / product.width, height / product.height)
    size = (max(1, round(product.width * fit)), max(1, round(product.height * fit)))
    return product if size == product.size else product.resize(size, Image.Resampling.LANCZOS)


def _product_options(job: RenderJob) -> tuple[float, tuple[float, float]]:
    """The job options ``product_scale`` and ``product_anchor``, checked."""
    scale, anchor = job.option("product_scale", PRODUCT_SCALE), job.option("product_anchor",
                                                                         PRODUCT_ANCHOR)
    try:
        scale, (ax, ay) = float(scale), (float(v) for v in anchor)
    except (TypeError, ValueError):
        scale, ax, ay = math.nan, math.nan, math.nan
    if not (0 < scale <= 1 and 0 <= ax <= 1 and 0 <= ay <= 1):
        raise RenderError(f"product_scale must be a share in (0, 1] and product_anchor two shares "
                          f"(x, y) in [0, 1], not {scale!r} and {anchor!r}")
    return scale, (ax, ay)


def _layout_product(job: RenderJob, size: tuple[int, int], vae_scale: int) -> _Scene:
    """Scale and place the product in the canvas; mask the scene around its opaque pixels."""
    assert job.product_image is not None
    scale, (ax, ay) = _product_options(job)
    try:
        stamp = os.stat(job.product_image).st_mtime_ns
    except OSError:
        stamp = 0  # _load_product says what is wrong
    product = _fitted_product(job.product_image, stamp, job.width * scale, job.height * scale)
    width, height = size
    left = (width - job.width) // 2 + round((job.width - product.width) * ax)
    top = (height - job.height) // 2 + round((job.height - product.height) * ay)
    box = (left, top, left + product.width, top + product.height)
    canvas = Image.new("RGB", size, _BACKGROUND)
    canvas.paste(product, box[:2], mask=product.getchannel("A"))
    opaque = np.zeros((height, width), bool)
    opaque[top:box[3], left:box[2]] = np.asarray(product.getchannel("A")) == 255
    mask = Image.fromarray(np.where(_whole_cells(opaque, vae_scale), 0, 255).astype(np.uint8))
    return _Scene(canvas, mask, product, box)


def _extend_scene(job: RenderJob, size: tuple[int, int], vae_scale: int,
                  sources: SourceReader | None) -> _Scene:
    """Outpainting inputs of an extend job: its source render (read through ``sources``) in
    the middle of the canvas, the mask open everywhere else and over a band at the source's
    edges that face the new space (where the new scene blends in). The source is pasted back
    with that band feathered, so its inside (the product) keeps its pixels."""
    source, subject = read_source(sources, job)
    width, height = size
    x, y = source_offset(size, source.size)
    band = max(vae_scale, round(0.06 * min(source.size)))
    if subject is not None:
        band = max(1, min(band, subject[0], subject[1], source.width - subject[2],
                          source.height - subject[3]))
    alpha = np.full((source.height, source.width), 255.0, np.float32)
    ramp = np.arange(1, band + 1, dtype=np.float32) / band * 255.0
    if y > 0:
        alpha[:band] = np.minimum(alpha[:band], ramp[:, None])
        alpha[-band:] = np.minimum(alpha[-band:], ramp[::-1, None])
    if x > 0:
        alpha[:, :band] = np.minimum(alpha[:, :band], ramp[None, :])
        alpha[:, -band:] = np.minimum(alpha[:, -band:], ramp[None, ::-1])
    product = source.convert("RGBA")
    product.putalpha(Image.fromarray((alpha + 0.5).astype(np.uint8), "L"))
    canvas = Image.new("RGB", size, _BACKGROUND)
    canvas.paste(source, (x, y))
    keep = np.zeros((height, width), bool)
    keep[y:y + source.height, x:x + source.width] = alpha >= 255
    mask = Image.fromarray(np.where(_whole_cells(keep, vae_scale), 0, 255).astype(np.uint8))
    box = (x, y, x + source.width, y + source.height)
    moved = None if subject is None else (subject[0] + x, subject[1] + y, subject[2] + x,
                                          subject[3] + y)
    return _Scene(canvas, mask, product, box, moved)


def _whole_cells(opaque: np.ndarray, cell: int) -> np.ndarray:
    """Pixels of the latent cells (``cell`` px squares) that are wholly opaque.

    Only those are kept from the canvas: a latent cell that mixed product and background would
    decode to a grey halo around the product.
    """
    height, width = opaque.shape
    rows, cols = -(-height // cell), -(-width // cell)
    padded = np.zeros((rows * cell, cols * cell), bool)
    padded[:height, :width] = opaque
    whole = padded.reshape(rows, cell, cols, cell).all(axis=(1, 3))
    return whole.repeat(cell, axis=0).repeat(cell, axis=1)[:height, :width]


def _problem(out: _Output) -> str | None:
    """Why an output cannot be shipped (NaN, all black, blanked by the safety checker), if so."""
    finite = bool(np.isfinite(out.pixels).all())
    return _problem_text(out.nsfw, not finite, finite and float(out.pixels.max()) * 255 < 0.5)


def _problem_text(nsfw: bool, nan: bool, black: bool) -> str | None:
    if nsfw:
        return "blanked by the safety checker"
    if nan:
        return "NaN pixels"
    if black:
        return "all black"
    return None


def _to_host(images: Any, nsfw: list[bool]) -> _Raw:
    """Start copying a batch of pictures (N, 3, H, W) in [0, 1] to the host as bytes, rounded as
    diffusers' ``numpy_to_pil`` does, with each one's NaN and brightness checks done on the
    device. On CUDA the copy goes to pinned memory without blocking; ``_Raw.images`` waits."""
    import torch

    finite = torch.isfinite(images).flatten(1).all(dim=1)
    peak = torch.nan_to_num(images.float(), nan=0.0).flatten(1).amax(dim=1)
    pixels = (images.float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    if images.device.type != "cuda":
        return _Raw(pixels.cpu().contiguous(), finite.cpu(), peak.cpu(), nsfw)
    host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in (pixels, finite, peak)]
    for target, source in zip(host, (pixels, finite, peak), strict=True):
        target.copy_(source, non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    return _Raw(host[0], host[1], host[2], nsfw, done, pixels)


def _free_memory(device: str) -> int:
    """Bytes a CUDA device can still give: free on the card plus what torch holds unused."""
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def _blank_message(problems: list[str], renderer: DiffusersRenderer) -> str:
    hint = ("try dtype bfloat16 or float32 (float16 can overflow in the VAE)"
            if renderer.dtype == "float16" else "try another prompt, seed or model")
    retry = "" if renderer.retry_blank else "; set retry_blank=N to retry with the next seeds"
    return f"unusable image ({'; '.join(problems)}): {hint}{retry}"
