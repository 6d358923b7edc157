"""Refreshes are atomic (killed at each step, then finished by a rerun), variant ids are only
names (creative ids with hyphens, digits and ``-g`` work end to end), results are checked."""

from __future__ import annotations

import contextlib
import importlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import adgen
from adgen.backends.local import AssetMaker
from adgen.errors import ResultsError
from adgen.experiments.analysis import analyze
from adgen.experiments.assignment import JOURNAL_FILE, LOG_FILE, STATE_FILE, RefreshState, read_log
from adgen.output import files
from adgen.pipeline import refresh
from tests.conftest import base_campaign, write_campaign

CREATIVES = ["hero-g2", "spring-gift-2"]  # "-g" and digits in both; the second one loses


class Killed(BaseException):
    """The process dies here (not an error anything may catch)."""


def make_campaign(root: Path, **experiment: Any) -> adgen.CampaignSpec:
    data = base_campaign(root)
    data["creatives"] = [
        {"id": CREATIVES[0], "prompt": "a bottle, {{ region }}", "product": "bottle",
         "captions": {"headline": "Hello {{ region | title }}", "cta": "Shop now"}},
        {"id": CREATIVES[1], "prompt": "a gift box, {{ tier }}",
         "captions": {"headline": "Gifts", "cta": "Give"}},
    ]
    data.update(variants=1, placements=["300x250"], report=False)
    data["experiment"] = {"seed": "exp-1", **experiment}
    return adgen.load_campaign(write_campaign(root, data))


def results_for(manifest: pd.DataFrame, users: int = 5000) -> pd.DataFrame:
    rates = {CREATIVES[0]: 0.08, CREATIVES[1]: 0.05}
    variants = manifest.drop_duplicates("variant_id")
    return pd.DataFrame({"variant_id": variants["variant_id"], "users": users,
                         "conversions": [int(users * rates[c]) for c in variants["creative_id"]]})


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A campaign run once; each test copies its folder."""
    root = tmp_path_factory.mktemp("ran")
    campaign = make_campaign(root)
    result = adgen.run(campaign)
    return root, results_for(result.manifest)


def copy(root: Path, to: Path) -> adgen.CampaignSpec:
    shutil.copytree(root, to)
    return make_campaign_at(to)


def make_campaign_at(root: Path) -> adgen.CampaignSpec:
    return adgen.load_campaign(root / "campaign.yaml")


def snapshot(out: Path) -> dict[str, Any]:
    """What a reader trusts: the committed state, the ledger's current rows, the log."""
    state = RefreshState.load(out)
    ledger = state.ledger.current().drop(columns=["at", "seq"])
    committed = json.loads((out / STATE_FILE).read_text()) if (out / STATE_FILE).exists() \
        else None
    return {"state": committed, "ledger": ledger.sort_values("customer_id").reset_index(
        drop=True), "log": [e["retired"] for e in read_log(out, committed_only=True)]}


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["state"] == b["state"] and a["ledger"].equals(b["ledger"]) and a["log"] == b["log"]


@contextlib.contextmanager
def killed_at(monkeypatch: pytest.MonkeyPatch, point: str) -> Iterator[None]:
    """Kill the process at ``point``: ``before:NAME`` / ``after:NAME`` the first atomic write
    of a file whose path contains NAME, or ``call:NAME`` when that step is called."""
    when, name = point.split(":", 1)
    original = files._atomic

    @contextlib.contextmanager
    def atomic(path: Path, mode: str, **kwargs: Any) -> Iterator[Any]:
        hit = name in path.as_posix()
        if hit and when == "before":
            raise Killed(point)
        with original(path, mode, **kwargs) as handle:
            yield handle
        if hit and when == "after":
            raise Killed(point)

    def die(*args: Any, **kwargs: Any) -> Any:
        raise Killed(point)

    with monkeypatch.context() as patch:
        patch.setattr(files, "_atomic", atomic)
        if when == "call":
            owner: Any = {"analyse": importlib.import_module("adgen.pipeline"),
                          "post": AssetMaker}[name]
            patch.setattr(owner, {"analyse": "analyze", "post": "results"}[name], die)
        with pytest.raises(Killed):
            yield


KILL_POINTS = [
    "call:analyse", "before:" + JOURNAL_FILE, "after:" + JOURNAL_FILE, "before:.cache/renders",
    "call:post", "before:manifest.parquet", "after:manifest.parquet", "before:ledger/part",
    "after:ledger/part", "before:run.json", "before:" + STATE_FILE, "after:" + STATE_FILE,
    "after:" + LOG_FILE,
]


