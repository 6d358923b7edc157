"""A campaign rendered with the diffusers renderer, through the pipeline and the CLI, on a tiny
pipeline saved to disk (so the real ``from_pretrained`` loading path runs, offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import adgen
from adgen.output.cache import RenderCache
from adgen.testing import make_tiny_sd_pipeline
from tests.conftest import REPO

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny") / "sd")


def test_campaign_renders_what_plain_diffusers_renders(
    tiny: Path, campaign_file: Path, campaign_data: dict
) -> None:
    from diffusers import StableDiffusionPipeline

    campaign = adgen.load_campaign(campaign_file, overrides=[
        "renderer.name=diffusers", f"renderer.model={tiny}", "renderer.width=64",
        "renderer.height=64", "renderer.steps=2", "renderer.guidance=0", "variants=1",
        "creatives.0.product=null", "placements=[300x250]", "quality.enabled=false",
    ])
    result = adgen.run(campaign)
    assert result.rendered == 5 and len(result.manifest) == 5
    assert set(result.manifest["model"]) == {str(tiny)}
    pipe = StableDiffusionPipeline.from_pretrained(tiny, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    cache = RenderCache(campaign.output_dir / ".cache")
    for row in result.plan.variants.itertuples():
        expected = pipe(row.prompt, negative_prompt=row.negative_prompt or None, height=64,
                        width=64, num_inference_steps=2, guidance_scale=0.0,
                        generator=torch.Generator("cpu").manual_seed(int(row.seed))).images[0]
        cached = cache.get(row.job_key)
        assert cached is not None
        assert np.array_equal(np.asarray(cached.load()), np.asarray(expected.convert("RGB")))


def test_product_scene_keeps_the_product_pixels(tiny: Path, campaign_file: Path) -> None:
    campaign = adgen.load_campaign(campaign_file, overrides=[
        "renderer.name=diffusers", f"renderer.model={tiny}", "renderer.width=64",
        "renderer.height=64", "renderer.steps=2", "variants=1", "placements=[300x250]",
        "quality.enabled=false",
    ])
    result = adgen.run(campaign)
    cache = RenderCache(campaign.output_dir / ".cache")
    product = Image.open(campaign.brand.products["bottle"]).convert("RGBA")
    product = product.crop(product.getchannel("A").getbbox())
    for key in result.plan.variants["job_key"].unique():
        cached = cache.get(key)
        assert cached is not None and cached.composite and cached.subject_box is not None
        left, top, right, bottom = cached.subject_box
        placed = product.resize((right - left, bottom - top), Image.Resampling.LANCZOS)
        alpha = np.asarray(placed)[..., 3] == 255
        got = np.asarray(cached.load())[top:bottom, left:right][alpha]
        # the product's opaque pixels survive generation exactly
        assert np.array_equal(got, np.asarray(placed.convert("RGB"))[alpha])


def test_a_pipeline_that_ships_a_safety_checker_is_gated_by_it_offline(
    tmp_path: Path, campaign_file: Path
) -> None:
    """The quality gate's safety check is on by default for diffusers: with a Stable Diffusion
    1.x folder it uses the folder's checker (HF_HUB_OFFLINE: the hub default cannot load)."""
    folder = make_tiny_sd_pipeline(tmp_path / "sd1", safety_checker=[])
    campaign = adgen.load_campaign(campaign_file, overrides=[
        "renderer.name=diffusers", f"renderer.model={folder}", "renderer.width=64",
        "renderer.height=64", "renderer.steps=2", "variants=1", "creatives.0.product=null",
        "placements=[300x250]", "quality.text=false",
    ])
    result = adgen.run(campaign)
    assert list(result.manifest["status"]) == ["ok"] * 5
    scores = [json.loads(cell)["scores"] for cell in result.manifest["quality"]]
    assert all(score["unsafe"] < 0 for score in scores), scores


def test_cli_renderer_and_model_override(tiny: Path, campaign_file: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "adgen", "run", str(campaign_file), "--renderer", "diffusers",
         "--model", str(tiny), "--set", "renderer.width=64", "--set", "renderer.height=64",
         "--set", "renderer.steps=1", "--set", "variants=1", "--set", "placements=[300x250]",
         "--set", "creatives.0.product=null", "--set", "quality.enabled=false"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "5 rendered" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "adgen", "run", str(campaign_file), "--renderer", "diffusers",
         "--model", str(tiny.parent / "missing")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "missing" in bad.stderr
