"""Locales: per-customer languages, translated captions (inline and gettext), Babel formatting,
right-to-left detection; and catalog products joined to customers through a plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image, ImageDraw

import adgen
from adgen.catalog.locales import is_rtl, normalise_locale
from adgen.errors import CampaignError, TemplateError
from adgen.prompts import TemplateSet
from tests.conftest import write_campaign


def render(source: str, locale: str, **context: Any) -> str:
    templates = TemplateSet()
    templates.add("t", source)
    return templates.render("t", {"locale": locale, **context})


@pytest.mark.parametrize(("locale", "expected"), [
    ("en_US", "$1,234.50"), ("de_DE", "1.234,50\xa0$"), ("ja_JP", "$1,234.50"),
    ("ar", "\u200f1,234.50\xa0US$"), ("fr_FR", "1\u202f234,50\xa0$US"),
])
def test_currency_follows_the_locale(locale: str, expected: str) -> None:
    assert render("{{ 1234.5 | currency('USD') }}", locale) == expected


def test_money_numbers_percent_and_dates_per_locale() -> None:
    from adgen.catalog.feeds import parse_price

    price = parse_price("15.00 EUR")
    assert render("{{ p | currency }}", "de_DE", p=price) == "15,00\xa0€"
    assert render("{{ p | currency }}", "en_IE", p=price) == "€15.00"
    assert render("{{ p | currency }}", "ja", p=parse_price("1500 JPY")) == "￥1,500"
    assert render("{{ 1234567.891 | number }}", "de") == "1.234.567,891"
    assert render("{{ 1234.5 | number(0) }}", "en") == "1,234"
    assert render("{{ 0.25 | percent }}", "de") == "25\xa0%"
    assert render("{{ '2026-03-15' | date }}", "de") == "15.03.2026"
    assert render("{{ '2026-03-15' | date('long') }}", "ja") == "2026年3月15日"
    with pytest.raises(TemplateError, match="currency filter: give the currency"):
        render("{{ 15 | currency }}", "en")


def test_locale_tags_and_direction() -> None:
    assert normalise_locale("de-de") == "de_DE"
    assert normalise_locale("pt-BR") == "pt_BR"
    assert is_rtl("ar") and is_rtl("he_IL") and is_rtl("fa")
    assert not is_rtl("ja") and not is_rtl("de_AT")
    with pytest.raises(ValueError, match="unknown locale 'xx-yy'"):
        normalise_locale("xx-yy")


# -- campaigns with locales ---------------------------------------------------------------------

AUDIENCE = """customer_id,region,lang
c1,north,en
c2,north,de-DE
c3,north,ar
c4,south,ja
c5,south,de_AT
c6,south,
"""


def locale_campaign(root: Path, **locale: Any) -> dict[str, Any]:
    (root / "audience.csv").write_text(AUDIENCE, encoding="utf-8")
    return {
        "name": "locales",
        "audience": {"path": "audience.csv", "segment_by": ["region"]},
        "locale": {"column": "lang", "default": "en", **locale},
        "creatives": [{
            "id": "hero", "prompt": "a scene in the {{ region }}",
            "captions": {
                "headline": {"en": "Hello {{ region }}", "de": "Hallo {{ region }}",
                             "ar": "مرحبا {{ region }}", "ja": "こんにちは {{ region }}"},
                "price": "{{ 1234.5 | currency('EUR') }}",
                "cta": "Shop now",
            },
        }],
        "variants": 1,
        "renderer": {"name": "offline", "width": 256, "height": 256},
        "placements": ["feed_square"],
        "output": "out",
    }


def plan_of(root: Path, data: dict[str, Any]) -> adgen.Plan:
    return adgen.plan(adgen.load_campaign(write_campaign(root, data)))


def test_segments_split_by_locale_and_captions_follow(tmp_path: Path) -> None:
    data = locale_campaign(tmp_path)
    (tmp_path / "po").mkdir()
    (tmp_path / "po" / "de.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Shop now"\nmsgstr "Jetzt kaufen"\n', encoding="utf-8")
    (tmp_path / "po" / "ar").mkdir()
    (tmp_path / "po" / "ar" / "LC_MESSAGES").mkdir()
    (tmp_path / "po" / "ar" / "LC_MESSAGES" / "adgen.po").write_text(
        'msgid "Shop now"\nmsgstr "تسوق الآن"\n', encoding="utf-8")
    (tmp_path / "po" / "ja.po").write_text('msgid "Shop now"\nmsgstr "今すぐ購入"\n',
                                           encoding="utf-8")
    data["locale"]["translations"] = "po"
    variants = plan_of(tmp_path, data).variants
    by_locale = {row["locale"]: json.loads(row["captions"])
                 for row in variants.to_dict("records")}
    # north: en, de_DE, ar; south: ja, de_AT, and c6 (no language) in the default locale
    assert sorted(by_locale) == ["ar", "de_AT", "de_DE", "en", "ja"]
    assert len(variants) == 6
    assert by_locale["de_DE"] == {"headline": "Hallo north", "price": "1.234,50\xa0€",
                                  "cta": "Jetzt kaufen"}
    assert by_locale["de_AT"]["headline"] == "Hallo south"  # de_AT falls back to de
    assert by_locale["de_AT"]["price"] == "€\xa01.234,50"  # Austrian format
    assert by_locale["ar"]["cta"] == "تسوق الآن"
    assert by_locale["ja"] == {"headline": "こんにちは south", "price": "€1,234.50",
                               "cta": "今すぐ購入"}
    assert by_locale["en"]["cta"] == "Shop now"


def test_a_missing_translation_fails_validation_naming_each_pair(tmp_path: Path) -> None:
    data = locale_campaign(tmp_path)
    del data["creatives"][0]["captions"]["headline"]["ja"]
    with pytest.raises(TemplateError) as info:
        plan_of(tmp_path, data)
    assert str(info.value).startswith(
        "caption 'hero.cta' has no 'ar' translation; caption 'hero.cta' has no 'de_AT' "
        "translation; caption 'hero.cta' has no 'de_DE' translation; caption 'hero.cta' has no "
        "'ja' translation; caption 'hero.headline' has no 'ja' translation: add them")
    data["locale"]["fallback"] = True
    variants = plan_of(tmp_path, data).variants.set_index("locale")
    assert json.loads(variants.loc["ja", "captions"])["headline"] == "Hello south"
    assert json.loads(variants.loc["ar", "captions"])["cta"] == "Shop now"


def test_an_unknown_locale_blocks_only_its_segment(tmp_path: Path) -> None:
    data = locale_campaign(tmp_path, fallback=True)
    del data["creatives"][0]["captions"]["cta"]
    (tmp_path / "audience.csv").write_text(AUDIENCE + "c7,east,klingon\n", encoding="utf-8")
    variants = plan_of(tmp_path, data).variants
    bad = variants[variants["blocked"] != ""]
    assert len(bad) == 0  # fallback: klingon customers get the default locale
    data["locale"]["fallback"] = False
    variants = plan_of(tmp_path, data).variants
    bad = variants[variants["blocked"] != ""]
    assert list(bad["blocked"]) == [
        "unknown locale 'klingon' in column 'lang'"]
    assert (variants["blocked"] == "").sum() == 6


def test_bad_locale_settings_are_campaign_errors(tmp_path: Path) -> None:
    data = locale_campaign(tmp_path)
    data["locale"]["default"] = "qq"
    with pytest.raises(CampaignError, match=r"campaign.yaml: locale.default: locale: unknown "
                       r"locale 'qq'; use a language tag such as en, de_DE or ar"):
        plan_of(tmp_path, data)
    data = locale_campaign(tmp_path)
    data["creatives"][0]["captions"]["cta"] = {"en": "Go", "zz-top": "Los"}
    with pytest.raises(CampaignError, match="caption 'cta': unknown locale 'zz-top'"):
        plan_of(tmp_path, data)


# -- catalogs joined to customers ---------------------------------------------------------------


def catalog_campaign(root: Path) -> dict[str, Any]:
    for name, colour in (("red.png", (200, 30, 30)), ("blue.png", (30, 30, 200))):
        image = Image.new("RGB", (120, 120), (255, 255, 255))
        ImageDraw.Draw(image).rectangle((30, 20, 90, 100), fill=colour)
        image.save(root / name)
    (root / "feed.tsv").write_text(
        "id\ttitle\tprice\tsale_price\tavailability\timage_link\n"
        "p-red\tRed lamp\t40.00 EUR\t30.00 EUR\tin_stock\tred.png\n"
        "p-blue\tBlue lamp\t55.00 EUR\t\tin_stock\tblue.png\n"
        "p-gone\tGone lamp\t10.00 EUR\t\tout_of_stock\tred.png\n"
        "p-broken\tBroken lamp\t10.00 EUR\t\tin_stock\tnothing.png\n", encoding="utf-8")
    (root / "audience.csv").write_text(
        "customer_id,lang,viewed,views\n"
        "c1,de,p-red,1\nc2,en,p-blue,3\nc3,en,p-gone,1\nc4,en,p-broken,2\nc5,en,p-nope,1\n"
        "c6,de,p-blue,1\n", encoding="utf-8")
    return {
        "name": "catalog",
        "audience": {"path": "audience.csv", "segment_by": [], "product_column": "viewed"},
        "catalog": {"path": "feed.tsv"},
        "locale": {"column": "lang", "default": "en"},
        "creatives": [{"id": "viewed", "prompt": "a photo of a {{ product.title }}",
                       "captions": {"headline": {"en": "{{ product }} for {{ product.current_price "
                                                       "| currency }}",
                                                 "de": "{{ product.title }} für {{ "
                                                       "product.current_price | currency }}"}}}],
        "variants": 1,
        "renderer": {"name": "offline", "width": 256, "height": 256},
        "placements": ["feed_square"],
        "output": "out",
    }


def test_each_customer_gets_the_product_they_viewed(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, catalog_campaign(tmp_path))
    variants = plan.variants
    ok = variants[variants["blocked"] == ""].set_index("product")
    assert json.loads(ok.loc["p-red", "captions"]) == {"headline": "Red lamp für 30,00\xa0€"}
    blue = ok.loc["p-blue"]
    assert sorted(json.loads(c)["headline"] for c in blue["captions"]) == [
        "Blue lamp for €55.00", "Blue lamp für 55,00\xa0€"]
    assert ok.loc["p-red", "prompt"] == "a photo of a Red lamp"
    blocked = dict(zip(variants["product"], variants["blocked"], strict=True))
    assert blocked["p-gone"] == "product 'p-gone' left out: availability is out_of_stock"
    assert blocked["p-broken"] == ("product 'p-broken' left out: image link 'nothing.png': "
                                   "file not found")
    assert blocked["p-nope"] == "product 'p-nope' not in the catalog"
    assert plan.products_left_out == {
        "p-gone": "availability is out_of_stock",
        "p-broken": "image link 'nothing.png': file not found"}
    # the job composes the cut-out from the cache, keyed by its content
    job = plan.jobs[ok.loc["p-red", "job_key"]]
    assert job.product_image is not None and "/.cache/catalog/cutouts/" in job.product_image
    cut = Image.open(job.product_image)
    assert cut.mode == "RGBA" and cut.getpixel((0, 0))[3] == 0
    assert cut.getpixel((60, 60)) == (200, 30, 30, 255)
    # two customers who viewed the blue lamp in two languages share one render
    assert plan.summary()["jobs"] == 2


def test_segment_product_by_an_aggregate(tmp_path: Path) -> None:
    data = catalog_campaign(tmp_path)
    (tmp_path / "audience.csv").write_text(
        "customer_id,lang,viewed,views\n"
        "c1,en,p-red,1\nc2,en,p-red,1\nc3,en,p-blue,5\n", encoding="utf-8")
    data["audience"]["segment_by"] = ["lang"]
    assert list(plan_of(tmp_path, data).variants["product"]) == ["p-red"]  # most viewers
    data["audience"]["product_rank_by"] = "views"
    assert list(plan_of(tmp_path, data).variants["product"]) == ["p-blue"]  # most views


def test_catalog_campaign_runs_end_to_end(tmp_path: Path) -> None:
    data = catalog_campaign(tmp_path)
    result = adgen.run(adgen.load_campaign(write_campaign(tmp_path, data)))
    manifest = result.manifest
    ok = manifest[manifest["status"] == "ok"]
    assert len(ok) == 3
    image = Image.open(tmp_path / "out" / ok.iloc[0]["path"])
    assert image.size == (1080, 1080)
    summary = json.loads((tmp_path / "out" / "run.json").read_text())
    assert summary["products_left_out"] == {
        "p-gone": "availability is out_of_stock",
        "p-broken": "image link 'nothing.png': file not found"}
    assignments = pd.read_csv(tmp_path / "out" / "assignments.csv", dtype=str,
                              keep_default_na=False)
    assigned = dict(zip(assignments["customer_id"], assignments["variant_id"], strict=True))
    assert assigned["c1"] and assigned["c2"] and assigned["c6"]
    assert assigned["c3"] == assigned["c4"] == assigned["c5"] == ""


def test_right_to_left_variants_mirror_the_layout(tmp_path: Path) -> None:
    from tests.conftest import draw_logo

    data = locale_campaign(tmp_path, fallback=True)
    draw_logo(tmp_path / "logo.png", color=(20, 40, 160))
    data["brand"] = {"name": "Acme", "logo": "logo.png", "logo_position": "top-right",
                     "colors": ["#0B3D91", "#F2A900", "#FFFFFF"]}
    (tmp_path / "audience.csv").write_text("customer_id,region,lang\nc1,north,en\nc2,north,ar\n",
                                           encoding="utf-8")
    result = adgen.run(adgen.load_campaign(write_campaign(tmp_path, data)))
    rows = result.manifest.set_index("locale")
    for locale, left_side in (("ar", True), ("en", False)):
        row = rows.loc[locale]
        x0, y0, x1, y1 = json.loads(row["checks"])["logo_box"]
        assert bool(x1 <= row["width"] / 2) is left_side, (locale, x0, x1)
        image = Image.open(tmp_path / "out" / row["path"]).convert("RGB")
        # the logo's blue bar is drawn where the box says
        r, g, b = image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2))
        assert b > 120 and r < 90, (locale, (r, g, b))
        assert y1 < row["height"] / 4


def test_validate_lists_the_products_left_out(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write_campaign(tmp_path, catalog_campaign(tmp_path))
    done = subprocess.run([sys.executable, "-m", "adgen", "validate", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = " ".join(done.stdout.split())
    assert "left out product p-gone: availability is out_of_stock" in lines
    assert "left out product p-broken: image link 'nothing.png': file not found" in lines
