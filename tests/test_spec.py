from __future__ import annotations

from pathlib import Path

import pytest

import adgen
from adgen.errors import CampaignError
from tests.conftest import REPO, write_campaign


def test_example_campaigns_load_with_paths_relative_to_the_yaml() -> None:
    for path in sorted((REPO / "campaigns").glob("*.yaml")):
        spec = adgen.load_campaign(path)
        assert spec.audience.path is not None and spec.audience.path.is_absolute()
        assert spec.audience.path.exists(), path
        assert spec.source == path.resolve()


def test_relative_paths_resolve_against_the_yaml_folder(campaign_file: Path) -> None:
    spec = adgen.load_campaign(campaign_file)
    assert spec.audience.path == campaign_file.parent / "audience.csv"
    assert spec.brand.logo == campaign_file.parent / "logo.png"
    assert spec.output_dir == campaign_file.parent / "out"


def test_unknown_field_and_bad_values_are_all_reported(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["creatives"][0]["promt"] = "typo"
    campaign_data["variants"] = 0
    campaign_data["placements"] = ["feed_square", "banana"]
    path = write_campaign(tmp_path, campaign_data)
    with pytest.raises(CampaignError) as info:
        adgen.load_campaign(path)
    lines = str(info.value).splitlines()
    assert f"{path}: creatives.0.promt: unknown field" in lines[-1] or any(
        line.startswith(f"{path}: creatives.0.promt: unknown field") for line in lines
    )
    assert any(line.startswith(f"{path}: variants: Input should be greater") for line in lines)
    assert any("unknown placement 'banana'" in line and "300x250" not in line.split("'")[1]
               for line in lines)


def test_custom_and_iab_placements_resolve() -> None:
    assert adgen.resolve_placement("300x250").name == "iab_300x250"
    assert adgen.resolve_placement("300x250").max_bytes == 150_000
    custom = adgen.resolve_placement("640x480")
    assert (custom.name, custom.width, custom.height) == ("custom_640x480", 640, 480)
    story = adgen.resolve_placement("story")
    assert story.safe.box(1080, 1920) == (65, 269, 1015, 1248)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ncreatives: [\n  - id: a\n", encoding="utf-8")
    with pytest.raises(CampaignError, match=r"bad\.yaml: line \d+: invalid YAML"):
        adgen.load_campaign(path)


def test_missing_campaign_file(tmp_path: Path) -> None:
    with pytest.raises(CampaignError, match="campaign file not found"):
        adgen.load_campaign(tmp_path / "nope.yaml")


def test_overrides_use_dotted_paths_and_are_validated(campaign_file: Path) -> None:
    spec = adgen.load_campaign(
        campaign_file,
        overrides=["variants=3", "creatives.0.captions.cta=Buy", "renderer.width=512",
                   "placements=[story]"],
    )
    assert spec.variants == 3
    assert spec.creatives[0].captions["cta"] == "Buy"
    assert spec.renderer.width == 512
    assert [p.placement for p in spec.placements] == ["story"]
    with pytest.raises(CampaignError, match=r"renderer.width: .*multiple of 8"):
        adgen.load_campaign(campaign_file, overrides=["renderer.width=500"])
    with pytest.raises(CampaignError, match="creatives has 1 items; '5' is not an index"):
        adgen.load_campaign(campaign_file, overrides=["creatives.5.id=x"])
    with pytest.raises(CampaignError, match=r"expected dotted.path=VALUE"):
        adgen.load_campaign(campaign_file, overrides=["variants"])


def test_duplicate_creatives_and_unknown_product(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["creatives"].append(dict(campaign_data["creatives"][0]))
    campaign_data["creatives"][1]["product"] = "shoe"
    path = write_campaign(tmp_path, campaign_data)
    with pytest.raises(CampaignError) as info:
        adgen.load_campaign(path)
    message = str(info.value)
    assert "duplicate creative id ['hero']: each must be unique" in message
    campaign_data["creatives"][1]["id"] = "other"
    with pytest.raises(CampaignError) as info:
        adgen.load_campaign(write_campaign(tmp_path, campaign_data))
    assert str(info.value).endswith("creative 'other' names product 'shoe', which is not in "
                                    "brand.products (['bottle'])")


def test_unsafe_ids_are_refused(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["creatives"][0]["id"] = "../etc"
    path = write_campaign(tmp_path, campaign_data)
    with pytest.raises(CampaignError, match=r"creatives\.0\.id: creative id '\.\./etc' must be"):
        adgen.load_campaign(path)
