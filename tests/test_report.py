"""The HTML review sheet: content, escaping, thumbnails, video, analysis and errors.
(The page in a real browser: tests/browser/test_review_browser.py.)"""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape
from PIL import Image

from adgen.errors import AssetError, ResultsError
from adgen.output.files import safe_csv
from adgen.review.sheet import REPORT_NAME, write_report
from tests.browser.sample_output import VIDEO_COLOR, make_output

XSS_CAPTION = "<script>alert(1)</script>"
XSS_ATTR = '"><img src=x onerror=alert(1)>'


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


def _page(out: Path, **kwargs: object) -> tuple[str, _Tags]:
    path = write_report(out, **kwargs)  # type: ignore[arg-type]
    assert path == out / REPORT_NAME
    text = path.read_text(encoding="utf-8")
    return text, _Tags(text)


def test_every_asset_is_on_the_page_with_a_small_thumbnail(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False, analysis=False)
    manifest = pd.read_parquet(out / "manifest.parquet")
    text, tags = _page(out, thumb_size=64)

    figures = tags.all("figure")
    assert sorted(f["data-placement"] for f in figures) == sorted(manifest["placement"])
    assert {s["data-segment"] for s in tags.all("section")} == set(manifest["segment_id"])
    assert len(tags.all("article")) == manifest["variant_id"].nunique()
    links = {a["href"] for a in tags.all("a")}
    assert links == set(manifest["path"])  # each thumbnail links its full asset
    for img, sha in zip(tags.all("img"), manifest["sha256"], strict=True):
        assert img["src"] == f"thumbs/{sha[:20]}-64.webp"  # named by content hash
        with Image.open(out / img["src"]) as thumb:
            assert thumb.format == "WEBP"
            assert max(thumb.size) == 64
            assert (int(img["width"]), int(img["height"])) == thumb.size
    # prompt, captions, seed and model beside the pictures; nothing from outside the folder
    assert "a bottle on a beach, north, warm light" in text
    assert "Hello south" in text and "1011" in text and "offline · tiny-test" in text
    assert "http://" not in text.replace("http://www.w3.org", "")
    assert "https://" not in text
    assert len(tags.all("script")) == 1 and not tags.all("link")
    assert not list(out.glob(".*.tmp")) and not list((out / "thumbs").glob(".*"))


def test_customer_data_is_escaped(tmp_path: Path) -> None:
    out = make_output(tmp_path, captions={"headline": XSS_CAPTION, "cta": XSS_ATTR},
                      prompt='</p><svg onload=alert(2)> "{region}"', video=False)
    segment = '{"region": "<b onmouseover=alert(3)>x</b>"}'
    manifest = pd.read_parquet(out / "manifest.parquet").assign(segment=segment)
    manifest.to_parquet(out / "manifest.parquet")
    text, tags = _page(out)

    for raw in (XSS_CAPTION, XSS_ATTR, "<svg onload", "<b onmouseover"):
        assert raw not in text
    assert escape(XSS_CAPTION) in text and escape(XSS_ATTR) in text  # as Jinja escapes them
    assert "&lt;b onmouseover=alert(3)&gt;x&lt;/b&gt;" in text
    assert [name for name, _ in tags.tags].count("script") == 1  # only the page's own
    assert "alert" not in tags.scripts[0]
    handlers = [k for _, attrs in tags.tags for k in attrs if k.startswith("on")]
    assert handlers == []
    assert all(i["src"].startswith("thumbs/") or i["src"] == "analysis.png"
               for i in tags.all("img"))
    assert "<svg" not in text and "<b " not in text


def test_hostile_values_everywhere_are_text_not_markup(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False)
    manifest = pd.read_parquet(out / "manifest.parquet").assign(
        placement=XSS_ATTR, segment=json.dumps({XSS_CAPTION: XSS_ATTR}),
        checks=json.dumps({"violations": [XSS_CAPTION]}),
        quality=json.dumps({"rejected": [{"seed": XSS_ATTR, "reasons": [XSS_CAPTION]}]}))
    manifest["segment_id"] += XSS_ATTR
    manifest.to_parquet(out / "manifest.parquet")
    analysis = json.loads((out / "analysis.json").read_text())
    (out / "analysis.json").write_text(json.dumps({**analysis, "warnings": [XSS_CAPTION]}))
    text, tags = _page(out, title=XSS_ATTR)

    assert XSS_CAPTION not in text and XSS_ATTR not in text
    assert escape(XSS_CAPTION) in text and escape(XSS_ATTR) in text
    assert [name for name, _ in tags.tags].count("script") == 1
    assert not [k for _, attrs in tags.tags for k in attrs if k.startswith("on")]
    assert not [i for i in tags.all("img") if i["src"] == "x"]
    # values in attributes stay whole: the filters still match them
    assert {f["data-placement"] for f in tags.all("figure")} == {XSS_ATTR}
    segments = {s["data-segment"] for s in tags.all("section") if s["class"] == "segment"}
    assert segments == set(manifest["segment_id"])


