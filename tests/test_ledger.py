"""The assignment ledger: customers never move silently, whatever audience a run sees."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import adgen
from adgen.experiments.assignment import RefreshState
from adgen.experiments.hashing import bucket_ranges, choose_variation, gb_hash
from adgen.experiments.ledger import LEDGER_DIR, Ledger
from tests.conftest import write_campaign

REGIONS = ["north", "south", "east"]
TIERS = ["gold", "silver"]


def write_audience(path: Path, ids: list[str], *, region_of: dict[str, str] | None = None) -> Path:
    rng = random.Random(7)
    rows = []
    for cid in ids:
        region = (region_of or {}).get(cid) or REGIONS[int(cid[1:]) % 3]
        rows.append({"customer_id": cid, "first_name": "X", "region": region,
                     "tier": TIERS[int(cid[1:]) % 2], "spend": rng.randint(1, 100)})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def setup(tmp_path: Path, campaign_data: dict[str, Any]) -> tuple[adgen.CampaignSpec, list[str]]:
    ids = [f"c{i:04d}" for i in range(205)]
    write_audience(tmp_path / "audience.csv", ids)
    campaign_data["experiment"] = {"seed": "exp-1", "holdout": 0.1}
    campaign_data["creatives"].append({"id": "spring-gift", "prompt": "a gift, {{ region }}",
                                       "captions": {"headline": "Hi", "cta": "Buy"}})
    return adgen.load_campaign(write_campaign(tmp_path, campaign_data)), ids


def ledger_of(campaign: adgen.CampaignSpec) -> pd.DataFrame:
    return RefreshState.load(campaign.output_dir).ledger.current().set_index("customer_id")


def test_a_test_send_then_the_full_audience_moves_nobody(tmp_path: Path, setup) -> None:  # type: ignore[no-untyped-def]
    campaign, ids = setup
    first = adgen.assign(campaign, audience=write_audience(tmp_path / "test-send.csv", ids[:20]))
    # the weights change (as after a refresh) before the full audience is assigned
    state = RefreshState.load(campaign.output_dir)
    state.weights = [0.7, 0.1, 0.1, 0.1]
    state.commit()
    full = adgen.assign(campaign)
    assert len(full) == 205
    again = full.set_index("customer_id").loc[first["customer_id"]]
    assert again["variant_id"].tolist() == first["variant_id"].tolist()
    # a re-ordered superset with new customers: still nobody moves
    shuffled = [*ids[::-1], "c9000", "c9001"]
    later = adgen.assign(campaign, audience=write_audience(tmp_path / "more.csv", shuffled))
    merged = full.merge(later, on="customer_id", suffixes=("", "_later"))
    assert len(merged) == 205
    assert (merged["variant_id"] == merged["variant_id_later"]).all()
    # a subset run leaves everyone else in the ledger
    adgen.assign(campaign, audience=write_audience(tmp_path / "few.csv", ids[100:110]))
    ledger = ledger_of(campaign)
    assert len(ledger) == 207 and ledger.loc["c0150", "variant_id"] == \
        full.set_index("customer_id").loc["c0150", "variant_id"]
    # one part per write that changed something: the first 20, the other 185, the 2 new
    parts = sorted((campaign.output_dir / LEDGER_DIR).glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-000001.parquet", "part-000002.parquet",
                                       "part-000003.parquet"]
    assert pd.read_parquet(parts[1])["reason"].unique().tolist() == ["new"]


def test_first_assignment_is_growthbooks(setup) -> None:  # type: ignore[no-untyped-def]
    gb = pytest.importorskip("growthbook.core")
    campaign, ids = setup
    frame = adgen.assign(campaign).set_index("customer_id")
    members = adgen.plan(campaign).segments.members.set_index("customer_id")
    arms = [(c.id, i) for c in campaign.creatives for i in range(campaign.variants)]
    ranges = gb.getBucketRanges(4, 1.0, [0.25] * 4)
    for cid in ids:
        held = gb.gbhash("exp-1-holdout", cid, 2) < 0.1
        row = frame.loc[cid]
        assert bool(row["holdout"]) == held
        if held:
            assert row["variant_id"] == ""
            continue
        creative, index = arms[gb.chooseVariation(gb.gbhash("exp-1", cid, 2), ranges)]
        assert (row["creative_id"], int(row["variant_index"])) == (creative, index)
        assert row["variant_id"] == f"{creative}-{members.loc[cid, 'segment_id']}-v{index}"
    assert choose_variation(gb_hash("exp-1", "c0000") or 0, bucket_ranges(4)) >= 0


def test_history_segment_change_and_removed_creative(tmp_path: Path, setup) -> None:  # type: ignore[no-untyped-def]
    campaign, ids = setup
    first = adgen.assign(campaign).set_index("customer_id")
    mover = next(c for c in ids if not first.loc[c, "holdout"])
    region = {"north": "south", "south": "east", "east": "north"}
    old_region = REGIONS[int(mover[1:]) % 3]
    moved = adgen.assign(campaign, audience=write_audience(
        tmp_path / "moved.csv", ids, region_of={mover: region[old_region]})).set_index(
        "customer_id")
    before, after = first.loc[mover], moved.loc[mover]
    assert after["segment_id"] != before["segment_id"]
    assert (after["creative_id"], after["variant_index"]) == (
        before["creative_id"], before["variant_index"])
    assert (moved.drop(index=mover)["variant_id"] == first.drop(index=mover)["variant_id"]).all()
    history = RefreshState.load(campaign.output_dir).ledger.history(mover)
    assert history["reason"].tolist() == ["new", "segment"]
    assert history["seq"].tolist() == [1, 2] and history["at"].is_monotonic_increasing
    # a creative leaves the campaign: only its customers are hashed again, over what is left
    fewer = campaign.model_copy(update={"creatives": campaign.creatives[:1]})
    third = adgen.assign(fewer, audience=tmp_path / "moved.csv").set_index("customer_id")
    was_gift = moved["creative_id"] == "spring-gift"
    assert (third.loc[was_gift, "creative_id"] == "hero").all()
    assert (third.loc[~was_gift, "variant_id"] == moved.loc[~was_gift, "variant_id"]).all()
    reasons = RefreshState.load(campaign.output_dir).ledger.read().to_pandas()
    assert set(reasons.loc[reasons["seq"] == 3, "customer_id"]) == set(was_gift[was_gift].index)
    assert set(reasons.loc[reasons["seq"] == 3, "reason"]) == {"removed"}


def test_an_uncommitted_part_is_ignored_and_replaced(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    campaign, ids = setup
    adgen.assign(campaign, audience=None)
    state = RefreshState.load(campaign.output_dir)
    assert state.ledger_seq == 1

    def killed(self: RefreshState, **_: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(RefreshState, "commit", killed)
    more = campaign.model_copy(update={"experiment": campaign.experiment})
    with pytest.raises(KeyboardInterrupt):
        adgen.assign(more, audience=write_audience(
            campaign.output_dir.parent / "new.csv", [*ids, "c7777"]))
    assert (campaign.output_dir / LEDGER_DIR / "part-000002.parquet").exists()  # written...
    assert Ledger(campaign.output_dir, 1).current()["customer_id"].tolist().count("c7777") == 0
    assert "c7777" not in set(RefreshState.load(campaign.output_dir).ledger.current()[
        "customer_id"])  # ...but not committed
    monkeypatch.undo()
    adgen.assign(more, audience=campaign.output_dir.parent / "new.csv")
    assert "c7777" in set(ledger_of(campaign).index)


def test_explain_a_customer(tmp_path: Path, setup) -> None:  # type: ignore[no-untyped-def]
    campaign, ids = setup
    frame = adgen.assign(campaign).set_index("customer_id")
    cid = next(c for c in ids if not frame.loc[c, "holdout"])
    explanation = adgen.explain(campaign.output_dir, cid)
    assert explanation.segment_id == frame.loc[cid, "segment_id"]
    assert explanation.variant_id == frame.loc[cid, "variant_id"]
    assert explanation.bucket == gb_hash("exp-1", cid)
    text = str(explanation)
    assert f"customer '{cid}'" in text and "first seen: bucket" in text
    assert f"({frame.loc[cid, 'creative_id']}-v{frame.loc[cid, 'variant_index']})" in text
    assert "weights [0.25, 0.25, 0.25, 0.25], holdout 0.1 (not held out)" in text
    held = next(c for c in ids if frame.loc[c, "holdout"])
    assert "→ held out" in str(adgen.explain(campaign.output_dir, held))
    with pytest.raises(adgen.AudienceError, match="customer 'nope' has never been assigned"):
        adgen.explain(campaign.output_dir, "nope")


def test_explain_from_the_cli(setup) -> None:  # type: ignore[no-untyped-def]
    from tests.test_cli import adgen as cli

    campaign, ids = setup
    frame = adgen.assign(campaign).set_index("customer_id")
    out = cli("explain", campaign.output_dir, "--customer", ids[3])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"customer '{ids[3]}'"
    assert lines[1].startswith(f"  segment   {frame.loc[ids[3], 'segment_id']} (region=")
    assert len(lines) <= 24  # one screen
    out = cli("explain", campaign.output_dir, "--customer", "nobody")
    assert out.returncode == 2
    assert out.stderr.strip().endswith("customer 'nobody' has never been assigned (not in the "
                                       "assignment ledger); check the id (ids are text: leading "
                                       "zeros count)")


def test_a_state_file_from_an_older_adgen_is_a_clear_error(setup) -> None:  # type: ignore[no-untyped-def]
    campaign, _ = setup
    campaign.output_dir.mkdir(parents=True)
    (campaign.output_dir / "refresh.json").write_text(
        '{"generations": {"hero-s0123456789-v1": 1}, "weights": null, "refreshes": 1}')
    with pytest.raises(adgen.CampaignError, match=r"refresh\.json: written by an older adgen"):
        adgen.assign(campaign)


def test_a_missing_ledger_part_moves_nobody_until_restored_or_reset(  # type: ignore[no-untyped-def]
    tmp_path: Path, setup, campaign_data: dict[str, Any]
) -> None:
    from tests.test_cli import adgen as cli

    campaign, ids = setup
    path = write_campaign(tmp_path, {**campaign_data, "placements": ["300x250"]}, "small.yaml")
    campaign = adgen.load_campaign(path)
    adgen.assign(campaign, audience=write_audience(tmp_path / "first.csv", ids[:100]))
    assigned = adgen.assign(campaign).set_index("customer_id")["variant_id"]  # part 2
    out = campaign.output_dir
    backup = tmp_path / "backup"
    shutil.copytree(out / LEDGER_DIR, backup)
    shutil.rmtree(out / LEDGER_DIR)
    done = cli("run", path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {out / LEDGER_DIR / 'part-000001.parquet'} and 1 more parts: missing, but "
        "refresh.json counts 2 ledger parts; restore it from a backup (or the bucket's object "
        "versions), or start the assignments over with --reset-ledger (every customer is "
        "hashed again)")
    assert not (out / "assets").exists() and not (out / LEDGER_DIR).exists()  # nothing made
    for command in (adgen.assign, lambda c: adgen.explain(c.output_dir, ids[0])):
        with pytest.raises(adgen.OutputError, match=r"part-000001\.parquet and 1 more parts"):
            command(campaign)
    # restored from the backup: everyone is where they were
    shutil.copytree(backup, out / LEDGER_DIR)
    again = adgen.assign(campaign).set_index("customer_id")["variant_id"]
    assert again.equals(assigned)
    # refresh.json lost while the parts are there: the same, the other way round
    state = (out / "refresh.json").read_bytes()
    (out / "refresh.json").unlink()
    with pytest.raises(adgen.OutputError, match=r"part-000002.parquet: refresh.json counts only "
                       r"0 ledger parts \(it was replaced or deleted\); restore refresh.json"):
        adgen.assign(campaign)
    (out / "refresh.json").write_bytes(state)
    # starting over on purpose: the old parts are kept aside, everyone is hashed again
    (out / LEDGER_DIR / "part-000002.parquet").unlink()
    done = cli("run", path, "--reset-ledger")
    assert done.returncode == 0, done.stderr
    (aside,) = out.glob(f"{LEDGER_DIR}.reset-*")
    assert [p.name for p in aside.iterdir()] == ["part-000001.parquet"]
    history = RefreshState.load(out).ledger.read().to_pandas()
    assert set(history["seq"]) == {1} and set(history["reason"]) == {"new"}
    assert len(history) == 205
    fresh = pd.read_csv(out / "assignments.csv", dtype=str, keep_default_na=False)
    assert dict(zip(fresh["customer_id"], fresh["variant_id"], strict=True)) == dict(
        assigned)  # the same hash and weights: the same variants, but as new
