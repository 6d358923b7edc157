"""The wiring between the pieces, through real runs: atomic writes under a failing disk,
provenance per renderer and product, byte budgets after metadata, C2PA from the campaign, the
guardrails, audiences and the CLI's promises."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import adgen
import adgen.pipeline
from adgen.cli import app
from adgen.output.files import atomic_write_bytes, atomic_write_text
from adgen.provenance.metadata import (
    IPTC_ALGORITHMIC,
    IPTC_COMPOSITE,
    IPTC_COMPOSITE_SYNTHETIC,
    IPTC_GENERATED,
)
from tests.conftest import REPO, write_campaign
from tests.fakes import SeedRenderer

EXIFTOOL = shutil.which("exiftool")


def run_campaign(tmp_path: Path, data: dict[str, Any], *overrides: str, **kwargs: Any
                 ) -> adgen.RunResult:
    campaign = adgen.load_campaign(write_campaign(tmp_path, data), overrides=list(overrides))
    return adgen.run(campaign, **kwargs)


def source_types(paths: list[Path]) -> dict[str, str]:
    """Each file's XMP DigitalSourceType, read by exiftool (else Pillow's XMP reader)."""
    if EXIFTOOL:
        out = subprocess.run([EXIFTOOL, "-j", "-XMP-iptcExt:DigitalSourceType",
                              *map(str, paths)], capture_output=True, text=True, check=True)
        return {Path(item["SourceFile"]).name: item["DigitalSourceType"]
                for item in json.loads(out.stdout)}
    pytest.importorskip("defusedxml")
    found = {}
    for path in paths:
        with Image.open(path) as image:
            xmp = json.dumps(image.getxmp())
        found[path.name] = re.findall(r"http://cv\.iptc\.org/newscodes/digitalsourcetype/\w+",
                                      xmp)[0]
    return found


# --- atomic writes ----------------------------------------------------------------------------

# A process whose files may not grow past LIMIT bytes: a write past it fails half-way (EFBIG),
# as on a full disk.
LIMITED = """
import resource, signal, sys
sys.path.insert(0, {repo!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
"""


def run_limited(code: str, limit: int) -> subprocess.CompletedProcess[str]:
    script = LIMITED.format(repo=str(REPO), limit=limit) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_a_write_that_fails_half_way_leaves_the_old_file(tmp_path: Path) -> None:
    old = b"old content\n" * 10
    for name in ("a.bin", "b.txt"):
        (tmp_path / name).write_bytes(old)
    out = run_limited(f"""
        from pathlib import Path
        from adgen.output.files import atomic_write_bytes, atomic_write_text
        root = Path({str(tmp_path)!r})
        for write, name, data in ((atomic_write_bytes, "a.bin", b"x" * 50000),
                                  (atomic_write_text, "b.txt", "y" * 50000)):
            try:
                write(root / name, data)
            except OSError as exc:
                print("failed", name, exc.errno)
    """, limit=20000)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["failed a.bin 27", "failed b.txt 27"]  # EFBIG
    assert (tmp_path / "a.bin").read_bytes() == old and (tmp_path / "b.txt").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt"]  # no temp file left
    atomic_write_bytes(tmp_path / "a.bin", b"new")
    atomic_write_text(tmp_path / "new" / "c.txt", "née")
    assert (tmp_path / "a.bin").read_bytes() == b"new"
    assert (tmp_path / "new" / "c.txt").read_text(encoding="utf-8") == "née"


def test_a_run_on_a_failing_disk_leaves_no_partial_file_and_a_rerun_finishes(
    tmp_path: Path, campaign_data: dict
) -> None:
    first = run_campaign(tmp_path, campaign_data, "variants=1")
    out = first.out
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    campaign_data["creatives"][0]["captions"]["cta"] = "Buy two"  # every asset is rewritten
    path = write_campaign(tmp_path, campaign_data)
    failed = run_limited(f"""
        import adgen
        adgen.run(adgen.load_campaign({str(path)!r}, overrides=["variants=1"]))
    """, limit=30000)
    assert failed.returncode != 0 and "File too large" in failed.stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    for file in out.rglob("*"):
        if not file.is_file() or (file in before and file.read_bytes() == before[file]):
            continue  # an old file is either untouched or completely replaced
        if file.suffix in {".png", ".jpg", ".webp"}:
            with Image.open(file) as image:
                image.load()  # raises on a truncated file
        elif file.suffix == ".json":
            json.loads(file.read_text(encoding="utf-8"))
        elif file.suffix == ".parquet":
            pd.read_parquet(file)
        else:
            assert file.suffix in {".csv", ".html"}, file
    old_manifest = pd.read_parquet(out / "manifest.parquet")
    for rel in old_manifest["path"]:
        with Image.open(out / rel) as image:
            image.load()
    again = adgen.run(adgen.load_campaign(path, overrides=["variants=1"]))
    assert set(again.manifest["cta"]) == {"Buy two"} and len(again.manifest) == 15
    for rel in again.manifest["path"]:
        assert (out / rel).stat().st_size == again.manifest.set_index("path").loc[rel, "bytes"]


# --- provenance per renderer and product ------------------------------------------------------


def two_creatives(data: dict[str, Any]) -> dict[str, Any]:
    """``hero`` composes the product photo in, ``mood`` does not; one segment per region."""
    data["creatives"][0]["prompt"] = "a bottle in the {{ region }}"
    data["creatives"].append({"id": "mood", "prompt": "a calm {{ region }} morning",
                              "captions": {"headline": "Hello", "cta": "Shop"}})
    data["audience"]["segment_by"] = ["region"]
    data["variants"] = 1
    data["placements"] = ["300x250", {"placement": "336x280", "format": "png"},
                          {"placement": "320x100", "format": "webp"}]
    return data


@pytest.mark.parametrize(("renderer", "with_product", "without"), [
    ("offline", IPTC_COMPOSITE_SYNTHETIC, IPTC_ALGORITHMIC),
    ("diffusers", IPTC_COMPOSITE, IPTC_GENERATED),
], ids=["offline", "diffusers"])
def test_provenance_says_how_each_asset_was_made(
    tmp_path: Path, campaign_data: dict, renderer: str, with_product: str, without: str
) -> None:
    overrides = ["quality.enabled=false"]  # every asset made as planned (no gate, no model)
    if renderer == "diffusers":
        from adgen.testing import make_tiny_sd_pipeline

        tiny = make_tiny_sd_pipeline(tmp_path / "tiny")
        overrides += ["renderer.name=diffusers", f"renderer.model={tiny}", "renderer.width=64",
                      "renderer.height=64", "renderer.steps=1"]
    result = run_campaign(tmp_path, two_creatives(campaign_data), *overrides)
    manifest = result.manifest
    assert len(manifest) == 3 * 2 * 3 and set(manifest["format"]) == {"jpeg", "png", "webp"}
    found = source_types([result.out / p for p in manifest["path"]])
    expected = {"hero": with_product, "mood": without}
    for row in manifest.itertuples():
        assert found[Path(row.path).name] == expected[row.creative_id], row.path


# --- byte budgets hold after the metadata is added --------------------------------------------


def test_max_bytes_holds_for_the_file_on_disk(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["placements"] = [{"placement": "300x250", "max_bytes": 1_000_000}]
    free = run_campaign(tmp_path, campaign_data, "variants=1")
    budget = int(free.manifest["bytes"].min()) - 300  # tight: quality must go down
    campaign_data["placements"] = [{"placement": "300x250", "max_bytes": budget},
                                   {"placement": "feed_square", "format": "webp",
                                    "max_bytes": 30000}]
    tight = run_campaign(tmp_path, campaign_data, "variants=1")
    assert len(tight.manifest) == 10
    for row in tight.manifest.itertuples():
        data = (tight.out / row.path).read_bytes()
        assert len(data) == row.bytes
        assert len(data) <= (budget if row.placement == "iab_300x250" else 30000), row.path
        assert b"DigitalSourceType" in data  # the metadata is in, inside the budget


# --- C2PA from the campaign's settings --------------------------------------------------------


def test_c2pa_signing_from_campaign_settings(tmp_path: Path, campaign_data: dict,
                                             test_pki: dict[str, Path]) -> None:
    c2pa = pytest.importorskip("c2pa", reason="c2pa-python not installed")
    campaign_data["provenance"] = {"c2pa_cert": str(test_pki["chain"]),
                                   "c2pa_key": str(test_pki["key"])}
    campaign_data["placements"] = ["300x250", {"placement": "feed_square", "format": "png"}]
    campaign_data["creatives"][0]["prompt"] = "a bottle in the {{ region }}"
    result = run_campaign(tmp_path, campaign_data, "variants=1", "audience.segment_by=[region]")
    assert len(result.manifest) == 6
    trust = {"trust": {"trust_anchors": test_pki["root"].read_text()}}
    for row in result.manifest.itertuples():
        path = result.out / row.path
        assert path.stat().st_size == row.bytes
        with c2pa.Context.from_dict(trust) as context, \
                c2pa.Reader(str(path), context=context) as reader:
            assert reader.get_validation_state() == "Trusted"
            manifest = reader.get_active_manifest()
        actions = next(a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions"))
        assert actions["data"]["actions"][0]["digitalSourceType"] == IPTC_COMPOSITE_SYNTHETIC
        custom = next(a for a in manifest["assertions"] if a["label"] == "dev.adgen.provenance")
        assert custom["data"]["variant_id"] == row.variant_id


# --- guardrails, audiences --------------------------------------------------------------------


def test_phone_numbers_block_a_variant_unless_allowed(tmp_path: Path, campaign_data: dict
                                                     ) -> None:
    campaign_data["creatives"][0]["captions"]["cta"] = (
        "{{ 'Call +44 20 7946 0958' if region == 'north' else 'Shop now' }}")
    path = write_campaign(tmp_path, campaign_data)
    plan = adgen.plan(adgen.load_campaign(path))
    north = set(plan.variants.loc[plan.variants["segment"].str.contains("north"), "variant_id"])
    assert set(plan.blocked) == north and len(north) == 4
    assert set(plan.blocked.values()) == {
        "a phone number in cta (personal data; set guardrails.allow_pii)"}
    allowed = adgen.plan(adgen.load_campaign(path, overrides=["guardrails.allow_pii=true"]))
    assert allowed.blocked == {}
    # the CLI's plan lists each blocked variant with its reason
    out = CliRunner().invoke(app, ["plan", str(path)])
    assert out.exit_code == 0, out.output
    listed = re.findall(r"blocked (\S+): a phone number in cta", out.output)
    assert sorted(listed) == sorted(north)
    # a date or an order number is not a phone number
    campaign_data["creatives"][0]["captions"]["cta"] = "Sale ends 2026-03-01, code 1234"
    assert adgen.plan(adgen.load_campaign(write_campaign(tmp_path, campaign_data))).blocked == {}


def test_tsv_audience_and_every_aggregate(tmp_path: Path, campaign_data: dict) -> None:
    (tmp_path / "people.tsv").write_text(
        "customer_id\tfirst_name\tregion\ttier\tspend\n"
        "c1\tAna\tnorth\tgold\t10\n"
        "c2\tBen, Jr.\tnorth\tgold\t30\n"
        "c3\tAna\tnorth\tgold\t35\n"
        "c4\tDmitri\tsouth\tgold\t7\n", encoding="utf-8")
    campaign_data["audience"] = {
        "path": "people.tsv", "segment_by": ["region", "tier"],
        "aggregates": {name: f"spend:{name}" for name in ("median", "min", "max", "sum")}
        | {"names": "first_name:nunique", "avg": "spend:mean"},
    }
    campaign_data["creatives"][0]["captions"]["headline"] = (
        "{{ median }}|{{ min }}|{{ max }}|{{ sum }}|{{ names }}|{{ avg | round(2) }}")
    plan = adgen.plan(adgen.load_campaign(write_campaign(tmp_path, campaign_data)))
    assert plan.summary()["customers"] == 4  # the comma inside a TSV field is data
    headlines = dict(zip(plan.variants["segment"], plan.variants["headline"], strict=False))
    north = next(v for k, v in headlines.items() if "north" in k)
    south = next(v for k, v in headlines.items() if "south" in k)
    assert north.split("|") == ["30.0", "10", "35", "75", "2", "25.0"]
    assert south.split("|") == ["7.0", "7", "7", "7", "1", "7.0"]


def test_formula_guard_covers_every_trigger(tmp_path: Path, campaign_data: dict) -> None:
    (tmp_path / "audience.csv").write_text(
        "customer_id,first_name,region,tier,spend\n"
        "-2+3,A,north,gold,1\n=1+1,B,north,gold,1\n+1,C,north,gold,1\n@x,D,north,gold,1\n"
        "ok,E,north,gold,1\n", encoding="utf-8")
    result = run_campaign(tmp_path, campaign_data, "variants=1", "placements=[300x250]")
    lines = (result.out / "assignments.csv").read_text(encoding="utf-8").splitlines()[1:]
    ids = sorted(line.split(",")[0] for line in lines)
    assert ids == ["'+1", "'-2+3", "'=1+1", "'@x", "ok"]


# --- the CLI ----------------------------------------------------------------------------------


def test_run_exits_1_when_a_job_fails_and_writes_the_rest(
    campaign_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(name: str, model: str | None = None, **options: Any) -> SeedRenderer:
        return SeedRenderer(fail_prompt="south")

    monkeypatch.setattr(adgen.pipeline, "create_renderer", failing)
    crop = ["--set", "renderer.aspect=crop"]  # one render per variant
    out = CliRunner().invoke(app, ["run", str(campaign_file), *crop])
    assert out.exit_code == 1, out.output
    # 4 jobs x 3 placements, grouped by reason (seed numbers aside)
    assert "12 × render failed: quality: seed " in out.output and "NaN image" in out.output
    manifest = pd.read_csv(campaign_file.parent / "out" / "manifest.csv")
    failed = manifest[manifest["status"].str.startswith("failed")]
    assert len(manifest) == 10 * 3 and len(failed) == 4 * 3
    assert failed["segment"].str.contains("south").all()
    monkeypatch.setattr(adgen.pipeline, "create_renderer", functools.partial(
        lambda *a, **k: SeedRenderer()))
    again = CliRunner().invoke(app, ["run", str(campaign_file), *crop])
    assert again.exit_code == 0, again.output
    assert "4 rendered, 6 cached" in again.output


def test_review_sheet_title_csp_and_report_false(tmp_path: Path, campaign_data: dict) -> None:
    campaign_data["creatives"][0]["captions"]["headline"] = "<script>alert(1)</script>"
    campaign_data["report"] = False
    result = run_campaign(tmp_path, campaign_data, "variants=1", "placements=[300x250]")
    assert not (result.out / "review.html").exists() and not (result.out / "thumbs").exists()
    out = CliRunner().invoke(app, ["report", str(result.out), "--title", "Spring <draft> & co"])
    assert out.exit_code == 0, out.output
    html = (result.out / "review.html").read_text(encoding="utf-8")
    assert "<title>Spring &lt;draft&gt; &amp; co</title>" in html
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert policy is not None
    rules = dict(rule.strip().split(" ", 1) for rule in policy[1].split(";"))
    assert rules["default-src"] == "'none'"
    nonce = re.fullmatch(r"'nonce-([\w-]+)'", rules["script-src"])
    assert nonce is not None and "unsafe" not in policy[1]
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(f'nonce="{nonce[1]}"' in tag for tag in scripts)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    again = CliRunner().invoke(app, ["report", str(result.out)])
    assert again.exit_code == 0
    html2 = (result.out / "review.html").read_text(encoding="utf-8")
    assert "<title>test-campaign · review sheet</title>" in html2
    assert re.search(r"nonce-([\w-]+)", html2)[1] != nonce[1]  # type: ignore[index]

