"""Benchmark: what the quality gate costs per picture, against what rendering it cost.

Measured, in this process, on ``--device``:

* the baselines: ``--jobs`` pictures from the offline renderer, and a few from a diffusers
  model (default ``random:sd-turbo:tiny``: the SD-Turbo architecture shrunk, random weights;
  on a GPU pass ``--diffusers-model random:sd-turbo`` for the real one);
* each check on the offline pictures, in batches of ``--batch`` (one call per batch, models
  loaded once, as a worker does): pixels + pHash, CLIP alignment, safety, text detection.
  ``--models full`` (the default) builds the real architectures with random weights from
  config — CLIP ViT-L/14 (``openai/clip-vit-large-patch14``) and the Stable Diffusion safety
  checker (a ViT-L/14 vision tower) — so the compute is the real one and nothing is
  downloaded; ``--models tiny`` proves the code paths fast; ``--clip-model`` and
  ``--safety-model`` take real ones.

Estimated for a GPU (no GPU has run this yet): each check model's FLOPs per picture, counted
with ``torch.utils.flop_counter`` on the meta device (CLIP, safety) and from onnxruntime's
profile of the detector (its convolutions' shapes), against one SD-Turbo 512 px 1-step render
(counted the same way, ``bench/gpu_suite.py``). It asserts nothing about time.

    python bench/bench_quality.py                       # CPU
    python bench/bench_quality.py --models tiny --jobs 4   # quick
    python bench/bench_quality.py --device cuda --batch 16 --jobs 64 \\
        --diffusers-model random:sd-turbo               # a GPU: measured, not estimated
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _timing import sync
from PIL import Image

from adgen.jobs import RenderJob, derive_seed
from adgen.quality.models import TEXT_SIDE, AlignmentScorer, SafetyScorer, TextDetector
from adgen.quality.pixels import phash, pixel_scores
from adgen.renderers import create_renderer
from adgen.testing import make_tiny_clip, make_tiny_safety_checker

PROMPTS = ("a glass bottle of olive oil on a marble counter, morning light",
           "a red sneaker on wet asphalt at night, neon reflections",
           "a ceramic mug on a wooden table by a window, steam, cosy",
           "a watch on black velvet, studio lighting, macro")

CLIP_VIT_L14: dict[str, Any] = {
    "text_config": {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072,
                    "num_attention_heads": 12, "num_hidden_layers": 12,
                    "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 2,
                    "pad_token_id": 1},
    "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                      "num_hidden_layers": 24, "image_size": 224, "patch_size": 14},
    "projection_dim": 768,
}
"""``openai/clip-vit-large-patch14``'s architecture (its config.json), also the vision tower of
``CompVis/stable-diffusion-safety-checker``."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (renderers and checks)")
    parser.add_argument("--size", type=int, default=512, help="pictures' side, px")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="pictures per check call (the "
                        "local backend's default batch is 4)")
    parser.add_argument("--models", choices=("full", "tiny"), default="full",
                        help="check models built from config: real size or tiny")
    parser.add_argument("--clip-model", help="a real CLIP (hub id or folder) instead")
    parser.add_argument("--safety-model", help="a real safety checker instead")
    parser.add_argument("--diffusers-model", default="random:sd-turbo:tiny")
    parser.add_argument("--diffusers-jobs", type=int, default=2)
    return parser.parse_args()


# -- models built from config -------------------------------------------------------------------


def clip_config() -> Any:
    from transformers import CLIPConfig

    return CLIPConfig(**CLIP_VIT_L14)


def check_models(folder: Path, tiny: bool, device: str = "cpu") -> tuple[str, str]:
    """Folders holding a CLIP and a safety checker with random weights (safetensors, fp16):
    the real architectures (their weights drawn on ``device``: fast on a GPU), or tiny ones.
    Returns their paths."""
    if tiny:
        return (str(make_tiny_clip(folder / "clip")),
                str(make_tiny_safety_checker(folder / "safety")))
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
    )
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor

    from adgen.archs import offline_tokenizer

    torch.manual_seed(0)
    processor = CLIPImageProcessor()  # 224 px centre crop, CLIP's mean and std: openai's
    tokenizer, _ = offline_tokenizer()
    with torch.device(device):  # a config each: a model may change the one it is given
        clip = CLIPModel(clip_config()).half()
        safety = StableDiffusionSafetyChecker(clip_config()).half()
    clip.save_pretrained(folder / "clip", safe_serialization=True)
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(
        folder / "clip")
    safety.save_pretrained(folder / "safety", safe_serialization=True)
    processor.save_pretrained(folder / "safety")
    return str(folder / "clip"), str(folder / "safety")


