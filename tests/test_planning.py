from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

import adgen
from adgen.errors import AssetError, AudienceError, TemplateError
from adgen.jobs import RenderJob, derive_seed
from tests.conftest import write_campaign


def plan_of(tmp_path: Path, data: dict, audience: object = None) -> adgen.Plan:
    return adgen.plan(adgen.load_campaign(write_campaign(tmp_path, data)), audience)


def test_summary_counts(tmp_path: Path, campaign_data: dict) -> None:
    plan = plan_of(tmp_path, campaign_data)
    # segments: north/gold, north/silver, south/gold, south/silver, east/gold
    assert plan.summary() == {"customers": 6, "segments": 5, "creatives": 1, "variants": 10,
                              "jobs": 20, "cached": 0, "to_render": 20}  # square + 9:16
    row = plan.variants.iloc[0]
    assert row["prompt"] == "a bottle in the east, gold style"
    assert json.loads(row["captions"]) == {"headline": "Hello East", "cta": "Shop now"}
    assert row["variant_id"] == f"hero-{row['segment_id']}-v0"


def test_seeds_are_deterministic_and_documented(tmp_path: Path, campaign_data: dict) -> None:
    plan = plan_of(tmp_path, campaign_data)
    row = plan.variants.iloc[1]
    payload = json.dumps(["seed", "exp-1", "hero", row["prompt"], "", 1], sort_keys=True,
                         separators=(",", ":"), ensure_ascii=False)
    expected = int(hashlib.sha256(payload.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF
    assert row["seed"] == expected == derive_seed("exp-1", "hero", row["prompt"], "", 1)
    assert plan_of(tmp_path, campaign_data).variants.equals(plan.variants)


def test_adding_a_segment_keeps_the_other_seeds(tmp_path: Path, campaign_data: dict) -> None:
    before = plan_of(tmp_path, campaign_data).variants.set_index("variant_id")
    with (tmp_path / "audience.csv").open("a", encoding="utf-8") as handle:
        handle.write("c7,Guo,west,bronze,3\n")
    after = plan_of(tmp_path, campaign_data).variants.set_index("variant_id")
    assert len(after) == len(before) + 2
    assert after.loc[before.index, "seed"].equals(before["seed"])
    assert after.loc[before.index, "job_key"].equals(before["job_key"])


def test_identical_prompts_render_once(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["creatives"][0]["prompt"] = "a bottle for {{ tier }} members"
    plan = plan_of(tmp_path, campaign_data)
    assert plan.summary()["variants"] == 10
    assert plan.summary()["jobs"] == 8  # gold and silver prompts x 2 variants x 2 shapes
    assert plan.variants["job_key"].nunique() == 4


def test_job_key_hashes_what_changes_the_picture_only() -> None:
    job = RenderJob("offline", None, "p", "", 1, 64, 64, 4, 0.0)
    assert job.key == RenderJob("offline", None, "p", "", 1, 64, 64, 4, 0.0).key
    for change in ({"prompt": "q"}, {"seed": 2}, {"width": 128}, {"model": "m"}, {"steps": 5},
                   {"options": (("palette", ("#000000",)),)}):
        assert RenderJob(**{**job.__dict__, **change}).key != job.key
    moved = RenderJob(**{**job.__dict__, "product_image": "/a/b.png", "product_sha256": "x"})
    same_file_elsewhere = RenderJob(**{**moved.__dict__, "product_image": "/c/d.png"})
    assert moved.key == same_file_elsewhere.key != job.key


def test_caption_change_keeps_job_keys(tmp_path: Path, campaign_data: dict) -> None:
    before = plan_of(tmp_path, campaign_data).variants["job_key"]
    campaign_data["creatives"][0]["captions"]["cta"] = "Buy it"
    assert plan_of(tmp_path, campaign_data).variants["job_key"].equals(before)


def test_missing_template_column_is_named(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["creatives"][0]["captions"]["headline"] = "Hi {{ loyalty }}"
    with pytest.raises(TemplateError) as info:
        plan_of(tmp_path, campaign_data)
    message = str(info.value)
    assert message.startswith("template 'hero.headline' uses 'loyalty', which is not "
                              "available; available: avg_spend, brand_name, campaign, locale, "
                              "product, region, segment_size, tier.")
    assert "Audience columns: customer_id, first_name, region, tier, spend" in message


def test_missing_brand_file_is_named(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["brand"]["logo"] = "missing.png"
    with pytest.raises(AssetError, match=r"brand.logo: file not found: .*missing.png"):
        plan_of(tmp_path, campaign_data)


def test_product_from_an_audience_column_is_looked_up_by_name(
    tmp_path: Path, campaign_data: dict
) -> None:
    del campaign_data["creatives"][0]["product"]
    campaign_data["audience"]["product_column"] = "item"
    frame = pd.DataFrame({"customer_id": ["1", "2"], "region": ["n", "s"], "tier": ["g", "g"],
                          "spend": [1, 2], "item": ["bottle", "../../etc/passwd"]})
    with pytest.raises(AudienceError, match=r"names product '\.\./\.\./etc/passwd', which is not "
                                            r"in brand.products \(bottle\)"):
        plan_of(tmp_path, campaign_data, frame)
    frame.loc[1, "item"] = "bottle"
    plan = plan_of(tmp_path, campaign_data, frame)
    assert set(plan.variants["product"]) == {"bottle"}
    assert all(job.product_image and job.product_image.endswith("bottle.png")
               for job in plan.jobs.values())


def test_audience_override_and_cached_count(tmp_path: Path, campaign_data: dict) -> None:
    frame = pd.DataFrame({"customer_id": ["x"], "region": ["n"], "tier": ["g"], "spend": [1]})
    assert plan_of(tmp_path, campaign_data, frame).summary()["customers"] == 1