def test_thumbnails_are_made_once_and_stale_ones_removed(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False, analysis=False)
    write_report(out)
    thumbs = sorted((out / "thumbs").iterdir())
    stamps = {p.name: p.stat().st_mtime_ns for p in thumbs}
    os.utime(thumbs[0], ns=(1, 1))  # marks it: a rewrite would change the time
    (out / "thumbs" / f"{'0' * 20}-320.webp").write_bytes(b"stale")
    (out / "thumbs" / "notes.txt").write_text("mine")
    thumbs[1].unlink()
    thumbs[2].write_bytes(b"damaged")

    write_report(out)

    assert thumbs[0].stat().st_mtime_ns == 1
    assert thumbs[1].exists()  # a missing one is made again
    with Image.open(thumbs[2]) as image:  # and so is a damaged one
        assert image.format == "WEBP"
    assert {p.name for p in (out / "thumbs").iterdir()} == set(stamps) | {"notes.txt"}


def test_video_plays_inline_with_a_poster_frame(tmp_path: Path) -> None:
    out = make_output(tmp_path, analysis=False)
    manifest = pd.read_parquet(out / "manifest.parquet")
    clip = manifest[manifest["format"] == "mp4"].iloc[0]
    _, tags = _page(out)

    (video,) = tags.all("video")
    for flag in ("muted", "loop", "playsinline", "controls"):
        assert flag in video
    assert video["preload"] == "metadata"
    assert video["poster"] == f"thumbs/{clip['sha256'][:20]}-320-poster.webp"
    (source,) = tags.all("source")
    assert source == {"src": clip["path"], "type": "video/mp4"}
    with Image.open(out / video["poster"]) as poster:
        pixel = poster.convert("RGB").getpixel((poster.width // 2, poster.height // 2))
    assert isinstance(pixel, tuple)
    r, g, b = pixel[:3]
    assert abs(r - VIDEO_COLOR[0]) < 25 and g < 60 and b < 60


def test_analysis_adds_metrics_badges_and_plot(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False)
    text, tags = _page(out)

    cards = {a["data-variant"]: a["class"] for a in tags.all("article")}
    assert cards == {
        "hero-s0a1b2c3d4e-v0": "variant verdict-control",
        "hero-s0a1b2c3d4e-v1": "variant verdict-winner",
        "hero-s1f2e3d4c5b-v0": "variant verdict-control",
        "hero-s1f2e3d4c5b-v1": "variant verdict-loser",
    }
    assert '<span class="badge winner">winner</span>' in text
    assert '<span class="badge loser">loser</span>' in text
    assert "+12.0%" in text and "[+2.0%, +22.0%]" in text and "96.3%" in text
    assert {"src": "analysis.png"}.items() <= tags.all("img")[0].items()
    rows = [r["data-segment"] for r in tags.all("tr") if "data-segment" in r]
    assert rows == ["s0a1b2c3d4e"] * 2 + ["s1f2e3d4c5b"] * 2 + ["all"]
    assert "sample ratio mismatch in all" in text


def test_analysis_with_segment_id_column_and_no_analysis(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False)
    frame = pd.read_csv(out / "analysis.csv").rename(columns={"scope": "segment_id"})
    frame.to_csv(out / "analysis.csv", index=False)
    _, tags = _page(out)
    assert "variant verdict-winner" in {a["class"] for a in tags.all("article")}

    (out / "analysis.csv").unlink()
    text, tags = _page(out)
    assert "badge" not in text.split("<main>")[1] and 'id="analysis"' not in text


def test_bad_analysis_file_is_a_results_error(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False)
    pd.DataFrame({"variant_id": ["x"], "users": [1]}).to_csv(out / "analysis.csv", index=False)
    with pytest.raises(ResultsError, match=r"analysis\.csv: missing column\(s\) verdict; run "
                                           r"`adgen analyze` again"):
        write_report(out)


def test_missing_manifest_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(AssetError) as info:
        write_report(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: no manifest.parquet or manifest.csv, so there is nothing to review; "
        f"run `adgen run CAMPAIGN --out {tmp_path}` first"
    )
    assert not (tmp_path / REPORT_NAME).exists()


def test_missing_or_unsafe_assets_are_flagged_not_fatal(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False, analysis=False)
    manifest = pd.read_parquet(out / "manifest.parquet")
    (out / manifest["path"].iloc[0]).unlink()
    manifest.loc[1, "path"] = "../../etc/passwd"
    manifest.loc[2, "path"] = "javascript:alert(1)"
    manifest.loc[3, "checks"] = '{"omitted": ["cta"]}'
    manifest.to_parquet(out / "manifest.parquet")
    text, tags = _page(out)

    assert text.count('class="missing"') == 3
    assert "file missing: run `adgen run` again" in text
    assert text.count("invalid path in the manifest") == 2
    hrefs = {a["href"] for a in tags.all("a")}
    assert not any("passwd" in h or "javascript" in h for h in hrefs)
    assert "3 assets could not be shown" in text
    assert text.count('<span class="check">omitted: cta</span>') == 1


def test_manifest_csv_is_enough(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False, analysis=False, prompt="=1+1 in the {region}")
    manifest = pd.read_parquet(out / "manifest.parquet")
    (out / "manifest.csv").write_text(safe_csv(manifest), encoding="utf-8")  # as the run does
    (out / "manifest.parquet").unlink()
    text, tags = _page(out, title="Spring <review>")
    assert len(tags.all("figure")) == 12
    assert "Spring &lt;review&gt;" in text
    assert "<p>=1+1 in the north</p>" in text  # the CSV's formula guard is not shown
