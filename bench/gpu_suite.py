"""The GPU suite: adgen's throughput on one GPU, offline, in about six minutes; then tests/gpu/.

Every model is a bundled architecture with random weights (adgen.archs), so nothing comes from
the network and compute and memory are the real ones. Rows, each timed after a warm-up:

* SD-Turbo arch, 512 px, 1 step: a plain diffusers loop (one image per call) against adgen's
  renderer with its defaults (bf16, SDPA, batch from free memory, CPU finishing overlapped),
  then each speed option switched on or off alone, torch.compile and CUDA graphs (compile
  time reported apart), and the tiny VAE for drafts;
* SDXL-Turbo arch, 1024 px, 1 and 4 steps: plain loop against adgen;
* LTX-Video arch: clips per second;
* the quality gate's checks (CLIP ViT-L/14, safety checker, text detector, pixels) per
  picture, as a share of the SD-Turbo 512 px render time;
* post-processing (bench_post's six placements, compose + JPEG) on the GPU (``backend.post:
  gpu``) against the CPU path on one thread, in assets/s, beside the assets/s that the
  SD-Turbo 512 px render rate calls for;
* the share of a batch's time spent in the VAE decode, peak memory per row, and the FLOP limit
  (FLOPs of one image counted with torch.utils.flop_counter on the meta device, against the
  GPU's dense bf16 peak).

Each row runs in its own try/except: a failing row prints its error and the table goes on; the
table so far is printed after every row, and rows that would overrun the time budget are
skipped. It asserts nothing about time.

    python bench/gpu_suite.py                 # on a CUDA machine
    python bench/gpu_suite.py --quick         # tiny archs on a CPU: proves every code path
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from _timing import Timing, sync, time_after_warmup  # noqa: E402
from bench_render import load_plain, make_jobs, time_adgen, time_plain  # noqa: E402

from adgen.archs import arch_spec, build_component, build_pipeline  # noqa: E402
from adgen.jobs import RenderJob, derive_seed  # noqa: E402
from adgen.renderers.diffusers_renderer import DiffusersRenderer  # noqa: E402
from adgen.renderers.diffusers_video import DiffusersVideoRenderer  # noqa: E402

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0,
                    "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0,
                    "L4": 121.0, "A10G": 70.0}
"""Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, by name part."""


@dataclass
class Row:
    name: str
    arch: str
    size: str
    steps: int
    batch: str = ""
    rate: float | None = None  # images (or clips) per second
    unit: str = "img/s"
    versus: str = ""
    peak_gib: float | None = None
    note: str = ""
    error: str = ""


@dataclass
class Suite:
    quick: bool
    budget: float
    started: float = field(default_factory=time.perf_counter)
    rows: list[Row] = field(default_factory=list)
    base: dict[str, float] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return "cpu" if self.quick else "cuda"

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.started)

    def run(self, row: Row, needs: float, body: Callable[[Row], None]) -> None:
        """Run one row: skipped when ``needs`` seconds are not left, errors kept in the row."""
        if self.left() < needs:
            row.error = f"skipped: {self.left():.0f} s left of the budget, needs ~{needs:.0f} s"
        else:
            try:
                body(row)
            except Exception as exc:  # a row's failure must not cost the rest of the table
                row.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
                traceback.print_exc(limit=3)
        self.rows.append(row)
        free_memory()
        print(render_table(self), flush=True)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def render_table(suite: Suite) -> str:
    head = ("row", "arch", "size", "steps", "batch", "rate", "vs plain", "peak GiB", "notes")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in suite.rows:
        rate = f"{r.rate:.2f} {r.unit}" if r.rate is not None else "-"
        peak = f"{r.peak_gib:.1f}" if r.peak_gib is not None else "-"
        note = r.error or r.note
        lines.append(f"| {r.name} | {r.arch} | {r.size} | {r.steps} | {r.batch} | {rate} | "
                     f"{r.versus} | {peak} | {note} |")
    return f"\n[{time.perf_counter() - suite.started:.0f} s]\n" + "\n".join(lines)


# -- rows ---------------------------------------------------------------------------------------


def model_id(suite: Suite, arch: str) -> str:
    return f"random:{arch}{':tiny' if suite.quick else ''}"


def plain_row(suite: Suite, arch: str, size: int, steps: int, count: int) -> Callable[[Row], None]:
    def body(row: Row) -> None:
        model = model_id(suite, arch)
        pipe = load_plain(model, suite.device, "float32" if suite.quick else "bfloat16")
        timing = time_plain(pipe, make_jobs(model, count, size, steps, 0.0), suite.device)
        suite.base[f"{arch}/{size}/{steps}"] = timing.rate()
        row.rate, row.batch, row.peak_gib = timing.rate(), "1", gib(timing)
    return body


def adgen_row(suite: Suite, arch: str, size: int, steps: int, count: int,
              **options: Any) -> Callable[[Row], None]:
    def body(row: Row) -> None:
        model = model_id(suite, arch)
        if "tiny_vae" in options:
            options["tiny_vae"] = model_id(suite, "taesd")
        renderer = DiffusersRenderer(model, batch_size=options.pop("batch_size", "auto"),
                                     batch_invariant=False, **options)
        jobs = make_jobs(model, count, size, steps, 0.0)
        timing = time_adgen(renderer, jobs)
        row.rate, row.peak_gib = timing.rate(), gib(timing)
        row.batch = str(renderer._chunk_size(jobs[0]))
        suite.base.setdefault(f"batch/{arch}/{size}/{steps}", renderer._chunk_size(jobs[0]))
        plain = suite.base.get(f"{arch}/{size}/{steps}")
        row.versus = f"{timing.rate() / plain:.2f}x" if plain else ""
        row.note = (f"warm-up {timing.warmup:.1f} s" + (" (compile)" if renderer.static_shapes
                                                       else ""))
    return body


def decode_share_row(suite: Suite, arch: str, size: int, steps: int,
                     batch: int) -> Callable[[Row], None]:
    """Share of a batch's time in the VAE decode: full pipeline call against latents out."""
    def body(row: Row) -> None:
        pipe = build_pipeline(arch, tiny=suite.quick, device=suite.device,
                              dtype="float32" if suite.quick else "bfloat16")
        prompts = ["a red sneaker on wet asphalt"] * batch

        def call(output_type: str) -> float:
            def once() -> None:
                pipe(prompts, num_inference_steps=steps, guidance_scale=0.0, height=size,
                     width=size, output_type=output_type,
                     generator=[torch.Generator().manual_seed(i) for i in range(batch)])
            once()
            sync(suite.device)
            start = time.perf_counter()
            for _ in range(3):
                once()
            sync(suite.device)
            return (time.perf_counter() - start) / 3

        full, latent = call("pt"), call("latent")
        row.batch = str(batch)
        row.note = (f"VAE decode {1 - latent / full:.0%} of the batch time "
                    f"({full * 1000:.0f} ms with, {latent * 1000:.0f} ms without)")
    return body


