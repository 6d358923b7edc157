"""Review and approval: decisions tied to content, the log, what runs, refreshes, exports and
explain make of them, the static sheet, CSV import and export."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import adgen
from adgen.errors import ReviewError
from adgen.planning import make_plan
from adgen.review.decisions import (
    LOG_FILE,
    STATE_FILE,
    Decision,
    Decisions,
    Retake,
    content_hashes,
    new_decision,
    record,
    reviewable,
)
from adgen.review.sheet import write_report
from adgen.review.source import current_manifest
from tests.browser.sample_output import make_output
from tests.conftest import base_campaign
from tests.review_helpers import ADGEN, cards, published, small_campaign

# --- decisions and content ----------------------------------------------------------------


def _manifest(sha: str = "aa", caption: str = "Hi", status: str = "ok") -> pd.DataFrame:
    rows = [{"variant_id": "v", "placement": p, "sha256": f"{sha}{i}", "status": status,
             "captions": json.dumps({"headline": caption})}
            for i, p in enumerate(("feed_square", "story"))]
    return pd.DataFrame(rows)


def test_content_hash_changes_with_any_picture_or_caption() -> None:
    base = content_hashes(_manifest())["v"]
    assert content_hashes(_manifest().iloc[::-1])["v"] == base  # row order does not matter
    assert content_hashes(_manifest(sha="ab"))["v"] != base
    assert content_hashes(_manifest(caption="Hello"))["v"] != base
    assert content_hashes(_manifest().iloc[:1])["v"] != base  # a placement less
    assert reviewable(_manifest(status="failed: no render")) == {}


def _event(decision: str, content: str, **more: Any) -> Decision:
    return new_decision("v", decision, more.pop("reviewer", "Ana"), more.pop("comment", ""),
                        content, **more)


def test_a_decision_holds_only_for_the_content_it_was_made_on() -> None:
    decisions = Decisions([_event("approved", "c1")])
    assert decisions.status("v", "c1") == "approved"
    assert decisions.status("v", "c2") == "pending"
    # a run made c2: the variant is pending again, the history stays
    settled = decisions.settle({"v": "c2"}, {})
    assert [(e.decision, e.source, e.note) for e in settled] == [
        ("pending", "run", "its picture or captions changed")]
    decisions = Decisions([*decisions.events, *settled])
    assert decisions.status("v", "c2") == "pending" and len(decisions.history("v")) == 2
    # the approved content comes back: so does its approval
    back = decisions.settle({"v": "c1"}, {})
    assert back[0].decision == "approved" and back[0].reviewer == "Ana"
    assert decisions.settle({"v": "c2"}, {}) == []  # nothing changed, nothing recorded


def test_rejected_content_never_comes_back_pending() -> None:
    decisions = Decisions([_event("rejected", "c1", comment="too dark")])
    assert decisions.takes(comments=True) == {"v": Retake(1, "too dark")}
    assert decisions.takes() == {"v": Retake(1, "")}
    rerendered = Decisions([*decisions.events,
                            *decisions.settle({"v": "c2"}, {"v": 1})])
    last = rerendered.latest["v"]
    assert (last.decision, last.take) == ("pending", 1)
    assert last.note == "rendered again (take 1) after the rejection: too dark"
    assert rerendered.takes(comments=True) == {"v": Retake(1, "too dark")}  # kept
    # should a later run make the rejected picture again, it is rejected again
    again = rerendered.settle({"v": "c1"}, {"v": 1})
    assert again[0].decision == "rejected" and again[0].comment == "too dark"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"verdict": "maybe"}, "decision 'maybe' is not one of approved, rejected, pending"),
    ({"reviewer": "  "}, "no reviewer: name yourself"),
    ({"reviewer": "x" * 81}, "longer than 80 characters"),
    ({"comment": "x" * 2001}, "comment of 2001 characters is longer than 2000"),
    ({"comment": "bell\x07"}, "comment has control characters"),
])
def test_bad_decisions_are_refused(kwargs: dict[str, str], message: str) -> None:
    args = {"verdict": "approved", "reviewer": "Ana", "comment": ""} | kwargs
    with pytest.raises(ReviewError, match=message.replace("(", r"\(")):
        new_decision("v", args["verdict"], args["reviewer"], args["comment"], "c")


def test_the_log_is_only_appended_to_and_damage_is_named(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False, analysis=False)
    first = record(out, lambda d: [new_decision("a", "approved", "Ana", "", "c1")])[0]
    log = (out / LOG_FILE).read_bytes()
    record(out, lambda d: [new_decision("b", "rejected", "Ben", "no", "c2"),
                           new_decision("a", "rejected", "Ben", "", "c1")])
    after = (out / LOG_FILE).read_bytes()
    assert after.startswith(log) and len(after.splitlines()) == 3 and len(first) == 1
    state = json.loads((out / STATE_FILE).read_text())
    assert state["events"] == 3
    assert {k: v["decision"] for k, v in state["variants"].items()} == {
        "a": "rejected", "b": "rejected"}
    # a failing batch writes nothing
    with pytest.raises(ReviewError):
        record(out, lambda d: [new_decision("c", "approved", "", "", "c3")])
    assert (out / LOG_FILE).read_bytes() == after
    (out / LOG_FILE).write_bytes(after + b"{not json\n")
    with pytest.raises(ReviewError, match=r"decisions.jsonl line 4: not a decision"):
        Decisions.of(out)


# --- the campaign -------------------------------------------------------------------------


def _decide(out: str | Path, choices: dict[str, tuple[str, str]],
            reviewer: str = "Ana") -> None:
    contents = reviewable(current_manifest(out))
    record(out, lambda d: [new_decision(v, verdict, reviewer, comment, contents[v])
                           for v, (verdict, comment) in choices.items()])


def test_review_section_and_require_approval(tmp_path: Path) -> None:
    plain = base_campaign(tmp_path)
    off = adgen.campaign_from_dict(plain, base_dir=tmp_path)
    assert off.review is None and not off.approval_required
    bare = adgen.campaign_from_dict(plain | {"review": None}, base_dir=tmp_path)  # `review:`
    assert bare.review is not None and bare.approval_required
    assert not bare.review.comment_as_negative
    opted_out = adgen.campaign_from_dict(
        plain | {"review": {}, "export": {"require_approval": False}}, base_dir=tmp_path)
    assert not opted_out.approval_required
    with pytest.raises(adgen.CampaignError, match="comments_as_negative"):
        adgen.campaign_from_dict(plain | {"review": {"comments_as_negative": True}},
                                 base_dir=tmp_path)


def test_a_rejection_gives_the_variant_its_next_seed_and_the_comment(tmp_path: Path) -> None:
    spec = small_campaign(tmp_path, review={"comment_as_negative": True})
    out = Path(spec.output_location)
    before = make_plan(spec).variants.set_index("variant_id")
    rejected, other = before.index[0], before.index[1]
    out.mkdir(parents=True)
    record(out, lambda d: [new_decision(rejected, "rejected", "Ana", "no text, less blue", "c"),
                           new_decision(other, "approved", "Ana", "", "c")])
    after = make_plan(spec).variants.set_index("variant_id")
    assert after.loc[rejected, "seed"] != before.loc[rejected, "seed"]
    assert after.loc[rejected, "job_key"] != before.loc[rejected, "job_key"]
    assert after.loc[rejected, "negative_prompt"] == "no text, less blue"
    unchanged = after.drop(index=rejected)
    assert unchanged["seed"].equals(before.drop(index=rejected)["seed"])
    # the comment is checked like the campaign's own text: an e-mail blocks the variant
    record(out, lambda d: [new_decision(rejected, "rejected", "Ana", "like ana@example.com",
                                        "c")])
    blocked = make_plan(spec).variants.set_index("variant_id").loc[rejected, "blocked"]
    assert "e-mail" in blocked


def test_runs_exports_refresh_and_explain_obey_review(tmp_path: Path) -> None:
    spec = small_campaign(tmp_path, review={"comment_as_negative": True})
    first = adgen.run(spec)
    out = Path(spec.output_location)
    assert first.summary()["pending"] == 4
    variants = list(dict.fromkeys(first.manifest["variant_id"]))
    approved, rejected, pending = variants[:2], variants[2], variants[3]
    shas = first.manifest.groupby("variant_id")["sha256"].apply(set)
    _decide(out, {approved[0]: ("approved", ""), approved[1]: ("approved", "lovely"),
                  rejected: ("rejected", "=too dark")})
    # export: only the approved; the others left out, with the reason
    result = adgen.export(spec)
    meta, google = published(out, "meta"), published(out, "google")
    for variant in approved:
        assert variant in meta and variant in google
    for variant in (rejected, pending):
        assert variant not in meta and variant not in google
    reasons = {e["variant_id"]: e["reason"] for e in result.skipped["meta"]}
    assert reasons[rejected].startswith("review: rejected by Ana at ")
    assert reasons[rejected].endswith(": =too dark")
    assert reasons[pending] == ("review: pending, not approved yet "
                                "(export.require_approval is on)")
    record_ = json.loads((out / "exports/export.json").read_text())
    assert {e["variant_id"] for e in record_["google"]["skipped"]} >= {rejected, pending}
    # the next run renders the rejected variant again, with its next seed: pending
    second = adgen.run(spec)
    rows = second.manifest.set_index("variant_id")
    seeds = first.manifest.drop_duplicates("variant_id").set_index("variant_id")["seed"]
    assert rows.loc[rejected, "seed"].iloc[0] != seeds[rejected]
    assert set(rows.loc[rejected, "sha256"]).isdisjoint(shas[rejected])
    assert rows.loc[rejected, "negative_prompt"].iloc[0] == "=too dark"
    assert second.rendered == 1  # that one only (aspect crop: one render per variant)
    assert {k: second.summary()[k] for k in ("approved", "rejected", "pending")} == {
        "approved": 2, "rejected": 0, "pending": 2}
    run_json = json.loads((out / "run.json").read_text())
    assert (run_json["approved"], run_json["rejected"], run_json["pending"]) == (2, 0, 2)
    assert run_json["review"] == {"require_approval": True}
    decisions = Decisions.of(out)
    assert [e.decision for e in decisions.history(rejected)] == ["rejected", "pending"]
    assert decisions.latest[rejected].note == (
        "rendered again (take 1) after the rejection: =too dark")
    # a run that changes nothing keeps every decision and renders nothing
    third = adgen.run(spec)
    assert third.rendered == 0 and len(Decisions.of(out)) == len(decisions)
    # explain shows the decision behind what a customer sees
    assignments = pd.read_csv(out / "assignments.csv", dtype=str)
    customer = assignments.loc[assignments["variant_id"] == approved[1], "customer_id"].iloc[0]
    text = str(adgen.explain(out, customer))
    assert "\n  review    approved by Ana at " in text and " UTC: lovely\n" in text
    # a refresh retires losers; it never brings the rejected picture back
    results = pd.DataFrame({"variant_id": variants, "users": 4000,
                            "conversions": [400, 80, 400, 80]})
    results.to_csv(tmp_path / "results.csv", index=False)
    outcome = adgen.refresh(spec, tmp_path / "results.csv")
    after = outcome.run.manifest.set_index("variant_id")
    assert rejected in after.index and set(after.loc[rejected, "sha256"]).isdisjoint(
        shas[rejected])
    assert Decisions.of(out).status(rejected, reviewable(outcome.run.manifest)[rejected]) \
        == "pending"


def test_export_from_the_folder_follows_the_run(tmp_path: Path) -> None:
    spec = small_campaign(tmp_path, export={"url": "https://shop.example/spring"},
                          review=None)
    spec = spec.model_copy(update={"review": None})
    run = adgen.run(spec)
    out = Path(spec.output_location)
    variants = list(dict.fromkeys(run.manifest["variant_id"]))
    _decide(out, {variants[0]: ("rejected", "")})
    # no review section: pending ads are published, a rejected one never
    result = adgen.export(out, to="csv")
    published = set(pd.read_csv(out / "exports/csv/ads.csv", dtype=str)["ad_id"])
    assert published == set(variants[1:])
    assert [e["variant_id"] for e in result.skipped["csv"]] == [variants[0]]
    # require_approval from the command line's settings, or recorded by the run
    run_json = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps(run_json | {"review": {"require_approval": True}}))
    adgen.export(out, to="csv")
    assert pd.read_csv(out / "exports/csv/ads.csv", dtype=str).empty


# --- the static sheet ---------------------------------------------------------------------


def test_the_static_sheet_shows_decisions_read_only(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False, analysis=False)
    page = write_report(out).read_text()
    assert not re.search(r"<article[^>]* data-decision=", page)  # nobody reviewed yet
    assert 'class="review"' not in page and 'id="decision-filter"' not in page
    variants = list(reviewable(current_manifest(out)))
    _decide(out, {variants[0]: ("rejected", "<script>alert(1)</script> too dark"),
                  variants[1]: ("approved", "")}, reviewer="Zoë <b>")
    page = write_report(out).read_text()
    assert {v: card["decision"] for v, card in cards(page).items()} == {
        variants[0]: "rejected", variants[1]: "approved",
        **{v: "pending" for v in variants[2:]}}
    assert "&lt;script&gt;alert(1)&lt;/script&gt; too dark" in page
    assert "<script>alert(1)" not in page and "by Zoë &lt;b&gt; · " in page
    assert "<textarea" not in page and "<button" not in page  # read-only
    assert '<b data-count="approved">1</b>' in page and '<b data-count="pending">2</b>' in page


# --- CSV import and export ----------------------------------------------------------------


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_decisions_csv_round_trip_is_formula_safe(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False, analysis=False)
    variants = list(reviewable(current_manifest(out)))
    made = adgen.import_decisions(out, _csv(tmp_path / "in.csv", [
        {"variant_id": variants[0], "decision": "Rejected ", "reviewer": "",
         "comment": "=HYPERLINK(\"http://x\")"},
        {"variant_id": variants[1], "decision": "approved", "reviewer": "Ben", "comment": ""},
        {"variant_id": variants[2], "decision": "pending", "reviewer": "Ben", "comment": ""},
    ]), reviewer="Ana")
    # the pending row changes nothing, so it is not recorded
    assert [(e.variant_id, e.decision, e.reviewer, e.source) for e in made] == [
        (variants[0], "rejected", "Ana", "import"), (variants[1], "approved", "Ben", "import")]
    assert adgen.export_decisions(out, tmp_path / "out.csv") == len(variants)
    text = (tmp_path / "out.csv").read_text()
    assert text.splitlines()[0] == "variant_id,decision,reviewer,comment,decided_at,content"
    assert "'=HYPERLINK" in text  # a spreadsheet shows it, never runs it
    frame = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert list(frame["decision"]) == ["rejected", "approved", "pending", "pending"]
    # the exported file imported again changes nothing (the guard is undone on import)
    assert adgen.import_decisions(out, tmp_path / "out.csv") == []
    assert len(Decisions.of(out)) == 2


def test_a_bad_csv_row_is_named_and_records_nothing(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False, analysis=False)
    variants = list(reviewable(current_manifest(out)))
    bad = _csv(tmp_path / "bad.csv", [
        {"variant_id": variants[0], "decision": "approved", "reviewer": "Ana", "comment": ""},
        {"variant_id": "hero-nope-v9", "decision": "approved", "reviewer": "Ana", "comment": ""},
        {"variant_id": variants[1], "decision": "ok", "reviewer": "Ana", "comment": ""},
        {"variant_id": variants[2], "decision": "approved", "reviewer": "", "comment": ""},
    ])
    with pytest.raises(ReviewError) as caught:
        adgen.import_decisions(out, bad)
    assert str(caught.value).splitlines() == [
        f"{bad} row 3: variant 'hero-nope-v9' is not in the output (or has no files to "
        "review); check the id against manifest.csv",
        f"{bad} row 4: decision 'ok' is not one of approved, rejected, pending",
        f"{bad} row 5: no reviewer: name yourself (the name field on the page, --reviewer "
        "NAME, or the CSV's reviewer column)",
    ]
    assert not (out / LOG_FILE).exists()  # nothing recorded
    # a row made on content that changed since the export is refused
    adgen.export_decisions(out, tmp_path / "old.csv")
    frame = pd.read_csv(tmp_path / "old.csv", dtype=str, keep_default_na=False)
    frame.loc[0, ["decision", "reviewer"]] = ["approved", "Ana"]
    frame.loc[0, "content"] = "0" * 32
    frame.to_csv(tmp_path / "old.csv", index=False)
    with pytest.raises(ReviewError, match=r"row 2: .* changed since the export"):
        adgen.import_decisions(out, tmp_path / "old.csv")
    # the command line: one line per problem, exit code 2
    missing = _csv(tmp_path / "cols.csv", [{"variant_id": variants[0], "verdict": "approved"}])
    result = subprocess.run([str(ADGEN), "review", str(out), "--import", str(missing)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {missing}: missing column(s) decision, reviewer, comment; the columns are "
        "variant_id, decision, reviewer, comment (adgen review OUT --export FILE writes them)")
