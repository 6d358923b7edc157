"""The experiment settings a campaign promises, end to end on one small run: the refresh rule,
the p-value correction, sequential intervals, top-two Thompson sampling, uplift against the
holdout, impressions/clicks results and sample-ratio-mismatch warnings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import adgen
from adgen.cli import app
from adgen.experiments import stats
from adgen.experiments.analysis import write_analysis
from adgen.pipeline import schedule
from tests.conftest import base_campaign, write_campaign


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, adgen.RunResult]:
    root = tmp_path_factory.mktemp("loop")
    data = base_campaign(root)
    data["placements"] = ["300x250"]
    path = write_campaign(root, data)
    return path, adgen.run(adgen.load_campaign(path))


@pytest.fixture
def ran(first_run: tuple[Path, adgen.RunResult], tmp_path: Path
        ) -> tuple[Path, adgen.RunResult]:
    """A private copy of the module's run (refreshes change the output folder)."""
    path, result = first_run
    shutil.copytree(path.parent, tmp_path, dirs_exist_ok=True)
    return tmp_path / path.name, result


def campaign_with(path: Path, *overrides: str) -> adgen.CampaignSpec:
    return adgen.load_campaign(path, overrides=list(overrides))


def per_variant(result: adgen.RunResult, counts: dict[str, tuple[int, int]],
                holdout: tuple[int, int] | None = None, names: tuple[str, str] = (
                    "users", "conversions")) -> pd.DataFrame:
    """One row per variant (``counts`` by arm suffix v0/v1), per segment, plus the holdout."""
    rows: list[dict[str, Any]] = []
    variants = result.manifest.drop_duplicates("variant_id")
    for segment_id, group in variants.groupby("segment_id"):
        if holdout is not None:
            rows.append({"segment_id": segment_id, "variant_id": "holdout",
                         names[0]: holdout[0], names[1]: holdout[1]})
        for variant_id in group["variant_id"]:
            users, conversions = counts[variant_id.rsplit("-", 1)[-1]]
            rows.append({"segment_id": segment_id, "variant_id": variant_id,
                         names[0]: users, names[1]: conversions})
    return pd.DataFrame(rows)


def segments(analysis: adgen.Analysis) -> pd.DataFrame:
    return analysis.table[analysis.table["scope"] != "all"]


def test_rule_bayesian_decides_by_chance_to_win(ran: tuple[Path, adgen.RunResult]) -> None:
    path, result = ran
    # per segment: p = 0.0736 (not significant), chance to win 0.963 (> 1 - alpha)
    results = per_variant(result, {"v0": (10000, 500), "v1": (10000, 560)})
    frequentist = adgen.analyze(campaign_with(path), results)
    bayesian = adgen.analyze(campaign_with(path, "refresh.rule=bayesian"), results)
    treated = segments(frequentist)["variant_id"].str.endswith("v1")
    assert set(segments(frequentist)[treated]["verdict"]) == {"inconclusive"}
    assert set(segments(bayesian)[segments(bayesian)["variant_id"].str.endswith("v1")][
        "verdict"]) == {"winner"}
    assert segments(bayesian)[treated]["chance_to_win"].round(4).tolist() == [0.9632] * 5


def test_correction_bh_against_holm_and_uplift_against_the_holdout(
    ran: tuple[Path, adgen.RunResult]
) -> None:
    path, result = ran
    # two arms against the holdout in each segment: raw p 0.0284 and 0.0394
    results = per_variant(result, {"v0": (10000, 575), "v1": (10000, 570)}, holdout=(10000, 500))
    holm = segments(adgen.analyze(campaign_with(path), results))
    bh = segments(adgen.analyze(campaign_with(path, "refresh.correction=bh"), results))
    treated = holm["variant_id"] != "holdout"
    raw = holm.loc[treated, "p_value"].to_numpy().reshape(5, 2)
    assert np.allclose(raw[:, 0], 0.0284, atol=5e-5) and np.allclose(raw[:, 1], 0.0394, atol=5e-5)
    assert np.allclose(holm.loc[treated, "p_adjusted"], 2 * raw[0, 0])  # Holm: 2 * min p
    assert np.allclose(bh.loc[treated, "p_adjusted"], raw[0, 1])  # BH: the larger p for both
    assert set(holm.loc[treated, "verdict"]) == {"inconclusive"}
    assert set(bh.loc[treated, "verdict"]) == {"winner"}
    assert set(holm.loc[~treated, "verdict"]) == {"control"}
    # the control is the holdout: uplift is the rate relative to the holdout's rate
    assert holm.loc[treated, "uplift"].round(6).tolist() == [0.15, 0.14] * 5


