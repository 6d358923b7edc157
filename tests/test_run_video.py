"""Video variants through the whole pipeline: decoded and checked as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import adgen
from adgen.post.ffmpeg import probe_video
from adgen.provenance.metadata import IPTC_COMPOSITE_SYNTHETIC, read_xmp
from tests.conftest import REPO


def test_example_video_campaign(tmp_path: Path) -> None:
    campaign = adgen.load_campaign(REPO / "campaigns" / "northwind-video.yaml", overrides=[
        f"output={tmp_path / 'out'}", "renderer.width=512", "renderer.height=512",
        "creatives.0.video.duration=2", "creatives.0.video.fps=12",
        "creatives.0.video.end_card=0.5", "placements=[{placement: 270x480}, 240x240]",
    ])
    result = adgen.run(campaign)
    manifest = result.manifest
    assert len(manifest) == 3 * 2  # bronze, silver, gold x two placements
    assert set(manifest["format"]) == {"mp4"}
    for row in manifest.itertuples():
        path = result.out / row.path
        info = probe_video(path)
        assert (info.width, info.height) == (row.width, row.height)
        assert (info.codec, info.pix_fmt, info.faststart) == ("h264", "yuv420p", True)
        assert info.frames == row.frames == 24 and info.fps == row.fps == 12
        assert row.duration_s == pytest.approx(2.0) and info.duration == pytest.approx(2.0, 0.05)
        assert info.has_audio  # the brand jingle
        xmp = read_xmp(path.read_bytes())
        assert xmp is not None and IPTC_COMPOSITE_SYNTHETIC in xmp and row.variant_id in xmp
        checks = json.loads(row.checks)
        assert checks["violations"] == []
    again = adgen.run(campaign)
    assert (again.rendered, again.assets_written) == (0, 0)
    assert list(again.manifest["sha256"]) == list(manifest["sha256"])


def test_duration_limit_per_placement_is_checked_before_rendering(campaign_file: Path) -> None:
    with pytest.raises(adgen.CampaignError) as info:
        adgen.load_campaign(campaign_file, overrides=[
            "creatives.0.kind=video", "creatives.0.video.duration=3",
            "placements=[{placement: 240x240, max_duration: 2}]",
        ])
    assert str(info.value) == (
        f"{campaign_file}: (top level): creative 'hero' lasts 3 s but placement '240x240' allows "
        "at most 2 s; shorten video.duration or raise max_duration")


def test_text_to_video_campaign_with_a_diffusers_video_model(
    tmp_path: Path, campaign_file: Path
) -> None:
    import torch
    from diffusers import AnimateDiffPipeline

    from adgen.output.cache import RenderCache
    from adgen.testing import make_tiny_animatediff_pipeline

    tiny = make_tiny_animatediff_pipeline(tmp_path / "tiny-animatediff")
    campaign = adgen.load_campaign(campaign_file, overrides=[
        "renderer.name=diffusers-video", f"renderer.model={tiny}", "renderer.width=64",
        "renderer.height=64", "renderer.steps=2", "renderer.guidance=0",
        "renderer.options={num_frames: 8, fps: 8}", "variants=1", "creatives.0.product=null",
        "creatives.0.kind=video", "creatives.0.video={duration: 1, fps: 8, end_card: 0}",
        "placements=[240x240]", "quality.enabled=false",
    ])
    result = adgen.run(campaign)
    assert result.rendered == 5 and set(result.manifest["format"]) == {"mp4"}
    pipe = AnimateDiffPipeline.from_pretrained(tiny)
    pipe.set_progress_bar_config(disable=True)
    cache = RenderCache(campaign.output_dir / ".cache")
    row = result.plan.variants.iloc[0]
    expected = pipe(prompt=row["prompt"], negative_prompt=row["negative_prompt"] or None,
                    num_frames=8, generator=torch.Generator("cpu").manual_seed(int(row["seed"])),
                    num_inference_steps=2, guidance_scale=0.0, height=64, width=64).frames[0]
    cached = cache.get(row["job_key"])
    assert cached is not None and cached.frames == 8 and cached.fps == 8
    for got, want in zip(cached.load_frames(), expected, strict=True):
        assert np.array_equal(np.asarray(got), np.asarray(want.convert("RGB")))
    for manifest_row in result.manifest.itertuples():
        info = probe_video(result.out / manifest_row.path)
        assert (info.width, info.height, info.frames, info.codec) == (240, 240, 8, "h264")
