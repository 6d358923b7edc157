"""Pictures at the placement's shape: one render per aspect class, native or extended."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import adgen
from adgen.jobs import derive_seed
from adgen.output.cache import RenderCache
from adgen.testing import make_tiny_sd_pipeline
from tests.conftest import write_campaign


def plan_of(tmp_path: Path, data: dict, *overrides: str) -> adgen.Plan:
    return adgen.plan(adgen.load_campaign(write_campaign(tmp_path, data), overrides=overrides))


def test_each_aspect_class_is_its_own_job_with_its_own_seed(tmp_path: Path,
                                                            campaign_data: dict) -> None:
    plan = plan_of(tmp_path, campaign_data)  # feed_square, story, 300x250
    row = plan.variants.iloc[1]
    renders = json.loads(row["renders"])
    assert list(renders) == ["1:1", "9:16"]  # 300x250 shares the square render
    square, story = plan.jobs[renders["1:1"]], plan.jobs[renders["9:16"]]
    assert (square.width, square.height) == (256, 256)
    assert (story.width, story.height) == (192, 344)  # the same pixels at 9:16, 8 px steps
    assert square.seed == row["seed"] == derive_seed("exp-1", "hero", row["prompt"], "", 1)
    assert story.seed == derive_seed("exp-1", "hero", row["prompt"], "", 1, "9:16")
    assert plan.summary()["jobs"] == 20
    crop = plan_of(tmp_path, campaign_data, "renderer.aspect=crop")
    assert crop.summary()["jobs"] == 10
    assert set(crop.variants["seed"]) == set(plan.variants["seed"])


def test_offline_native_render_paints_the_scene_at_the_shape(tmp_path: Path,
                                                             campaign_data: dict) -> None:
    campaign_data["placements"] = ["story", "landscape"]
    campaign_data["quality"] = {"enabled": False}  # seeds as planned: no quality retries
    result = adgen.run(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    cache = RenderCache(result.out / ".cache")
    rows = result.manifest[result.manifest["status"] == "ok"]
    assert set(rows["aspect"]) == {"9:16", "16:9"}
    for row in rows.to_dict("records"):
        job = result.plan.jobs[row["job_key"]]
        picture = cache.get(row["job_key"])
        assert picture is not None and picture.load().size == (job.width, job.height)
        assert row["render"] == f"native {job.width}x{job.height}" and row["seed"] == job.seed
        checks = json.loads(row["checks"])
        assert checks["violations"] == [] and checks["over_subject"] == {}


def test_extend_outpaints_the_square_render_keeping_the_product(tmp_path: Path,
                                                                campaign_data: dict) -> None:
    campaign_data["placements"] = ["feed_square", "story"]
    campaign_data["variants"] = 1
    campaign_data["renderer"]["aspect"] = "extend"
    campaign_data["quality"] = {"enabled": False}  # seeds as planned: no quality retries
    result = adgen.run(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    cache = RenderCache(result.out / ".cache")
    story = result.manifest[result.manifest["placement"] == "story"].iloc[0]
    job = result.plan.jobs[story["job_key"]]
    assert job.source_key is not None and (job.width, job.height) == (256, 456)
    assert story["render"] == f"extend 256x456 from {job.source_key[:8]}"
    _assert_product_kept(cache, job.source_key, story["job_key"])


def _assert_product_kept(cache: RenderCache, source_key: str, key: str) -> None:
    source, extended = cache.get(source_key), cache.get(key)
    assert source is not None and extended is not None
    box, moved = source.subject_box, extended.subject_box
    assert box is not None and moved is not None
    assert moved[2] - moved[0] == box[2] - box[0] and moved[3] - moved[1] == box[3] - box[1]
    before = np.asarray(source.load())[box[1]:box[3], box[0]:box[2]]
    after = np.asarray(extended.load())[moved[1]:moved[3], moved[0]:moved[2]]
    assert np.array_equal(before, after)


def test_diffusers_extend_inpaints_around_the_product(tmp_path: Path,
                                                      campaign_data: dict) -> None:
    model = make_tiny_sd_pipeline(tmp_path / "tiny-sd")
    campaign_data.update(placements=["feed_square", "landscape"], variants=1)
    campaign_data["audience"]["filter"] = "region == 'north'"
    campaign_data["quality"] = {"enabled": False}  # seeds as planned: no quality retries
    campaign_data["renderer"] = {"name": "diffusers", "model": str(model), "width": 64,
                                 "height": 64, "steps": 2, "aspect": "extend"}
    result = adgen.run(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    assert not result.failed
    cache = RenderCache(result.out / ".cache")
    row = result.manifest[result.manifest["placement"] == "landscape"].iloc[0]
    job = result.plan.jobs[row["job_key"]]
    assert (job.width, job.height) == (120, 64)
    picture = cache.get(row["job_key"])
    assert picture is not None and picture.load().size == (120, 64)
    _assert_product_kept(cache, str(job.source_key), row["job_key"])
