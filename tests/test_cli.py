"""The command line as a user runs it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from adgen.renderers import RENDERERS
from adgen.terminal import OPTIONAL
from tests.conftest import REPO, write_campaign

CONSOLE_SCRIPT = Path(sys.executable).with_name("adgen")
"""The ``adgen`` command pip installed next to this Python (``[project.scripts]``)."""


def adgen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adgen", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def console_script(*args: object, cwd: Path = REPO,
                   columns: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``adgen`` as a user does; PYTHONPATH makes it import this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if columns:
        env["COLUMNS"] = str(columns)
    return subprocess.run([str(CONSOLE_SCRIPT), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_the_console_script_is_this_pythons_and_imports_this_checkout() -> None:
    assert CONSOLE_SCRIPT.read_text(encoding="utf-8").splitlines()[0] == f"#!{sys.executable}"
    code = "import adgen, sys; print(adgen.__file__)"
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, cwd="/", check=True)
    assert Path(where.stdout.strip()).parent == REPO / "adgen"


@pytest.mark.parametrize(("args", "usage", "error"), [
    (["run", "{campaign}", "--bogus"], "adgen run [OPTIONS] ", "No such option: --bogus"),
    (["nosuchcommand"], "adgen [OPTIONS] COMMAND [ARGS]...", "No such command 'nosuchcommand'."),
    (["run"], "adgen run [OPTIONS] ", "Missing argument 'CAMPAIGN'."),
    (["explain", "{out}"], "adgen explain [OPTIONS] ", "Missing option '--customer'."),
    (["run", "{campaign}", "--gpus", "abc"], "adgen run [OPTIONS] ", "Invalid value for '--gpus'"),
    (["export", "{campaign}", "--out", "{out}"], "adgen export [OPTIONS] ",
     "No such option: --out"),
    (["--wait", "soon", "plan", "{campaign}"], "adgen [OPTIONS] COMMAND [ARGS]...",
     "Invalid value for '--wait'"),
])
def test_usage_mistakes_print_usage_and_the_error_and_exit_2(
        tmp_path: Path, campaign_file: Path, args: list[str], usage: str, error: str) -> None:
    args = [a.format(campaign=campaign_file, out=tmp_path / "elsewhere") for a in args]
    out = console_script(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith(f"Usage: {usage}"), lines
    assert lines[-1].startswith(f"Error: {error}"), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # nothing was written
        ["audience.csv", "bottle.png", "campaign.yaml", "logo.png"])


COMMANDS = ("validate", "plan", "run", "assign", "analyze", "refresh", "schedule", "explain",
            "report", "export")


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_flags_as_flags(command: str | None) -> None:
    out = console_script(*([command] if command else []), "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Usage: adgen {command + ' ' if command else ''}[OPTIONS]")
    assert re.search(r"^  --help +Show this message and exit\.$", out.stdout, re.M), out.stdout
    if command == "plan":
        assert re.search(r"^  --json +Print the counts as JSON\.$", out.stdout, re.M)
    assert not re.search(r"<bool>|BOOLEAN", out.stdout), out.stdout


def test_run_help_lists_every_renderer() -> None:
    out = console_script("run", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert f"--renderer NAME Renderer: {', '.join(RENDERERS)}." in text
    assert "diffusers-video" in RENDERERS


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


def test_run_lists_blocked_variants_by_reason_and_its_bars_end_at_their_totals(
        tmp_path: Path, campaign_data: dict) -> None:
    captions = campaign_data["creatives"][0]["captions"]
    captions["cta"] = "{{ 'Call +44 20 7946 0958' if region == 'north' else 'Shop now' }}"
    captions["headline"] = "{{ 'Hello ' ~ region if tier == 'gold' else 'x' * 300 }}"
    path = write_campaign(tmp_path, campaign_data)
    out = console_script("run", path, "--set", "placements=[300x250, story]", cwd=tmp_path)
    assert out.returncode == 1, out.stderr  # the silver headlines do not fit: failed assets
    lines = out.stdout.splitlines()
    header = lines.index("blocked 4 of 10 variants (no assets, no customers; manifest.csv "
                         "names them):")
    assert lines[header + 1:] == [
        "  4 × a phone number in cta (personal data; set guardrails.allow_pii)"]
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    made = manifest[~manifest["status"].str.startswith("blocked")]
    assert len(made) == 12 and made["status"].str.startswith("failed").sum() == 4
    assert "failed 4 of 12 assets" in out.stderr
    bars = {stage: (int(done), int(total)) for stage, done, total in re.findall(
        r"^(render|post) .* (\d+)/(\d+) ", out.stderr, re.M)}
    assert bars["post"] == (12, 12), out.stderr  # blocked variants have no assets to count
    assert bars["render"][0] == bars["render"][1] > 0


@pytest.mark.parametrize("columns", [80, 200])
def test_analyze_prints_every_variant_in_full_at_the_terminals_width(
        tmp_path: Path, campaign_data: dict, columns: int) -> None:
    hero = campaign_data["creatives"][0]
    campaign_data["creatives"].append({**hero, "id": "lifestyle-outdoor"})
    path = write_campaign(tmp_path, campaign_data)
    out = console_script("run", path, "--set", "placements=[300x250]", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ids = pd.read_csv(tmp_path / "out" / "manifest.csv")["variant_id"].unique()
    assert len(ids) == 20 and max(map(len, ids)) == 32
    rows = [f"{v},{4000 + 37 * i},{200 + 53 * i % 300}" for i, v in enumerate(ids)]
    (tmp_path / "r.csv").write_text("variant_id,users,conversions\n" + "\n".join(rows),
                                    encoding="utf-8")
    out = console_script("analyze", tmp_path / "out", "--results", tmp_path / "r.csv",
                         columns=columns, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(map(len, lines)) <= columns
    table = pd.read_csv(tmp_path / "out" / "analysis.csv")
    assert len(table) == 24 and set(table["verdict"]) >= {"control", "winner", "loser"}
    by_id = {line.split()[0]: line for line in lines if line.strip()}
    for row in table.to_dict("records"):
        line = by_id[row["variant_id"]]  # each id starts its own line, in full
        assert line.rstrip().endswith(row["verdict"]), line
        if row["verdict"] != "control":
            assert f"{row['uplift']:+.1%}" in line, line
            assert f"[{row['ci_low']:+.1%}, {row['ci_high']:+.1%}]" in line, line
    assert {line.rstrip() for line in lines if line.startswith("segment ")} == {
        f"segment {scope}" for scope in set(table["scope"]) - {"all"}}
    header = next(line for line in lines if line.startswith("variant "))
    shown = [h for h in OPTIONAL if f" {h} " in f"{header} "]
    note = [line for line in lines if line.startswith("(left out at this width")]
    if columns == 200:
        assert shown == list(OPTIONAL) and note == []
    else:  # the columns that did not fit are named
        assert note == [f"(left out at this width: "
                        f"{', '.join(h for h in OPTIONAL if h not in shown)}; see analysis.csv)"]