# -- FLOPs per picture --------------------------------------------------------------------------


def model_flops() -> dict[str, float]:
    """FLOPs of one picture in each check model at its real size: CLIP's image tower plus its
    text tower at 77 tokens (prompts are padded to the longest in a batch, at most 77); the
    safety checker's vision tower and projection, the same ViT-L/14 as CLIP's image tower (its
    concept comparisons are a few thousand multiply-adds); the text detector at its side."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPModel

    config = clip_config()
    side = config.vision_config.image_size
    counts = {}
    with torch.device("meta"):
        clip = CLIPModel(config).eval()
        pixels = torch.zeros(1, 3, side, side)
        tokens = torch.zeros(1, config.text_config.max_position_embeddings, dtype=torch.long)
        towers: dict[str, Callable[[], Any]] = {
            "image": lambda: clip.get_image_features(pixel_values=pixels),
            "text": lambda: clip.get_text_features(input_ids=tokens),
        }
        for name, fn in towers.items():
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                fn()
            counts[name] = float(counter.get_total_flops())
    return {"alignment (CLIP)": counts["image"] + counts["text"], "safety": counts["image"],
            "text (detector)": detector_flops(TEXT_SIDE)}


def detector_flops(side: int) -> float:
    """FLOPs of the text detector on one ``side``-square picture: its convolutions, from the
    input and weight shapes onnxruntime's profiler records (elementwise work left out). Its
    two transposed convolutions (kernel = stride = 2, as in PP-OCR's DB head) feed each output
    pixel from one input pixel: 2 x output elements x input channels."""
    import numpy as np
    import onnxruntime

    probe = TextDetector()
    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "adgen-det-profile")
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(probe.model_path), options,
                                           providers=["CPUExecutionProvider"])
    session.run(None, {probe.input: np.zeros((1, 3, side, side), np.float32)})
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    flops = 0.0
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        inputs = [next(iter(d.values())) for d in args.get("input_type_shape", [])]
        outputs = [next(iter(d.values())) for d in args.get("output_type_shape", [])]
        if args.get("op_name") == "Conv":
            flops += 2 * math.prod(outputs[0]) * math.prod(inputs[1][1:])
        elif args.get("op_name") == "ConvTranspose":
            flops += 2 * math.prod(outputs[0]) * inputs[0][1]
    return flops


def render_flops() -> float:
    """One SD-Turbo 512 px 1-step render, counted as bench/gpu_suite.py counts it."""
    from gpu_suite import flops_per_image

    return flops_per_image("sd-turbo", 512, 1)["total"]


# -- timing -------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def make_jobs(renderer: str, model: str | None, count: int, size: int) -> list[RenderJob]:
    return [RenderJob(renderer=renderer, model=model, prompt=PROMPTS[i % len(PROMPTS)],
                      negative_prompt="", seed=derive_seed("bench", i), width=size,
                      height=size, steps=1, guidance=0.0) for i in range(count)]


def render_cost(name: str, model: str | None, count: int, size: int,
                images: list[Image.Image], **options: Any) -> float:
    """Seconds per picture of ``count`` renders after a one-picture warm-up; keeps them."""
    renderer = create_renderer(name, model, **options)
    device = str(getattr(renderer, "device", "cpu"))
    jobs = make_jobs(name, model, count, size)
    renderer(jobs[:1])
    results: list[Any] = []
    seconds = timed(lambda: results.extend(renderer(jobs)), device)
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"{name} render failed: {errors[0]}")
    images.extend(r.image for r in results)
    return seconds / count


Scorer = Callable[[list[Image.Image], list[str]], Any]


def make_scorers(clip: str, safety: str, device: str) -> tuple[dict[str, Scorer], str]:
    """Each check as a function of a batch of pictures and prompts, its model loaded once on
    ``device`` (in bf16 on a GPU, the diffusers renderer's default), and the text detector's
    onnxruntime provider."""
    dtype = None
    if device.startswith("cuda"):
        import torch

        dtype = torch.bfloat16
    alignment = AlignmentScorer(clip, device=device, dtype=dtype)
    unsafe = SafetyScorer(safety, device=device, dtype=dtype)
    detector = TextDetector(device=device)
    return {
        "pixels + pHash": lambda pictures, _: [(pixel_scores(p), phash(p)) for p in pictures],
        "alignment (CLIP)": alignment,
        "safety": lambda pictures, _: unsafe(pictures),
        "text (detector)": lambda pictures, _: detector(pictures),
    }, detector.provider


def time_checks(scorers: dict[str, Scorer], images: list[Image.Image], prompts: list[str],
                batch: int, device: str) -> dict[str, float]:
    """Seconds per picture of each check over every picture, one call per batch, after a
    one-batch warm-up."""
    batches = [range(i, min(i + batch, len(images))) for i in range(0, len(images), batch)]
    costs = {}
    for name, score in scorers.items():
        score(images[:batch], prompts[:batch])

        def every_batch(score: Scorer = score) -> None:
            for b in batches:
                score([images[i] for i in b], [prompts[i] for i in b])

        seconds = timed(every_batch, device)
        costs[name] = seconds / len(images)
    return costs


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        measure(args, Path(tmp))
    estimate()


def measure(args: argparse.Namespace, tmp: Path) -> None:
    """Time the renders and each check on ``args.device`` and print the table."""
    device = args.device
    # 1. the baselines: offline renders (checked below) and a diffusers model's renders
    images: list[Image.Image] = []
    offline = render_cost("offline", None, args.jobs, args.size, images)
    diffusers = render_cost("diffusers", args.diffusers_model, args.diffusers_jobs, args.size,
                            [], device=device, batch_size=args.diffusers_jobs)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(images))]
    # 2. the check models, loaded once as a worker loads them
    start = time.perf_counter()
    clip, safety = (args.clip_model, args.safety_model)
    if not clip or not safety:
        built = check_models(tmp, tiny=args.models == "tiny", device=device)
        clip, safety = clip or built[0], safety or built[1]
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    scorers, provider = make_scorers(clip, safety, device)
    load_s = time.perf_counter() - start
    # 3. each check over every picture, one call per batch
    costs = time_checks(scorers, images, prompts, args.batch, device)
    # 4. report
    checks = ("real architectures, random weights" if args.models == "full"
              else "tiny models: their cost is not a real model's")
    print(f"quality gate cost on {device}: {len(images)} pictures of {args.size} px, batches "
          f"of {args.batch}; CLIP {args.clip_model or ''} / safety {args.safety_model or ''} "
          f"({checks}); text detector at {TEXT_SIDE} px on {provider}")
    print(f"baseline a: offline renderer         {offline * 1000:9.1f} ms/picture")
    print(f"baseline b: diffusers {args.diffusers_model:18s} {diffusers * 1000:6.0f} ms/picture "
          f"({args.diffusers_jobs} renders, 1 step)")
    print(f"{'check':18s}{'ms/picture':>12s}{'vs a':>9s}{'vs b':>9s}")
    for name, seconds in [*costs.items(), ("all checks", sum(costs.values()))]:
        print(f"{name:18s}{seconds * 1000:12.1f}{seconds / offline:9.1%}"
              f"{seconds / diffusers:9.1%}")
    print(f"models built in {build_s:.1f} s, loaded once per worker in {load_s:.1f} s")


def estimate() -> None:
    """Print the checks' FLOPs per picture against one SD-Turbo 512 px render's."""
    print("\nGPU estimate (not measured): FLOPs per picture of each check model at its real "
          "size, vs one SD-Turbo 512 px 1-step render")
    try:
        render = render_flops()
        flops = model_flops()
    except Exception as exc:  # an estimate must not cost the measured figures above
        print(f"FLOP count failed: {type(exc).__name__}: {exc}")
        return
    print(f"{'SD-Turbo render':18s}{render / 1e9:10.0f} GFLOP")
    default = flops["safety"] + flops["text (detector)"]
    everything = sum(flops.values())
    for name, value in [*flops.items(), ("default checks", default),
                        ("with alignment", everything),
                        ("  one tower", everything - flops["safety"])]:
        print(f"{name:18s}{value / 1e9:10.1f} GFLOP  {value / render:6.2%} of the render")
    print("(default checks: those on for a diffusers renderer, safety and text; alignment is "
          "on when quality.clip_model is set; one tower: when the safety checker's vision "
          "tower is CLIP's, weight for weight, it runs once for both; pixels + pHash run on "
          "the CPU)")
    print("(a share of FLOPs, not of time: small models reach a smaller share of a GPU's peak "
          "than the UNet and VAE do; the detector runs on the GPU only with onnxruntime-gpu)")


if __name__ == "__main__":
    main()
