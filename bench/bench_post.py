"""Post-processing throughput: one 1024x1024 render into six placements, logo and captions.

Compares adgen's ``compose`` (subject-aware crop, logo contrast, fitted captions, WCAG colours)
with a naive Pillow script doing the naive version of the same work (cover resize, centre crop,
paste the logo, draw the text at a fixed size), in the same process, and prints assets per
second for both and their ratios; with encoding, adgen's (JPEG within the placement's byte
budget) against the script saving a JPEG at quality 85 as a quick script would. Everything runs
on one thread (OpenCV's pool is set to one thread, as the naive script has one; in production
the asset pools make assets on parallel threads), and rates are given by wall time and by the
process's CPU time (which a shared machine's load disturbs less). ``--device cuda`` (or
``cpu``) adds the device path (``backend.post: gpu``: :func:`adgen.post.gpu.compose_on` and
``encode_on``, the renders already on the device). The workloads take turns render by render,
``--repeats`` times, so a shared machine's load falls on all of them alike: each rate is the
median over the repeats, each ratio the median of the repeats' ratios. It asserts nothing
about time.

    .venv/bin/python bench/bench_post.py [--rounds N] [--repeats N] [--device cuda]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adgen.placements import PRESETS, Placement
from adgen.post import Caption, LogoStyle, compose, encode_image
from adgen.post.text import BOLD

PLACEMENTS = [PRESETS[n] for n in ("feed_square", "feed_portrait", "story", "landscape",
                                   "display_1.91", "iab_300x250")]
HEADLINE, SUBLINE, CTA = "Summer hydration, zero plastic", "Keeps cold for 24 hours", "Shop now"
SUBJECT = (410, 290, 614, 820)


def render(seed: int) -> Image.Image:
    """A stand-in for a 1024x1024 render: a warm gradient, a floor and a bottle."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, 1024)[:, None, None]
    top, bottom = rng.integers(150, 255, 3), rng.integers(60, 200, 3)
    pixels = (top * (1 - y) + bottom * y) * np.ones((1, 1024, 1))
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 740, 1024, 1024), fill=(90, 70, 60))
    draw.rounded_rectangle((410, 410, 614, 820), radius=30, fill=(30, 120, 90))
    draw.rectangle((482, 290, 542, 420), fill=(30, 120, 90))
    return image.filter(ImageFilter.GaussianBlur(1))


def make_logo(folder: Path) -> Path:
    logo = Image.new("RGBA", (600, 200), (0, 0, 0, 0))
    draw = ImageDraw.Draw(logo)
    draw.ellipse((10, 20, 170, 180), fill=(20, 30, 60, 255))
    draw.text((190, 100), "ACME", font=ImageFont.truetype(str(BOLD), 120),
              fill=(20, 30, 60, 255), anchor="lm")
    path = folder / "logo.png"
    logo.save(path)
    return path


