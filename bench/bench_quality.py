"""Benchmark: what the quality gate costs per picture, against what rendering it cost.

Renders ``--jobs`` pictures, then times each check on the same pictures in batches of
``--batch`` (pixels + pHash, CLIP alignment, safety, OCR text) and the whole gate, all in this
process. Prints milliseconds per picture and each as a share of the render time per picture.
It asserts nothing about time.

    python bench/bench_quality.py                 # CPU: offline renderer, tiny CLIP + safety
    python bench/bench_quality.py --renderer diffusers --model stabilityai/sd-turbo \\
        --device cuda --size 512 --clip-model openai/clip-vit-large-patch14 \\
        --safety-model CompVis/stable-diffusion-safety-checker
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from adgen.jobs import RenderJob, derive_seed
from adgen.quality.models import AlignmentScorer, SafetyScorer, TextDetector
from adgen.quality.pixels import phash, pixel_scores
from adgen.renderers import create_renderer
from adgen.testing import make_tiny_clip, make_tiny_safety_checker, make_tiny_sd_pipeline

PROMPTS = ("a glass bottle of olive oil on a marble counter, morning light",
           "a red sneaker on wet asphalt at night, neon reflections",
           "a ceramic mug on a wooden table by a window, steam, cosy",
           "a watch on black velvet, studio lighting, macro")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renderer", default="offline", help="offline or diffusers")
    parser.add_argument("--model", help="the renderer's model (diffusers: default a tiny one)")
    parser.add_argument("--device", help="cpu or cuda (diffusers and the checks)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clip-model", help="default: a tiny CLIP built from config")
    parser.add_argument("--safety-model", help="default: a tiny safety checker from config")
    return parser.parse_args()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    # 1. render the pictures (and time it: the baseline)
    model = args.model
    options: dict[str, Any] = {}
    if args.renderer == "diffusers":
        model = model or str(make_tiny_sd_pipeline(tmp / "tiny-sd"))
        options = {"device": args.device, "batch_size": args.batch}
    renderer = create_renderer(args.renderer, model, **options)
    device = str(getattr(renderer, "device", args.device or "cpu"))
    jobs = [RenderJob(renderer=args.renderer, model=model, prompt=PROMPTS[i % len(PROMPTS)],
                      negative_prompt="", seed=derive_seed("bench", i), width=args.size,
                      height=args.size, steps=args.steps, guidance=0.0)
            for i in range(args.jobs)]
    renderer(jobs[:1])  # warm-up
    images: list[Image.Image] = []
    render_s = timed(lambda: images.extend(
        r.image for r in renderer(jobs) if r.image is not None), device)
    prompts = [job.prompt for job in jobs]
    per_render = render_s / len(jobs) * 1000
    # 2. load the checks once, as a worker does
    clip = args.clip_model or str(make_tiny_clip(tmp / "clip"))
    safety = args.safety_model or str(make_tiny_safety_checker(tmp / "safety"))
    loads = time.perf_counter()
    scorers = {
        "alignment (CLIP)": AlignmentScorer(clip, device=device),
        "safety": SafetyScorer(safety, device=device),
        "text (RapidOCR)": TextDetector(device=device),
    }
    load_s = time.perf_counter() - loads
    batches = [range(i, min(i + args.batch, len(images))) for i in range(0, len(images),
                                                                          args.batch)]

    def run(name: str) -> None:
        for batch in batches:
            pictures = [images[i] for i in batch]
            if name == "pixels + pHash":
                for picture in pictures:
                    pixel_scores(picture)
                    phash(picture)
            elif name == "alignment (CLIP)":
                scorers[name](pictures, [prompts[i] for i in batch])
            else:
                scorers[name](pictures)

    names = ["pixels + pHash", *scorers]
    for name in names:
        run(name)  # warm-up
    costs = {name: timed(lambda name=name: run(name), device) / len(images) * 1000
             for name in names}
    # 3. report
    print(f"renderer {args.renderer} ({model or 'built-in'}) on {device}, {args.size} px, "
          f"{len(images)} pictures, batches of {args.batch}")
    print(f"render: {per_render:8.1f} ms/picture (baseline)")
    for name, ms in costs.items():
        print(f"{name:18s}{ms:8.1f} ms/picture  {ms / per_render:6.1%} of render")
    total = sum(costs.values())
    print(f"{'all checks':18s}{total:8.1f} ms/picture  {total / per_render:6.1%} of render")
    print(f"models loaded once per worker in {load_s:.1f} s")
    if not args.clip_model or not args.safety_model:
        print("(tiny CLIP/safety models: their cost is not a real model's; pass --clip-model "
              "and --safety-model for real figures)")


if __name__ == "__main__":
    main()
