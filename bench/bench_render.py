"""Benchmark: adgen's diffusers renderer against a plain diffusers loop, one image per call.

Both render the same jobs with the same model in this process; the script prints images per
second for each, their ratio, the warm-up (compile) time apart, and how far the pictures differ
(batched kernels round a little differently). It asserts nothing about time.

    python bench/bench_render.py                          # CPU, the tiny SD-Turbo arch, 64 px
    python bench/bench_render.py --arch sd-turbo --size 512 --batch auto --jobs 256  # a GPU
    python bench/bench_render.py --arch sdxl-turbo --size 1024 --steps 4 --compile
    python bench/bench_render.py --model stabilityai/sd-turbo --size 512   # real weights

``--arch`` builds a bundled architecture (sd-turbo, sdxl-turbo) with random weights at full
size (``--tiny``: shrunk, for CPUs): real compute and memory, nothing downloaded.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from _timing import Timing, time_after_warmup

from adgen.archs import build_pipeline, parse_random_model
from adgen.jobs import RenderJob, derive_seed
from adgen.renderers.diffusers_renderer import DiffusersRenderer

PROMPTS = ("a glass bottle of olive oil on a marble counter, morning light",
           "a red sneaker on wet asphalt at night, neon reflections",
           "a ceramic mug on a wooden table by a window, steam, cosy",
           "a watch on black velvet, studio lighting, macro")


def make_jobs(model: str, count: int, size: int, steps: int, guidance: float) -> list[RenderJob]:
    return [RenderJob(renderer="diffusers", model=model, prompt=PROMPTS[i % len(PROMPTS)],
                      negative_prompt="", seed=derive_seed("bench", i), width=size,
                      height=size, steps=steps, guidance=guidance)
            for i in range(count)]


def time_adgen(renderer: DiffusersRenderer, jobs: list[RenderJob]) -> Timing:
    """Warm up (probe the auto batch, compile) on one chunk's worth, then time all the jobs."""
    timing = time_after_warmup(lambda: renderer(jobs[:renderer._chunk_size(jobs[0])]),
                               lambda: renderer(jobs), renderer.device)
    return replace(timing, outputs=[np.asarray(r.image) for r in timing.outputs])


def time_plain(pipe: Any, jobs: list[RenderJob], device: str) -> Timing:
    """What a user writes without adgen: one pipeline call per image, PIL out."""
    def one(job: RenderJob) -> Any:
        return pipe(job.prompt, negative_prompt=job.negative_prompt or None,
                    generator=torch.Generator("cpu").manual_seed(job.seed),
                    num_inference_steps=job.steps, guidance_scale=job.guidance,
                    height=job.height, width=job.width).images[0]

    return time_after_warmup(lambda: one(jobs[0]),
                             lambda: [np.asarray(one(job)) for job in jobs], device)


def load_plain(model: str, device: str, dtype: str) -> Any:
    """The same model as a plain diffusers pipeline (built from its config for random:...)."""
    from diffusers import AutoPipelineForText2Image

    random = parse_random_model(model)
    if random is not None:
        return build_pipeline(random[0], tiny=random[1], device=device, dtype=dtype)
    with warnings.catch_warnings():  # newer diffusers spell torch_dtype as dtype
        warnings.simplefilter("ignore", FutureWarning)
        pipe = AutoPipelineForText2Image.from_pretrained(
            model, torch_dtype=getattr(torch, dtype), use_safetensors=True)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pixel_difference(a: list[np.ndarray], b: list[np.ndarray]) -> str:
    diffs = [np.abs(x.astype(int) - y.astype(int)) for x, y in zip(a, b, strict=False)]
    return (f"{np.mean([(d > 0).mean() for d in diffs]):.4%} of pixels differ, at most "
            f"{max(int(d.max()) for d in diffs)} levels")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="sd-turbo", help="sd-turbo or sdxl-turbo, random "
                        "weights (default sd-turbo; shrunk with --tiny, the default off CUDA)")
    parser.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--model", help="hub id or folder instead of --arch (real weights)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best present)")
    parser.add_argument("--dtype", help="float32, float16, bfloat16 (default: per device)")
    parser.add_argument("--size", type=int, default=None, help="px (default 512, 64 if tiny)")
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--plain-jobs", type=int, default=None, help="default: --jobs")
    parser.add_argument("--batch", default="8", help="adgen's batch size, or auto")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--guidance", type=float, default=0.0)
    for flag in ("compile", "cuda-graphs", "channels-last", "fuse-qkv", "batch-invariant"):
        parser.add_argument(f"--{flag}", action="store_true")
    parser.add_argument("--tiny-vae", action="store_true", help="draft decode with TAESD")
    parser.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    tiny = args.tiny if args.tiny is not None else not torch.cuda.is_available()
    model = args.model or f"random:{args.arch}{':tiny' if tiny else ''}"
    size = args.size or (64 if tiny and not args.model else 512)
    renderer = DiffusersRenderer(
        model, device=args.device, dtype=args.dtype,
        batch_size="auto" if args.batch == "auto" else int(args.batch),
        batch_invariant=args.batch_invariant, compile=args.compile, cuda_graphs=args.cuda_graphs,
        channels_last=args.channels_last, fuse_qkv=args.fuse_qkv, overlap=args.overlap,
        tiny_vae=f"random:taesd{':tiny' if tiny else ''}" if args.tiny_vae else None)
    device, dtype = renderer.device, renderer.dtype
    jobs = make_jobs(model, args.jobs, size, args.steps, args.guidance)
    adgen = time_adgen(renderer, jobs)
    chunk = renderer._chunk_size(jobs[0])
    del renderer
    plain = time_plain(load_plain(model, device, dtype), jobs[: args.plain_jobs or args.jobs],
                       device)
    print(f"{len(jobs)} jobs, {size}x{size} px, {args.steps} steps, guidance {args.guidance}, "
          f"{device} {dtype}, model {model}")
    memory = f", peak {adgen.peak_bytes / 2**30:.1f} GiB" if adgen.peak_bytes else ""
    print(f"adgen (chunks of {chunk}): {adgen.rate():8.2f} images/s  (warm-up "
          f"{adgen.warmup:.1f} s{memory})")
    print(f"plain diffusers loop:   {plain.rate():8.2f} images/s")
    print(f"ratio adgen / plain:    {adgen.rate() / plain.rate():8.2f}x")
    if not args.tiny_vae:
        print(f"pictures against the plain loop: {pixel_difference(adgen.outputs, plain.outputs)}")


if __name__ == "__main__":
    main()
