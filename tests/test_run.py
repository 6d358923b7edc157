"""End-to-end runs of small campaigns with the offline renderer: what a user would check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import adgen
from adgen.errors import AssetError, CampaignError
from adgen.renderers.offline import OfflineRenderer
from tests.conftest import REPO, write_campaign

MANIFEST_MUST_HAVE = [
    "campaign", "variant_id", "segment_id", "segment", "creative_id", "variant_index",
    "generation", "seed", "prompt", "negative_prompt", "headline", "cta", "captions", "locale",
    "renderer", "model", "job_key", "placement", "width", "height", "format", "path", "bytes",
    "sha256", "created_at", "asset_key", "checks",
]
"""The manifest's columns, in the README's order."""


def run_file(path: Path, **kwargs: object) -> adgen.RunResult:
    return adgen.run(adgen.load_campaign(path), **kwargs)  # type: ignore[arg-type]


def test_example_campaign_end_to_end(tmp_path: Path) -> None:
    campaign = adgen.load_campaign(
        REPO / "campaigns" / "northwind-winback.yaml",
        overrides=[f"output={tmp_path / 'out'}", "renderer.width=384", "renderer.height=384",
                   "variants=1", "experiment.weights=null"],
    )
    result = adgen.run(campaign)
    manifest = result.manifest
    assert list(manifest.columns[: len(MANIFEST_MUST_HAVE)]) == MANIFEST_MUST_HAVE
    assert len(manifest) == 3 * 3  # 3 products x 1 variant, 3 placements
    formats = {"feed_square": ("WEBP", 1080, 1080), "story": ("PNG", 1080, 1920),
               "iab_300x250": ("JPEG", 300, 250)}
    logos = {variant: Image.open(REPO / "examples" / "assets" / name).convert("RGBA")
             for variant, name in (("dark", "logo.png"), ("light", "logo_light.png"))}
    variants_seen: set[str] = set()
    checked = 0
    for row in manifest.itertuples():
        path = result.out / row.path
        data = path.read_bytes()
        assert len(data) == row.bytes
        with Image.open(path) as image:
            assert (image.format, image.width, image.height) == formats[row.placement]
            pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
        checks = json.loads(row.checks)
        left, top, right, bottom = checks["logo_box"]
        # bottom-left, inside the margin and the safe zone
        placement = adgen.resolve_placement(row.placement)
        safe = placement.safe.box(placement.width, placement.height)
        assert left >= safe[0] and bottom <= safe[3]
        assert left < placement.width * 0.2 and bottom > placement.height * 0.5
        # the logo's opaque pixels are really there (the light variant on a dark background)
        variant = checks.get("logo_variant") or "dark"
        variants_seen.add(variant)
        drawn = logos[variant].resize((right - left, bottom - top), Image.Resampling.LANCZOS)
        alpha = np.asarray(drawn)[..., 3] > 250
        assert alpha.sum() > 10
        expected = np.asarray(drawn.convert("RGB"), dtype=np.int16)[alpha]
        got = pixels[top:bottom, left:right][alpha]
        assert np.abs(got - expected).mean() < 30, row.path
        # caption boxes are inside the picture, the safe area and off the logo
        for box in checks["caption_boxes"].values():
            assert safe[0] <= box[0] < box[2] <= safe[2] and safe[1] <= box[1] < box[3] <= safe[3]
        # machine-readable provenance, read back by Pillow's XMP reader
        with Image.open(path) as image:
            xmp = json.dumps(image.getxmp())
        assert "compositeSynthetic" in xmp and row.variant_id in xmp  # offline + product photo
        assert "TrainedAlgorithmicMedia" not in xmp
        checked += 1
    assert checked == len(manifest) == 9  # every asset, whichever logo it got
    assert (result.out / "review.html").exists()
    assignments = pd.read_csv(result.out / "assignments.csv", dtype=str)
    assert list(assignments.columns) == ["customer_id", "segment_id", "variant_id", "creative_id",
                                         "variant_index", "generation"]
    assert set(assignments["variant_id"]) <= set(manifest["variant_id"])
    assert len(assignments) == 240


def test_second_run_renders_nothing_and_caption_change_only_reposts(
    tmp_path: Path, campaign_file: Path, campaign_data: dict
) -> None:
    first = run_file(campaign_file)
    assert first.rendered == 20 and first.assets_written == 30
    assignments = (first.out / "assignments.csv").read_bytes()
    second = run_file(campaign_file)
    assert (second.rendered, second.assets_written, second.assets_reused) == (0, 0, 30)
    assert second.manifest.drop(columns=["created_at"]).equals(
        first.manifest.drop(columns=["created_at"]))
    assert (second.out / "assignments.csv").read_bytes() == assignments
    campaign_data["creatives"][0]["captions"]["cta"] = "Buy two"
    changed = run_file(write_campaign(tmp_path, campaign_data))
    assert changed.rendered == 0 and changed.assets_written == 30
    assert set(changed.manifest["cta"]) == {"Buy two"}
    on_disk = {p.relative_to(changed.out).as_posix()
               for p in (changed.out / "assets").rglob("*") if p.is_file()}
    assert on_disk == set(changed.manifest["path"])  # old assets pruned


def test_adding_a_segment_renders_only_its_jobs(tmp_path: Path, campaign_file: Path) -> None:
    run_file(campaign_file)
    with (tmp_path / "audience.csv").open("a", encoding="utf-8") as handle:
        handle.write("c7,Guo,west,bronze,3\n")
    again = run_file(campaign_file)
    assert again.rendered == 4 and again.assets_written == 6 and again.assets_reused == 30


class CrashingRenderer(OfflineRenderer):
    """Renders a few batches, then dies as a killed process would."""

    calls = 0

    def __call__(self, jobs):  # type: ignore[no-untyped-def]
        CrashingRenderer.calls += 1
        if CrashingRenderer.calls > 2:
            raise KeyboardInterrupt
        return super().__call__(jobs)


def test_interrupted_run_resumes_with_nothing_lost(campaign_file: Path) -> None:
    campaign = adgen.load_campaign(campaign_file, overrides=["renderer.options.batch_size=2"])
    with pytest.raises(KeyboardInterrupt):
        adgen.run(campaign, make_renderer=CrashingRenderer)
    out = campaign.output_dir
    assert not (out / "manifest.parquet").exists()
    assert not list(out.rglob("*.tmp"))
    resumed = adgen.run(campaign)
    # 4 of 20 (10 squares, 10 stories) were cached before the crash; the resumed run renders
    # the 16 others, and one cached variant again: only now is it found a near-duplicate
    assert resumed.rendered == 17 and resumed.summary()["cached"] == 3
    assert len(resumed.manifest) == 30
    for path in resumed.manifest["path"]:
        assert (out / path).is_file()


def test_path_like_and_formula_like_values_stay_data(tmp_path: Path, campaign_data: dict) -> None:
    (tmp_path / "audience.csv").write_text(
        "customer_id,first_name,region,tier,spend\n"
        "=HYPERLINK(\"http://x\"),A,../../etc,gold,1\n"
        "c2,B,CON,gold,2\n"
        "+c3,C,@SUM(A1),gold,3\n",
        encoding="utf-8",
    )
    result = run_file(write_campaign(tmp_path, campaign_data))
    out = result.out
    for path in (out / "assets").rglob("*"):
        assert path.resolve().is_relative_to(out.resolve())
        assert "etc" not in path.name and "CON" not in path.name
    assert not (tmp_path.parent / "etc").exists()
    text = (out / "assignments.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK" in text and "\n'+c3," in text
    manifest_csv = (out / "manifest.csv").read_text(encoding="utf-8")
    assert "@SUM" in manifest_csv
    for line in manifest_csv.splitlines():
        for cell in line.split(","):
            assert not cell.startswith(("=", "+", "@")), cell
    assert pd.read_parquet(out / "manifest.parquet")["segment"].str.contains("../../etc").any()


def test_holdout_and_weights(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["experiment"] = {"seed": "s", "holdout": 0.5, "weights": [0.9, 0.1]}
    result = run_file(write_campaign(tmp_path, campaign_data))
    frame = pd.read_csv(result.out / "assignments.csv", dtype={"customer_id": str})
    assert list(frame.columns) == ["customer_id", "segment_id", "variant_id", "creative_id",
                                   "variant_index", "generation", "holdout"]
    assert frame["variant_id"].isna().equals(frame["holdout"])
    campaign_data["experiment"]["weights"] = [0.5, 0.3, 0.2]
    with pytest.raises(CampaignError, match=r"experiment.weights has 3 values but each segment has"
                                            " 2 variants"):
        adgen.load_campaign(write_campaign(tmp_path, campaign_data))  # before any rendering
    campaign_data["experiment"]["weights"] = [0.9, 0.2]
    with pytest.raises(CampaignError, match=r"sum to 1\.1: they must sum to 1"):
        adgen.load_campaign(write_campaign(tmp_path, campaign_data))


def test_corrupt_logo_and_too_long_caption(tmp_path: Path, campaign_data: dict) -> None:
    (tmp_path / "logo.png").write_bytes(b"not a png")
    with pytest.raises(AssetError, match=r"brand.logo.*logo.png"):
        run_file(write_campaign(tmp_path, campaign_data))
    assert not (tmp_path / "out" / "manifest.parquet").exists()
    tmp2 = tmp_path / "b"
    tmp2.mkdir()
    from tests.conftest import base_campaign

    data = base_campaign(tmp2)
    data["creatives"][0]["captions"]["cta"] = "Shop " * 80
    with pytest.raises(CampaignError, match=r"caption 'cta'"):
        adgen.validate(adgen.load_campaign(write_campaign(tmp2, data)))
    result = run_file(write_campaign(tmp2, data))  # every asset fails, each saying why
    assert result.rendered == 0 and result.failures["status"].str.contains("caption 'cta'").all()
    assert (result.out / "manifest.csv").exists() and (result.out / "review.html").exists()
