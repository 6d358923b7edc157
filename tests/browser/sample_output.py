"""A small, realistic adgen output folder (manifest, assets, assignments, analysis) built in
milliseconds, for the review-sheet tests. Columns come from the pipeline, so they stay in sync."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from adgen.manifest import MANIFEST_COLUMNS

SEGMENTS = {
    "s0a1b2c3d4e": {"region": "north", "tier": "gold"},
    "s1f2e3d4c5b": {"region": "south", "tier": "silver"},
}
PLACEMENTS = [("feed_square", 216, 216, "webp"), ("story", 108, 192, "png"),
              ("iab_300x250", 300, 250, "jpeg")]
EXT = {"webp": "webp", "png": "png", "jpeg": "jpg", "mp4": "mp4"}
COLORS = [(200, 40, 40), (40, 120, 200), (40, 160, 80), (220, 160, 20)]
VIDEO_COLOR = (230, 30, 30)


def _picture(size: tuple[int, int], color: tuple[int, int, int], fmt: str) -> bytes:
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2),
                                    fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, fmt.upper())
    return buffer.getvalue()


def make_clip(path: Path, size: tuple[int, int] = (96, 160), frames: int = 6) -> bytes:
    """A short H.264 clip, every frame :data:`VIDEO_COLOR`."""
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(path), size, fps=6, codec="libx264",
                                         pix_fmt_out="yuv420p",
                                         output_params=["-movflags", "+faststart"],
                                         macro_block_size=16)
    writer.send(None)
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    frame[:] = VIDEO_COLOR
    for _ in range(frames):
        writer.send(frame.tobytes())
    writer.close()
    return path.read_bytes()


def make_output(root: Path, *, captions: dict[str, str] | None = None,
                prompt: str = "a bottle on a beach, {region}, warm light", video: bool = True,
                analysis: bool = True) -> Path:
    """Write an output folder under ``root`` and return it: 2 segments × 2 variants × 3 image
    placements (plus one MP4 when ``video``), assignments, run.json and, when ``analysis``,
    analysis.csv/.json/.png with a control, a winner and a loser per segment."""
    out = root / "out"
    rows: list[dict[str, Any]] = []
    for s, (segment_id, values) in enumerate(SEGMENTS.items()):
        for index in range(2):
            variant_id = f"hero-{segment_id}-v{index}"
            texts = captions or {"headline": f"Hello {values['region']}", "cta": "Shop now"}
            base = {
                "campaign": "demo-campaign", "variant_id": variant_id, "segment_id": segment_id,
                "segment": json.dumps(values), "creative_id": "hero", "variant_index": index,
                "seed": 1000 + 10 * s + index, "prompt": prompt.format(**values),
                "negative_prompt": "blurry", "headline": texts.get("headline", ""),
                "cta": texts.get("cta", ""), "captions": json.dumps(texts), "renderer": "offline",
                "model": "tiny-test", "job_key": hashlib.sha256(variant_id.encode()).hexdigest(),
                "created_at": "2026-03-01T12:00:00+00:00", "checks": json.dumps({"omitted": []}),
            }
            for name, width, height, fmt in PLACEMENTS:
                data = _picture((width, height), COLORS[2 * s + index], fmt)
                rows.append(_row(out, base, name, width, height, fmt, data))
            if video and s == 0 and index == 0:
                clip = out / ".clip.mp4"
                data = make_clip(clip)
                clip.unlink()
                rows.append(_row(out, base, "reel", 96, 160, "mp4", data))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest.to_parquet(out / "manifest.parquet", index=False)
    manifest.to_csv(out / "manifest.csv", index=False)
    variants = manifest["variant_id"].drop_duplicates().tolist()
    assignments = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(12)],
        "segment_id": [v.split("-")[1] for v in variants for _ in range(3)],
        "variant_id": [v for v in variants for _ in range(3)],
    })
    assignments.to_csv(out / "assignments.csv", index=False)
    (out / "run.json").write_text(json.dumps({"finished_at": "2026-03-01T12:05:00+00:00"}))
    if analysis:
        write_analysis(out, variants)
    return out


def _row(out: Path, base: dict[str, Any], placement: str, width: int, height: int, fmt: str,
         data: bytes) -> dict[str, Any]:
    sha = hashlib.sha256(data).hexdigest()
    rel = f"assets/{base['variant_id']}/{placement}-{sha[:8]}.{EXT[fmt]}"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_bytes(data)
    asset_key = hashlib.sha256(f"{base['variant_id']}{placement}".encode()).hexdigest()
    return {**base, "placement": placement, "width": width, "height": height, "format": fmt,
            "path": rel, "bytes": len(data), "sha256": sha, "asset_key": asset_key}


def write_analysis(out: Path, variants: list[str]) -> None:
    """analysis.csv in the shape ``adgen analyze`` writes (scope column), with an SRM warning."""
    records = []
    for segment_id in SEGMENTS:
        mine = [v for v in variants if v.split("-")[1] == segment_id]
        for index, variant_id in enumerate(mine):
            verdict = "control" if index == 0 else ("winner" if segment_id.startswith("s0")
                                                    else "loser")
            uplift = None if index == 0 else (0.12 if verdict == "winner" else -0.2)
            records.append({
                "scope": segment_id, "variant_id": variant_id, "arm": f"hero-v{index}",
                "users": 10000, "conversions": 500 if index == 0 else 560, "rate": 0.05,
                "uplift": uplift, "ci_low": None if uplift is None else uplift - 0.1,
                "ci_high": None if uplift is None else uplift + 0.1,
                "p_value": None if uplift is None else 0.0123,
                "chance_to_win": None if uplift is None else 0.9632, "verdict": verdict,
            })
    records.append({"scope": "all", "variant_id": "hero-v1", "arm": "hero-v1", "users": 20000,
                    "conversions": 1100, "rate": 0.055, "uplift": 0.05, "ci_low": -0.01,
                    "ci_high": 0.11, "p_value": 0.2, "chance_to_win": 0.8,
                    "verdict": "inconclusive"})
    pd.DataFrame(records).to_csv(out / "analysis.csv", index=False)
    (out / "analysis.json").write_text(json.dumps({"warnings": ["sample ratio mismatch in all"]}))
    Image.new("RGB", (240, 120), (250, 250, 250)).save(out / "analysis.png")