def video_row(suite: Suite, count: int) -> Callable[[Row], None]:
    def body(row: Row) -> None:
        spec = arch_spec("ltx-video")
        frames = 9 if suite.quick else spec["num_frames"]
        size = 64 if suite.quick else spec["size"]
        steps = 2 if suite.quick else spec["steps"]
        renderer = DiffusersVideoRenderer(model_id(suite, "ltx-video"), num_frames=frames)
        jobs = [RenderJob(renderer="diffusers-video", model=renderer.model, prompt="a sneaker",
                          negative_prompt="", seed=derive_seed("video", i), width=size,
                          height=size, steps=steps, guidance=1.0, kind="video")
                for i in range(count)]
        timing = time_after_warmup(lambda: renderer(jobs[:1]), lambda: renderer(jobs),
                                   suite.device)
        if any(r.error for r in timing.outputs):
            raise RuntimeError(next(r.error for r in timing.outputs if r.error))
        row.rate, row.unit, row.batch, row.steps = timing.rate(), "clips/s", "1", steps
        row.peak_gib = gib(timing)
        row.size = f"{size}x{size}x{frames}f"
        row.note = f"warm-up {timing.warmup:.1f} s"
    return body


def quality_row(suite: Suite, size: int, count: int) -> Callable[[Row], None]:
    """The quality gate's checks per picture, each batch in one call, on the GPU: CLIP
    ViT-L/14 alignment and the safety checker (real architectures, random weights, bf16), the
    text detector (on the GPU with onnxruntime-gpu, else the CPU) and pixels + pHash, against
    the render time per picture of the "adgen defaults" SD-Turbo row above."""
    def body(row: Row) -> None:
        import tempfile

        from _timing import peak_bytes, reset_peak
        from bench_quality import check_models, make_jobs, make_scorers, time_checks

        from adgen.renderers import create_renderer

        batch = int(suite.base.get(f"batch/sd-turbo/{size}/1", 16))
        renderer = create_renderer("offline", None)
        images = [r.image for r in renderer(make_jobs("offline", None, count, size))
                  if r.image is not None]
        prompts = [f"prompt {i}" for i in range(count)]
        with tempfile.TemporaryDirectory() as tmp:
            clip, safety = check_models(Path(tmp), tiny=suite.quick, device=suite.device)
            scorers, provider = make_scorers(clip, safety, suite.device)
        reset_peak(suite.device)
        costs = time_checks(scorers, images, prompts, batch, suite.device)
        total, peak = sum(costs.values()), peak_bytes(suite.device)
        row.rate, row.batch, row.peak_gib = 1 / total, str(batch), peak / 2**30 or None
        render = next((r.rate for r in suite.rows if r.rate and r.name == "adgen defaults"
                       and r.arch == "sd-turbo"), None)
        row.versus = f"{total * render:.1%} of render" if render else ""
        row.note = ", ".join(f"{name} {seconds * 1000:.1f}" for name, seconds in costs.items())
        row.note += f" ms/img; text on {provider}"
    return body


