"""AI disclosure end to end: the watermark and label in a run's assets, `adgen verify` on them
and on copies a platform made, the C2PA soft binding, and the attestations in the exports."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

import adgen
from adgen.provenance.metadata import read_xmp
from adgen.provenance.verify import verify
from adgen.provenance.watermark import detect, payload_for
from tests.conftest import base_campaign, write_campaign
from tests.test_cli import adgen as adgen_cli


def small(root: Path, **provenance: Any) -> dict[str, Any]:
    """Three variants (one per region) in a feed, a story and a banner placement."""
    data = base_campaign(root)
    data["audience"]["segment_by"] = ["region"]
    data["creatives"][0]["prompt"] = "a bottle in the {{ region }}"
    data["variants"] = 1
    data["placements"] = ["feed_square", "story", "300x250"]
    data["provenance"] = provenance
    data["quality"] = {"enabled": False}
    return data


def run(root: Path, data: dict[str, Any], *overrides: str) -> adgen.RunResult:
    root.mkdir(parents=True, exist_ok=True)
    return adgen.run(adgen.load_campaign(write_campaign(root, data), overrides=list(overrides)))


@pytest.fixture(scope="module")
def marked(tmp_path_factory: pytest.TempPathFactory) -> adgen.RunResult:
    root = tmp_path_factory.mktemp("marked")
    return run(root, small(root, watermark=True, visible_label=["story"]))


def _jpeg_copy(src: Path, dst: Path, *, scale: float = 1.0, quality: int = 70) -> Path:
    """What a platform does: decode, resize, re-encode; the metadata is gone."""
    with Image.open(src) as image:
        copy = image.convert("RGB")
    if scale != 1.0:
        copy = copy.resize((round(copy.width * scale), round(copy.height * scale)),
                           Image.Resampling.BICUBIC)
    copy.save(dst, "JPEG", quality=quality)
    return dst


def test_every_asset_carries_its_payload_and_the_label_where_asked(
        marked: adgen.RunResult) -> None:
    manifest = marked.manifest
    assert len(manifest) == 9 and set(manifest["status"]) == {"ok"}
    for row in manifest.itertuples():
        payload = payload_for("test-campaign", row.variant_id, row.placement)
        assert row.watermark == payload
        checks = json.loads(row.checks)
        mark = checks["watermark"]
        assert mark["payload"] == payload and mark["alg"] == "dev.adgen.watermark.1"
        assert mark["psnr_db"] >= 40 and mark["read_back"] > 0.5
        assert ("label" in checks["caption_boxes"]) == (row.placement == "story")
        data = (marked.out / row.path).read_bytes()
        assert f'adgen:Watermark="{payload}"' in (read_xmp(data) or "")
        found = detect(Image.open(io.BytesIO(data)))
        assert found is not None and found.payload == payload
    csv = pd.read_csv(marked.out / "manifest.csv", dtype=str)
    assert list(csv["watermark"]) == list(manifest["watermark"])


def test_verify_resolves_assets_and_copies_to_their_variant(
        marked: adgen.RunResult, tmp_path: Path) -> None:
    rows = marked.manifest.to_dict("records")
    files = [marked.out / r["path"] for r in rows[:3]]
    out = adgen_cli("verify", *files)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3
    for line, row in zip(lines, rows[:3], strict=True):
        assert line.startswith(f"{marked.out / row['path']}: watermark {row['watermark']} "
                               "(confidence ")
        assert "IPTC compositeSynthetic" in line
        assert line.endswith(f"the asset of variant {row['variant_id']} {row['placement']} "
                             f"({row['path']})")
    # a platform's copy, away from the output folder: found by its watermark with --out
    feed = next(r for r in rows if r["placement"] == "feed_square")
    copy = _jpeg_copy(marked.out / feed["path"], tmp_path / "copy.jpg", scale=0.5)
    out = adgen_cli("verify", copy, "--out", marked.out, "--json")
    assert out.returncode == 0, out.stderr
    (result,) = json.loads(out.stdout)
    assert result["watermark"]["payload"] == feed["watermark"]
    assert result["watermark"]["size"] == [1080, 1080]
    assert result["iptc_digital_source_type"] is None and result["c2pa"] is None
    assert result["matched_by"] == "watermark"
    assert result["asset"]["variant_id"] == feed["variant_id"]
    assert result["asset"]["path"] == feed["path"]
    assert verify([copy], out=marked.out)[0].line().endswith(
        f"a copy of variant {feed['variant_id']} feed_square ({feed['path']}), found by its "
        "watermark")
    alone = verify([copy])[0]
    assert alone.watermark is not None and alone.asset is None and alone.claims


def test_verify_exits_1_when_a_file_claims_nothing_and_2_on_a_bad_path(
        marked: adgen.RunResult, tmp_path: Path) -> None:
    plain = tmp_path / "plain.png"
    Image.new("RGB", (400, 300), (240, 240, 240)).save(plain)
    asset = marked.out / marked.manifest["path"][0]
    out = adgen_cli("verify", asset, plain)
    assert out.returncode == 1
    assert out.stdout.strip().splitlines()[1] == (
        f"{plain}: no provenance found (no watermark, no IPTC source type, no C2PA manifest)")
    text = tmp_path / "notes.txt"
    text.write_text("hello", encoding="utf-8")
    out = adgen_cli("verify", text)
    assert out.returncode == 1 and "not a picture or video adgen can read" in out.stdout
    out = adgen_cli("verify", asset, tmp_path / "gone.jpg")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == f"error: no such file: {tmp_path / 'gone.jpg'}; give the " \
                                 "pictures or videos to verify"
    out = adgen_cli("verify", asset, "--out", tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"error: {tmp_path}: no manifest.parquet or manifest.csv "
                                  "there; give the output folder of the run that made the files "
                                  "(--out)")


def test_the_offline_renderer_gets_no_watermark_by_default(tmp_path: Path) -> None:
    data = small(tmp_path)
    data["placements"] = ["300x250"]
    result = run(tmp_path, data)
    assert list(result.manifest["watermark"]) == [""] * 3
    for row in result.manifest.itertuples():
        assert "watermark" not in json.loads(row.checks)
        assert detect(Image.open(result.out / row.path)) is None


def test_visible_label_must_name_a_placement_of_the_campaign(tmp_path: Path) -> None:
    data = small(tmp_path, visible_label=["story", "landscape"])
    with pytest.raises(adgen.CampaignError, match=(
            r"provenance.visible_label names placement 'landscape', which is not one of the "
            r"campaign's placements \(feed_square, story, iab_300x250\)")):
        adgen.load_campaign(write_campaign(tmp_path, data))


def test_c2pa_soft_binding_matches_a_stripped_copy_back_to_its_manifest(
        tmp_path: Path, test_pki: dict[str, Path]) -> None:
    c2pa = pytest.importorskip("c2pa", reason="c2pa-python not installed")
    data = small(tmp_path, watermark=True, c2pa_cert=str(test_pki["chain"]),
                 c2pa_key=str(test_pki["key"]))
    data["placements"] = ["feed_square"]
    result = run(tmp_path, data)
    row = result.manifest.iloc[0]
    asset, payload = result.out / row["path"], row["watermark"]
    trust = {"trust": {"trust_anchors": test_pki["root"].read_text()}}
    with c2pa.Context.from_dict(trust) as context, \
            c2pa.Reader(str(asset), context=context) as reader:
        assert reader.get_validation_state() == "Trusted"
        manifest = reader.get_active_manifest()
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    binding = assertions["c2pa.soft-binding"]
    assert binding["alg"] == "dev.adgen.watermark.1"
    assert binding["blocks"] == [{"scope": {}, "value": payload}]
    actions = next(d for label, d in assertions.items() if label.startswith("c2pa.actions"))
    assert [a["action"] for a in actions["actions"]] == ["c2pa.created", "c2pa.watermarked.bound"]
    # the platform strips the manifest; the pixels still name the payload
    stripped = _jpeg_copy(asset, tmp_path / "stripped.jpg", quality=75)
    assert c2pa.Reader.try_create(str(stripped)) is None
    (found,) = verify([stripped], out=result.out, trust=test_pki["root"])
    assert found.c2pa is None and found.watermark is not None
    assert found.watermark.payload == payload and found.matched_by == "watermark"
    assert found.recovered is not None and found.recovered.state == "Trusted"
    assert found.recovered.soft_binding == payload
    assert found.recovered.adgen["variant_id"] == row["variant_id"]
    assert "C2PA stripped, recovered from the soft binding Trusted" in found.line()
    (signed,) = verify([asset], trust=test_pki["root"])
    assert signed.c2pa is not None and signed.c2pa.state == "Trusted"
    assert signed.c2pa.soft_binding == payload and signed.matched_by == "file"


def test_ai_generated_ads_are_attested_in_the_exports(tmp_path: Path) -> None:
    from adgen.testing import make_tiny_sd_pipeline

    tiny = make_tiny_sd_pipeline(tmp_path / "tiny")
    data = small(tmp_path, visible_label=True)
    data["placements"] = ["feed_square", "display_1.91", "300x250", "728x90"]
    data["export"] = {"to": ["google", "html5", "meta", "csv"], "url": "https://shop.example/"}
    result = run(tmp_path, data, "renderer.name=diffusers", f"renderer.model={tiny}",
                 "renderer.width=64", "renderer.height=64", "renderer.steps=1")
    manifest = result.manifest
    assert all(manifest["watermark"].str.len() == 10)  # auto: a trained model made them
    payloads = {(r.variant_id, r.placement): r.watermark for r in manifest.itertuples()}
    exports = result.out / "exports"
    google = json.loads((exports / "google" / "assets.json").read_text())["assets"]
    sheet = pd.read_csv(exports / "google" / "responsive_display_ads.csv", dtype=str)
    assert len(google) == 2 * len(sheet) == 6
    for entry in google:
        assert entry["synthetic_content_info"] == {"advertiser_attestation": {
            "source": "ADVERTISER_ATTESTED", "status": "IS_SYNTHETIC"}}
        assert entry["file"] in set(sheet["Marketing images"]) | set(
            sheet["Square marketing images"])
    creatives = json.loads((exports / "html5" / "creatives.json").read_text())["creatives"]
    assert len(creatives) == 6
    for creative in creatives:
        assert creative["syntheticContentAttestationStatus"] == "IS_SYNTHETIC"
        with zipfile.ZipFile(exports / creative["file"]) as archive:
            background = Image.open(io.BytesIO(archive.read("background.jpg")))
            found = detect(background)
            assert "AI-generated" in archive.read("index.html").decode("utf-8")
        assert found is not None
        assert found.payload == payloads[(creative["variant_id"], creative["placement"])]
    record = json.loads((exports / "export.json").read_text())
    for name in ("google", "html5", "meta", "csv"):
        disclosed = record[name]["disclosure"]
        assert len(disclosed) == 3 and all(d["ai_generated"] for d in disclosed)
        for entry in disclosed:
            assert entry["renderer"] == "diffusers"
            assert set(entry["visible_label"]) == {"feed_square", "display_1.91", "iab_300x250",
                                                   "iab_728x90"}
            assert entry["watermark"] == {p: w for (v, p), w in payloads.items()
                                          if v == entry["variant_id"]}
    ads = pd.read_csv(exports / "csv" / "ads.csv", dtype=str)
    assert set(ads["ai_generated"]) == {"True"} and set(ads["visible_label"]) == {"True"}
    assert set(ads["watermark"]) == set(manifest["watermark"])


def test_video_frames_carry_the_watermark(tmp_path: Path) -> None:
    data = small(tmp_path, watermark=True)
    data["creatives"][0]["kind"] = "video"
    data["creatives"][0]["video"] = {"duration": 1.5, "fps": 10, "end_card": 0.5}
    data["placements"] = ["240x240"]
    result = run(tmp_path, data)
    for row in result.manifest.itertuples():
        mark = json.loads(row.checks)["watermark"]
        assert mark["payload"] == row.watermark and mark["every"] == 1
        assert mark["read_back"] > 0.4
        (found,) = verify([result.out / row.path])
        assert found.kind == "video" and found.watermark is not None
        assert found.watermark.payload == row.watermark
        assert found.frames is not None and found.frames[0] == found.frames[1] >= 5
        assert found.asset is not None and found.asset["variant_id"] == row.variant_id
