"""The command line as a user runs it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.conftest import REPO


def adgen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adgen", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def test_plan_json_has_the_documented_keys(campaign_file: Path) -> None:
    out = adgen("plan", campaign_file, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"customers": 6, "segments": 5, "creatives": 1,
                                      "variants": 10, "jobs": 20, "cached": 0, "to_render": 20,
                                      "failing_assets": 0}


def test_validate_ok_and_set_and_audience_overrides(tmp_path: Path, campaign_file: Path) -> None:
    out = adgen("validate", campaign_file)
    assert out.returncode == 0 and "ok test-campaign: 6 customers, 5 segments" in out.stdout
    other = tmp_path / "other.csv"
    other.write_text("customer_id,region,tier,spend\nx,n,g,1\n", encoding="utf-8")
    out = adgen("plan", campaign_file, "--json", "--audience", other, "--set", "variants=3")
    assert json.loads(out.stdout)["customers"] == 1
    assert json.loads(out.stdout)["variants"] == 3


def test_user_errors_print_one_line_and_exit_2(tmp_path: Path, campaign_file: Path) -> None:
    out = adgen("validate", campaign_file, "--set", "creatives.0.captions.headline={{ nope }}")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: template 'hero.headline' uses 'nope', which is not "
                               "available")
    out = adgen("plan", tmp_path / "missing.yaml")
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {tmp_path / 'missing.yaml'}: campaign file not found"
    assert "Traceback" not in out.stderr


def test_validate_reports_every_broken_template_one_line_each(campaign_file: Path) -> None:
    out = adgen("validate", campaign_file, "--set", "creatives.0.captions.headline={{ nope }}",
                "--set", "creatives.0.captions.cta={{ also_missing }}")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert [line.split(" uses ")[0] for line in lines] == [
        "error: template 'hero.headline'", "error: template 'hero.cta'"]


def test_run_then_assign(tmp_path: Path, campaign_file: Path) -> None:
    out = adgen("run", campaign_file, "--out", tmp_path / "o", "--set", "placements=[300x250]")
    assert out.returncode == 0, out.stderr
    assert "10 rendered, 0 cached; 10 assets written" in out.stdout
    manifest = pd.read_csv(tmp_path / "o" / "manifest.csv")
    assert len(manifest) == 10
    out = adgen("assign", campaign_file, "--out", tmp_path / "a.csv")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "o" / "assignments.csv").read_bytes()


def test_run_analyze_refresh_from_the_cli(tmp_path: Path, campaign_file: Path) -> None:
    out = adgen("run", campaign_file, "--set", "placements=[300x250]")
    assert out.returncode == 0, out.stderr
    manifest = pd.read_parquet(campaign_file.parent / "out" / "manifest.parquet")
    ids = manifest["variant_id"].unique()
    rows = [f"{v},4000,{400 if v.endswith('v0') else 200}" for v in ids]
    (tmp_path / "r.csv").write_text("variant_id,users,conversions\n" + "\n".join(rows) + "\n",
                                    encoding="utf-8")
    out = adgen("analyze", campaign_file.parent / "out", "--results", tmp_path / "r.csv")
    assert out.returncode == 0, out.stderr
    assert "experiment results" in out.stdout
    analysis = pd.read_csv(campaign_file.parent / "out" / "analysis.csv")
    assert set(analysis.loc[analysis["variant_id"].str.endswith("v1"), "verdict"]) == {"loser"}
    assert (campaign_file.parent / "out" / "analysis.png").exists()
    out = adgen("refresh", campaign_file, "--results", tmp_path / "r.csv",
                "--set", "placements=[300x250]")
    assert out.returncode == 0, out.stderr
    assert "retired 5, kept 5, rendered 5" in out.stdout
    out = adgen("analyze", campaign_file.parent / "out", "--results", tmp_path / "r.csv")
    assert out.returncode == 2
    assert "unknown variant_id" in out.stderr and len(out.stderr.strip().splitlines()) == 1
