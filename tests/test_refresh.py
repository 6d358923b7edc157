"""The experiment loop: run → analyze → refresh (→ schedule), on a campaign whose results make
one variant clearly worse."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import adgen
from adgen.errors import ResultsError
from adgen.experiments.analysis import analyze, write_analysis
from adgen.pipeline import refresh, schedule


def results_for(manifest: pd.DataFrame, rates: dict[str, float], users: int = 5000) -> pd.DataFrame:
    variants = manifest.drop_duplicates("variant_id")
    rows = [{"variant_id": vid, "users": users, "conversions": int(users * rates[f"v{index}"])}
            for vid, index in zip(variants["variant_id"], variants["variant_index"], strict=True)]
    return pd.DataFrame(rows)


@pytest.fixture
def ran(campaign_file: Path) -> tuple[adgen.CampaignSpec, adgen.RunResult]:
    campaign = adgen.load_campaign(campaign_file, overrides=["placements=[300x250]"])
    return campaign, adgen.run(campaign)


def test_analyze_finds_the_loser_in_every_segment(tmp_path: Path, ran) -> None:  # type: ignore[no-untyped-def]
    campaign, result = ran
    results = results_for(result.manifest, {"v0": 0.08, "v1": 0.05})
    results.to_csv(tmp_path / "results.csv", index=False)
    analysis = analyze(campaign, tmp_path / "results.csv")
    table = analysis.table
    segments = table[table["scope"] != "all"]
    assert set(segments.loc[segments["variant_id"].str.endswith("v0"), "verdict"]) == {"control"}
    assert set(segments.loc[segments["variant_id"].str.endswith("v1"), "verdict"]) == {"loser"}
    overall = table[table["scope"] == "all"].set_index("variant_id")
    assert overall.loc["hero-v1", "users"] == 25000
    assert overall.loc["hero-v1", "uplift"] == pytest.approx(-0.375)
    assert overall.loc["hero-v1", "verdict"] == "loser"
    assert analysis.srm == {scope: pytest.approx(1.0) for scope in analysis.srm}
    paths = write_analysis(analysis, result.out)
    assert [p.name for p in paths] == ["analysis.csv", "analysis.json", "analysis.png"]
    saved = pd.read_csv(paths[0])
    assert saved["variant_id"].tolist() == table["variant_id"].tolist()
    assert saved["verdict"].tolist() == table["verdict"].tolist()
    with Image.open(paths[2]) as plot:
        assert plot.format == "PNG" and plot.width >= 400 and plot.height >= 200
        gray = np.asarray(plot.convert("L"))
    assert gray.min() < 100 and gray.max() > 200  # something is drawn on the background
    assert (gray < 200).mean() > 0.01


def test_refresh_retires_losers_renders_replacements_and_stays_sticky(  # type: ignore[no-untyped-def]
    tmp_path: Path, ran
) -> None:
    campaign, first = ran
    before = pd.read_csv(first.out / "assignments.csv", dtype=str, keep_default_na=False)
    results = results_for(first.manifest, {"v0": 0.08, "v1": 0.05})
    outcome = refresh(campaign, results)
    assert outcome.retired == sorted(v for v in first.manifest["variant_id"].unique()
                                     if v.endswith("v1"))
    assert outcome.run.rendered == 5  # one replacement per segment; the rest is cached
    assert outcome.weights is not None and outcome.weights[0] > 0.95
    assert outcome.weights[1] == pytest.approx(0.01 / 1.01, abs=1e-6)  # floored, normalised
    after = pd.read_csv(first.out / "assignments.csv", dtype=str, keep_default_na=False)
    merged = before.merge(after, on="customer_id", suffixes=("_before", "_after"))
    stayed = merged[merged["variant_id_before"].str.endswith("v0")]
    assert (stayed["variant_id_before"] == stayed["variant_id_after"]).all()
    moved = merged[merged["variant_id_before"].str.endswith("v1")]
    assert len(moved) > 0
    assert (moved["variant_id_after"] == moved["variant_id_before"] + "-g1").all()
    manifest = outcome.run.manifest
    old = set(first.manifest["variant_id"])
    assert set(manifest["variant_id"]) == {v if v.endswith("v0") else f"{v}-g1" for v in old}
    assert set(after["variant_id"]) <= set(manifest["variant_id"])
    state = json.loads((first.out / "refresh.json").read_text())
    assert state["refreshes"] == 1 and len(state["generations"]) == 5
    assert all(g["generation"] == 1 and g["variant_index"] == 1 for g in state["generations"])
    log = [json.loads(line) for line in (first.out / "refresh_log.jsonl").read_text().splitlines()]
    assert log[-1]["retired"] == outcome.retired and log[-1]["rendered"] == 5
    # a new customer is hashed with the new weights; old ones stay where they are
    again = adgen.run(campaign)
    assert again.rendered == 0
    assert (pd.read_csv(first.out / "assignments.csv", dtype=str, keep_default_na=False)
            .equals(after))


def test_per_customer_results(tmp_path: Path, ran) -> None:  # type: ignore[no-untyped-def]
    campaign, result = ran
    assignments = pd.read_csv(result.out / "assignments.csv", dtype=str)
    per_customer = pd.DataFrame({"customer_id": assignments["customer_id"],
                                 "converted": [1, 0, 1, 0, 0, 1]})
    analysis = analyze(campaign, per_customer)
    assert analysis.table.loc[analysis.table["scope"] == "all", "users"].sum() == 6
    per_customer.loc[6] = ["nobody", 1]
    with pytest.raises(ResultsError, match=r"row 6: customer_id 'nobody' was never assigned"):
        analyze(campaign, per_customer)


@pytest.mark.parametrize(("text", "message"), [
    ("variant_id,users,conversions\nnope,10,1\n", r"line 2: unknown variant_id 'nope'"),
    ("variant_id,users,conversions\n{v},10,-1\n", r"line 2: conversions = '-1' is not a whole"),
    ("variant_id,users,conversions\n{v},10,11\n", r"line 2: conversions \(11\) > users \(10\)"),
    ("variant_id,clicks\n{v},1\n", r"aggregated results need columns variant_id, users"),
    ("foo,bar\n1,2\n", r"results need either variant_id"),
])
def test_bad_results_name_the_row(tmp_path: Path, ran, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    campaign, result = ran
    path = tmp_path / "r.csv"
    path.write_text(text.format(v=result.manifest["variant_id"].iloc[0]), encoding="utf-8")
    with pytest.raises(ResultsError, match=message):
        analyze(campaign, path)


def test_schedule_runs_refreshes_on_cron_and_survives_a_failure(  # type: ignore[no-untyped-def]
    tmp_path: Path, ran
) -> None:
    campaign, first = ran
    campaign = campaign.model_copy(update={"refresh": campaign.refresh.model_copy(
        update={"schedule": "*/5 * * * *"})})
    results_for(first.manifest, {"v0": 0.08, "v1": 0.05}).to_csv(tmp_path / "r.csv", index=False)
    clock = [datetime(2026, 11, 26, 6, 1, tzinfo=UTC)]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    events: list[str] = []
    ok = schedule(campaign, tmp_path / "r.csv", max_runs=2, now=lambda: clock[0], sleep=sleep,
                  on_event=events.append)
    assert slept == [240.0, 300.0]
    assert ok == 1  # the second refresh's results name variants the first one retired
    assert events[0] == "next refresh at 2026-11-26T06:05:00+00:00"
    assert any(e.startswith("refresh failed, last good output kept:") for e in events)
    state = json.loads((first.out / "refresh.json").read_text())
    assert state["refreshes"] == 1