def post_row(suite: Suite, rounds: int) -> Callable[[Row], None]:
    """bench_post's work (six placements, logo, captions, JPEG) per 1024 px render: the
    device path on the GPU (renders already there) against the CPU path (Pillow and OpenCV)
    on one thread, and the assets/s the SD-Turbo render rate above would need."""
    def body(row: Row) -> None:
        import tempfile

        import cv2
        from bench_post import PLACEMENTS, SUBJECT, device_post, make_logo, render

        from adgen.post import Caption, LogoStyle, compose, encode_image

        captions = [Caption("headline", "Summer hydration, zero plastic"),
                    Caption("cta", "Shop now")]
        images = [render(seed) for seed in range(rounds)]
        with tempfile.TemporaryDirectory() as folder:
            style = LogoStyle(make_logo(Path(folder)))

            def pillow(image: Any) -> int:
                for placement in PLACEMENTS:
                    ad = compose(image, placement, subject_box=SUBJECT, logo=style,
                                 captions=captions, colors=["#0B5D4B", "#F2C14E"])
                    encode_image(ad.image, "jpeg", max_bytes=placement.max_bytes)
                return len(PLACEMENTS)

            work, device_sync = device_post(suite.device, style, captions)
            rates = {}
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)  # the CPU path on one thread, as bench_post measures it
            try:
                for name, fn, wait in (("cpu", pillow, lambda: None),
                                       ("gpu", work, device_sync)):
                    fn(images[0])
                    wait()
                    start = time.perf_counter()
                    done = sum(fn(image) for image in images)
                    wait()
                    rates[name] = done / (time.perf_counter() - start)
            finally:
                cv2.setNumThreads(threads)
        row.rate, row.unit, row.batch = rates["gpu"], "assets/s", "1"
        row.versus = f"{rates['gpu'] / rates['cpu']:.2f}x the CPU path"
        render_rate = next((r.rate for r in suite.rows if r.rate and r.name == "adgen defaults"
                            and r.arch == "sd-turbo"), None)
        need = f"; SD-Turbo's {render_rate:.0f} img/s x {len(PLACEMENTS)} placements need " \
            f"{render_rate * len(PLACEMENTS):.0f} assets/s" if render_rate else ""
        row.note = f"CPU path {rates['cpu']:.1f} assets/s on one thread{need}"
    return body


