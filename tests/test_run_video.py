"""Video variants through the whole pipeline: decoded and checked as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import adgen
from adgen.post.ffmpeg import probe_video
from adgen.provenance import IPTC_COMPOSITE, read_xmp
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
        assert xmp is not None and IPTC_COMPOSITE in xmp and row.variant_id in xmp
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
