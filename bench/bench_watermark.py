"""The invisible watermark, measured: what survives which transformation, and what it costs.

Runs the example campaign (``campaigns/northwind-spring.yaml``, offline, every feed and IAB
placement, watermark off) into a temporary folder, or takes the assets of ``--out`` (an
output folder of unmarked assets). Up to ``--per-placement`` of its assets per placement are
marked, saved as adgen delivers them (JPEG quality 90), then transformed: JPEG quality 70 and
50, WebP, a 0.5x resize, a 90 % centre crop, a screenshot-like PNG (125 % bilinear zoom, RGBA).
For each it prints the detection rate (the right payload read back; a wrong one is counted
and printed too, and so is any payload read from the unmarked ads) and the bit accuracy (the
share of the 64 code bits read right as the original size and crop); then the PSNR of the
mark and the time per megapixel to embed and to detect, and for a video the cost of marking
every frame (or every 6th) against the unmarked clip, in the same process. It asserts nothing
about time.

    .venv/bin/python bench/bench_watermark.py [--out OUT_DIR] [--per-placement N] [--no-video]
                                              [--video-rounds N]
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import adgen
from adgen.manifest import read_manifest
from adgen.placements import PRESETS
from adgen.post.encode import encode_image
from adgen.post.video import VideoSpec, still_to_video
from adgen.provenance import watermark

REPO = Path(__file__).resolve().parents[1]
PLACEMENTS = [name for name in PRESETS if name != "reel"]  # reel is story's size
Attack = Callable[[Image.Image], Image.Image]


def _lossy(image: Image.Image, fmt: str, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, fmt, quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _scaled(image: Image.Image, share: float, resample: Image.Resampling) -> Image.Image:
    size = (max(1, round(image.width * share)), max(1, round(image.height * share)))
    return image.resize(size, resample)


def _crop(image: Image.Image, share: float = 0.9) -> Image.Image:
    width, height = round(image.width * share), round(image.height * share)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def _screenshot(image: Image.Image) -> Image.Image:
    """Shown at 125 % (HiDPI or browser zoom), grabbed as an RGBA PNG."""
    buffer = io.BytesIO()
    _scaled(image, 1.25, Image.Resampling.BILINEAR).convert("RGBA").save(buffer, "PNG")
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


ATTACKS: dict[str, tuple[Attack, float]] = {
    "as delivered": (lambda im: im, 1.0),
    "JPEG 70": (lambda im: _lossy(im, "JPEG", 70), 1.0),
    "JPEG 50": (lambda im: _lossy(im, "JPEG", 50), 1.0),
    "WebP 80": (lambda im: _lossy(im, "WEBP", 80), 1.0),
    "0.5x": (lambda im: _scaled(im, 0.5, Image.Resampling.BICUBIC), 1.0),
    "crop 90%": (_crop, 0.9),
    "screenshot": (_screenshot, 1.0),
}
"""Each transformation and the centre crop it leaves (for the bit accuracy)."""


def unmarked_assets(out: Path | None, folder: Path) -> tuple[Path, list[dict[str, object]]]:
    """The output folder and its finished assets: ``out``'s, or a fresh run's."""
    if out is None:
        out = folder / "spring"
        placements = ", ".join(PLACEMENTS)
        campaign = adgen.load_campaign(REPO / "campaigns" / "northwind-spring.yaml", overrides=[
            f"output={out}", "provenance.watermark=false", f"placements=[{placements}]",
            "report=false"])
        started = time.perf_counter()
        adgen.run(campaign)
        print(f"ran the example campaign in {time.perf_counter() - started:.0f} s -> {out}")
    manifest = read_manifest(out)
    rows = [{str(k): v for k, v in r.items()} for r in manifest.to_dict("records")]
    return out, [r for r in rows if r["status"] == "ok" and r["format"] in ("jpeg", "png", "webp")]


def bit_accuracy(image: Image.Image, payload: str, size: tuple[int, int], crop: float) -> float:
    """The share of code bits read right when the picture is read as ``size`` and ``crop``."""
    soft = watermark.soft_bits(np.asarray(image.convert("RGB")), size, crop)
    return float(np.mean((soft > 0) == watermark.code_bits(payload).astype(bool)))


def bench_images(out: Path, rows: list[dict[str, object]], per_placement: int) -> None:
    by_placement: dict[str, list[dict[str, object]]] = defaultdict(list)
    for row in rows:
        name = str(row["placement"])
        if name in PRESETS and len(by_placement[name]) < per_placement:
            by_placement[name].append(row)
    found: dict[tuple[str, str], list[bool]] = defaultdict(list)
    bits: dict[tuple[str, str], list[float]] = defaultdict(list)
    quality: dict[str, list[float]] = defaultdict(list)
    embed_s: dict[str, list[float]] = defaultdict(list)
    detect_s: dict[str, list[float]] = defaultdict(list)
    wrong = unmarked = false = 0
    warm = Image.new("RGB", (1080, 1080), (200, 180, 160))
    watermark.detect(watermark.embed(warm, "0123456789"))  # first calls load and allocate
    for name, picked in by_placement.items():
        for row in picked:
            with Image.open(out / str(row["path"])) as file:
                original = file.convert("RGB")
            payload = watermark.payload_for("bench", str(row["variant_id"]), name)
            for copy in (original, ATTACKS["JPEG 70"][0](original), ATTACKS["0.5x"][0](original)):
                unmarked += 1
                false += watermark.detect(copy) is not None
            started = time.perf_counter()
            marked = watermark.embed(original, payload)
            embed_s[name].append(time.perf_counter() - started)
            quality[name].append(watermark.psnr(np.asarray(original), np.asarray(marked)))
            sent = Image.open(io.BytesIO(encode_image(marked, "jpeg"))).convert("RGB")
            for attack, (transform, crop) in ATTACKS.items():
                copy = transform(sent)
                started = time.perf_counter()
                result = watermark.detect(copy)
                if attack == "as delivered":
                    detect_s[name].append(time.perf_counter() - started)
                wrong += result is not None and result.payload != payload
                found[(name, attack)].append(result is not None and result.payload == payload)
                bits[(name, attack)].append(bit_accuracy(copy, payload, original.size, crop))
    heads = list(ATTACKS)
    print("\ndetection % / bit accuracy, per placement (the picture saved as JPEG 90 first)")
    print(f"{'placement':16} {'n':>3} {'PSNR dB':>12} " + " ".join(f"{h:>14}" for h in heads)
          + f" {'embed ms/MP':>12} {'detect ms':>10}")
    for name in by_placement:
        size = PRESETS[name].width * PRESETS[name].height / 1e6
        cells = [f"{100 * np.mean(found[(name, h)]):5.0f} / {np.mean(bits[(name, h)]):.3f}"
                 for h in heads]
        print(f"{name:16} {len(quality[name]):3d} {np.mean(quality[name]):6.1f} "
              f"({min(quality[name]):4.1f}) " + " ".join(f"{c:>14}" for c in cells)
              + f" {1000 * np.mean(embed_s[name]) / size:12.0f}"
              f" {1000 * np.mean(detect_s[name]):10.0f}")
    every = [v for (name, head), values in found.items() for v in values
             if name != "iab_320x50" and head in ("JPEG 70", "0.5x")]
    print(f"\nall but 320x50, JPEG 70 and 0.5x: {100 * np.mean(every):.1f} % detected; "
          f"wrong payloads in all {sum(map(len, found.values()))} reads: {wrong}; payloads read "
          f"from the unmarked ads (as they are, JPEG 70, 0.5x): {false} of {unmarked}")


def bench_video(out: Path, rows: list[dict[str, object]], rounds: int) -> None:
    """A 6 s story clip (30 fps, slow zoom) made unmarked, with a mark of its own on every
    frame, and with one every 6th frame (best of ``rounds``, interleaved); and the cost of
    one 1080x1920 frame's mark, computed and added (best of 5)."""
    row = next((r for r in rows if r["placement"] == "story"), None)
    if row is None:
        return
    with Image.open(out / str(row["path"])) as file:
        still = file.convert("RGB")
    placement = PRESETS["story"]
    payload = watermark.payload_for("bench", "video", "story")
    frame = np.asarray(still.resize(placement.size))
    compute = min(_seconds(lambda: watermark.mark_of(frame, payload, video=True))
                  for _ in range(5))
    mark = watermark.mark_of(frame, payload, video=True)
    add = min(_seconds(lambda: mark.apply(frame)) for _ in range(5))
    print(f"\none 1080x1920 frame: mark computed in {compute * 1000:.0f} ms, added in "
          f"{add * 1000:.1f} ms")
    cadences = {"unmarked": 0, "every frame": 1, "every 6th frame": 6}
    best: dict[str, float] = {}
    read: dict[str, str] = {}
    for _ in range(rounds):
        for label, every in cadences.items():
            marker = watermark.FrameMarker(payload, every) if every else None
            started = time.perf_counter()
            clip = still_to_video(still, placement, spec=VideoSpec(mark=marker))
            best[label] = min(best.get(label, math.inf), time.perf_counter() - started)
            if marker is not None:
                with tempfile.TemporaryDirectory() as folder:
                    path = Path(folder) / "clip.mp4"
                    path.write_bytes(clip.data)
                    frames = watermark.video_frames(path, 6)
                hits = sum(1 for f in frames
                           if (found := watermark.detect(f)) and found.payload == payload)
                read[label] = f"; payload read on {hits} of {len(frames)} frames of the MP4"
    for label, seconds in best.items():
        extra = seconds - best["unmarked"]
        print(f"video 1080x1920 6 s ({clip.frames} frames), {label:16}: {seconds:6.1f} s "
              f"({extra / clip.frames * 1000:+.0f} ms per frame, "
              f"x{seconds / best['unmarked']:.2f} the unmarked clip){read.get(label, '')}")


def _seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="an output folder of unmarked assets")
    parser.add_argument("--per-placement", type=int, default=10)
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("--video-rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adgen-bench-wm-") as folder:
        out, rows = unmarked_assets(args.out, Path(folder))
        bench_images(out, rows, args.per_placement)
        if not args.no_video:
            bench_video(out, rows, args.video_rounds)


if __name__ == "__main__":
    main()