def flops_per_image(arch: str, size: int, steps: int, vae: str | None = None) -> dict[str, float]:
    """FLOPs of one image, counted on the meta device (shapes only: no memory, no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    pipe = build_pipeline(arch, device="meta")
    decoder = build_component(vae, "vae", device="meta") if vae else pipe.vae
    latent = size // pipe.vae_scale_factor
    counts: dict[str, float] = {}
    with torch.device("meta"):
        ids = torch.zeros(1, 77, dtype=torch.long)
        z = torch.zeros(1, 4, latent, latent)
        hidden = pipe.unet.config.cross_attention_dim
        extra: dict[str, Any] = {}
        encoders = [pipe.text_encoder, getattr(pipe, "text_encoder_2", None)]
        if pipe.unet.config.addition_embed_type == "text_time":
            extra["added_cond_kwargs"] = {
                "text_embeds": torch.zeros(1, pipe.text_encoder_2.config.projection_dim),
                "time_ids": torch.zeros(1, 6)}
        parts: dict[str, Callable[[], Any]] = {
            "text encoders": lambda: [e(ids) for e in encoders if e is not None],
            "unet (per step)": lambda: pipe.unet(z, torch.tensor([999]),
                                                 encoder_hidden_states=torch.zeros(1, 77, hidden),
                                                 **extra),
            "vae decode": lambda: decoder.decode(z),
        }
        for name, fn in parts.items():
            with FlopCounterMode(display=False) as counter:
                fn()
            counts[name] = float(counter.get_total_flops())
    counts["total"] = (counts["text encoders"] + steps * counts["unet (per step)"]
                       + counts["vae decode"])
    return counts


def gpu_peak_tflops() -> tuple[str, float | None]:
    if not torch.cuda.is_available():
        return "no GPU", None
    name = torch.cuda.get_device_name()
    return name, next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def flop_report(suite: Suite) -> str:
    lines = []
    name, tflops = gpu_peak_tflops()
    best = max((r.rate for r in suite.rows if r.rate and r.arch == "sd-turbo"
                and r.name.startswith("adgen") and "tiny VAE" not in r.name), default=None)
    for label, vae in (("SD-Turbo 512 px, 1 step", None), ("  with the tiny VAE", "taesd")):
        counts = flops_per_image("sd-turbo", 512, 1, vae)
        parts = ", ".join(f"{k} {v / 1e9:.0f}" for k, v in counts.items() if k != "total")
        line = f"{label}: {counts['total'] / 1e12:.2f} TFLOP per image ({parts} GFLOP)"
        if tflops:
            limit = tflops * 1e12 / counts["total"]
            line += f"; limit on {name} at {tflops:.0f} TFLOPS bf16: {limit:.0f} images/s"
            if best and vae is None and not suite.quick:
                line += f"; measured best {best:.1f} = {best / limit:.0%} of it"
        lines.append(line)
    return "\n".join(lines)


def gib(timing: Timing) -> float | None:
    return timing.peak_bytes / 2**30 if timing.peak_bytes else None


# -- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny archs on the CPU, few images")
    parser.add_argument("--budget", type=float, default=330.0, help="seconds for the rows")
    parser.add_argument("--tests-timeout", type=float, default=120.0)
    parser.add_argument("--no-tests", action="store_true")
    args = parser.parse_args()
    if not args.quick and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --quick to prove the code paths on a CPU")
        return 2
    suite = Suite(args.quick, args.budget)
    name, _ = gpu_peak_tflops()
    print(f"adgen GPU suite, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {name}, "
          f"torch {torch.__version__}", flush=True)
    q = args.quick
    small, large = (64, 64) if q else (512, 1024)
    n512, n1024, nplain = (6, 4, 3) if q else (512, 64, 32)
    sd, xl = "sd-turbo", "sdxl-turbo"

    def r(name: str, arch: str, size: int, steps: int) -> Row:
        return Row(name, arch, f"{size}px", steps)

    suite.run(r("plain diffusers loop", sd, small, 1), 20, plain_row(suite, sd, small, 1, nplain))
    suite.run(r("adgen defaults", sd, small, 1), 20, adgen_row(suite, sd, small, 1, n512))
    suite.run(r("adgen fixed batch", sd, small, 1), 15,
              adgen_row(suite, sd, small, 1, n512, batch_size=8 if not q else 2))
    suite.run(r("adgen overlap off", sd, small, 1), 15,
              adgen_row(suite, sd, small, 1, n512, overlap=False))
    suite.run(r("adgen fuse_qkv", sd, small, 1), 15,
              adgen_row(suite, sd, small, 1, n512, fuse_qkv=True))
    suite.run(r("adgen channels_last", sd, small, 1), 15,
              adgen_row(suite, sd, small, 1, n512, channels_last=True))
    suite.run(r("adgen attention eager", sd, small, 1), 15,
              adgen_row(suite, sd, small, 1, n512 // 4 or 1, attention="eager"))
    suite.run(r("adgen tiny VAE (drafts)", sd, small, 1), 15,
              adgen_row(suite, sd, small, 1, n512, tiny_vae=True))
    suite.run(r("VAE decode share", sd, small, 1), 15, decode_share_row(suite, sd, small, 1,
                                                                       2 if q else 16))
    suite.run(r("quality gate checks", sd, small, 0), 30,
              quality_row(suite, small, 8 if q else 64))
    suite.run(r("plain diffusers loop", xl, large, 1), 25, plain_row(suite, xl, large, 1,
                                                                     nplain // 2 or 1))
    suite.run(r("adgen defaults", xl, large, 1), 25, adgen_row(suite, xl, large, 1, n1024))
    suite.run(r("plain diffusers loop", xl, large, 4), 25, plain_row(suite, xl, large, 4,
                                                                     nplain // 4 or 1))
    suite.run(r("adgen defaults", xl, large, 4), 25, adgen_row(suite, xl, large, 4, n1024 // 2))
    suite.run(r("VAE decode share", xl, large, 1), 20, decode_share_row(suite, xl, large, 1,
                                                                       2 if q else 4))
    suite.run(r("clips", "ltx-video", small, 0), 40, video_row(suite, 2 if q else 3))
    suite.run(Row("post on the GPU", "-", "1024px", 0), 30, post_row(suite, 2 if q else 8))
    if not q:  # compiling on a CPU takes minutes and proves nothing about GPUs
        batch = int(suite.base.get(f"batch/{sd}/{small}/1", 16))  # what "auto" chose above
        suite.run(r("adgen compile", sd, small, 1), 120,
                  adgen_row(suite, sd, small, 1, n512, batch_size=batch, compile=True,
                            fuse_qkv=True, channels_last=True))
        suite.run(r("adgen compile + CUDA graphs", sd, small, 1), 120,
                  adgen_row(suite, sd, small, 1, n512, batch_size=batch, cuda_graphs=True,
                            fuse_qkv=True, channels_last=True))
    print("\nFLOP limit (torch.utils.flop_counter on the meta device, one image):", flush=True)
    try:
        print(flop_report(suite), flush=True)
    except Exception as exc:
        print(f"FLOP count failed: {type(exc).__name__}: {exc}")
    print(render_table(suite), flush=True)
    if args.no_tests or args.quick:
        return 0
    print("\ntests/gpu/:", flush=True)
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               str(REPO / "tests" / "gpu")], cwd=REPO,
                              timeout=args.tests_timeout, check=False)
        return done.returncode
    except subprocess.TimeoutExpired:
        print(f"tests/gpu/ did not finish within {args.tests_timeout:.0f} s")
        return 1


if __name__ == "__main__":
    sys.exit(main())