def naive(image: Image.Image, placement: Placement, logo: Image.Image,
          font: ImageFont.FreeTypeFont) -> Image.Image:
    """What a quick script does: cover-resize, centre-crop, paste, text at a fixed size."""
    scale = max(placement.width / image.width, placement.height / image.height)
    resized = image.resize((round(image.width * scale), round(image.height * scale)))
    left = (resized.width - placement.width) // 2
    top = (resized.height - placement.height) // 2
    out = resized.crop((left, top, left + placement.width, top + placement.height))
    small = logo.resize((placement.width // 5, placement.width // 15))
    out.paste(small, (placement.width - small.width - 20, 20), small)
    draw = ImageDraw.Draw(out)
    draw.text((20, placement.height // 6), HEADLINE, font=font, fill="black")
    draw.text((20, placement.height // 6 + 40), SUBLINE, font=font, fill="black")
    draw.text((20, placement.height - 60), CTA, font=font, fill="black")
    return out


Work = tuple[Callable[[Image.Image], int], Callable[[], None]]
"""A workload: make every placement's asset from one render (returns how many), and wait
for its device."""


def no_wait() -> None:
    pass


Rates = dict[str, list[float]]
"""Assets per second of each workload, one figure per repeat."""


def measure(workloads: dict[str, Work], rounds: int, repeats: int) -> tuple[Rates, Rates]:
    """Assets per second of each workload over ``rounds`` renders, ``repeats`` times, by wall
    time and by the process's CPU time; the workloads take turns render by render (a shared
    machine's load falls on all alike), each warmed up once first (fonts, logo, caches)."""
    images = [render(seed) for seed in range(rounds)]
    wall: Rates = {name: [] for name in workloads}
    cpu: Rates = {name: [] for name in workloads}
    for work, sync in workloads.values():
        work(images[0])
        sync()
    for _ in range(repeats):
        seconds = dict.fromkeys(workloads, 0.0)
        used = dict.fromkeys(workloads, 0.0)
        assets = dict.fromkeys(workloads, 0)
        for image in images:
            for name, (work, sync) in workloads.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                assets[name] += work(image)
                sync()
                seconds[name] += time.perf_counter() - start
                used[name] += time.process_time() - start_cpu
        for name in workloads:
            wall[name].append(assets[name] / seconds[name])
            cpu[name].append(assets[name] / used[name])
    return wall, cpu


def device_post(device: str, style: LogoStyle, captions: list[Caption]
                ) -> tuple[Callable[[Image.Image], int], Callable[[], None]]:
    """Compose + encode on ``device`` for every placement, the render uploaded once (as the
    renderer's batch would already be there), and the device's synchronisation."""
    import torch

    from adgen.post import gpu

    def work(image: Image.Image) -> int:
        pixels = gpu.to_tensor(image, device)
        for placement in PLACEMENTS:
            ad = gpu.compose_on(pixels, image, placement, subject_box=SUBJECT, logo=style,
                                captions=captions, colors=["#0B5D4B", "#F2C14E"])
            gpu.encode_on(ad.pixels, "jpeg", max_bytes=placement.max_bytes)
        return len(PLACEMENTS)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return work, sync


def ratio(rates: Rates, ours: str, theirs: str) -> float:
    return statistics.median(a / b for a, b in zip(rates[ours], rates[theirs], strict=True))


def jpeg(image: Image.Image) -> bytes:
    """What a quick script saves: a JPEG at quality 85, no byte budget."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


COMPOSE, COMPOSE_ENCODE = "adgen compose", "adgen compose + JPEG encode"
NAIVE, NAIVE_ENCODE = "naive Pillow script", "naive script + JPEG q85"


def report(wall: Rates, cpu: Rates, device: str | None) -> None:
    """Each workload's rates and the ratios, by wall time and by CPU time."""
    for name in wall:
        print(f"{name:<34} {statistics.median(wall[name]):7.1f} assets/s "
              f"({min(wall[name]):.1f}-{max(wall[name]):.1f}), by CPU time "
              f"{statistics.median(cpu[name]):7.1f}")
    for label, rates in (("wall", wall), ("CPU", cpu)):
        print(f"ratios by {label} time: compose / naive {ratio(rates, COMPOSE, NAIVE):.2f}x, "
              f"compose + encode / naive + JPEG q85 "
              f"{ratio(rates, COMPOSE_ENCODE, NAIVE_ENCODE):.2f}x "
              f"(/ naive without encoding {ratio(rates, COMPOSE_ENCODE, NAIVE):.2f}x)")
        if device:
            print(f"  device path ({device}) / Pillow compose + encode: "
                  f"{ratio(rates, f'device path ({device}) + encode', COMPOSE_ENCODE):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="renders to process (default 6)")
    parser.add_argument("--repeats", type=int, default=5, help="turns per workload (default 5)")
    parser.add_argument("--device", help="also time the device path there (cuda, cpu)")
    options = parser.parse_args()
    cv2.setNumThreads(1)  # one thread, like the naive script: compare single-threaded work
    with tempfile.TemporaryDirectory() as folder:
        logo_path = make_logo(Path(folder))
        style = LogoStyle(logo_path)
        captions = [Caption("headline", HEADLINE), Caption("subline", SUBLINE),
                    Caption("cta", CTA)]
        logo = Image.open(logo_path).convert("RGBA")
        font = ImageFont.truetype(str(BOLD), 32)

        def adgen_compose(image: Image.Image) -> int:
            for placement in PLACEMENTS:
                compose(image, placement, subject_box=SUBJECT, logo=style, captions=captions,
                        colors=["#0B5D4B", "#F2C14E"])
            return len(PLACEMENTS)

        def adgen_compose_encode(image: Image.Image) -> int:
            for placement in PLACEMENTS:
                ad = compose(image, placement, subject_box=SUBJECT, logo=style,
                             captions=captions, colors=["#0B5D4B", "#F2C14E"])
                encode_image(ad.image, "jpeg", max_bytes=placement.max_bytes)
            return len(PLACEMENTS)

        def naive_script(image: Image.Image) -> int:
            for placement in PLACEMENTS:
                naive(image, placement, logo, font)
            return len(PLACEMENTS)

        def naive_script_encode(image: Image.Image) -> int:
            for placement in PLACEMENTS:
                jpeg(naive(image, placement, logo, font))
            return len(PLACEMENTS)

        workloads: dict[str, Work] = {
            COMPOSE: (adgen_compose, no_wait),
            COMPOSE_ENCODE: (adgen_compose_encode, no_wait),
            NAIVE: (naive_script, no_wait),
            NAIVE_ENCODE: (naive_script_encode, no_wait),
        }
        if options.device:
            workloads[f"device path ({options.device}) + encode"] = device_post(
                options.device, style, captions)
        print(f"{options.rounds} renders x {len(PLACEMENTS)} placements "
              f"({', '.join(p.name for p in PLACEMENTS)}), {options.repeats} turns each, "
              "one thread")
        wall, cpu = measure(workloads, options.rounds, options.repeats)
        report(wall, cpu, options.device)


if __name__ == "__main__":
    main()
