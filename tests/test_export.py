"""Publishing: each upload file checked against the platforms' published limits, read back
as a user (or the platform's importer) would read it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import adgen
from adgen.errors import CampaignError
from adgen.export.audiences import normalise_email, normalise_phone
from adgen.export.limits import check_banner_zip, google_length
from adgen.output.files import safe_csv
from tests.conftest import write_campaign
from tests.export_fixture import CTA, URL, campaign_data, load, make_output

GOOGLE_HTML5_TYPES = {".html", ".css", ".js", ".gif", ".png", ".jpg", ".jpeg", ".svg"}
META_CTA = {"SHOP_NOW", "LEARN_MORE", "SIGN_UP", "BOOK_NOW", "BUY_NOW", "GET_OFFER"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> adgen.RunResult:
    return make_output(tmp_path_factory.mktemp("export"))


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _ratio(width: int, height: int, target: float) -> bool:
    return abs(width / height - target) <= 0.01 * target


def _asset_sizes(run: adgen.RunResult) -> dict[str, tuple[int, int]]:
    return {Path(p).name: Image.open(run.out / p).size for p in run.manifest["path"] if p}


# --- HTML5 banners ---------------------------------------------------------------------------


def test_every_banner_zip_passes_google_ads_and_cm360_rules(run: adgen.RunResult) -> None:
    zips = sorted((run.out / "exports" / "html5").rglob("*.zip"))
    variants = set(run.manifest["variant_id"])
    assert len(zips) == 2 * len(variants)  # 300x250 and 728x90 for each variant
    for path in zips:
        data = path.read_bytes()
        width, height = map(int, path.stem.removeprefix("iab_").split("x"))
        assert check_banner_zip(data, (width, height)) == []
        assert len(data) <= 150_000
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            page = archive.read("index.html").decode("utf-8")
            background = Image.open(io.BytesIO(archive.read("background.jpg")))
        assert len(names) <= 40 and {Path(n).suffix for n in names} <= GOOGLE_HTML5_TYPES
        assert background.size == (width, height)
        assert page.startswith("<!DOCTYPE html>")
        assert f'<meta name="ad.size" content="width={width},height={height}">' in page
        assert 'var clickTag = "https://shop.example/spring?utm_source=adgen\\u0026x=1";' in page
        assert 'href="javascript:window.open(window.clickTag)"' in page
        # nothing outside the ZIP: the only address in the page is the clickTag's
        assert page.count("https://") == 1 and "//" not in page.replace("https://", "")
        for name in names:
            assert name == "index.html" or f'src="{name}"' in page
        assert "animation-iteration-count: 1;" in page and "animation-duration: 2s;" in page


def test_banner_text_is_escaped_in_the_page(tmp_path: Path) -> None:
    hostile = '<img src=x onerror=alert(1)> "Tom\'s" & co'
    spec = load(tmp_path, to=["html5"])
    creative = spec.creatives[0].model_copy(update={"captions": {"headline": hostile,
                                                                 "cta": "Go"}})
    spec = spec.model_copy(update={"creatives": [creative],
                                   "placements": spec.placements[4:5]})
    adgen.run(spec)
    zips = sorted((spec.output_dir / "exports" / "html5").rglob("*.zip"))
    assert zips
    page = zipfile.ZipFile(zips[0]).read("index.html").decode("utf-8")
    assert "<img src=x" not in page and "onerror=alert(1)>" not in page
    assert 'alt="&lt;img src=x onerror=alert(1)&gt; &#34;Tom&#39;s&#34; &amp; co"' in page


def _zip(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


GOOD_PAGE = """<!DOCTYPE html><html><head>
<meta name="ad.size" content="width=300,height=250">
<script>var clickTag = "https://a.example/";</script>
<style>.c { animation-duration: 5s; animation-iteration-count: 2; }</style></head>
<body><a href="javascript:window.open(window.clickTag)"><img src="a.jpg"></a></body></html>"""


@pytest.mark.parametrize(("files", "problem"), [
    ({"index.html": GOOD_PAGE.replace("300", "320")}, "ad.size says (320, 250)"),
    ({"index.html": GOOD_PAGE.replace("var clickTag", "var exit")}, "does not define var clickTag"),
    ({"index.html": GOOD_PAGE.replace("window.open(window.clickTag)", "void(0)")},
     "no exit opens window.clickTag"),
    ({"index.html": GOOD_PAGE.replace('src="a.jpg"', 'src="https://cdn.example/a.jpg"')},
     "index.html requests something outside the ZIP"),
    ({"index.html": GOOD_PAGE, "s.css": "a { background: url(//cdn.example/x.png) }"},
     "s.css requests something outside the ZIP"),
    ({"index.html": GOOD_PAGE.replace("count: 2", "count: infinite")}, "loops forever"),
    ({"index.html": GOOD_PAGE.replace("count: 2", "count: 4")},
     "animation loops 4 times; the limit is 3"),
    ({"index.html": GOOD_PAGE.replace("5s", "16s")}, "animation lasts 32 s; the limit is 30 s"),
    ({"index.html": GOOD_PAGE, "run.exe": b"MZ"}, "run.exe: file type .exe is not allowed"),
    ({"index.html": GOOD_PAGE, "big.jpg": bytes(range(256)) * 600},
     "the ZIP is 15"),
    ({f"f{i}.png": b"x" for i in range(40)} | {"index.html": GOOD_PAGE}, "41 files"),
    ({"main.html": GOOD_PAGE}, "no index.html at the root"),
    ({"index.html": GOOD_PAGE, "../up.png": b"x"}, "unsafe path '../up.png'"),
    (None, "not a readable ZIP"),
])
def test_banner_validator_names_each_broken_rule(files: dict[str, str | bytes] | None,
                                                 problem: str) -> None:
    assert check_banner_zip(_zip({"index.html": GOOD_PAGE}), (300, 250)) == []
    data = _zip(files) if files is not None else b"PK\x03\x04 truncated"
    problems = check_banner_zip(data, (300, 250))
    assert any(problem in p for p in problems), problems


# --- Meta --------------------------------------------------------------------------------


def test_meta_bulk_sheet_has_every_ad_paused_with_its_copy(run: adgen.RunResult) -> None:
    rows = _csv(run.out / "exports" / "meta" / "bulk_import.csv")
    required = ["Campaign Name", "Campaign Status", "Campaign Objective", "Ad Set Name",
                "Ad Set Run Status", "Ad Name", "Ad Status", "Title", "Body", "Link",
                "Call to Action", "Image File Name"]
    assert rows and all(column in rows[0] for column in required)
    assert {r["Ad Name"] for r in rows} == set(run.manifest["variant_id"])
    sizes = _asset_sizes(run)
    for row in rows:
        assert row["Campaign Status"] == row["Ad Set Run Status"] == row["Ad Status"] == "PAUSED"
        assert row["Link"] == URL and row["Call to Action"] in META_CTA
        assert row["Title"] == "'" + CTA  # formula guard, as in every adgen CSV
        assert row["Body"].startswith("Hello ")
        width, height = sizes[row["Image File Name"]]
        assert width >= 600 and any(_ratio(width, height, r) for r in (1, 0.8, 1.91, 9 / 16))


def test_meta_asset_feed_spec_per_ad_set(run: adgen.RunResult) -> None:
    files = sorted((run.out / "exports" / "meta" / "ad_sets").glob("*.json"))
    assert {f.stem for f in files} == set(run.manifest["segment_id"])
    by_path = {p: (w, h) for p, w, h in run.manifest[["path", "width", "height"]].itertuples(
        index=False)}
    for path in files:
        payload = json.loads(path.read_text(encoding="utf-8"))
        assert payload["campaign"]["status"] == payload["ad_set"]["status"] == "PAUSED"
        assert len(payload["ads"]) == 1
        for ad in payload["ads"]:
            assert ad["status"] == "PAUSED"
            spec = ad["creative"]["asset_feed_spec"]
            assert 1 <= len(spec["images"]) <= 10
            for key in ("bodies", "titles"):
                assert 1 <= len(spec[key]) <= 5
            assert spec["titles"] == [{"text": CTA}]  # JSON needs no formula guard
            assert spec["link_urls"] == [{"website_url": URL}]
            assert spec["call_to_action_types"][0] in META_CTA
            labels = {image["adlabels"][0]["name"]: image["url"] for image in spec["images"]}
            rules = spec["asset_customization_rules"]
            assert len(rules) >= 2  # Meta refuses an asset_feed_spec with fewer
            chosen = {r["customization_spec"]["facebook_positions"][0]:
                      by_path[labels[r["image_label"]["name"]]] for r in rules}
            assert _ratio(*chosen["story"], 9 / 16) and _ratio(*chosen["feed"], 0.8)
            for url in labels.values():
                width, height = by_path[url]
                assert width >= 600
                assert any(_ratio(width, height, r) for r in (1, 0.8, 1.91, 9 / 16, 16 / 9))


# --- Google Ads --------------------------------------------------------------------------


def test_google_responsive_display_ads_within_limits(run: adgen.RunResult) -> None:
    rows = _csv(run.out / "exports" / "google" / "responsive_display_ads.csv")
    required = ["Campaign", "Ad group", "Ad type", "Status", "Headline 1", "Long headline",
                "Description 1", "Business name", "Final URL", "Marketing images",
                "Square marketing images"]
    assert rows and all(column in rows[0] for column in required)
    assert len(rows) == len(set(run.manifest["variant_id"]))
    # each ad's landing page names its variant, so Google's reports can be matched back
    assert sorted(row["Final URL"] for row in rows) == sorted(
        f"{URL}&utm_content={variant}" for variant in set(run.manifest["variant_id"]))
    sizes = _asset_sizes(run)
    for row in rows:
        assert row["Ad type"] == "Responsive display ad" and row["Status"] == "Paused"
        headlines = [row[f"Headline {i}"] for i in range(1, 6) if row[f"Headline {i}"]]
        descriptions = [row[f"Description {i}"] for i in range(1, 6) if row[f"Description {i}"]]
        assert 1 <= len(headlines) <= 5 and all(len(h) <= 30 for h in headlines)
        assert 0 < len(row["Long headline"]) <= 90
        assert 1 <= len(descriptions) <= 5 and all(len(d) <= 90 for d in descriptions)
        assert row["Business name"] == "Acme"
        assert "'" + CTA in headlines  # guarded against formula injection
        for column, ratio, least in (("Marketing images", 1.91, (600, 314)),
                                     ("Square marketing images", 1.0, (300, 300))):
            images = row[column].split(";")
            assert images and images != [""]
            for image in images:
                width, height = sizes[Path(image).name]
                assert _ratio(width, height, ratio)
                assert width >= least[0] and height >= least[1]


def _edit_manifest(out: Path, variant_id: str, **changes: str) -> None:
    manifest = pd.read_parquet(out / "manifest.parquet")
    for column, value in changes.items():
        manifest.loc[manifest["variant_id"] == variant_id, column] = value
    manifest.to_parquet(out / "manifest.parquet", index=False)


def test_google_counts_wide_characters_twice_and_leaves_out_what_cannot_fit(
        run: adgen.RunResult, tmp_path: Path) -> None:
    assert google_length("Hello") == 5 and google_length("春のセール") == 10
    out = tmp_path / "copy"
    shutil.copytree(run.out, out)
    long = "春のセール" * 9 + "!"  # 46 characters, 91 as Google counts them
    first = sorted(set(run.manifest["variant_id"]))[0]
    _edit_manifest(out, first, captions=json.dumps({"headline": long, "cta": "Go"}),
                   headline=long)
    result = adgen.export(out, to="google", url=URL, campaign=load(tmp_path))
    assert result.skipped["google"] == [{
        "variant_id": first,
        "reason": f"long headline {long!r} is 91 characters; the limit is 90"}]
    rows = _csv(result.files["google"][0])
    assert len(rows) == 2 and first not in {r["Ad group"] for r in rows}  # the others stay


def test_google_leaves_out_ads_without_a_picture_per_ratio(tmp_path: Path) -> None:
    result = adgen.export(adgen.run(load(tmp_path, to=[]).model_copy(update={
        "placements": load(tmp_path).placements[:1]})).out, to="google", url=URL,
        campaign=load(tmp_path))
    assert len(result.skipped["google"]) == 3
    assert all("no 1.91:1 picture" in s["reason"] for s in result.skipped["google"])
    assert _csv(result.files["google"][0]) == []


# --- customer lists ------------------------------------------------------------------------


def test_customer_lists_only_when_allowed(run: adgen.RunResult) -> None:
    assert not (run.out / "exports" / "meta" / "audiences").exists()
    assert not (run.out / "exports" / "google" / "customer_match").exists()


def test_hashed_customer_lists_per_variant(tmp_path: Path) -> None:
    spec = load(tmp_path, audiences=True, phone_country_code="49")
    result = adgen.run(spec)
    assigned = result.assignments.set_index("customer_id")["variant_id"]
    meta = {p.stem: pd.read_csv(p, dtype=str, keep_default_na=False)
            for p in (result.out / "exports" / "meta" / "audiences").glob("*.csv")}
    google = {p.stem: pd.read_csv(p, dtype=str, keep_default_na=False)
              for p in (result.out / "exports" / "google" / "customer_match").glob("*.csv")}
    assert set(meta) == set(google) == set(assigned[assigned != ""])
    assert all(list(f.columns) == ["email", "phone"] for f in meta.values())
    assert all(list(f.columns) == ["Email", "Phone"] for f in google.values())

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    ana = assigned["c1"]
    assert list(meta[ana].iloc[0]) == [sha("ana.lopez@example.com"), sha("16505550100")]
    assert list(google[ana].iloc[0]) == [sha("ana.lopez@example.com"), sha("+16505550100")]
    ben = meta[assigned["c2"]]  # a national number, given the campaign's country code
    assert sha("4915123456789") in set(ben["phone"])
    everything = "".join(f.to_csv() for f in [*meta.values(), *google.values()])
    assert "example.com" not in everything and "16505550100" not in everything
    for frame in [*meta.values(), *google.values()]:
        assert frame.map(lambda v: v == "" or len(v) == 64).all().all()
    # c3 (no valid e-mail, no phone) and c5 (neither) cannot be matched: left out
    assert sum(len(f) for f in meta.values()) == len(assigned) - 2
    record = json.loads((result.out / "exports" / "export.json").read_text())
    assert "2 assigned customers have no usable e-mail or phone" in record["meta"]["warnings"][0]


def test_normalisation_follows_the_platforms_rules() -> None:
    assert normalise_email("  Ana.Lopez@Example.COM ") == "ana.lopez@example.com"
    assert normalise_email("not-an-email") is None and normalise_email(None) is None
    assert normalise_phone("+1 (650) 555-0100", None) == "16505550100"
    assert normalise_phone("0044 20 7183 8750", None) == "442071838750"
    assert normalise_phone("0151 2345 6789", "49") == "4915123456789"
    assert normalise_phone("0151 2345 6789", None) is None  # no country: cannot match
    assert normalise_phone("+1 555", None) is None  # too short for E.164


# --- generic, status filter, stale files ---------------------------------------------------


def test_generic_csv_and_json(run: adgen.RunResult) -> None:
    rows = _csv(run.out / "exports" / "csv" / "ads.csv")
    ok = run.manifest[run.manifest["status"] == "ok"]
    assert len(rows) == len(ok)
    assert {r["status"] for r in rows} == {"paused"} and {r["landing_url"] for r in rows} == {URL}
    assert {r["cta"] for r in rows} == {"'" + CTA}
    payload = json.loads((run.out / "exports" / "csv" / "ads.json").read_text())
    assert {a["ad_id"] for a in payload["ads"]} == set(ok["variant_id"])
    assert all(len(a["assets"]) == 6 and a["captions"]["cta"] == CTA for a in payload["ads"])


def test_only_finished_ads_are_exported_and_stale_files_go(tmp_path: Path) -> None:
    spec = load(tmp_path)
    result = adgen.run(spec)
    exports = result.out / "exports"
    mine = exports / "notes.txt"
    mine.write_text("kept", encoding="utf-8")
    gone = result.manifest["variant_id"].iloc[0]
    manifest = result.manifest.copy()
    manifest.loc[manifest["variant_id"] == gone, "status"] = "failed: render crashed"
    manifest.to_parquet(result.out / "manifest.parquet", index=False)
    (result.out / "manifest.csv").write_text(safe_csv(manifest), encoding="utf-8")
    adgen.export(spec, to=["html5", "meta", "google", "csv"])
    assert not (exports / "html5" / gone).exists()
    assert gone not in {r["Ad Name"] for r in _csv(exports / "meta" / "bulk_import.csv")}
    assert gone not in (exports / "google" / "responsive_display_ads.csv").read_text()
    assert gone not in (exports / "csv" / "ads.json").read_text()
    assert mine.read_text() == "kept"  # only files adgen wrote are removed


# --- settings, API and CLI ---------------------------------------------------------------


@pytest.mark.parametrize(("export", "message"), [
    ({"banner_seconds": 12, "banner_loops": 3}, "Google Ads allows at most 30 s"),
    ({"url": "javascript:alert(1)"}, "is not a web address"),
    ({"url": 'https://a.example/"><script>'}, "is not a web address"),
    ({"url": "https:///nohost"}, "is not a web address"),
    ({"url": "https://shop.example:99999/"}, "is not a web address"),
    ({"meta_cta": "CLICK_HERE"}, "meta_cta 'CLICK_HERE' is not one of"),
    ({"to": ["tiktok"]}, "export.to.0"),
    ({"to": ["csv", "meta"], "url": None}, "export.to has meta, which need a landing page"),
])
def test_export_settings_are_checked(tmp_path: Path, export: dict[str, object],
                                     message: str) -> None:
    with pytest.raises(CampaignError, match=message.replace("(", r"\(")):
        load(tmp_path, **export)


def test_api_errors_name_the_fix(run: adgen.RunResult) -> None:
    with pytest.raises(CampaignError, match=r"needs a landing page: set export\.url"):
        adgen.export(run.out, to="meta")
    with pytest.raises(CampaignError, match="HTML5 banners needs the campaign"):
        adgen.export(run.out, to="html5", url=URL)
    with pytest.raises(CampaignError, match=r"unknown export format\(s\) \['pdf'\]"):
        adgen.export(run.out, to="pdf")


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adgen", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_export(run: adgen.RunResult) -> None:
    yaml_file = write_campaign(run.out.parent, campaign_data(run.out.parent))
    done = _cli("export", yaml_file, "--to", "csv", "--to", "google")
    assert done.returncode == 0, done.stderr
    assert "csv: 2 files, 0 ads left out" in done.stdout and "google: 1 files" in done.stdout
    assert _cli("export", run.out, "--to", "csv").returncode == 0  # the folder alone will do
    failed = _cli("export", run.out, "--to", "meta")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        "error: the Meta export needs a landing page: set export.url in the campaign, or pass "
        "--url https://… (url=… in Python)"]
    for url in ("https:///nohost", "shop.example/landing", "https://[::1/x"):
        failed = _cli("export", run.out, "--to", "meta", "--url", url)
        assert failed.returncode == 2
        assert failed.stderr.strip().splitlines() == [
            f"error: export: url: {url!r} is not a web address: give a full http(s):// URL "
            "with a host, without spaces or quotes"]


def test_unchanged_banners_are_reused_and_a_missing_render_costs_only_its_own(
        run: adgen.RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adgen.export import html5

    out = tmp_path / "copy"
    shutil.copytree(run.out, out)
    spec = load(tmp_path).model_copy(update={"output": out})
    before = {p: p.read_bytes() for p in (out / "exports" / "html5").rglob("*.zip")}

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unchanged banner was rebuilt")

    with monkeypatch.context() as patch:
        patch.setattr(html5, "make_banner", no_rebuild)
        again = adgen.export(spec, to="html5")
    assert {p: p.read_bytes() for p in again.files["html5"]} == before

    # a new landing page rebuilds them; a render gone from the cache loses only its banners
    first = sorted(set(run.manifest["variant_id"]))[0]
    # every render of the variant (one per aspect class: 300x250 and 728x90 use different ones)
    for job_key in set(run.manifest.loc[run.manifest["variant_id"] == first, "job_key"]):
        for path in (out / ".cache").rglob(f"{job_key}.*"):
            path.unlink()
    result = adgen.export(spec, to="html5", url="https://shop.example/other")
    assert {(s["variant_id"], s["placement"]) for s in result.skipped["html5"]} == {
        (first, "iab_300x250"), (first, "iab_728x90")}
    assert "not in the cache" in result.skipped["html5"][0]["reason"]
    assert len(result.files["html5"]) == len(before) - 2
    assert not (out / "exports" / "html5" / first).exists()
    for path in result.files["html5"]:
        assert b"https://shop.example/other" in zipfile.ZipFile(path).read("index.html")


def test_meta_video_ads_use_video_labels(run: adgen.RunResult, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(run.out, out)
    first = sorted(set(run.manifest["variant_id"]))[0]
    manifest = pd.read_parquet(out / "manifest.parquet")
    clips = (manifest["variant_id"] == first) & manifest["placement"].isin(
        ["feed_portrait", "story"])
    manifest.loc[clips, "format"] = "mp4"  # as a video creative's manifest has them
    manifest.loc[(manifest["variant_id"] == first) & ~clips, "status"] = "blocked: test"
    manifest.to_parquet(out / "manifest.parquet", index=False)
    result = adgen.export(out, to="meta", url=URL)
    row = next(r for r in _csv(out / "exports" / "meta" / "bulk_import.csv")
               if r["Ad Name"] == first)
    assert row["Image File Name"] == "" and row["Video File Name"].startswith("feed_portrait-")
    segment = manifest.loc[manifest["variant_id"] == first, "segment_id"].iloc[0]
    payload = json.loads((out / "exports" / "meta" / "ad_sets" / f"{segment}.json").read_text())
    spec = payload["ads"][0]["creative"]["asset_feed_spec"]
    assert spec["ad_formats"] == ["SINGLE_VIDEO"] and "images" not in spec
    assert len(spec["videos"]) == 2  # 4:5 and 9:16, uploaded first: their ids are not known
    assert all(v["video_id"].startswith(f"upload:assets/{first}/") for v in spec["videos"])
    labels = {v["adlabels"][0]["name"] for v in spec["videos"]}
    assert {r["video_label"]["name"] for r in spec["asset_customization_rules"]} == labels
    assert result.skipped["meta"] == []


def test_asset_base_url_makes_image_entries_urls(run: adgen.RunResult, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(run.out, out)
    base = "https://cdn.example/spring/"
    spec = load(tmp_path, asset_base_url=base).model_copy(update={"output": out})
    adgen.export(spec, to=["meta", "google", "csv"])
    for path in (out / "exports" / "meta" / "ad_sets").glob("*.json"):
        for ad in json.loads(path.read_text())["ads"]:
            for image in ad["creative"]["asset_feed_spec"]["images"]:
                assert image["url"].startswith(base + "assets/")
                assert (out / image["url"].removeprefix(base)).is_file()
    for row in _csv(out / "exports" / "google" / "responsive_display_ads.csv"):
        for url in row["Marketing images"].split(";") + row["Square marketing images"].split(";"):
            assert url.startswith(base + "assets/")
    assert all(r["asset_url"].startswith(base) for r in _csv(out / "exports" / "csv" / "ads.csv"))
