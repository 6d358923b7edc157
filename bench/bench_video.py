"""Video post-processing throughput: one 1024x1024 still into three 6-second 1080-wide ads.

adgen's ``still_to_video`` (subject-aware Ken Burns made frame by frame with Pillow, logo and
timed captions laid out as on the still ad, end card, H.264 High + faststart) against a naive
single ffmpeg command per placement (cover scale + centre crop + ``zoompan`` + logo overlay, no
captions, no end card), both with x264 at the same preset and CRF, taking turns per placement.
Prints seconds of finished video per second of wall time, and per second of CPU time (this
process and its ffmpeg children: what a shared machine's load disturbs less), for each and
their ratios; asserts nothing about time.

    .venv/bin/python bench/bench_video.py [--duration 6] [--fps 30] [--rounds 1]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adgen.placements import PRESETS, Placement
from adgen.post.image import Caption, LogoStyle
from adgen.post.text import BOLD
from adgen.post.video import VideoSpec, ffmpeg_exe, still_to_video

PLACEMENTS = [PRESETS[n] for n in ("story", "feed_square", "feed_portrait")]
CAPTIONS = [Caption("headline", "Summer hydration, zero plastic"),
            Caption("subline", "Keeps cold for 24 hours"), Caption("cta", "Shop now")]
COLORS = ["#0B3D91", "#F2A900"]
SUBJECT = (410, 290, 614, 820)


def render() -> Image.Image:
    """A stand-in for a 1024x1024 render: a warm gradient, a textured floor and a bottle."""
    rng = np.random.default_rng(7)
    y = np.linspace(0, 1, 1024)[:, None, None]
    pixels = (np.array([240, 170, 150]) * (1 - y) + np.array([120, 100, 170]) * y
              ) * np.ones((1, 1024, 1)) + rng.normal(0, 3, (1024, 1024, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 740, 1024, 1024), fill=(90, 70, 60))
    for x in range(-300, 1024, 48):
        draw.line((x, 740, x + 300, 1024), fill=(70, 55, 48), width=6)
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


def adgen_video(image: Image.Image, logo: Path, spec: VideoSpec, folder: Path
                ) -> Callable[[Placement], int]:
    def work(placement: Placement) -> int:
        result = still_to_video(image, placement, subject_box=SUBJECT, logo=LogoStyle(logo),
                                captions=CAPTIONS, colors=COLORS, spec=spec)
        (folder / f"adgen_{placement.name}.mp4").write_bytes(result.data)
        return len(result.data)
    return work


def naive_video(still: Path, logo: Path, spec: VideoSpec, folder: Path
                ) -> Callable[[Placement], int]:
    """What a quick script does: one ffmpeg command, zoompan on the centre, logo overlaid."""
    def work(placement: Placement) -> int:
        width, height = placement.size
        frames = round(spec.duration * spec.fps)
        step = spec.motion_amount / frames
        graph = (
            f"[0:v]scale={width}:{height}:force_original_aspect_ratio=increase,"
            f"crop={width}:{height},zoompan=z='min(zoom+{step:.6f},{1 + spec.motion_amount})'"
            f":x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d={frames}:s={width}x{height}"
            f":fps={spec.fps}[bg];[1:v]scale={width // 5}:-1[logo];"
            "[bg][logo]overlay=W-w-40:40,format=yuv420p[out]"
        )
        out = folder / f"naive_{placement.name}.mp4"
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                        "-i", str(still), "-i", str(logo), "-filter_complex", graph,
                        "-map", "[out]", "-c:v", "libx264", "-profile:v", "high",
                        "-preset", spec.preset, "-crf", str(spec.crf), "-movflags", "+faststart",
                        "-frames:v", str(frames), str(out)], check=True)
        return out.stat().st_size
    return work


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (ffmpeg)."""
    own, children = (resource.getrusage(resource.RUSAGE_SELF),
                     resource.getrusage(resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def race(works: dict[str, Callable[[Placement], int]], rounds: int, seconds: float
         ) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds of video per wall second and per CPU second of each way, the ways taking turns
    per placement (so a shared machine's load falls on them alike)."""
    elapsed = dict.fromkeys(works, 0.0)
    used = dict.fromkeys(works, 0.0)
    for _ in range(rounds):
        for placement in PLACEMENTS:
            for label, work in works.items():
                began, began_cpu = time.perf_counter(), cpu_seconds()
                size = work(placement)
                took, cpu = time.perf_counter() - began, cpu_seconds() - began_cpu
                elapsed[label] += took
                used[label] += cpu
                print(f"  {label:6s} {placement.name:14s} {took:6.2f} s wall, {cpu:6.2f} s CPU "
                      f"{size / 1e6:5.2f} MB")
    wall, cpu_rates = {}, {}
    made = seconds * len(PLACEMENTS) * rounds
    for label in works:
        wall[label], cpu_rates[label] = made / elapsed[label], made / used[label]
        print(f"{label:6s} {elapsed[label]:6.2f} s wall, {used[label]:6.2f} s CPU: "
              f"{wall[label]:5.2f} s of video per wall s, {cpu_rates[label]:5.2f} per CPU s")
    return wall, cpu_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1)
    options = parser.parse_args()
    spec = VideoSpec(duration=options.duration, fps=options.fps)
    image = render()
    with tempfile.TemporaryDirectory(prefix="adgen-bench-video-") as name:
        folder = Path(name)
        logo = make_logo(folder)
        still = folder / "still.png"
        image.save(still)
        print(f"{len(PLACEMENTS)} placements x {spec.duration:g} s at {spec.fps} fps, x264 "
              f"preset {spec.preset}, CRF {spec.crf}")
        wall, cpu = race({"adgen": adgen_video(image, logo, spec, folder),
                          "naive": naive_video(still, logo, spec, folder)},
                         options.rounds, spec.duration)
    print(f"ratio adgen / naive: {wall['adgen'] / wall['naive']:.2f} by wall time, "
          f"{cpu['adgen'] / cpu['naive']:.2f} by CPU time")


if __name__ == "__main__":
    main()
