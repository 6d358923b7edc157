"""Benchmark: adgen's diffusers renderer against a plain diffusers loop, one image per call.

Both render the same jobs with the same model in this process; the script prints images per
second for each, their ratio, and how far the pictures differ (batched kernels round a little
differently). It asserts nothing about time.

    python bench/bench_render.py                      # CPU, a tiny random pipeline, 64 px
    python bench/bench_render.py --model stabilityai/sd-turbo --device cuda --size 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adgen.jobs import RenderJob, derive_seed
from adgen.renderers.diffusers_renderer import DiffusersRenderer
from adgen.testing import make_tiny_sd_pipeline

PROMPTS = ("a glass bottle of olive oil on a marble counter, morning light",
           "a red sneaker on wet asphalt at night, neon reflections",
           "a ceramic mug on a wooden table by a window, steam, cosy",
           "a watch on black velvet, studio lighting, macro")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or folder (default: a tiny random pipeline)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best present)")
    parser.add_argument("--dtype", help="float32, float16, bfloat16 (default: per device)")
    parser.add_argument("--size", type=int, default=64, help="width and height in px")
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8, help="adgen's batch size")
    parser.add_argument("--steps", type=int, default=None, help="default: 1 real, 2 tiny")
    parser.add_argument("--guidance", type=float, default=None, help="default: 0 real, 7.5 tiny")
    parser.add_argument("--compile", action="store_true", help="torch.compile the denoiser")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--batch-invariant", action="store_true",
                        help="one pipeline call per job (bit-identical to single renders)")
    return parser.parse_args()


def make_jobs(model: str, args: argparse.Namespace) -> list[RenderJob]:
    tiny = args.model is None
    steps = args.steps or (2 if tiny else 1)
    guidance = args.guidance if args.guidance is not None else (7.5 if tiny else 0.0)
    return [RenderJob(renderer="diffusers", model=model, prompt=PROMPTS[i % len(PROMPTS)],
                      negative_prompt="", seed=derive_seed("bench", i), width=args.size,
                      height=args.size, steps=steps, guidance=guidance)
            for i in range(args.jobs)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_adgen(renderer: DiffusersRenderer, jobs: list[RenderJob]) -> tuple[float, list[Any]]:
    renderer(jobs[: renderer.batch_size])  # warm up (and compile) on one full batch
    sync(renderer.device)
    start = time.perf_counter()
    results = renderer(jobs)
    sync(renderer.device)
    return time.perf_counter() - start, [np.asarray(r.image) for r in results]


def time_plain(pipe: Any, jobs: list[RenderJob], device: str) -> tuple[float, list[Any]]:
    def one(job: RenderJob) -> Any:
        return pipe(job.prompt, negative_prompt=job.negative_prompt or None,
                    generator=torch.Generator("cpu").manual_seed(job.seed),
                    num_inference_steps=job.steps, guidance_scale=job.guidance,
                    height=job.height, width=job.width).images[0]

    one(jobs[0])  # warm up
    sync(device)
    start = time.perf_counter()
    images = [np.asarray(one(job)) for job in jobs]
    sync(device)
    return time.perf_counter() - start, images


def load_plain(model: str, device: str, dtype: str) -> Any:
    """The same model as a plain diffusers pipeline."""
    from diffusers import AutoPipelineForText2Image

    with warnings.catch_warnings():  # newer diffusers spell torch_dtype as dtype
        warnings.simplefilter("ignore", FutureWarning)
        pipe = AutoPipelineForText2Image.from_pretrained(
            model, torch_dtype=getattr(torch, dtype), use_safetensors=True)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(make_tiny_sd_pipeline(Path(tmp) / "tiny-sd"))
        renderer = DiffusersRenderer(model, device=args.device, dtype=args.dtype,
                                     batch_size=args.batch, compile=args.compile,
                                     channels_last=args.channels_last,
                                     batch_invariant=args.batch_invariant)
        device, dtype = renderer.device, renderer.dtype
        jobs = make_jobs(model, args)
        adgen_s, adgen_images = time_adgen(renderer, jobs)
        del renderer
        plain_s, plain_images = time_plain(load_plain(model, device, dtype), jobs, device)
    diffs = [np.abs(a.astype(int) - b.astype(int))
             for a, b in zip(adgen_images, plain_images, strict=True)]
    print(f"{len(jobs)} jobs, {args.size}x{args.size} px, {jobs[0].steps} steps, guidance "
          f"{jobs[0].guidance}, {device} {dtype}, model {args.model or 'tiny random'}")
    print(f"adgen (batch {args.batch}):  {len(jobs) / adgen_s:8.2f} images/s")
    print(f"plain diffusers loop: {len(jobs) / plain_s:8.2f} images/s")
    print(f"ratio adgen / plain:  {plain_s / adgen_s:8.2f}x")
    print(f"pixels differing from the plain loop: "
          f"{np.mean([(d > 0).mean() for d in diffs]):.4%}, "
          f"at most {max(int(d.max()) for d in diffs)} levels")


if __name__ == "__main__":
    main()
