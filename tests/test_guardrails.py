"""Guardrails: blocked words, personal data, brand rules recorded per asset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import adgen
from adgen.errors import CampaignError, TemplateError
from tests.conftest import write_campaign


def run_data(tmp_path: Path, data: dict) -> adgen.RunResult:
    data["placements"] = ["300x250"]
    return adgen.run(adgen.load_campaign(write_campaign(tmp_path, data)))


def test_blocked_words_stop_the_variant_and_say_why(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["guardrails"] = {"blocked": ["free money", r"re:\bsouth\w*"]}
    campaign_data["creatives"][0]["captions"]["headline"] = (
        "{{ 'Free   MONEY' if tier == 'silver' else 'Hello ' ~ region }}")
    result = run_data(tmp_path, campaign_data)
    blocked = result.manifest[result.manifest["status"] != "ok"]
    reasons = dict(zip(blocked["variant_id"], blocked["status"], strict=True))
    # silver segments (north, south) hit "free money"; south/gold hits the regex in the prompt
    assert len(reasons) == 2 * 3
    assert set(reasons.values()) == {"blocked: blocked word 'free money' in headline",
                                     r"blocked: blocked word 're:\bsouth\w*' in prompt"}
    assert (blocked["path"] == "").all()
    assert result.rendered == 4 and result.summary()["blocked"] == 6
    summary = json.loads((result.out / "run.json").read_text())
    assert {k: f"blocked: {v}" for k, v in summary["blocked"].items()} == reasons
    assignments = pd.read_csv(result.out / "assignments.csv", dtype=str, keep_default_na=False)
    assert not set(assignments["variant_id"]) & set(reasons)


def test_bad_blocked_pattern(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["guardrails"] = {"blocked": ["re:(unclosed"]}
    with pytest.raises(CampaignError, match=r"guardrails.blocked: 're:\(unclosed' is not a valid"):
        adgen.plan(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))


def per_customer(campaign_data: dict, headline: str, **guardrails: object) -> dict:
    campaign_data["audience"] = {"path": "audience.csv", "segment_by": []}
    campaign_data["creatives"][0]["prompt"] = "a bottle on a table"
    campaign_data["creatives"][0]["captions"]["headline"] = headline
    campaign_data["guardrails"] = guardrails
    campaign_data["variants"] = 1
    return campaign_data


def test_names_reach_captions_only_when_allowed(tmp_path: Path, campaign_data: dict) -> None:
    data = per_customer(campaign_data, "Hi {{ first_name }}!")
    with pytest.raises(TemplateError) as info:
        adgen.plan(adgen.load_campaign(write_campaign(tmp_path, data)))
    assert str(info.value) == (
        "templates use personal data column(s) ['first_name']; names, e-mails and the like "
        "reach prompts only when listed in guardrails.prompt_columns")
    data = per_customer(campaign_data, "Hi {{ first_name }}!", prompt_columns=["first_name"])
    result = run_data(tmp_path, data)
    assert "Hi Chloé!" in set(result.manifest["headline"])
    for path in result.manifest["path"]:  # file names carry ids and hashes, never the name
        assert "Chlo" not in path and "Ana" not in path


def test_personal_columns_need_explicit_permission(tmp_path: Path, campaign_data: dict) -> None:
    (tmp_path / "audience.csv").write_text(
        "customer_id,email,region,tier,spend\nc1,a@example.com,north,gold,1\n", encoding="utf-8")
    data = per_customer(campaign_data, "Hello")
    data["audience"]["segment_by"] = ["email"]
    data["creatives"][0]["captions"]["headline"] = "Hello {{ email }}"
    with pytest.raises(TemplateError, match=r"personal data column\(s\) \['email'\]"):
        adgen.plan(adgen.load_campaign(write_campaign(tmp_path, data)))


def test_email_in_a_caption_blocks_unless_allowed(tmp_path: Path, campaign_data: dict) -> None:
    (tmp_path / "audience.csv").write_text(
        "customer_id,first_name,region,tier,spend\nc1,bob@example.com,north,gold,1\n",
        encoding="utf-8")
    data = per_customer(campaign_data, "Hi {{ first_name }}", prompt_columns=["first_name"])
    # the only variant is blocked: nothing would be made, which is an error, not a success
    with pytest.raises(CampaignError, match=r"block every variant \(1\).*an e-mail address in "
                                            r"headline \(personal data"):
        run_data(tmp_path, data)
    data = per_customer(campaign_data, "Hi {{ first_name }}", prompt_columns=["first_name"],
                        allow_pii=True)
    assert list(run_data(tmp_path, data).manifest["status"]) == ["ok"]


def test_brand_rules_are_checked_per_asset(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["guardrails"] = {"min_contrast": 21}
    result = run_data(tmp_path, campaign_data)
    for checks in result.manifest["checks"].map(json.loads):
        assert any(v.startswith("headline contrast") and v.endswith("< 21.0")
                   for v in checks["violations"])
        assert "logo missing" not in checks["violations"]
    campaign_data["guardrails"] = {}
    result = run_data(tmp_path, campaign_data)  # the default minimum (4.5) is met
    violations = [json.loads(c)["violations"] for c in result.manifest["checks"]]
    assert violations == [[]] * len(violations)


def test_visible_ai_label(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["provenance"] = {"visible_label": True, "label": "Made with AI"}
    campaign_data["placements"] = ["feed_square"]
    path = write_campaign(tmp_path, campaign_data)
    result = adgen.run(adgen.load_campaign(path, overrides=["variants=1"]))
    plain = adgen.run(adgen.load_campaign(path, overrides=[
        "variants=1", "provenance.visible_label=false", f"output={tmp_path / 'plain'}"]))
    unlabelled = dict(zip(plain.manifest["variant_id"], plain.manifest["path"], strict=True))
    for row in result.manifest.itertuples():
        checks = json.loads(row.checks)
        assert checks["violations"] == []
        left, top, right, bottom = checks["caption_boxes"]["label"]
        assert 0 < right - left < 1080 and 0 < bottom - top < 200
        with Image.open(result.out / row.path) as labelled, \
                Image.open(plain.out / unlabelled[row.variant_id]) as without:
            box = (left, top, right, bottom)
            drawn = np.asarray(labelled.convert("L").crop(box), dtype=np.int16)
            before = np.asarray(without.convert("L").crop(box), dtype=np.int16)
        # the label's text is drawn there: many pixels changed, strongly
        assert (np.abs(drawn - before) > 60).mean() > 0.05, row.path
