"""Failure isolation and the output folder's ownership: one bad asset fails alone, everything
else is written, and adgen touches only what it wrote."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import adgen
from adgen.errors import OutputError
from adgen.output.files import OWNED_FILE
from tests.conftest import REPO, write_campaign
from tests.fakes import SeedRenderer

LONG = "{{ 'Spring is here and every runner deserves the very best shoes ' * 12 if region == 'east' else 'Hello ' + region }}"  # noqa: E501


def test_one_bad_caption_fails_only_its_assets(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["creatives"][0]["captions"]["headline"] = LONG
    campaign_data["guardrails"] = {"max_caption_chars": 5000}  # long enough to get past
    campaign_data["renderer"]["aspect"] = "crop"  # one render per variant
    campaign = adgen.load_campaign(write_campaign(tmp_path, campaign_data))
    result = adgen.run(campaign)
    assert result.rendered == 8  # preflight: nothing of east's 2 jobs can be made, not rendered
    manifest = result.manifest
    failed = manifest[manifest["status"].str.startswith("failed")]
    east = manifest["segment"].str.contains('"east"')
    assert set(failed.index) == set(manifest[east].index)  # 2 variants x 3 placements
    assert len(failed) == 6 and (failed["path"] == "").all()
    assert failed["status"].str.contains("caption 'headline' .* does not fit", regex=True).all()
    ok = manifest[manifest["status"] == "ok"]
    assert len(ok) == 24 and all((result.out / p).is_file() for p in ok["path"])
    # everything else is written, and the failures are described
    out = result.out
    on_disk = {p.relative_to(out).as_posix() for p in (out / "assets").rglob("*") if p.is_file()}
    assert on_disk == set(ok["path"])
    assignments = pd.read_csv(out / "assignments.csv", dtype=str).fillna("")
    assert not set(assignments["variant_id"]) & set(failed["variant_id"])
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["failed_assets"] == 6 and sum(run_json["failures"].values()) == 6
    html = (out / "review.html").read_text(encoding="utf-8")
    assert html.count("failed: caption &#39;headline&#39;") == 6
    # the fix: a rerun makes only what failed
    campaign_data["creatives"][0]["captions"]["headline"] = "Hello {{ region }}"
    fixed = adgen.run(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    assert fixed.failures.empty and fixed.rendered == 2
    reused = set(fixed.manifest.loc[~fixed.manifest["segment"].str.contains('"east"'), "path"])
    assert reused == set(ok["path"]) and fixed.assets_written == 6


def test_failed_renders_are_failed_rows_and_a_rerun_retries_them(campaign_file: Path) -> None:
    campaign = adgen.load_campaign(campaign_file, overrides=["renderer.aspect=crop"])
    result = adgen.run(campaign, make_renderer=functools.partial(SeedRenderer,
                                                                 fail_prompt="south"))
    failed = result.failures
    assert len(result.failed) == 4 and len(failed) == 4 * 3
    # the quality gate retried each with the next seeds before giving up
    assert failed["status"].str.fullmatch(
        r"failed: render failed: quality: seed \d+: NaN image(; seed \d+: NaN image)+").all()
    assert result.summary()["failed_assets"] == 12
    again = adgen.run(campaign, make_renderer=SeedRenderer)
    assert again.rendered == 4 and again.failures.empty and again.assets_written == 12


def test_cli_groups_failures_by_reason_and_exits_1(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["placements"] = ["feed_square", {"placement": "300x250", "max_bytes": 1500}]
    path = write_campaign(tmp_path, campaign_data)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "adgen", "run", str(path)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "failed 10 of 20 assets" in done.stderr
    assert "10 × cannot encode the 300x250 ad as JPEG within 1,500 bytes" in done.stderr
    assert (tmp_path / "out" / "manifest.csv").exists()
    assert (tmp_path / "out" / "review.html").exists()
    validate = subprocess.run([sys.executable, "-m", "adgen", "validate", str(path)],
                              capture_output=True, text=True, env=env, timeout=300)
    assert validate.returncode == 2  # preflight: even a flat picture misses the budget
    lines = validate.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines)
    assert any("within 1,500 bytes" in line and "asset(s)" in line for line in lines)
    campaign_data["creatives"][0]["captions"]["cta"] = "Shop " * 60
    validate = subprocess.run([sys.executable, "-m", "adgen", "validate",
                               str(write_campaign(tmp_path, campaign_data))],
                              capture_output=True, text=True, env=env, timeout=300)
    lines = validate.stderr.strip().splitlines()
    assert validate.returncode == 2 and len(lines) >= 2
    assert any("caption 'cta'" in line and "10 asset(s)" in line for line in lines)


def test_foreign_files_are_kept_and_only_adgens_are_pruned(tmp_path: Path,
                                                           campaign_data: dict) -> None:
    out = tmp_path / "out"
    (out / "assets" / "brand-logos").mkdir(parents=True)
    foreign = [out / "README.md", out / "assets" / "brand-logos" / "logo.svg",
               out / "assets" / "notes.txt"]
    for path in foreign:
        path.write_text("not adgen's")
    first = adgen.run(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    campaign_data["creatives"][0]["captions"]["cta"] = "Buy it now"  # every asset changes
    second = adgen.run(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    assert all(path.read_text() == "not adgen's" for path in foreign)
    assert not any((out / p).exists() for p in set(first.manifest["path"])
                   - set(second.manifest["path"]))
    assert set(json.loads((out / OWNED_FILE).read_text())) == set(second.manifest["path"])


def test_symlinked_assets_folder_is_refused_untouched(tmp_path: Path, campaign_data: dict) -> None:
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "keep.jpg").write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "assets").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutputError, match="is a symbolic link"):
        adgen.run(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    assert [p.name for p in elsewhere.iterdir()] == ["keep.jpg"]


def test_a_symlink_planted_in_a_variant_folder_fails_that_asset(
        tmp_path: Path, campaign_data: dict) -> None:
    campaign = adgen.load_campaign(write_campaign(tmp_path, campaign_data))
    first = adgen.run(campaign)
    row = first.manifest.iloc[0]
    folder = first.out / "assets" / row["variant_id"]
    elsewhere = tmp_path / "elsewhere"
    folder.rename(elsewhere)
    folder.symlink_to(elsewhere, target_is_directory=True)
    again = adgen.run(campaign)
    failed = again.failures
    assert set(failed["variant_id"]) == {row["variant_id"]}
    assert failed["status"].str.contains("is a symbolic link").all()
    assert (elsewhere / Path(row["path"]).name).read_bytes()  # not deleted


def test_orphaned_temp_files_are_cleaned_and_garbled_cache_rerendered(
        campaign_file: Path) -> None:
    campaign = adgen.load_campaign(campaign_file)
    first = adgen.run(campaign)
    out = first.out
    leftovers = [out / "assets" / ".feed_square-x.jpg.a1b2c3d4.tmp",
                 out / ".manifest.csv.zz99yy88.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")
    cached = sorted((out / ".cache" / "renders").rglob("*.png"))
    cached[0].write_bytes(cached[0].read_bytes()[:500])  # truncated
    cached[1].write_bytes(b"\x89PNG garbage")  # garbled
    json_entry = cached[2].with_suffix(".json")
    json_entry.write_text("{not json")
    assert adgen.plan(campaign).summary()["to_render"] == 3
    again = adgen.run(campaign)
    assert again.rendered == 3 and again.failures.empty
    assert not any(path.exists() for path in leftovers)
    assert all(p.stat().st_size > 500 for p in cached[:2])
