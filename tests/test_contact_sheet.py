"""examples/contact_sheet.py --run: the README's picture shows a finished run's own files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import adgen
from examples.contact_sheet import main, run_rows
from tests.conftest import write_campaign


def test_run_rows_show_the_runs_files_for_segments_that_share_no_value(
        tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["variants"] = 1
    campaign_data["creatives"].append(
        {"id": "calm", "prompt": "a quiet {{ region }} morning",
         "captions": {"headline": "Good morning", "cta": "Look"}})
    result = adgen.run(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    manifest = result.manifest
    # the first variant's story failed: the sheet shows only what the run wrote
    first = manifest.iloc[0]["variant_id"]
    failed = manifest.index[(manifest["variant_id"] == first)
                            & (manifest["placement"] == "story")][0]
    manifest.loc[failed, "status"] = "failed: caption does not fit"
    manifest.to_parquet(result.out / "manifest.parquet")

    rows = run_rows(result.out, 3, ["feed_square", "story", "300x250"])

    assert len(rows) == 3
    creatives = [title.split(" · ")[0] for title, _ in rows]
    assert creatives == ["hero", "calm", "hero"]  # the creatives in turn
    seen: set[tuple[str, str]] = set()
    for title, tiles in rows:
        variant_id = title.split(" · ")[-1]
        assets = manifest[(manifest["variant_id"] == variant_id) & (manifest["status"] == "ok")]
        keys = set(json.loads(assets.iloc[0]["segment"]).items())
        if len(seen) < 4:  # 2 regions × 2 tiers can be told apart twice, then values repeat
            assert not keys & seen, f"{title} repeats a segment value"
        seen |= keys
        by_name = dict(zip(assets["placement"], assets["path"], strict=True))
        assert [tile.label for tile in tiles] == [
            name for name in ("feed_square", "story", "iab_300x250") if name in by_name]
        for tile in tiles:
            with Image.open(result.out / by_name[tile.label]) as image:
                assert np.array_equal(np.asarray(tile.image), np.asarray(image.convert("RGB")))
    assert rows[0][0].endswith(first)
    assert [tile.label for tile in rows[0][1]] == ["feed_square", "iab_300x250"]
    assert [tile.label for tile in rows[1][1]] == ["feed_square", "story", "iab_300x250"]


def test_main_writes_a_small_webp_of_the_run(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["variants"] = 1
    result = adgen.run(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    out = tmp_path / "sheet.webp"
    assert main(["--run", str(result.out), "--rows", "2", "--width", "900", "--height", "200",
                 "--out", str(out), "--placements", "feed_square", "300x250"]) == 0
    with Image.open(out) as sheet:
        assert sheet.format == "WEBP" and sheet.width == 900
        # two rows of 200 px tiles, each under a title and over a label
        assert 2 * 200 < sheet.height < 2 * 200 + 2 * 100
    assert out.stat().st_size < 100_000
    assert len(pd.read_parquet(result.out / "manifest.parquet")) == 5 * 3  # untouched