def test_sequential_intervals_only_when_asked_and_wider(ran: tuple[Path, adgen.RunResult]) -> None:
    path, result = ran
    results = per_variant(result, {"v0": (10000, 500), "v1": (10000, 560)})
    plain = adgen.analyze(campaign_with(path), results).table
    sequential = adgen.analyze(campaign_with(path, "refresh.sequential=true"), results).table
    treated = sequential["verdict"] != "control"
    assert plain.loc[treated, "seq_ci_low"].isna().all()
    rows = sequential[treated]
    assert (rows["seq_ci_low"] < rows["ci_low"]).all() and (rows["seq_ci_high"] > rows["ci_high"]
                                                             ).all()
    assert rows["seq_ci_low"].round(4).iloc[0] == -0.0897  # GrowthBook's published example


def test_impressions_and_clicks_are_users_and_conversions(ran: tuple[Path, adgen.RunResult]
                                                         ) -> None:
    path, result = ran
    counts = {"v0": (4000, 120), "v1": (4000, 90)}
    as_users = adgen.analyze(campaign_with(path), per_variant(result, counts)).table
    as_clicks = adgen.analyze(campaign_with(path), per_variant(
        result, counts, names=("impressions", "clicks"))).table
    pd.testing.assert_frame_equal(as_users, as_clicks)
    overall = as_clicks[as_clicks["scope"] == "all"].set_index("variant_id")
    assert overall.loc["hero-v1", "users"] == 20000 and overall.loc["hero-v1", "conversions"] == 450


def test_sample_ratio_mismatch_warns(ran: tuple[Path, adgen.RunResult], tmp_path: Path) -> None:
    path, result = ran
    balanced = adgen.analyze(campaign_with(path), per_variant(
        result, {"v0": (10000, 500), "v1": (10000, 500)}))
    assert balanced.srm_warnings == []
    skewed = adgen.analyze(campaign_with(path), per_variant(
        result, {"v0": (10000, 500), "v1": (9000, 450)}))  # planned 50/50
    assert len(skewed.srm_warnings) == 6  # each of the 5 segments and overall
    assert skewed.srm_warnings[-1].startswith("sample ratio mismatch in all: p = ")
    assert "not trustworthy" in skewed.srm_warnings[-1]
    written = write_analysis(skewed, tmp_path)
    saved = json.loads((tmp_path / "analysis.json").read_text(encoding="utf-8"))
    assert saved["warnings"] == skewed.srm_warnings
    with Image.open(written[2]) as plot:  # the uplift plot is a real picture
        assert plot.format == "PNG" and plot.width >= 400 and plot.height >= 200
        assert len(plot.convert("L").getcolors(1 << 20) or []) > 4
    # the CLI prints the warning too
    per_variant(result, {"v0": (10000, 500), "v1": (9000, 450)}).to_csv(tmp_path / "r.csv",
                                                                        index=False)
    out = CliRunner().invoke(app, ["analyze", str(path), "--results", str(tmp_path / "r.csv")])
    assert out.exit_code == 0, out.output
    assert "sample ratio mismatch in all" in out.output


def test_top_two_thompson_sampling_sets_the_refreshed_weights(
    ran: tuple[Path, adgen.RunResult]
) -> None:
    path, result = ran
    results = per_variant(result, {"v0": (300, 30), "v1": (300, 33)})  # nobody loses
    outcome = adgen.refresh(campaign_with(path, "refresh.top_two=true"), results)
    assert outcome.retired == [] and outcome.weights_note == "Thompson sampling (top two)"
    expected = stats.thompson_weights([stats.ArmStats(1500, 150), stats.ArmStats(1500, 165)],
                                      floor=0.01, top_two=True, seed=1)
    plain = stats.thompson_weights([stats.ArmStats(1500, 150), stats.ArmStats(1500, 165)],
                                   floor=0.01, top_two=False, seed=1)
    assert outcome.weights == [round(w, 6) for w in expected]
    assert outcome.weights != [round(w, 6) for w in plain]


def test_cli_schedule_stops_after_max_runs(ran: tuple[Path, adgen.RunResult], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path, result = ran
    per_variant(result, {"v0": (300, 30), "v1": (300, 33)}).to_csv(tmp_path / "r.csv",
                                                                  index=False)
    slept: list[float] = []
    monkeypatch.setitem(schedule.__kwdefaults__, "sleep", slept.append)
    out = CliRunner().invoke(app, ["schedule", str(path), "--results", str(tmp_path / "r.csv"),
                                   "--max-runs", "2", "--set", "refresh.schedule=*/5 * * * *"])
    assert out.exit_code == 0, out.output
    assert out.output.count("next refresh at") == 2 and len(slept) == 2
    assert out.output.count("refreshed: retired 0") == 2
    state = json.loads((path.parent / "out" / "refresh.json").read_text(encoding="utf-8"))
    assert state["refreshes"] == 2