@pytest.fixture(scope="module")
def reference(ran, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    root, results = ran
    to = tmp_path_factory.mktemp("reference") / "c"
    campaign = copy(root, to)
    before = snapshot(campaign.output_dir)
    outcome = refresh(campaign, results)
    assert outcome.retired and all(v.startswith(CREATIVES[1]) for v in outcome.retired)
    out = campaign.output_dir
    return {"before": before, "after": snapshot(out),
            "assignments": (out / "assignments.csv").read_bytes(),
            "variants": set(outcome.run.manifest["variant_id"]), "retired": outcome.retired,
            "results": set(results["variant_id"])}


@pytest.mark.parametrize(("point", "finish"), [
    *((point, "refresh") for point in KILL_POINTS),
    *((point, "run") for point in ["call:analyse", "after:" + JOURNAL_FILE, "call:post",
                                   "after:ledger/part", "after:" + LOG_FILE,
                                   "after:" + STATE_FILE]),
])
def test_a_refresh_killed_anywhere_leaves_old_or_new_and_a_rerun_finishes_it(  # type: ignore[no-untyped-def]
    tmp_path: Path, ran, reference, monkeypatch: pytest.MonkeyPatch, point: str, finish: str,
) -> None:
    root, results = ran
    campaign = copy(root, tmp_path / "c")
    out = campaign.output_dir
    with killed_at(monkeypatch, point):
        refresh(campaign, results)
    now = snapshot(out)
    committed_new = same(now, reference["after"])
    assert committed_new or same(now, reference["before"]), point
    if (out / JOURNAL_FILE).exists() and not committed_new:
        with pytest.raises(ResultsError, match="refresh 1 did not finish; run `adgen refresh`"):
            analyze(campaign, results)
        with pytest.raises(adgen.CampaignError, match="refresh 1 did not finish"):
            adgen.assign(campaign)
    # the same refresh again, or a plain run, finishes it: never undoes it, never repeats it
    if finish == "refresh":
        outcome = refresh(campaign, results)
        assert outcome.resumed == (point not in {"call:analyse", "before:" + JOURNAL_FILE})
    else:
        adgen.run(campaign)
    assert same(snapshot(out), reference["after"]) or (
        finish == "run" and not (out / JOURNAL_FILE).exists()
        and point in {"call:analyse", "before:" + JOURNAL_FILE}
        and same(snapshot(out), reference["before"])), point
    assert not (out / JOURNAL_FILE).exists()
    if same(snapshot(out), reference["after"]):
        assert (out / "assignments.csv").read_bytes() == reference["assignments"]
        manifest = pd.read_parquet(out / "manifest.parquet")
        assert set(manifest["variant_id"]) == reference["variants"]
        adgen.run(campaign)  # and a later plain run changes nothing
        assert same(snapshot(out), reference["after"])


def test_creative_ids_with_hyphens_digits_and_g_go_through_refresh(reference) -> None:  # type: ignore[no-untyped-def]
    before, after = reference["before"]["ledger"], reference["after"]["ledger"]
    merged = before.merge(after, on="customer_id", suffixes=("", "_after"))
    loser = merged["creative_id"] == CREATIVES[1]
    # the loser's customers moved to its replacement; nobody else moved
    assert (merged.loc[loser, "generation_after"] == 1).all()
    assert (merged.loc[loser, "variant_id_after"] == merged.loc[loser, "variant_id"] + "-g1").all()
    assert (merged.loc[~loser, "variant_id_after"] == merged.loc[~loser, "variant_id"]).all()
    assert reference["after"]["state"]["generations"] and all(
        g["creative_id"] == CREATIVES[1] and g["generation"] == 1
        for g in reference["after"]["state"]["generations"])
    losers = {v for v in reference["results"] if v.startswith(CREATIVES[1] + "-s")}
    assert len(losers) == 5 and set(reference["retired"]) == losers
    assert {v for v in reference["variants"] if v.startswith(CREATIVES[1])} == {
        v + "-g1" for v in losers}


# --- results are checked ----------------------------------------------------------------------


@pytest.fixture
def held(tmp_path: Path) -> tuple[adgen.CampaignSpec, adgen.RunResult]:
    campaign = make_campaign(tmp_path, holdout=0.55)  # c1 and c6 held out
    return campaign, adgen.run(campaign)


def test_duplicated_customers_are_an_error_naming_the_lines(tmp_path: Path, held) -> None:  # type: ignore[no-untyped-def]
    campaign, result = held
    ids = result.assignments["customer_id"].tolist()
    path = tmp_path / "r.csv"
    path.write_text("customer_id,converted\n" + "\n".join(
        f"{c},1" for c in [*ids, ids[1], ids[4]]) + "\n", encoding="utf-8")
    with pytest.raises(ResultsError, match=(
            rf"r.csv: customer_id '{ids[1]}' on lines 3, 8; customer_id '{ids[4]}' on lines 6, "
            r"9: each customer must appear once")):
        analyze(campaign, path)


def test_segment_ids_are_checked(tmp_path: Path, held) -> None:  # type: ignore[no-untyped-def]
    campaign, result = held
    variants = result.manifest.drop_duplicates("variant_id")
    first, other = variants.iloc[0], variants[variants["segment_id"]
                                              != variants.iloc[0]["segment_id"]].iloc[0]
    path = tmp_path / "r.csv"
    path.write_text(f"variant_id,segment_id,users,conversions\n{first.variant_id},s0000000000,"
                    "10,1\n", encoding="utf-8")
    with pytest.raises(ResultsError, match="line 2: unknown segment_id 's0000000000'"):
        analyze(campaign, path)
    path.write_text(f"variant_id,segment_id,users,conversions\n{first.variant_id},"
                    f"{other.segment_id},10,1\n", encoding="utf-8")
    with pytest.raises(ResultsError, match=(
            f"line 2: variant '{first.variant_id}' belongs to segment '{first.segment_id}', "
            f"not '{other.segment_id}'")):
        analyze(campaign, path)
    path.write_text(f"variant_id,users,conversions\n{first.variant_id},10,1\nholdout,5,1\n"
                    f"{first.variant_id},10,2\n", encoding="utf-8")
    with pytest.raises(ResultsError, match=f"lines 2, 4 all give '{first.variant_id}'"):
        analyze(campaign, path)


def test_a_pooled_holdout_row_is_the_overall_control_and_every_scope_appears_once(  # type: ignore[no-untyped-def]
    tmp_path: Path, held
) -> None:
    campaign, result = held
    rows = results_for(result.manifest)
    rows.loc[len(rows)] = ["holdout", 3000, 150]
    analysis = analyze(campaign, rows)
    table = analysis.table
    scopes = table["scope"].tolist()
    assert scopes[-1] == "all" and scopes.count("all") == 3  # holdout + 2 arms, once each
    assert list(dict.fromkeys(scopes)) == [*sorted(result.manifest["segment_id"].unique()), "all"]
    overall = table[table["scope"] == "all"].set_index("variant_id")
    assert overall.loc["holdout", "verdict"] == "control"
    assert overall.loc[f"{CREATIVES[0]}-v0", "uplift"] == pytest.approx(0.08 / 0.05 - 1)
    assert not (table.loc[table["scope"] != "all", "variant_id"] == "holdout").any()
    written = json.loads(adgen.write_analysis(analysis, result.out)[1].read_text())
    assert [(r["scope"], r["variant_id"]) for r in written["rows"]] == list(
        zip(table["scope"], table["variant_id"], strict=True))


def test_each_segment_is_compared_with_its_holdout(held) -> None:  # type: ignore[no-untyped-def]
    campaign, result = held
    rows = results_for(result.manifest)
    rows["segment_id"] = ""
    segments = sorted(result.manifest["segment_id"].unique())
    for segment in segments:
        rows.loc[len(rows)] = ["holdout", 2000, 60, segment]
    table = analyze(campaign, rows).table
    for segment in segments:
        scope = table[table["scope"] == segment]
        assert scope["variant_id"].iloc[0] == "holdout" and scope["verdict"].iloc[0] == "control"
        hero = scope[scope["creative_id"] == CREATIVES[0]]
        assert hero["uplift"].iloc[0] == pytest.approx(0.08 / 0.03 - 1)
    overall = table[(table["scope"] == "all") & (table["variant_id"] == "holdout")]
    assert overall["users"].tolist() == [2000 * len(segments)]
    rows.loc[len(rows)] = ["holdout", 10, 1, ""]
    with pytest.raises(ResultsError, match="holdout rows are given both for all segments"):
        analyze(campaign, rows)


def test_per_customer_holdout_is_each_segments_control(held) -> None:  # type: ignore[no-untyped-def]
    campaign, result = held
    frame = result.assignments
    per_customer = pd.DataFrame({"customer_id": frame["customer_id"], "converted": 1})
    table = analyze(campaign, per_customer).table
    held_out = frame[frame["holdout"]]
    assert len(held_out) > 0
    for segment, group in held_out.groupby("segment_id"):
        scope = table[table["scope"] == segment]
        assert scope["variant_id"].iloc[0] == "holdout"
        assert scope["users"].iloc[0] == len(group)
